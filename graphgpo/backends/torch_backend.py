"""Vectorised PyTorch backend: GraphGPO, GiGPO, GRPO and RLOO advantages on CPU or CUDA tensors.

Every stage is a whole-batch tensor operation; there is no Python loop over rows, trajectories, groups or
nodes. The only loops run over BFS levels / sweeps (``torch_graph``) and over the doubling steps of the
discounted-return scan (log2 of the longest trajectory). SPEC.md defines the estimators; the reference
backend is the oracle (distances equal exactly, advantages within 1e-6). Statistics are float64.

Segments: a *step group* is all rows of one group with the same state (dense id = the state's node id among
state nodes, so ids come in sorted (group, key) order); episode statistics are per group.

The stages run in ``graphgpo.backends.pipeline``; ``STAGES`` are this backend's, and the defaults of the
GPU backends, which replace only the stages they accelerate.

Host syncs besides the graph's (see ``torch_graph``): the number of step groups, the longest trajectory
(number of doubling steps, GiGPO) and one ``tolist()`` for ``stats``.
"""

from __future__ import annotations

import torch

from graphgpo.backends import host_sync, pipeline
from graphgpo.backends.torch_graph import StepGraph, graph_distances, group_fill_unreachable, node_ids, segment_counts
from graphgpo.output import AdvantageOutput

__all__ = [
    "compute",
    "STAGES",
    "graph_returns",
    "segment_moments",
    "segment_normalize",
    "episode_advantages",
    "discounted_returns",
    "trajectory_advantages",
]

F64 = torch.float64
METHODS = ("graphgpo", "gigpo", "grpo", "rloo")


# ------------------------------------------------------------------------------------------------------
# Segment statistics (float64, two passes)
# ------------------------------------------------------------------------------------------------------

def segment_moments(values: torch.Tensor, seg: torch.Tensor, num_segs: int):
    """Per segment: ``(count, mean, std, constant)``; std is unbiased (ddof 1, 0 for one sample) and
    ``constant`` marks segments whose values are all exactly equal (min == max)."""
    count = segment_counts(seg, num_segs)
    total = torch.zeros(num_segs, dtype=F64, device=values.device).index_add_(0, seg, values)
    mean = total / count.clamp(min=1)
    # Second pass on deviations: stable where a one-pass sum of squares would cancel.
    dev = values - mean.index_select(0, seg)
    squares = torch.zeros_like(total).index_add_(0, seg, dev * dev)
    std = torch.sqrt(squares / (count - 1).clamp(min=1))
    # Exactly constant: every value equals one representative of its segment (any writer of the copy will do).
    # Half the time of a scatter-reduce min and max on CPU (23k rows: 0.28 vs 0.63 ms).
    representative = torch.zeros_like(total).index_copy_(0, seg, values)
    differ = torch.zeros_like(count).index_add_(0, seg, (representative.index_select(0, seg) != values).long())
    return count, mean, std, differ == 0


def _standardize(values, mean, std, normalize: str, eps: float) -> torch.Tensor:
    if normalize == "mean":
        return values - mean
    return (values - mean) / (std + eps)


def segment_normalize(values: torch.Tensor, seg: torch.Tensor, num_segs: int, normalize: str,
                      eps: float) -> torch.Tensor:
    """SPEC 6: normalise ``values`` within segments; a one-row or all-equal segment gives exactly 0."""
    count, mean, std, constant = segment_moments(values, seg, num_segs)
    out = _standardize(values, mean.index_select(0, seg), std.index_select(0, seg), normalize, eps)
    return torch.where(((count == 1) | constant).index_select(0, seg), 0.0, out)


# ------------------------------------------------------------------------------------------------------
# Returns
# ------------------------------------------------------------------------------------------------------

def graph_returns(d_state: torch.Tensor, d_next: torch.Tensor, batch, config) -> torch.Tensor:
    """SPEC 4-5: r_succ * omega ** exponent - p * (1 - valid), exponent per ``config.graph_return``."""
    if config.graph_return == "recipe":
        exponent = d_next
    elif config.graph_return == "paper":
        exponent = d_next + (batch.cost if batch.cost is not None else 1.0)
    else:  # "progress"
        exponent = d_next - d_state + 1.0
    return config.r_succ * torch.pow(config.omega, exponent) - config.invalid_penalty * (~batch.valid).to(F64)


def discounted_returns(batch, gamma: float, invalid_penalty: float) -> torch.Tensor:
    """GiGPO: R_t = sum_{k>=t} gamma^(k-t) r_k within each trajectory, minus the invalid penalty.

    Rows are placed in (traj, step) order by counting (no sort), then a segmented suffix scan by doubling:
    after the pass with shift k every position holds the discounted sum of its next 2k rewards inside its
    trajectory. Only non-negative weights gamma^k are ever applied, so nothing cancels or overflows.
    """
    lengths = segment_counts(batch.traj, batch.num_trajs)
    starts = torch.cumsum(lengths, 0) - lengths
    position = starts.index_select(0, batch.traj) + batch.step
    n = batch.num_rows
    scan = torch.empty(n, dtype=F64, device=batch.reward.device)
    scan.index_copy_(0, position, batch.reward)
    remaining = torch.empty_like(batch.step)
    # rows after this one in its trajectory
    remaining.index_copy_(0, position, lengths.index_select(0, batch.traj) - 1 - batch.step)
    longest = host_sync.to_int(lengths.max(), "discounted returns: longest trajectory") if lengths.numel() else 0
    shift, weight = 1, gamma
    while shift < longest:
        ahead = torch.zeros_like(scan)
        ahead[:n - shift] = scan[shift:]
        scan = scan + torch.where(remaining >= shift, weight * ahead, 0.0)
        shift, weight = 2 * shift, weight * weight
    return scan.index_select(0, position) - invalid_penalty * (~batch.valid).to(F64)


