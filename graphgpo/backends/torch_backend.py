"""Vectorised PyTorch backend: GraphGPO, GiGPO, GRPO and RLOO advantages on CPU or CUDA tensors.

Every stage is a whole-batch tensor operation; there is no Python loop over rows, trajectories, groups or
nodes. The only loops run over BFS levels / sweeps (``torch_graph``) and over the doubling steps of the
discounted-return scan (log2 of the longest trajectory). SPEC.md defines the estimators; the reference
backend is the oracle (distances equal exactly, advantages within 1e-6). Statistics are float64.

Segments: a *step group* is all rows of one group with the same state (dense id = the state's node id among
state nodes, so ids come in sorted (group, key) order); episode statistics are per group.

Host syncs besides the graph's (see ``torch_graph``): the number of step groups, the longest trajectory
(number of doubling steps, GiGPO) and one ``tolist()`` for ``stats``.
"""

from __future__ import annotations

import torch

from graphgpo.backends.torch_graph import (
    StepGraph,
    group_fill_unreachable,
    reverse_csr,
    shortest_distances,
    success_edges,
)
from graphgpo.output import AdvantageOutput

__all__ = [
    "compute",
    "step_groups",
    "graph_returns",
    "segment_moments",
    "segment_normalize",
    "episode_advantages",
    "discounted_returns",
    "trajectory_advantages",
    "trajectory_output",
    "graph_stats",
]

F64 = torch.float64
METHODS = ("graphgpo", "gigpo", "grpo", "rloo")


# ------------------------------------------------------------------------------------------------------
# Segment statistics (float64, two passes)
# ------------------------------------------------------------------------------------------------------

def segment_moments(values: torch.Tensor, seg: torch.Tensor, num_segs: int):
    """Per segment: ``(count, mean, std, constant)``; std is unbiased (ddof 1, 0 for one sample) and
    ``constant`` marks segments whose values are all exactly equal (min == max)."""
    count = torch.bincount(seg, minlength=num_segs)
    total = torch.zeros(num_segs, dtype=F64, device=values.device).index_add_(0, seg, values)
    mean = total / count.clamp(min=1)
    # Second pass on deviations: stable where a one-pass sum of squares would cancel.
    dev = values - mean.index_select(0, seg)
    squares = torch.zeros_like(total).index_add_(0, seg, dev * dev)
    std = torch.sqrt(squares / (count - 1).clamp(min=1))
    low = torch.zeros_like(total).scatter_reduce_(0, seg, values, "amin", include_self=False)
    high = torch.zeros_like(total).scatter_reduce_(0, seg, values, "amax", include_self=False)
    return count, mean, std, low == high


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

def step_groups(graph: StepGraph) -> tuple[torch.Tensor, int]:
    """Dense (group, state) id per row in sorted (group id, state key) order, and the number of ids."""
    # State nodes are already numbered in that order; drop the nodes that are only next_states.
    is_state = torch.zeros(graph.num_state_nodes, dtype=torch.int64, device=graph.src.device)
    is_state.index_fill_(0, graph.src, 1)
    rank = torch.cumsum(is_state, 0)
    return rank.index_select(0, graph.src) - 1, int(rank[-1]) if rank.numel() else 0


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
    lengths = torch.bincount(batch.traj, minlength=batch.num_trajs)
    starts = torch.cumsum(lengths, 0) - lengths
    position = starts.index_select(0, batch.traj) + batch.step
    n = batch.num_rows
    scan = torch.empty(n, dtype=F64, device=batch.reward.device)
    scan.index_copy_(0, position, batch.reward)
    remaining = torch.empty_like(batch.step)
    # rows after this one in its trajectory
    remaining.index_copy_(0, position, lengths.index_select(0, batch.traj) - 1 - batch.step)
    longest = int(lengths.max()) if lengths.numel() else 0
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
# Diagnostics and entry point
# ------------------------------------------------------------------------------------------------------

def graph_stats(graph: StepGraph, dist: torch.Tensor, num_unique_edges: int, step_group: torch.Tensor,
                num_step_groups: int) -> dict[str, float | int]:
    """AdvantageOutput.stats (graphgpo/output.py); ``dist`` before filling, so inf marks unreachable."""
    n = graph.src.numel()
    state_in_success = graph.has_success.index_select(0, graph.node_group[:graph.num_state_nodes])
    unreachable = state_in_success & torch.isinf(dist[:graph.num_state_nodes])
    sizes = torch.bincount(step_group, minlength=num_step_groups)
    counts = torch.stack([
        graph.has_success.sum(),
        (sizes.index_select(0, step_group) == 1).sum(),
        state_in_success.sum(),
        unreachable.sum(),
    ]).tolist()  # the one host sync for all diagnostics
    num_sinks, singleton_rows, states_in_success, num_unreachable = counts
    return {
        "num_steps": n,
        "num_groups": graph.num_groups,
        "num_nodes": graph.num_state_nodes + num_sinks,
        "num_edges": n,
        "num_unique_edges": num_unique_edges,
        "duplicate_edge_rate": 1.0 - num_unique_edges / n if n else 0.0,
        "singleton_step_group_share": singleton_rows / n if n else 0.0,
        "unreachable_state_share": num_unreachable / states_in_success if states_in_success else 0.0,
        "groups_without_success": graph.num_groups - num_sinks,
    }


def compute(batch, method: str, config, *, distances=shortest_distances, backend: str = "torch") -> AdvantageOutput:
    """Advantages of ``method`` ("graphgpo", "gigpo", "grpo", "rloo") for every row of ``batch``.

    ``distances(graph, csr)`` is the shortest-distance step; other backends (cugraph) pass their own and
    reuse the rest of this pipeline.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if batch.num_rows == 0:
        return AdvantageOutput.empty(method, backend, batch.device)

    # The graph is built for every method: the diagnostics describe the batch, not the method.
    graph = success_edges(batch)
    csr = reverse_csr(graph)
    dist = distances(graph, csr)
    step_group, num_step_groups = step_groups(graph)
    stats = graph_stats(graph, dist, csr.num_unique_edges, step_group, num_step_groups)

    if method not in ("graphgpo", "gigpo"):
        return trajectory_output(batch, method, config, stats, backend)
    d_state = d_next = None
    if method == "graphgpo":
        d = group_fill_unreachable(dist, graph)
        d_state, d_next = d.index_select(0, graph.src), d.index_select(0, graph.dst)
        returns = graph_returns(d_state, d_next, batch, config)
    else:
        returns = discounted_returns(batch, config.gamma, config.invalid_penalty)
    step_adv = segment_normalize(returns, step_group, num_step_groups, config.normalize, config.eps)
    episode_adv = episode_advantages(batch, config)
    advantages = config.step_weight * step_adv + config.episode_weight * episode_adv
    return AdvantageOutput(advantages=advantages.to(torch.float32), step_advantages=step_adv,
                           episode_advantages=episode_adv, returns=returns, d_state=d_state, d_next=d_next,
                           step_group=step_group, stats=stats, method=method, backend=backend)


def trajectory_output(batch, method: str, config, stats: dict, backend: str) -> AdvantageOutput:
    """GRPO / RLOO output (shared by the backends): one value per trajectory, no step part."""
    value = trajectory_advantages(batch, method, config)
    return AdvantageOutput(advantages=value.to(torch.float32),
                           step_advantages=torch.zeros(batch.num_rows, dtype=F64, device=batch.device),
                           episode_advantages=value, returns=batch.episode_reward.clone(), d_state=None,
                           d_next=None, step_group=None, stats=stats, method=method, backend=backend)
