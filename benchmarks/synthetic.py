"""Synthetic step batches for benchmarks: random walks on a ring of states, built with tensor ops only.

Each group's G rollouts start in the same state and take steps of -1, 0 (a self-loop), +1 or +2 around a
ring of ``num_states`` states, so trajectories revisit states, share states with their siblings and close
cycles, like agents re-entering rooms. Lengths are uniform in min_length..horizon; a trajectory succeeds with
probability ``success_rate`` (episode reward 10, per-step reward 10 on its last step); a step is invalid
with probability ``invalid_rate``.
"""

from __future__ import annotations

import random

import numpy as np
import torch

from graphgpo.batch import StepBatch
from graphgpo.hashing import GOLDEN, MIX_MUL1, MIX_MUL2, POS_SEED

# Odd 64-bit multiplier (golden ratio, as signed int64): spreads small state ids over the int64 range like
# real hashed keys, so benchmarks do not sort suspiciously small integers.
_SPREAD = 0x9E3779B97F4A7C15 - (1 << 64)
_MOVES = (-1, 0, 1, 1, 2)

METHOD_CASES = [
    ("graphgpo", {}),
    ("graphgpo", {"graph_return": "paper", "episode_stats": "per_trajectory", "omega": 0.8}),
    ("graphgpo", {"graph_return": "progress", "normalize": "mean", "step_weight": 0.5}),
    ("gigpo", {}),
    ("gigpo", {"gamma": 0.9, "episode_stats": "per_trajectory", "normalize": "mean"}),
    ("grpo", {}),
    ("rloo", {}),
]
"""(method, options) covering every method and option branch once: the cases backends are compared on."""


def synthetic_columns(num_groups: int, group_size: int, horizon: int, num_states: int, seed: int = 0,
                      device="cpu", *, success_rate: float = 0.5, invalid_rate: float = 0.1,
                      with_cost: bool = False, min_length: int = 1) -> dict[str, torch.Tensor]:
    """Columns of a synthetic batch (row order: trajectory by trajectory, steps in order)."""
    if not 1 <= min_length <= horizon:
        raise ValueError(f"min_length must be in 1..horizon ({horizon}), got {min_length}")
    gen = torch.Generator().manual_seed(seed)
    num_trajs = num_groups * group_size
    lengths = torch.randint(min_length, horizon + 1, (num_trajs,), generator=gen)
    moves = torch.tensor(_MOVES)[torch.randint(len(_MOVES), (num_trajs, horizon), generator=gen)]
    start = torch.randint(num_states, (num_groups,), generator=gen).repeat_interleave(group_size)
    # position[:, t] is the state before step t; column horizon is the state after the last possible step
    position = torch.cat([start[:, None], start[:, None] + moves.cumsum(1)], 1) % num_states
    alive = torch.arange(horizon)[None, :] < lengths[:, None]

    traj = torch.arange(num_trajs)[:, None].expand(num_trajs, horizon)[alive]
    step = torch.arange(horizon)[None, :].expand(num_trajs, horizon)[alive]
    state = position[:, :-1][alive] * _SPREAD
    next_state = position[:, 1:][alive] * _SPREAD
    group = traj // group_size
    traj_success = torch.rand(num_trajs, generator=gen) < success_rate
    success = traj_success[traj]
    episode_reward = success.to(torch.float64) * 10.0
    last = step == lengths[traj] - 1
    reward = (success & last).to(torch.float64) * 10.0
    valid = torch.rand(traj.numel(), generator=gen) >= invalid_rate
    columns = dict(group=group, traj=traj, step=step, state=state, next_state=next_state, success=success,
                   valid=valid, episode_reward=episode_reward, reward=reward)
    if with_cost:
        columns["cost"] = torch.randint(1, 4, (traj.numel(),), generator=gen).to(torch.float64) * 0.5
    return {name: col.to(device) for name, col in columns.items()}


def make_synthetic_batch(num_groups: int, group_size: int, horizon: int, num_states: int, seed: int = 0,
                         device="cpu", *, success_rate: float = 0.5, invalid_rate: float = 0.1,
                         with_cost: bool = False, min_length: int = 1, validate: bool = True) -> StepBatch:
    """A synthetic ``StepBatch`` built on ``device`` with ``StepBatch.from_tensors`` (no Python objects).

    About ``num_groups * group_size * (horizon + min_length) / 2`` rows.
    """
    columns = synthetic_columns(num_groups, group_size, horizon, num_states, seed, device,
                                success_rate=success_rate, invalid_rate=invalid_rate, with_cost=with_cost,
                                min_length=min_length)
    return StepBatch.from_tensors(**columns, validate=validate)


def groups_for_steps(num_steps: int, group_size: int = 8, horizon: int = 50, min_length: int = 1) -> int:
    """Number of groups that gives about ``num_steps`` rows with ``make_synthetic_batch``."""
    return max(1, round(num_steps / (group_size * (horizon + min_length) / 2)))


