"""The tail of the pipeline on the device: distances -> returns (two launches) -> advantages (three).

Returns (``graph_returns``; GiGPO's ``discounted_returns`` instead):
1. ``_group_dmax_kernel`` (nodes): d_max per group = largest finite distance (``atomic_max``).
2. ``_graph_returns_kernel`` (rows): final d(state), d(next) (unreachable -> d_max + 1, no success -> 1) and
   the graph return (recipe / paper / progress), minus the invalid penalty.

Advantages (``advantages``):
3. ``_moments_pass`` (rows): count, sum, min and max per step group and per group (episode samples), float64.
4. ``_deviation_pass`` (rows): sum of squared deviations from the segment means (two-pass variance: stable
   where sum-of-squares would cancel).
5. ``_advantage_pass`` (rows): normalised step and episode advantages and the weighted sum.

Normalisation rules (fixed by the reference backend): a step group of one row, or whose values are all
exactly equal (min == max, so no rounding residue of the mean can leak through), gets exactly 0. Episode
statistics of a single sample are mean 0, std 1; two or more all-equal samples give exactly 0.

Sums are float64 ``atomic_add``: the order of additions, hence the last bits of a mean or std, may differ
between runs on a GPU (never by more than a few ulps). Counts, min, max and distances are exact.
"""

from __future__ import annotations

import math

import torch

from graphgpo.backends.torch_graph import segment_counts

from graphgpo import kernels

from . import HAS_TRITON, INTERPRET, check_device, launch

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
    def _graph_returns_kernel(group_ptr, src_ptr, dst_ptr, valid_ptr, cost_ptr, dist_ptr, dmax_ptr, has_succ_ptr,
                              d_state_ptr, d_next_ptr, ret_ptr, n, r_succ: tl.float64, log2_omega: tl.float64,
                              penalty: tl.float64,
                              MODE: tl.constexpr, HAS_COST: tl.constexpr, BLOCK: tl.constexpr):
        # final d(state), d(next) and the graph return: MODE 0 recipe, 1 paper, 2 progress (SPEC 3-5)
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        g = tl.load(group_ptr + i, mask=m, other=0)
        hs = tl.load(has_succ_ptr + g, mask=m, other=0) != 0
        ds = _final_distance(tl.load(dist_ptr + tl.load(src_ptr + i, mask=m, other=0), mask=m, other=0.0),
                             g, dmax_ptr, hs, m)
        # a success step's head is its group's sink, at distance 0
        dn = _final_distance(tl.load(dist_ptr + tl.load(dst_ptr + i, mask=m, other=0), mask=m, other=0.0),
                             g, dmax_ptr, hs, m)
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
        invalid = 1.0 - tl.load(valid_ptr + i, mask=m, other=1).to(tl.float64)
        tl.store(ret_ptr + i, r_succ * tl.exp2(expo * log2_omega) - penalty * invalid, mask=m)

    @triton.jit
    def _moments_pass(group_ptr, seg_ptr, ret_ptr, ep_reward_ptr, valid_ptr, step_ptr,
                      s_cnt_ptr, s_sum_ptr, s_min_ptr, s_max_ptr, e_cnt_ptr, e_sum_ptr, e_min_ptr, e_max_ptr,
                      n, penalty: tl.float64, PER_TRAJ: tl.constexpr, BLOCK: tl.constexpr):
        # count, sum, min and max of the returns per step group and of the episode samples per group
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        R = tl.load(ret_ptr + i, mask=m, other=0.0)
        s = tl.load(seg_ptr + i, mask=m, other=0)
        tl.atomic_add(s_cnt_ptr + s, 1, mask=m)
        tl.atomic_add(s_sum_ptr + s, R, mask=m)
        tl.atomic_min(s_min_ptr + s, R, mask=m)
        tl.atomic_max(s_max_ptr + s, R, mask=m)
        # episode samples: every row's score, or each trajectory's reward once (at its step 0)
        g = tl.load(group_ptr + i, mask=m, other=0)
        er = tl.load(ep_reward_ptr + i, mask=m, other=0.0)
        if PER_TRAJ:
            sample = er
            em = m & (tl.load(step_ptr + i, mask=m, other=1) == 0)
        else:
            sample = er - penalty * (1.0 - tl.load(valid_ptr + i, mask=m, other=1).to(tl.float64))
            em = m
        tl.atomic_add(e_cnt_ptr + g, 1, mask=em)
        tl.atomic_add(e_sum_ptr + g, sample, mask=em)
        tl.atomic_min(e_min_ptr + g, sample, mask=em)
        tl.atomic_max(e_max_ptr + g, sample, mask=em)

    @triton.jit
    def _deviation_pass(group_ptr, seg_ptr, ret_ptr, ep_reward_ptr, valid_ptr, step_ptr,
                        s_cnt_ptr, s_sum_ptr, s_ssq_ptr, e_cnt_ptr, e_sum_ptr, e_ssq_ptr,
                        n, penalty: tl.float64, PER_TRAJ: tl.constexpr, BLOCK: tl.constexpr):
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
                        n, penalty: tl.float64, eps: tl.float64, step_weight: tl.float64,
                        episode_weight: tl.float64,
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
    def _discounted_kernel(order_ptr, offset_ptr, length_ptr, reward_ptr, valid_ptr, out_ptr, num_trajs,
                           gamma: tl.float64, penalty: tl.float64, BLOCK: tl.constexpr):
        # one lane per trajectory, walking its steps backwards: R_t = r_t + gamma * R_{t+1}, stored minus
        # the invalid penalty (which is not discounted)
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
            invalid = 1.0 - tl.load(valid_ptr + row, mask=sm, other=1).to(tl.float64)
            tl.store(out_ptr + row, running - penalty * invalid, mask=sm)

