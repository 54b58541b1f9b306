"""Reference backend: plain Python, written to be read next to SPEC.md. The oracle of the tests.

Everything happens per group on Python dicts with explicit loops and Python floats (float64). Sums use
``math.fsum`` (correctly rounded, so the result does not depend on row order). Section numbers in the
comments refer to SPEC.md's "GraphGPO" list.

Conventions that SPEC.md leaves implicit and this backend fixes (the other backends must match):
- The last step of a successful trajectory points to SUCCESS; its own ``next_state`` is not a node unless
  it occurs elsewhere in the group (as a state, or as the next_state of another edge).
- Normalising a set of samples: a step group of one row, or any set whose values are all exactly equal,
  gets advantage exactly 0 (no ``0 / eps`` residues). Episode statistics of a single sample are mean 0,
  std 1 (verl), so the row score becomes ``score / (1 + eps)``; when the (two or more) samples of the
  episode statistics are all equal, every row of the group gets episode advantage exactly 0.
- GRPO / RLOO: a group with a single trajectory keeps its raw reward; all-equal rewards give exactly 0.
- ``stats`` describe the batch's state graphs and do not depend on the method.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from dataclasses import dataclass

import torch

from graphgpo.output import AdvantageOutput


class _SuccessSink:
    """The SUCCESS node of a group (one per group with a success; never equal to a state key)."""

    def __repr__(self) -> str:
        return "SUCCESS"


SUCCESS = _SuccessSink()


@dataclass(frozen=True)
class Row:
    """One environment step, as Python values."""

    index: int
    group: int
    traj: int
    step: int
    state: int
    next_state: int
    success: bool
    valid: bool
    episode_reward: float
    reward: float
    cost: float
    is_success_edge: bool
    """Last step of a successful trajectory: its edge goes to SUCCESS."""
    step_key: int
    """Key of the row's step group within its group: its state, unless the graph inputs give step keys."""


@dataclass
class GroupGraph:
    """The state graph of one group (SPEC 1-2)."""

    nodes: set
    """State keys; SUCCESS is not in here."""
    reverse_edges: dict
    """node -> list of (predecessor, cost): the edge ``predecessor -> node`` reversed."""
    edges: list
    """(source, target) per row, target possibly SUCCESS; multi-edges kept."""
    has_success: bool


# ---------------------------------------------------------------------------------------------- input


def read_rows(batch, inputs=None) -> list[Row]:
    """The batch's columns as a list of Rows in input order (graph and step keys from ``inputs`` if given)."""
    n = batch.num_rows
    columns = {
        name: getattr(batch, name).tolist()
        for name in ("group", "traj", "step", "state", "next_state", "success", "valid", "episode_reward", "reward")
    }
    if inputs is not None and inputs.state_key is not None:
        columns["state"] = inputs.state_key.tolist()
    if inputs is not None and inputs.next_key is not None:
        columns["next_state"] = inputs.next_key.tolist()
    step_keys = inputs.step_key.tolist() if inputs is not None and inputs.step_key is not None else columns["state"]
    costs = batch.cost.tolist() if batch.cost is not None else [1.0] * n
    length = defaultdict(int)
    for traj, step in zip(columns["traj"], columns["step"]):
        length[traj] = max(length[traj], step + 1)
    rows = []
    for i in range(n):
        traj, step, success = columns["traj"][i], columns["step"][i], bool(columns["success"][i])
        rows.append(Row(
            index=i,
            group=columns["group"][i],
            traj=traj,
            step=step,
            state=columns["state"][i],
            next_state=columns["next_state"][i],
            success=success,
            valid=bool(columns["valid"][i]),
            episode_reward=float(columns["episode_reward"][i]),
            reward=float(columns["reward"][i]),
            cost=float(costs[i]),
            is_success_edge=success and step == length[traj] - 1,
            step_key=step_keys[i],
        ))
    return rows


def read_extra_edges(inputs, weighted: bool) -> dict[int, list[tuple]]:
    """group -> [(source, target, cost)] of the extra (non-row) edges of ``inputs``; target may be SUCCESS."""
    edges: dict[int, list[tuple]] = defaultdict(list)
    if inputs is None or inputs.num_extra == 0:
        return edges
    k = inputs.num_extra
    success = inputs.extra_success.tolist() if inputs.extra_success is not None else [False] * k
    costs = inputs.extra_cost.tolist() if weighted else [1.0] * k
    for g, src, dst, to_success, cost in zip(inputs.extra_group.tolist(), inputs.extra_src.tolist(),
                                             inputs.extra_dst.tolist(), success, costs):
        edges[g].append((src, SUCCESS if to_success else dst, float(cost)))
    return edges