def make_synthetic_records(num_groups: int = 16, group_size: int = 8, horizon: int = 50, num_states: int = 40,
                           seed: int = 0, *, min_length: int = 1) -> list[dict]:
    """Records (dicts) like an environment loop produces: string observations of ~200 characters,
    string group ids (task ids) and trajectory ids."""
    cols = synthetic_columns(num_groups, group_size, horizon, num_states, seed, min_length=min_length)
    # Text observations: one per ring position, long enough to make hashing realistic.
    texts = [f"-= Room {k} =- You are in room {k}. You see a cabinet {k % 7}, a countertop {k % 5}, "
             f"a drawer {k % 3} and a fridge. On the countertop {k % 5} you see a mug {k % 4}. "
             f"Your task is to: put a clean mug in the coffeemachine." for k in range(num_states)]
    # Recover ring positions from the spread keys: keys are position * _SPREAD, a bijection mod 2^64.
    inverse = pow(_SPREAD % (1 << 64), -1, 1 << 64)
    inverse = inverse - (1 << 64) if inverse >= 1 << 63 else inverse
    state = (cols["state"] * inverse).tolist()
    next_state = (cols["next_state"] * inverse).tolist()
    group, traj, step = cols["group"].tolist(), cols["traj"].tolist(), cols["step"].tolist()
    success, valid = cols["success"].tolist(), cols["valid"].tolist()
    episode_reward, reward = cols["episode_reward"].tolist(), cols["reward"].tolist()
    return [
        {"group": f"task-{group[i]}", "traj": f"task-{group[i]}/rollout-{traj[i]}", "step": step[i],
         "state": texts[state[i]], "next_state": texts[next_state[i]], "success": success[i],
         "valid": valid[i], "episode_reward": episode_reward[i], "reward": reward[i]}
        for i in range(len(group))
    ]


def mdp_records(num_tasks: int, group_size: int = 8, *, num_states: int = 200, num_actions: int = 4,
                invalid_rate: float = 0.1, max_steps: int = 50, seed: int = 0) -> list[dict]:
    """Records of uniform-random rollouts in one random deterministic MDP per task (the batches of the
    credit-step comparison in benchmarks/core_scaling.py).

    Each task: ``num_states`` states named by short strings (unique per task), ``num_actions`` actions per
    state, a share ``invalid_rate`` of (state, action) pairs invalid (the agent stays put), a random goal
    and a random start shared by the task's ``group_size`` rollouts. An episode ends at the goal (success,
    episode reward 10, step reward 10 on the last step) or after ``max_steps`` steps. T tasks x 8 rollouts
    give about 1.5k / 5.7k / 23k / 93k / 367k steps for T = 4 / 16 / 64 / 256 / 1024.
    """
    rng = random.Random(seed)
    records = []
    for task in range(num_tasks):
        names = [f"t{task}s{k}" for k in range(num_states)]
        move = [[rng.randrange(num_states) for _ in range(num_actions)] for _ in range(num_states)]
        invalid = [[rng.random() < invalid_rate for _ in range(num_actions)] for _ in range(num_states)]
        goal, start = rng.randrange(num_states), rng.randrange(num_states)
        group = f"task-{task}"
        for rollout in range(group_size):
            traj = f"{group}/rollout-{rollout}"
            state, steps = start, []
            for _ in range(max_steps):
                action = rng.randrange(num_actions)
                bad = invalid[state][action]
                following = state if bad else move[state][action]
                steps.append((state, following, not bad))
                state = following
                if state == goal:
                    break
            success = state == goal
            for t, (s, following, valid) in enumerate(steps):
                records.append({"group": group, "traj": traj, "step": t, "state": names[s],
                                "next_state": names[following], "success": success, "valid": valid,
                                "episode_reward": 10.0 if success else 0.0,
                                "reward": 10.0 if success and t == len(steps) - 1 else 0.0})
    return records


# ------------------------------------------------------------------------------------------------ forced collisions

def _term(position: int, tokens: np.ndarray) -> np.ndarray:
    """mix(t * GOLDEN + mix(position + POS_SEED)) on uint64 lanes (numpy, independent of the torch code)."""
    def mix(z):
        z = z ^ (z >> np.uint64(30))
        z = z * np.uint64(MIX_MUL1)
        z = z ^ (z >> np.uint64(27))
        z = z * np.uint64(MIX_MUL2)
        return z ^ (z >> np.uint64(31))

    return mix(tokens * np.uint64(GOLDEN) + mix(np.uint64(position) + np.uint64(POS_SEED)))


def _merge(xa, ia, xb, ib, bits):
    """All pairs of the two lists whose sums are 0 on the low ``bits`` bits: (sums, token choices)."""
    low = np.uint64((1 << bits) - 1) if bits < 64 else np.uint64((1 << 64) - 1)
    need = (np.uint64(0) - xa) & low
    order = np.argsort(xb & low, kind="stable")
    keys = (xb & low)[order]
    start, stop = np.searchsorted(keys, need, "left"), np.searchsorted(keys, need, "right")
    count = stop - start
    a = np.repeat(np.arange(len(xa)), count)
    b = order[np.repeat(start - np.cumsum(count) + count, count) + np.arange(count.sum())]
    return xa[a] + xb[b], np.concatenate([ia[a], ib[b]], axis=1)


def colliding_token_rows() -> torch.Tensor:
    """Distinct 16-token rows with one 64-bit key, by Wagner's generalised birthday search.

    The token-row hash sums one word per position, so the key of a row equals the all-zeros row's key when
    the words' differences to it sum to 0 mod 2**64: 16 lists of 2**14 differences, merged pairwise while
    zeroing 14, 28, 42 and then all 64 low bits (~70 solutions in well under a second).
    """
    candidates = np.arange(1, (1 << 14) + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        lists = [(_term(i, candidates) - _term(i, np.zeros(1, dtype=np.uint64)), candidates[:, None].astype(np.int64))
                 for i in range(16)]
        for bits in (14, 28, 42, 64):
            lists = [_merge(*lists[j], *lists[j + 1], bits) for j in range(0, len(lists), 2)]
    _, choices = lists[0]
    return torch.cat([torch.zeros(1, 16, dtype=torch.int64), torch.from_numpy(choices)])
