"""Random step batches for property tests: rows as dicts, in shuffled order, and their StepBatch.

Shared by the tests of the torch, triton and reference backends and of the pipeline's hooks.
"""

from __future__ import annotations

import random

import torch
from hypothesis import strategies as st

from graphgpo.backends.pipeline import GraphInputs
from graphgpo.batch import StepBatch

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
COSTS = (0.1, 0.2, 0.3, 0.5, 1.0, 1.5, 2.0, 7.0)  # 0.1 + 0.2 != 0.3: float sums must agree exactly


# ------------------------------------------------------------------------------------------ random batches

def random_rows(seed: int, num_groups: int, max_group_size: int, max_horizon: int, num_states: int,
                weighted: bool) -> list[dict]:
    """Rows (dicts with int keys) of a random batch, in shuffled order.

    Each group draws its mode: mixed success, all success (sometimes identical rollouts) or all fail.
    Walks stay put (self-loop), step back (cycle) or jump to a random state of a small pool shared by all
    groups (so equal keys occur in different groups); some steps start away from where the previous one
    ended.
    """
    rng = random.Random(seed)
    pool = [INT64_MIN, INT64_MAX, 0, -1] + [rng.randrange(INT64_MIN, INT64_MAX) for _ in range(num_states)]
    pool = pool[:max(num_states, 1)]
    rows = []
    group_labels = rng.sample(range(-10**6, 10**6), num_groups)  # from_tensors must make them dense
    traj_label = rng.randrange(-10**9, 10**9)
    for g in range(num_groups):
        mode = rng.choice(("mixed", "mixed", "all_success", "all_fail", "identical"))
        size = rng.randint(1, max_group_size)
        start = rng.choice(pool)
        template = None
        for _ in range(size):
            traj_label += rng.randint(1, 5)
            if mode == "identical" and template is not None:
                walk, success, episode_reward, steps = template
            else:
                length = rng.randint(1, max_horizon)
                walk = [start]
                for _ in range(length):
                    move = rng.random()
                    if move < 0.2:
                        walk.append(walk[-1])  # self-loop
                    elif move < 0.4 and len(walk) > 1:
                        walk.append(walk[-2])  # step back: a cycle
                    else:
                        walk.append(rng.choice(pool))
                if rng.random() < 0.3:
                    walk[-1] = rng.randrange(INT64_MIN, INT64_MAX)  # a final state seen nowhere else
                # (state, next_state) per step; sometimes a step starts elsewhere than the previous step
                # ended (a reset, or keys that are not Markov), so next_state != the next row's state
                walk = [(walk[t], walk[t + 1]) for t in range(length)]
                for t in range(1, length):
                    if rng.random() < 0.15:
                        walk[t] = (rng.choice(pool), walk[t][1])
                success = {"mixed": rng.random() < 0.5, "all_fail": False}.get(mode, True)
                episode_reward = rng.choice((10.0, 10.0, 3.5, 1.0)) if success else rng.choice((0.0, 0.0, -1.0))
                steps = [(rng.random() >= 0.2, rng.choice((0.0, 0.0, 1.0, 0.5, -2.0)), rng.choice(COSTS))
                         for _ in range(length)]
                template = (walk, success, episode_reward, steps)
            for t, (valid, reward, cost) in enumerate(steps):
                row = dict(group=group_labels[g], traj=traj_label, step=t, state=walk[t][0], next_state=walk[t][1],
                           success=success, valid=valid, episode_reward=episode_reward, reward=reward)
                if weighted:
                    row["cost"] = cost
                rows.append(row)
    rng.shuffle(rows)
    return rows


def to_batch(rows: list[dict]) -> StepBatch:
    columns = {name: [row[name] for row in rows] for name in rows[0]}
    dtypes = dict(success=torch.bool, valid=torch.bool, episode_reward=torch.float64, reward=torch.float64,
                  cost=torch.float64)
    return StepBatch.from_tensors(**{name: torch.tensor(values, dtype=dtypes.get(name, torch.int64))
                                     for name, values in columns.items()})


batch_params = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "num_groups": st.one_of(st.integers(1, 4), st.integers(20, 40)),
    "max_group_size": st.integers(1, 8),
    "max_horizon": st.one_of(st.integers(1, 4), st.integers(5, 30)),
    "num_states": st.integers(1, 12),
    "weighted": st.booleans(),
})


def random_inputs(batch, seed: int, *, merge: bool, step_keys: bool, num_extra: int) -> GraphInputs:
    """Merged graph keys (key mod 5), coarser step keys (key mod 3) and random extra edges whose endpoints
    are keys of the batch (so they connect to it) or new keys, some of them into SUCCESS."""
    rng = random.Random(seed)
    fields = {}
    if merge:
        fields["state_key"] = torch.remainder(batch.state, 5)
        fields["next_key"] = torch.remainder(batch.next_state, 5)
    if step_keys:
        fields["step_key"] = torch.remainder(batch.state, 3)
    if num_extra:
        keys = (fields.get("state_key", batch.state)).tolist() + [rng.randrange(-2**63, 2**63) for _ in range(3)]
        fields["extra_group"] = torch.tensor([rng.randrange(batch.num_groups) for _ in range(num_extra)])
        fields["extra_src"] = torch.tensor([rng.choice(keys) for _ in range(num_extra)])
        fields["extra_dst"] = torch.tensor([rng.choice(keys) for _ in range(num_extra)])
        fields["extra_success"] = torch.tensor([rng.random() < 0.3 for _ in range(num_extra)])
        if batch.cost is not None:
            fields["extra_cost"] = torch.tensor([rng.choice((0.1, 0.5, 2.0)) for _ in range(num_extra)],
                                                dtype=torch.float64)
    return GraphInputs(**fields)