def rows_by_group(rows: list[Row]) -> dict[int, list[Row]]:
    groups: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        groups[row.group].append(row)
    return dict(sorted(groups.items()))


# ---------------------------------------------------------------------------------------------- graph


def build_graph(group_rows: list[Row], extra_edges: list[tuple] = ()) -> GroupGraph:
    """SPEC 1-2: nodes are the group's states and next_states, one edge per row, success edges to SUCCESS;
    ``extra_edges`` (source, target, cost) join the graph without being rows (graph memory)."""
    nodes: set = set()
    reverse_edges: dict = defaultdict(list)
    edges = []
    row_edges = [(row.state, SUCCESS if row.is_success_edge else row.next_state, row.cost) for row in group_rows]
    for source, target, cost in row_edges + list(extra_edges):
        nodes.add(source)
        if target is not SUCCESS:
            nodes.add(target)
        reverse_edges[target].append((source, cost))
        edges.append((source, target))
    has_success = any(target is SUCCESS for _, target in edges)
    return GroupGraph(nodes=nodes, reverse_edges=dict(reverse_edges), edges=edges, has_success=has_success)


def bfs_distances(graph: GroupGraph) -> dict:
    """Unit-cost shortest distances to SUCCESS: breadth-first search on the reversed graph."""
    dist = {SUCCESS: 0.0}
    queue = deque([SUCCESS])
    while queue:
        node = queue.popleft()
        for pred, _cost in graph.reverse_edges.get(node, ()):
            if pred not in dist:
                dist[pred] = dist[node] + 1.0
                queue.append(pred)
    return dist


def dijkstra_distances(graph: GroupGraph) -> dict:
    """Weighted shortest distances to SUCCESS: Dijkstra on the reversed graph (costs > 0).

    A distance is accumulated from the sink outwards, d(u) = d(v) + cost(u -> v), the order in which the
    vectorised backends relax edges, so the floats agree exactly.
    """
    dist = {SUCCESS: 0.0}
    done = set()
    heap = [(0.0, 0, SUCCESS)]  # (distance, tie-breaker, node): the counter keeps nodes from being compared
    counter = 1
    while heap:
        d, _, node = heapq.heappop(heap)
        if node in done:
            continue
        done.add(node)
        for pred, cost in graph.reverse_edges.get(node, ()):
            candidate = d + cost
            if pred not in dist or candidate < dist[pred]:
                dist[pred] = candidate
                heapq.heappush(heap, (candidate, counter, pred))
                counter += 1
    return dist


def node_distances(graph: GroupGraph, weighted: bool) -> tuple[dict, set]:
    """SPEC 3: d(v) for every node (and SUCCESS), plus the set of nodes that cannot reach SUCCESS."""
    if not graph.has_success:
        return {node: 1.0 for node in graph.nodes}, set()
    reached = dijkstra_distances(graph) if weighted else bfs_distances(graph)
    d_max = max(reached.values())
    unreachable = {node for node in graph.nodes if node not in reached}
    dist = dict(reached)
    for node in unreachable:
        dist[node] = d_max + 1.0
    return dist, unreachable


# ---------------------------------------------------------------------------------------------- statistics


def _mean(values: list[float]) -> float:
    return math.fsum(values) / len(values)


def _std(values: list[float], mean: float) -> float:
    """Unbiased (ddof 1) standard deviation; needs two or more values."""
    return math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _all_equal(values: list[float]) -> bool:
    return all(v == values[0] for v in values)


def normalize_step_group(values: list[float], normalize: str, eps: float) -> list[float]:
    """SPEC 6: normalise returns within one step group. One row or all-equal values -> exactly 0."""
    if len(values) == 1 or _all_equal(values):
        return [0.0] * len(values)
    mean = _mean(values)
    if normalize == "mean":
        return [v - mean for v in values]
    std = _std(values, mean)
    return [(v - mean) / (std + eps) for v in values]


def normalize_with_samples(scores: list[float], samples: list[float], normalize: str, eps: float) -> list[float]:
    """SPEC 7: normalise ``scores`` with the mean/std of ``samples``.

    One sample: mean 0, std 1 (verl), so a score s becomes s / (1 + eps) (or s in "mean" mode).
    Two or more samples, all equal: every score gets exactly 0.
    """
    if len(samples) == 1:
        mean, std = 0.0, 1.0
    elif _all_equal(samples):
        return [0.0] * len(scores)
    else:
        mean = _mean(samples)
        std = _std(samples, mean)
    if normalize == "mean":
        return [s - mean for s in scores]
    return [(s - mean) / (std + eps) for s in scores]