GPU_BLOCK = 256
"""Rows per program on a GPU (compile_check compiles this size)."""
TRAJ_BLOCK = 128
"""Trajectories per program of the discounted-return kernel on a GPU."""


def _block(n: int, gpu_block: int = GPU_BLOCK) -> int:
    if kernels.TEST_BLOCK:
        return kernels.TEST_BLOCK
    # the interpreter runs programs one by one: few wide ones; a GPU wants many narrow ones
    if INTERPRET:
        return max(16, min(4096, triton.next_power_of_2(max(n, 1))))
    return gpu_block


def group_dmax(dist: torch.Tensor, node_group: torch.Tensor, num_groups: int) -> torch.Tensor:
    """float64 [groups]: largest finite distance per group (0 where none)."""
    check_device(dist)
    dmax = torch.zeros(num_groups, dtype=torch.float64, device=dist.device)
    n = dist.numel()
    if n:
        b = _block(n)
        launch(_group_dmax_kernel, (triton.cdiv(n, b),), dist, node_group, dmax, n, BLOCK=b)
    return dmax


def discounted_returns(traj: torch.Tensor, step: torch.Tensor, reward: torch.Tensor, valid: torch.Tensor,
                       num_trajs: int, gamma: float, penalty: float) -> torch.Tensor:
    """float64 [rows]: R_t = sum_{k>=t} gamma^(k-t) r_k within each trajectory (steps 0..L-1), minus the
    invalid penalty.

    Rows are placed by (trajectory offset + step), which needs no sort; the recurrence is the reference's
    ``r_t + gamma * R_{t+1}``, so the floats match it exactly.
    """
    check_device(traj, step, reward)
    n = traj.numel()
    out = torch.empty(n, dtype=torch.float64, device=traj.device)
    if n == 0:
        return out
    length = segment_counts(traj, num_trajs)
    offset = torch.cumsum(length, 0) - length
    order = torch.empty(n, dtype=torch.int64, device=traj.device)
    order[offset[traj] + step] = torch.arange(n, device=traj.device)
    b = _block(num_trajs, TRAJ_BLOCK)
    launch(_discounted_kernel, (triton.cdiv(num_trajs, b),), order, offset, length,
           reward.to(torch.float64).contiguous(), valid.to(torch.uint8), out, num_trajs, float(gamma),
           float(penalty), BLOCK=b)
    return out


