"""Dynamic sampling (DAPO, Yu et al. 2025; the GraphGPO recipe's "+DS"): train only on informative groups.

A task group whose G episode rewards are all equal (every rollout failed, or every one succeeded) gives
GRPO and RLOO exactly zero advantage, and GraphGPO/GiGPO only step-level signal from validity or path length.
Dynamic sampling drops such groups and rolls out more tasks until the batch holds ``tasks_per_batch``
informative groups, or ``max_num_gen_batches`` rollout rounds were spent; then it trains on the
informative groups it has (fewer than ``tasks_per_batch``, possibly none: the iteration is logged and its
update skipped).

Config names and defaults are verl-agent's (``algorithm.filter_groups.enable=False``,
``algorithm.filter_groups.max_num_gen_batches=10``). Two documented differences from verl-agent's loop:
groups beyond ``tasks_per_batch`` are cut (DAPO does this too, so every update sees the same number of
groups), and the last round is filtered like the others (verl-agent keeps the last round unfiltered).
DAPO's ``max_num_gen_batches <= 0`` ("no limit") is not offered: a task set on which every group fails
would loop forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from graphgpo.rollout import RolloutResult, episode_stats


def group_size(result: RolloutResult) -> int:
    """G: episodes per task group of a rollout (episodes are group-major: group g = episodes g*G .. g*G+G-1)."""
    tasks, episodes = len(result.task_seeds), len(result.success)
    if tasks == 0 or episodes % tasks:
        raise ValueError(f"rollout has {episodes} episodes for {tasks} task groups: not G episodes per group")
    return episodes // tasks


def episode_rewards(result: RolloutResult) -> list[float]:
    """Per episode (trajectory id order): its episode_reward, read from the rows."""
    rewards: dict[int, float] = {}
    for record in result.records:
        rewards[record["traj"]] = float(record["episode_reward"])
    missing = [t for t in range(len(result.success)) if t not in rewards]
    if missing:
        raise ValueError(f"episode {missing[0]} of the rollout has no step rows")
    return [rewards[t] for t in range(len(result.success))]


def informative_groups(result: RolloutResult) -> list[int]:
    """Groups (in order) whose G episode rewards are not all equal."""
    g = group_size(result)
    rewards = episode_rewards(result)
    return [k for k in range(len(result.task_seeds)) if len(set(rewards[k * g:(k + 1) * g])) > 1]


def select_groups(picks: Sequence[tuple[RolloutResult, int]]) -> RolloutResult:
    """One RolloutResult holding group ``k`` of ``result`` for every ``(result, k)`` in ``picks``, in that
    order; groups and trajectories are renumbered 0.. (the StepBatch is rebuilt from the rows)."""
    from graphgpo.batch import StepBatch

    records, prompts, generations, actions = [], [], [], []
    success, returns, lengths, task_seeds, task_types = [], [], [], [], []
    for new_group, (result, k) in enumerate(picks):
        g = group_size(result)
        first_row = _first_rows(result)
        for traj in range(k * g, (k + 1) * g):
            new_traj = len(success)
            start = first_row[traj]
            for row in range(start, start + result.lengths[traj]):
                records.append({**result.records[row], "group": new_group, "traj": new_traj})
                prompts.append(result.prompts[row])
                generations.append(result.generations[row])
                actions.append(result.actions[row])
            success.append(result.success[traj])
            returns.append(result.returns[traj])
            lengths.append(result.lengths[traj])
            if result.task_types:
                task_types.append(result.task_types[traj])
        task_seeds.append(result.task_seeds[k])
    device = picks[0][0].batch.device if picks else "cpu"
    return RolloutResult(records=records, batch=StepBatch.from_records(records, device=device), prompts=prompts,
                         generations=generations, actions=actions, success=success, returns=returns,
                         lengths=lengths, task_seeds=task_seeds, task_types=task_types,
                         stats=episode_stats(records, success, lengths, returns))


def _first_rows(result: RolloutResult) -> list[int]:
    """Row index of each episode's first step (rows are trajectory-major, ``lengths`` rows each)."""
    starts, row = [], 0
    for length in result.lengths:
        starts.append(row)
        row += length
    if row != len(result.records):
        raise ValueError(f"rollout lengths sum to {row} rows, but it has {len(result.records)} rows")
    return starts


@dataclass
class SampledBatch:
    """What the rollout phase of one iteration produced."""

    train: RolloutResult
    """The groups the update trains on (every group without dynamic sampling)."""
    rounds: list[RolloutResult]
    """Every rollout round, in order; round 0 holds the iteration's own tasks (those of a run without DS)."""
    informative: int
    """Informative groups found over all rounds (before the cut to tasks_per_batch)."""

    def metrics(self) -> dict[str, Any]:
        """Per-iteration sampling metrics (logged for every run, with or without dynamic sampling)."""
        episodes = sum(len(r.success) for r in self.rounds)
        return {"rollout_rounds": len(self.rounds), "groups_trained": len(self.train.task_seeds),
                "groups_informative": self.informative, "episodes_rolled_out": episodes,
                "success_rate_all_rounds": sum(sum(r.success) for r in self.rounds) / max(episodes, 1)}


def sample_informative(roll_round, tasks_per_batch: int, max_rounds: int, enable: bool) -> SampledBatch:
    """The rollout phase with optional dynamic sampling.

    ``roll_round(r)`` plays rollout round ``r`` (0, 1, ...) and returns its RolloutResult. Without
    ``enable`` one round is played and trained on whole. With it, rounds are played until
    ``tasks_per_batch`` informative groups were found or ``max_rounds`` rounds were played; the first
    ``tasks_per_batch`` informative groups (in round order) are kept.
    """
    first = roll_round(0)
    if not enable:
        return SampledBatch(train=first, rounds=[first], informative=len(informative_groups(first)))
    rounds, picks = [], []
    result = first
    while True:
        rounds.append(result)
        picks.extend((result, k) for k in informative_groups(result))
        if len(picks) >= tasks_per_batch or len(rounds) >= max_rounds:
            break
        result = roll_round(len(rounds))
    return SampledBatch(train=select_groups(picks[:tasks_per_batch]), rounds=rounds, informative=len(picks))