def episode_advantages(group_rows: list[Row], config) -> list[float]:
    """SPEC 7, for one group: each row's score is episode_reward - p * (1 - valid)."""
    p = config.invalid_penalty
    scores = [row.episode_reward - p * (1 - row.valid) for row in group_rows]
    if config.episode_stats == "cross_steps":
        samples = scores
    else:  # "per_trajectory": one episode_reward per trajectory
        per_traj = {}
        for row in group_rows:
            per_traj[row.traj] = row.episode_reward
        samples = [per_traj[t] for t in sorted(per_traj)]
    return normalize_with_samples(scores, samples, config.normalize, config.eps)


def step_advantages(group_rows: list[Row], returns: dict[int, float], config) -> dict[int, float]:
    """SPEC 6, for one group: row index -> return normalised within its step group (same state)."""
    step_groups: dict[int, list[Row]] = defaultdict(list)
    for row in group_rows:
        step_groups[row.step_key].append(row)
    advantages = {}
    for members in step_groups.values():
        values = [returns[row.index] for row in members]
        for row, adv in zip(members, normalize_step_group(values, config.normalize, config.eps)):
            advantages[row.index] = adv
    return advantages


# ---------------------------------------------------------------------------------------------- returns


def graph_return(row: Row, d_state: float, d_next: float, config) -> float:
    """SPEC 4-5: the graph return of one row, after the invalid penalty."""
    if config.graph_return == "recipe":
        exponent = d_next
    elif config.graph_return == "paper":
        exponent = d_next + row.cost
    else:  # "progress"
        exponent = d_next - d_state + 1.0
    return config.r_succ * config.omega ** exponent - config.invalid_penalty * (1 - row.valid)


def discounted_returns(group_rows: list[Row], config) -> dict[int, float]:
    """GiGPO: R_t = sum_{k>=t} gamma^(k-t) r_k per trajectory, then minus the invalid penalty."""
    trajectories: dict[int, list[Row]] = defaultdict(list)
    for row in group_rows:
        trajectories[row.traj].append(row)
    returns = {}
    for traj_rows in trajectories.values():
        running = 0.0
        for row in sorted(traj_rows, key=lambda r: r.step, reverse=True):
            running = row.reward + config.gamma * running
            returns[row.index] = running - config.invalid_penalty * (1 - row.valid)
    return returns


def trajectory_rewards(group_rows: list[Row]) -> dict[int, float]:
    """traj -> episode_reward, sorted by traj id."""
    rewards = {}
    for row in group_rows:
        rewards[row.traj] = row.episode_reward
    return dict(sorted(rewards.items()))


def grpo_values(rewards: dict[int, float], config) -> dict[int, float]:
    """GRPO: each trajectory's reward normalised over the group's trajectories."""
    values = list(rewards.values())
    if len(values) == 1:
        return dict(rewards)  # a lone trajectory keeps its raw reward
    if _all_equal(values):
        return {t: 0.0 for t in rewards}
    mean = _mean(values)
    if config.normalize == "mean":
        return {t: r - mean for t, r in rewards.items()}
    std = _std(values, mean)
    return {t: (r - mean) / (std + config.eps) for t, r in rewards.items()}


def rloo_values(rewards: dict[int, float]) -> dict[int, float]:
    """RLOO: R_i - mean_{j != i} R_j over the group's trajectories."""
    if len(rewards) == 1:
        return dict(rewards)
    if _all_equal(list(rewards.values())):
        return {t: 0.0 for t in rewards}
    out = {}
    for t, r in rewards.items():
        others = [r_j for t_j, r_j in rewards.items() if t_j != t]
        out[t] = r - _mean(others)
    return out


# ---------------------------------------------------------------------------------------------- batch


def step_group_ids(rows: list[Row]) -> list[int]:
    """Dense id of (group, step key) per row, ids in sorted order of (group id, key)."""
    keys = sorted({(row.group, row.step_key) for row in rows})
    dense = {key: i for i, key in enumerate(keys)}
    return [dense[(row.group, row.step_key)] for row in rows]


def graph_stats(groups: dict[int, list[Row]], graphs: dict[int, GroupGraph], unreachable: dict[int, set],
                num_rows: int) -> dict[str, float | int]:
    """Batch diagnostics of AdvantageOutput.stats (graphgpo/output.py, STAT_KEYS)."""
    num_nodes = sum(len(g.nodes) + (1 if g.has_success else 0) for g in graphs.values())
    num_unique_edges = sum(len(set(g.edges)) for g in graphs.values())
    num_edges = sum(len(g.edges) for g in graphs.values())
    step_group_sizes: dict[tuple, int] = defaultdict(int)
    for gid, group_rows in groups.items():
        for row in group_rows:
            step_group_sizes[(gid, row.step_key)] += 1
    singleton_rows = sum(1 for size in step_group_sizes.values() if size == 1)
    states_in_success_groups = sum(len(g.nodes) for g in graphs.values() if g.has_success)
    unreachable_states = sum(len(unreachable[gid]) for gid, g in graphs.items() if g.has_success)
    return {
        "num_steps": num_rows,
        "num_groups": len(groups),
        "num_nodes": num_nodes,
        "num_edges": num_edges,
        "num_unique_edges": num_unique_edges,
        "duplicate_edge_rate": 1.0 - num_unique_edges / num_edges if num_edges else 0.0,
        "singleton_step_group_share": singleton_rows / num_rows if num_rows else 0.0,
        "unreachable_state_share": (unreachable_states / states_in_success_groups
                                    if states_in_success_groups else 0.0),
        "groups_without_success": sum(1 for g in graphs.values() if not g.has_success),
    }