# ------------------------------------------------------------------------------------------------------
# Advantages
# ------------------------------------------------------------------------------------------------------

def _trajectory_columns(batch) -> tuple[torch.Tensor, torch.Tensor]:
    """episode_reward and group per trajectory (both constant within a trajectory, so any writer wins)."""
    reward = torch.zeros(batch.num_trajs, dtype=F64, device=batch.reward.device)
    reward.index_copy_(0, batch.traj, batch.episode_reward)
    group = torch.zeros(batch.num_trajs, dtype=torch.int64, device=batch.group.device)
    group.index_copy_(0, batch.traj, batch.group)
    return reward, group


def episode_advantages(batch, config) -> torch.Tensor:
    """SPEC 7: score = episode_reward - p * (1 - valid), normalised with the group's statistics.

    Statistics over every row's score ("cross_steps") or one episode_reward per trajectory
    ("per_trajectory"); a single sample has mean 0 and std 1 (verl); all-equal samples give exactly 0.
    """
    score = batch.episode_reward - config.invalid_penalty * (~batch.valid).to(F64)
    if config.episode_stats == "cross_steps":
        samples, sample_group = score, batch.group
    else:
        samples, sample_group = _trajectory_columns(batch)
    count, mean, std, constant = segment_moments(samples, sample_group, batch.num_groups)
    single = count == 1
    mean = torch.where(single, 0.0, mean)
    std = torch.where(single, 1.0, std)
    out = _standardize(score, mean.index_select(0, batch.group), std.index_select(0, batch.group), config.normalize,
                       config.eps)
    return torch.where((constant & ~single).index_select(0, batch.group), 0.0, out)


def trajectory_advantages(batch, method: str, config) -> torch.Tensor:
    """GRPO / RLOO: one value per trajectory from the group's episode rewards, given to each of its rows.

    A group with one trajectory keeps its raw reward; all-equal rewards give exactly 0.
    """
    reward, group = _trajectory_columns(batch)
    count, mean, std, constant = segment_moments(reward, group, batch.num_groups)
    count, mean, std, constant = (x.index_select(0, group) for x in (count, mean, std, constant))
    if method == "grpo":
        value = _standardize(reward, mean, std, config.normalize, config.eps)
    else:  # rloo: R_i - (sum_j R_j - R_i) / (n - 1), written as n / (n - 1) * (R_i - mean)
        n = count.to(F64)
        value = (reward - mean) * (n / (n - 1).clamp(min=1))
    value = torch.where(constant, 0.0, value)
    value = torch.where(count == 1, reward, value)
    return value.index_select(0, batch.traj)


# ------------------------------------------------------------------------------------------------------
# Stages and entry point
# ------------------------------------------------------------------------------------------------------

def returns_from_distances(graph: StepGraph, dist: torch.Tensor, batch, config):
    """The returns stage of GraphGPO: fill unreachable distances (SPEC 3), then the graph return per row."""
    d = group_fill_unreachable(dist, graph)
    n = graph.num_rows
    d_state, d_next = d.index_select(0, graph.src[:n]), d.index_select(0, graph.dst[:n])
    return d_state, d_next, graph_returns(d_state, d_next, batch, config)


def step_and_episode_advantages(batch, returns: torch.Tensor, step_group: torch.Tensor, num_step_groups: int,
                                config):
    """The statistics stage: A = step_weight * A_step + episode_weight * A_episode (SPEC 6-8)."""
    step_adv = segment_normalize(returns, step_group, num_step_groups, config.normalize, config.eps)
    episode_adv = episode_advantages(batch, config)
    advantages = config.step_weight * step_adv + config.episode_weight * episode_adv
    return step_adv, episode_adv, advantages.to(torch.float32)


STAGES = pipeline.Stages(
    name="torch",
    node_ids=node_ids,
    distances=graph_distances,
    graph_returns=returns_from_distances,
    discounted_returns=discounted_returns,
    advantages=step_and_episode_advantages,
    trajectory_values=trajectory_advantages,
)
"""Every stage of the pipeline in PyTorch; the other tensor backends start from these."""


def compute(batch, method: str, config, inputs: pipeline.GraphInputs | None = None, *,
            stats: bool = True) -> AdvantageOutput:
    """Advantages of ``method`` ("graphgpo", "gigpo", "grpo", "rloo") for every row of ``batch``."""
    return pipeline.run(batch, method, config, STAGES, inputs, stats=stats)