def graph_returns(*, group, src, dst, valid, cost, dist, node_group, has_success, config):
    """Final d(state), d(next) and the graph return of every row (``config.graph_return``), after the
    invalid penalty: a d_max launch over the nodes, then one over the rows. ``src``/``dst`` may hold extra
    (non-row) edges after the rows; only the first ``len(group)`` are read."""
    check_device(dist, group)
    n = group.numel()
    f64 = dict(dtype=torch.float64, device=dist.device)
    d_state, d_next, returns = torch.empty(n, **f64), torch.empty(n, **f64), torch.empty(n, **f64)
    if n == 0:
        return d_state, d_next, returns
    dmax = group_dmax(dist, node_group, has_success.numel())
    mode = {"recipe": 0, "paper": 1, "progress": 2}[config.graph_return]
    b = _block(n)
    launch(_graph_returns_kernel, (triton.cdiv(n, b),), group, src, dst, valid.to(torch.uint8),
           cost if cost is not None else returns, dist, dmax, has_success.to(torch.uint8), d_state, d_next, returns,
           n, float(config.r_succ), math.log2(config.omega), float(config.invalid_penalty),
           MODE=mode, HAS_COST=cost is not None, BLOCK=b)
    return d_state, d_next, returns


def advantages(*, group, valid, episode_reward, step, returns, step_group, num_step_groups, num_groups, config):
    """Step and episode advantages (float64) and their weighted sum (float32), from per-row returns: moments
    per step group and per group, squared deviations, then the normalised values (three launches)."""
    check_device(group, valid, episode_reward, returns)
    dev = group.device
    n = group.numel()
    f64 = dict(dtype=torch.float64, device=dev)
    step_adv, episode_adv = torch.empty(n, **f64), torch.empty(n, **f64)
    adv = torch.empty(n, dtype=torch.float32, device=dev)
    if n == 0:
        return step_adv, episode_adv, adv
    penalty = float(config.invalid_penalty)
    per_traj = config.episode_stats == "per_trajectory"
    s_cnt = torch.zeros(num_step_groups, dtype=torch.int32, device=dev)
    s_sum, s_ssq = torch.zeros(num_step_groups, **f64), torch.zeros(num_step_groups, **f64)
    s_min, s_max = torch.full((num_step_groups,), math.inf, **f64), torch.full((num_step_groups,), -math.inf, **f64)
    e_cnt = torch.zeros(num_groups, dtype=torch.int32, device=dev)
    e_sum, e_ssq = torch.zeros(num_groups, **f64), torch.zeros(num_groups, **f64)
    e_min, e_max = torch.full((num_groups,), math.inf, **f64), torch.full((num_groups,), -math.inf, **f64)
    valid_u8 = valid.to(torch.uint8)
    ep = episode_reward.to(torch.float64).contiguous()
    b = _block(n)
    grid = (triton.cdiv(n, b),)
    launch(_moments_pass, grid, group, step_group, returns, ep, valid_u8, step, s_cnt, s_sum, s_min, s_max,
           e_cnt, e_sum, e_min, e_max, n, penalty, PER_TRAJ=per_traj, BLOCK=b)
    launch(_deviation_pass, grid, group, step_group, returns, ep, valid_u8, step,
           s_cnt, s_sum, s_ssq, e_cnt, e_sum, e_ssq, n, penalty, PER_TRAJ=per_traj, BLOCK=b)
    launch(_advantage_pass, grid, group, step_group, returns, ep, valid_u8,
           s_cnt, s_sum, s_min, s_max, s_ssq, e_cnt, e_sum, e_min, e_max, e_ssq, step_adv, episode_adv, adv,
           n, penalty, float(config.eps), float(config.step_weight), float(config.episode_weight),
           MEAN_ONLY=config.normalize == "mean", BLOCK=b)
    return step_adv, episode_adv, adv