def compute(batch, method: str, config, inputs=None, *, stats: bool = True) -> AdvantageOutput:
    """Advantages of ``method`` ("graphgpo", "gigpo", "grpo", "rloo") for every row of ``batch``.

    ``inputs``: optional ``graphgpo.backends.pipeline.GraphInputs`` (graph keys, step keys, extra edges).
    ``stats=False`` leaves ``stats`` empty, as the tensor backends do.
    """
    if method not in ("graphgpo", "gigpo", "grpo", "rloo"):
        raise ValueError(f"method must be one of 'graphgpo', 'gigpo', 'grpo', 'rloo'; got {method!r}")
    if inputs is not None and batch.num_rows:
        inputs.check(batch)
    rows = read_rows(batch, inputs)
    n = len(rows)
    if n == 0:
        return AdvantageOutput.empty(method, "reference", batch.device)
    groups = rows_by_group(rows)
    weighted = batch.cost is not None
    extra = read_extra_edges(inputs, weighted)
    graphs = {gid: build_graph(group_rows, extra[gid]) for gid, group_rows in groups.items()}
    distances, unreachable = {}, {}
    for gid, graph in graphs.items():
        distances[gid], unreachable[gid] = node_distances(graph, weighted)

    returns = [0.0] * n
    step_adv = [0.0] * n
    episode_adv = [0.0] * n
    d_state = d_next = None

    if method == "graphgpo":
        d_state, d_next = [0.0] * n, [0.0] * n
        for gid, group_rows in groups.items():
            dist = distances[gid]
            group_returns = {}
            for row in group_rows:
                d_state[row.index] = dist[row.state]
                d_next[row.index] = 0.0 if row.is_success_edge else dist[row.next_state]
                group_returns[row.index] = graph_return(row, d_state[row.index], d_next[row.index], config)
            _fill_step_and_episode(group_rows, group_returns, config, returns, step_adv, episode_adv)
    elif method == "gigpo":
        for group_rows in groups.values():
            group_returns = discounted_returns(group_rows, config)
            _fill_step_and_episode(group_rows, group_returns, config, returns, step_adv, episode_adv)
    else:
        for group_rows in groups.values():
            rewards = trajectory_rewards(group_rows)
            values = grpo_values(rewards, config) if method == "grpo" else rloo_values(rewards)
            for row in group_rows:
                returns[row.index] = row.episode_reward
                episode_adv[row.index] = values[row.traj]

    if method in ("graphgpo", "gigpo"):
        # SPEC 8 (and GiGPO's A = A_episode + step_weight * A_step, with episode_weight 1 by default)
        advantages = [config.step_weight * s + config.episode_weight * e for s, e in zip(step_adv, episode_adv)]
        step_group = step_group_ids(rows)
    else:
        advantages = list(episode_adv)
        step_group = None

    device = batch.device
    f64 = lambda values: torch.tensor(values, dtype=torch.float64, device=device)  # noqa: E731
    return AdvantageOutput(
        advantages=f64(advantages).to(torch.float32),
        step_advantages=f64(step_adv),
        episode_advantages=f64(episode_adv),
        returns=f64(returns),
        d_state=f64(d_state) if d_state is not None else None,
        d_next=f64(d_next) if d_next is not None else None,
        step_group=torch.tensor(step_group, dtype=torch.int64, device=device) if step_group is not None else None,
        stats=graph_stats(groups, graphs, unreachable, n) if stats else {},
        method=method,
        backend="reference",
    )


def _fill_step_and_episode(group_rows, group_returns, config, returns, step_adv, episode_adv) -> None:
    """Write one group's returns, step advantages and episode advantages into the per-row lists."""
    group_step_adv = step_advantages(group_rows, group_returns, config)
    for row, e in zip(group_rows, episode_advantages(group_rows, config)):
        returns[row.index] = group_returns[row.index]
        step_adv[row.index] = group_step_adv[row.index]
        episode_adv[row.index] = e
