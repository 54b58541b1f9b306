"""The fused tail: distances -> returns -> step and episode advantages, in four launches.

1. ``_group_dmax_kernel`` (nodes): d_max per group = largest finite distance (``atomic_max``).
2. ``_returns_pass`` (rows): final d(state), d(next) (unreachable -> d_max + 1, no success -> 1), the graph
   return (recipe / paper / progress) or a given step return, minus the invalid penalty; then accumulates
   per step group and per group (episode samples) count, sum, min and max in float64.
3. ``_deviation_pass`` (rows): sum of squared deviations from the segment means (two-pass variance: stable
   where sum-of-squares would cancel).
4. ``_advantage_pass`` (rows): normalised step and episode advantages and the weighted sum.

Normalisation rules (fixed by the reference backend): a step group of one row, or whose values are all
exactly equal (min == max, so no rounding residue of the mean can leak through), gets exactly 0. Episode
statistics of a single sample are mean 0, std 1; two or more all-equal samples give exactly 0.

Sums are float64 ``atomic_add``: the order of additions, hence the last bits of a mean or std, may differ
between runs on a GPU (never by more than a few ulps). Counts, min, max and distances are exact.
"""

from __future__ import annotations

import math

import torch

from . import HAS_TRITON, INTERPRET, check_device

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _group_dmax_kernel(dist_ptr, node_group_ptr, dmax_ptr, num_nodes, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < num_nodes
        d = tl.load(dist_ptr + i, mask=m, other=float("inf"))
        g = tl.load(node_group_ptr + i, mask=m, other=0)
        fin = m & (d < float("inf"))
        tl.atomic_max(dmax_ptr + g, d, mask=fin)

    @triton.jit
    def _final_distance(d, g, dmax_ptr, has_success, m):
        # SPEC 3: unreachable -> d_max + 1; a group without success: every node 1
        dm = tl.load(dmax_ptr + g, mask=m, other=0.0)
        d = tl.where(d < float("inf"), d, dm + 1.0)
        return tl.where(has_success, d, 1.0)

    @triton.jit
    def _returns_pass(group_ptr, src_ptr, dst_ptr, to_succ_ptr, valid_ptr, cost_ptr, given_ptr,
                      dist_ptr, dmax_ptr, has_succ_ptr, seg_ptr,
                      ep_reward_ptr, step_ptr,
                      d_state_ptr, d_next_ptr, ret_ptr,
                      s_cnt_ptr, s_sum_ptr, s_min_ptr, s_max_ptr,
                      e_cnt_ptr, e_sum_ptr, e_min_ptr, e_max_ptr,
                      n, r_succ, log2_omega, penalty,
                      MODE: tl.constexpr, HAS_COST: tl.constexpr, PER_TRAJ: tl.constexpr,
                      BLOCK: tl.constexpr):
        # MODE 0 recipe, 1 paper, 2 progress (graph returns from distances); 3: given step returns
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        g = tl.load(group_ptr + i, mask=m, other=0)
        invalid = 1.0 - tl.load(valid_ptr + i, mask=m, other=1).to(tl.float64)
        if MODE == 3:
            R = tl.load(given_ptr + i, mask=m, other=0.0)
        else:
            hs = tl.load(has_succ_ptr + g, mask=m, other=0) != 0
            src = tl.load(src_ptr + i, mask=m, other=0)
            dst = tl.load(dst_ptr + i, mask=m, other=0)
            to_succ = tl.load(to_succ_ptr + i, mask=m, other=0) != 0
            ds = _final_distance(tl.load(dist_ptr + src, mask=m, other=0.0), g, dmax_ptr, hs, m)
            dn = _final_distance(tl.load(dist_ptr + dst, mask=m, other=0.0), g, dmax_ptr, hs, m)
            dn = tl.where(to_succ, 0.0, dn)
            tl.store(d_state_ptr + i, ds, mask=m)
            tl.store(d_next_ptr + i, dn, mask=m)
            if MODE == 0:
                expo = dn
            elif MODE == 1:
                if HAS_COST:
                    expo = dn + tl.load(cost_ptr + i, mask=m, other=1.0)
                else:
                    expo = dn + 1.0
            else:
                expo = dn - ds + 1.0
            R = r_succ * tl.exp2(expo * log2_omega)
        R = R - penalty * invalid
        tl.store(ret_ptr + i, R, mask=m)
        s = tl.load(seg_ptr + i, mask=m, other=0)
        tl.atomic_add(s_cnt_ptr + s, 1, mask=m)
        tl.atomic_add(s_sum_ptr + s, R, mask=m)
        tl.atomic_min(s_min_ptr + s, R, mask=m)
        tl.atomic_max(s_max_ptr + s, R, mask=m)
        # episode samples: every row's score, or each trajectory's reward once (at its step 0)
        er = tl.load(ep_reward_ptr + i, mask=m, other=0.0)
        if PER_TRAJ:
            sample = er
            em = m & (tl.load(step_ptr + i, mask=m, other=1) == 0)
        else:
            sample = er - penalty * invalid
            em = m
        tl.atomic_add(e_cnt_ptr + g, 1, mask=em)
        tl.atomic_add(e_sum_ptr + g, sample, mask=em)
        tl.atomic_min(e_min_ptr + g, sample, mask=em)
        tl.atomic_max(e_max_ptr + g, sample, mask=em)

    @triton.jit
    def _deviation_pass(group_ptr, seg_ptr, ret_ptr, ep_reward_ptr, valid_ptr, step_ptr,
                        s_cnt_ptr, s_sum_ptr, s_ssq_ptr, e_cnt_ptr, e_sum_ptr, e_ssq_ptr,
                        n, penalty, PER_TRAJ: tl.constexpr, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        s = tl.load(seg_ptr + i, mask=m, other=0)
        R = tl.load(ret_ptr + i, mask=m, other=0.0)
        mean = tl.load(s_sum_ptr + s, mask=m, other=0.0) / tl.load(s_cnt_ptr + s, mask=m, other=1).to(tl.float64)
        tl.atomic_add(s_ssq_ptr + s, (R - mean) * (R - mean), mask=m)
        g = tl.load(group_ptr + i, mask=m, other=0)
        er = tl.load(ep_reward_ptr + i, mask=m, other=0.0)
        if PER_TRAJ:
            sample = er
            em = m & (tl.load(step_ptr + i, mask=m, other=1) == 0)
        else:
            invalid = 1.0 - tl.load(valid_ptr + i, mask=m, other=1).to(tl.float64)
            sample = er - penalty * invalid
            em = m
        emean = tl.load(e_sum_ptr + g, mask=em, other=0.0) / tl.load(e_cnt_ptr + g, mask=em, other=1).to(tl.float64)
        tl.atomic_add(e_ssq_ptr + g, (sample - emean) * (sample - emean), mask=em)

    @triton.jit
    def _advantage_pass(group_ptr, seg_ptr, ret_ptr, ep_reward_ptr, valid_ptr,
                        s_cnt_ptr, s_sum_ptr, s_min_ptr, s_max_ptr, s_ssq_ptr,
                        e_cnt_ptr, e_sum_ptr, e_min_ptr, e_max_ptr, e_ssq_ptr,
                        step_adv_ptr, ep_adv_ptr, adv_ptr,
                        n, penalty, eps, step_weight, episode_weight,
                        MEAN_ONLY: tl.constexpr, BLOCK: tl.constexpr):
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        # step part: one row or all-equal values -> exactly 0
        s = tl.load(seg_ptr + i, mask=m, other=0)
        R = tl.load(ret_ptr + i, mask=m, other=0.0)
        cnt = tl.load(s_cnt_ptr + s, mask=m, other=1).to(tl.float64)
        mean = tl.load(s_sum_ptr + s, mask=m, other=0.0) / cnt
        flat = tl.load(s_min_ptr + s, mask=m, other=0.0) == tl.load(s_max_ptr + s, mask=m, other=0.0)
        if MEAN_ONLY:
            a_step = R - mean
        else:
            std = tl.sqrt(tl.load(s_ssq_ptr + s, mask=m, other=0.0) / tl.maximum(cnt - 1.0, 1.0))
            a_step = (R - mean) / (std + eps)
        a_step = tl.where(flat | (cnt < 2.0), 0.0, a_step)
        # episode part: one sample -> mean 0, std 1; several all-equal samples -> exactly 0
        g = tl.load(group_ptr + i, mask=m, other=0)
        invalid = 1.0 - tl.load(valid_ptr + i, mask=m, other=1).to(tl.float64)
        score = tl.load(ep_reward_ptr + i, mask=m, other=0.0) - penalty * invalid
        ecnt = tl.load(e_cnt_ptr + g, mask=m, other=1).to(tl.float64)
        single = ecnt < 2.0
        emean = tl.where(single, 0.0, tl.load(e_sum_ptr + g, mask=m, other=0.0) / ecnt)
        eflat = tl.load(e_min_ptr + g, mask=m, other=0.0) == tl.load(e_max_ptr + g, mask=m, other=0.0)
        if MEAN_ONLY:
            a_ep = score - emean
        else:
            estd = tl.sqrt(tl.load(e_ssq_ptr + g, mask=m, other=0.0) / tl.maximum(ecnt - 1.0, 1.0))
            estd = tl.where(single, 1.0, estd)
            a_ep = (score - emean) / (estd + eps)
        a_ep = tl.where(eflat & (~single), 0.0, a_ep)
        tl.store(step_adv_ptr + i, a_step, mask=m)
        tl.store(ep_adv_ptr + i, a_ep, mask=m)
        tl.store(adv_ptr + i, (step_weight * a_step + episode_weight * a_ep).to(tl.float32), mask=m)

    @triton.jit
    def _discounted_kernel(order_ptr, offset_ptr, length_ptr, reward_ptr, out_ptr, num_trajs, gamma,
                           BLOCK: tl.constexpr):
        # one lane per trajectory, walking its steps backwards: R_t = r_t + gamma * R_{t+1}
        t = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = t < num_trajs
        off = tl.load(offset_ptr + t, mask=m, other=0)
        length = tl.load(length_ptr + t, mask=m, other=0)
        running = tl.zeros([BLOCK], dtype=tl.float64)
        for k in range(0, tl.max(length, axis=0).to(tl.int32)):
            step = length - 1 - k
            sm = m & (step >= 0)
            row = tl.load(order_ptr + off + step, mask=sm, other=0)
            running = tl.where(sm, tl.load(reward_ptr + row, mask=sm, other=0.0) + gamma * running, running)
            tl.store(out_ptr + row, running, mask=sm)


def _block(n: int) -> int:
    # the interpreter runs programs one by one: few wide ones; a GPU wants many narrow ones
    if INTERPRET:
        return max(16, min(4096, triton.next_power_of_2(max(n, 1))))
    return 256


def group_dmax(dist: torch.Tensor, node_group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """float64 [groups]: largest finite distance per group (0 where none)."""
    check_device(dist)
    dmax = torch.zeros(num_groups, dtype=torch.float64, device=dist.device)
    n = dist.numel()
    if n:
        b = _block(n)
        _group_dmax_kernel[(triton.cdiv(n, b),)](dist, node_group, dmax, n, BLOCK=b)
    return dmax


def discounted_returns(traj: torch.Tensor, step: torch.Tensor, reward: torch.Tensor, num_trajs: int,
                       gamma: float) -> torch.Tensor:
    """float64 [rows]: R_t = sum_{k>=t} gamma^(k-t) r_k within each trajectory (steps 0..L-1).

    Rows are placed by (trajectory offset + step), which needs no sort; the recurrence is the reference's
    ``r_t + gamma * R_{t+1}``, so the floats match it exactly.
    """
    check_device(traj, step, reward)
    n = traj.numel()
    out = torch.empty(n, dtype=torch.float64, device=traj.device)
    if n == 0:
        return out
    length = torch.bincount(traj, minlength=num_trajs)
    offset = torch.cumsum(length, 0) - length
    order = torch.empty(n, dtype=torch.int64, device=traj.device)
    order[offset[traj] + step] = torch.arange(n, device=traj.device)
    b = _block(num_trajs) if INTERPRET else 128
    _discounted_kernel[(triton.cdiv(num_trajs, b),)](order, offset, length, reward.to(torch.float64).contiguous(),
                                                     out, num_trajs, float(gamma), BLOCK=b)
    return out


def fused_advantages(*, group, step_group, num_step_groups, num_groups, valid, episode_reward, step, config,
                     mode: str, given_returns=None, src=None, dst=None, to_success=None, cost=None, dist=None,
                     node_group=None, has_success=None):
    """Returns, step/episode advantages and their weighted sum (and final distances for graph returns).

    ``mode``: "recipe" | "paper" | "progress" (graph returns from ``dist`` over nodes, rows ``src -> dst``)
    or "given" (``given_returns`` per row, before the invalid penalty). Returns a dict of per-row tensors
    ``returns``, ``step_advantages``, ``episode_advantages``, ``advantages`` (float32) and, for graph
    returns, ``d_state``, ``d_next``.
    """
    check_device(group, valid, episode_reward)
    dev = group.device
    n = group.numel()
    f64 = dict(dtype=torch.float64, device=dev)
    modes = {"recipe": 0, "paper": 1, "progress": 2, "given": 3}
    mode_id = modes[mode]
    graph = mode_id != 3
    omega = getattr(config, "omega", 1.0)
    r_succ = getattr(config, "r_succ", 0.0)
    penalty = float(config.invalid_penalty)
    per_traj = config.episode_stats == "per_trajectory"
    out = {
        "returns": torch.empty(n, **f64),
        "step_advantages": torch.empty(n, **f64),
        "episode_advantages": torch.empty(n, **f64),
        "advantages": torch.empty(n, dtype=torch.float32, device=dev),
    }
    if graph:
        out["d_state"] = torch.empty(n, **f64)
        out["d_next"] = torch.empty(n, **f64)
    if n == 0:
        return out
    inf = math.inf
    s_cnt = torch.zeros(num_step_groups, dtype=torch.int32, device=dev)
    s_sum, s_ssq = torch.zeros(num_step_groups, **f64), torch.zeros(num_step_groups, **f64)
    s_min, s_max = torch.full((num_step_groups,), inf, **f64), torch.full((num_step_groups,), -inf, **f64)
    e_cnt = torch.zeros(num_groups, dtype=torch.int32, device=dev)
    e_sum, e_ssq = torch.zeros(num_groups, **f64), torch.zeros(num_groups, **f64)
    e_min, e_max = torch.full((num_groups,), inf, **f64), torch.full((num_groups,), -inf, **f64)
    valid_u8 = valid.to(torch.uint8)
    ep = episode_reward.to(torch.float64).contiguous()
    b = _block(n)
    grid = (triton.cdiv(n, b),)
    if graph:
        dmax = group_dmax(dist, node_group, num_groups)
        has_u8 = has_success.to(torch.uint8)
        succ_u8 = to_success.to(torch.uint8)
        dummy = out["returns"]
        _returns_pass[grid](group, src, dst, succ_u8, valid_u8, cost if cost is not None else dummy, dummy,
                            dist, dmax, has_u8, step_group, ep, step,
                            out["d_state"], out["d_next"], out["returns"],
                            s_cnt, s_sum, s_min, s_max, e_cnt, e_sum, e_min, e_max,
                            n, float(r_succ), math.log2(omega), penalty,
                            MODE=mode_id, HAS_COST=cost is not None, PER_TRAJ=per_traj, BLOCK=b)
    else:
        dummy = out["returns"]
        given = given_returns.to(torch.float64).contiguous()
        _returns_pass[grid](group, group, group, valid_u8, valid_u8, dummy, given,
                            dummy, dummy, valid_u8, step_group, ep, step,
                            dummy, dummy, out["returns"],
                            s_cnt, s_sum, s_min, s_max, e_cnt, e_sum, e_min, e_max,
                            n, 0.0, 0.0, penalty,
                            MODE=3, HAS_COST=False, PER_TRAJ=per_traj, BLOCK=b)
    _deviation_pass[grid](group, step_group, out["returns"], ep, valid_u8, step,
                          s_cnt, s_sum, s_ssq, e_cnt, e_sum, e_ssq, n, penalty, PER_TRAJ=per_traj, BLOCK=b)
    _advantage_pass[grid](group, step_group, out["returns"], ep, valid_u8,
                          s_cnt, s_sum, s_min, s_max, s_ssq, e_cnt, e_sum, e_min, e_max, e_ssq,
                          out["step_advantages"], out["episode_advantages"], out["advantages"],
                          n, penalty, float(config.eps), float(config.step_weight), float(config.episode_weight),
                          MEAN_ONLY=config.normalize == "mean", BLOCK=b)
    return out
