"""The batch's state graphs as tensors, and shortest distances to SUCCESS (the graph half of the torch backend).

All groups form one block-diagonal graph: node ids are dense over (group, state key) pairs, and group ``g``'s
SUCCESS sink is node ``num_state_nodes + g``. One edge per row, ``state -> next_state``, except that the last
step of a successful trajectory points to its group's sink (its own next_state is not a node unless it occurs
elsewhere in the group). Distances are computed from every sink at once on the reversed graph.

Stages (``graphgpo.backends.pipeline`` runs them; GPU backends reuse one or swap it for a kernel):

    node_ids -> (pipeline.build_graph) -> reverse_csr -> sweep_distances | frontier_distances
    -> group_fill_unreachable

Host syncs (they matter on CUDA): the number of next_states that need their own key, the sizes of the two
``unique`` calls, the number of distinct edges, and one per sweep / BFS level (the "changed" test or the
frontier's edge count). The number of levels is at most the longest shortest path (in edges) + 1.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from dataclasses import dataclass

import numpy as np
import torch

from graphgpo.backends import host_sync

F64 = torch.float64

NUMPY_SORT_MAX = 1 << 18
"""CPU tensors up to this many elements are sorted by numpy (its vectorised sort is 2-4x faster than torch's
CPU sort at these sizes, which matters for the dispatch-bound paper-sized batch); larger ones by torch,
which is as fast there and scales better. CUDA tensors always use torch."""

SWEEP_MAX_EDGES = {"cpu": 1 << 13, "cpu-without-scipy": 1 << 15, "cuda": 1 << 14}
"""Graphs with at most this many distinct edges use dense Bellman-Ford sweeps (a few cheap ops per level);
larger ones scipy's Dijkstra (CPU, when scipy is installed) or the frontier search (linear total work).
CPU limits from benchmarks/core_scaling.py's batches on one thread (ms, sweep / frontier / scipy): 4.0k edges
0.7 / 6.1 / 0.6, 15.9k edges 3.4 / 11.2 / 2.0, 63k edges 55 / 36 / 30, 258k edges 275 / 95 / 101. The CUDA
limit has not been measured on a GPU."""


@dataclass(frozen=True)
class StepGraph:
    """All groups' state graphs as one block-diagonal graph."""

    num_state_nodes: int
    """State nodes have ids 0..num_state_nodes-1, in sorted (group id, state key) order."""
    num_groups: int
    """Group g's SUCCESS sink is node num_state_nodes + g (isolated if the group has no success)."""
    node_group: torch.Tensor
    """int64 [num_nodes]: group of every node, sinks included."""
    src: torch.Tensor
    """int64 [edges]: tail node of each edge. Edge i < num_rows is row i's: the node of its state."""
    dst: torch.Tensor
    """int64 [edges]: head node; for a row, its next_state's node, or its group's sink where it reaches SUCCESS."""
    cost: torch.Tensor | None
    """float64 [edges]: edge costs, or None for unit costs."""
    has_success: torch.Tensor
    """bool [groups]: the group has a success edge (its sink is a source of the search)."""
    num_rows: int
    """Edges 0..num_rows-1 are the batch's rows; any after them are extra edges (graph memory) that
    enter the distances but give no output row."""

    @property
    def num_nodes(self) -> int:
        return self.num_state_nodes + self.num_groups


@dataclass(frozen=True)
class ReverseCSR:
    """The distinct edges, sorted by (dst, src): the in-edges of node v are positions indptr[v]..indptr[v+1]-1.

    Parallel edges (repeated transitions, common when rollouts of a group share a path) are merged into one
    edge with the smallest of their costs, which leaves every shortest distance unchanged, bit for bit.
    """

    indptr: torch.Tensor
    """int64 [num_nodes + 1]."""
    src: torch.Tensor
    """int64 [num_unique_edges]: tail of each edge (the node a reverse step reaches)."""
    dst: torch.Tensor
    """int64 [num_unique_edges]: head of each edge."""
    cost: torch.Tensor | None
    """float64 [num_unique_edges]: cheapest cost of the merged parallel edges, or None for unit costs."""
    num_unique_edges: int
    """Distinct (src, dst) pairs (parallel edges with different costs count once)."""


def argsort(values: torch.Tensor) -> torch.Tensor:
    """Indices that sort ``values`` (1-D int64; order of equal values unspecified)."""
    if values.device.type == "cpu" and values.numel() <= NUMPY_SORT_MAX:
        return torch.from_numpy(np.argsort(values.numpy()))
    return torch.sort(values).indices


def sorted_unique(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(values, return_inverse=True)`` for 1-D int64: sorted distinct values, and the index of
    each value among them."""
    if values.device.type != "cpu" or values.numel() > NUMPY_SORT_MAX:
        return host_sync.unique(values, "unique: number of distinct values")
    order = argsort(values)
    ordered = values.index_select(0, order)
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    inverse = torch.empty_like(order)
    inverse.index_copy_(0, order, torch.cumsum(first, 0) - 1)
    return host_sync.compress(ordered, first, "unique: number of distinct values"), inverse


def segment_counts(index: torch.Tensor, size: int) -> torch.Tensor:
    """int64 [size]: how often each id occurs in ``index`` (ids < size). ``torch.bincount`` on CPU (fastest
    there); on CUDA a scatter-add, because CUDA's bincount reads the largest id back to the host."""
    if index.device.type == "cpu":
        return torch.bincount(index, minlength=size)  # no sync: CPU only
    return torch.zeros(size, dtype=torch.int64, device=index.device).index_add_(0, index, torch.ones_like(index))


def is_success_step(batch) -> torch.Tensor:
    """bool [rows]: the row is the last step of a successful trajectory, so its edge goes to SUCCESS."""
    # Steps of a trajectory are exactly 0..L-1 (StepBatch validates this), so L is its row count.
    lengths = segment_counts(batch.traj, batch.num_trajs)
    return batch.success & (batch.step == lengths.index_select(0, batch.traj) - 1)


def following_row(batch) -> torch.Tensor:
    """int64 [rows]: the row holding the next step of the same trajectory, or -1 on a last step."""
    lengths = segment_counts(batch.traj, batch.num_trajs)
    starts = torch.cumsum(lengths, 0) - lengths
    position = starts.index_select(0, batch.traj) + batch.step  # place in (traj, step) order, by counting
    row_at = torch.empty_like(position).index_copy_(0, position, torch.arange(batch.num_rows, device=position.device))
    last = batch.step == lengths.index_select(0, batch.traj) - 1
    return torch.where(last, -1, row_at.index_select(0, torch.where(last, position, position + 1)))


def dense_pairs(group: torch.Tensor, key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense ids of (group, key) pairs numbered in sorted (group, key) order: ``(pair_group, inverse)``.

    Ranking the raw keys first lets (group, rank) fold into one exact int64 (no hashing of pairs, no
    ``unique(dim=0)``); rank order is key order, so pair order is (group, key) order.
    """
    if key.device.type == "cpu" and key.numel() <= NUMPY_SORT_MAX and group.numel() and int(group.max()) < 1 << 16:
        return _dense_pairs_numpy(group.numpy(), key.numpy())
    keys, key_rank = sorted_unique(key)
    num_keys = keys.numel()
    node_pair, node = sorted_unique(group * num_keys + key_rank)
    return torch.div(node_pair, num_keys, rounding_mode="floor"), node


def _dense_pairs_numpy(group: np.ndarray, key: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``dense_pairs`` on the CPU in one comparison sort: keys first, then a stable radix sort of the uint16
    group ids (numpy sorts integers of 16 bits or fewer by radix in linear time), giving (group, key) order."""
    by_key = np.argsort(key)
    order = by_key[np.argsort(group.astype(np.uint16)[by_key], kind="stable")]
    pair_group, pair_key = group[order], key[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = (pair_group[1:] != pair_group[:-1]) | (pair_key[1:] != pair_key[:-1])
    node = np.empty(len(order), dtype=np.int64)
    node[order] = np.cumsum(first) - 1
    return torch.from_numpy(pair_group[first]), torch.from_numpy(node)


def node_ids(batch, to_success: torch.Tensor, state_key: torch.Tensor, next_key: torch.Tensor,
             extra_group: torch.Tensor | None = None, extra_key: torch.Tensor | None = None):
    """Dense ids of (group, key) pairs, numbered in sorted (group id, key) order (the node-id stage).

    ``state_key`` / ``next_key`` [rows] are the graph keys of each row's state and next_state;
    ``extra_group`` / ``extra_key`` [k] optional keys of edges that are not rows (graph memory).
    Returns ``(node_group, state_node, next_node, extra_node)``: the group of every state node, and the node
    of each row's state, of its next_state (``next_node`` equals ``state_node`` where ``to_success``: that
    next_state is SUCCESS and is not a node unless it occurs elsewhere) and of each extra key (None without).
    """
    n = batch.num_rows
    # A row's next_state is almost always the state of its trajectory's next row; such next_states take
    # that row's node, so only the others (last steps, resets, non-Markov keys) join the sorts, which
    # roughly halves them. Success steps' next_states join nothing.
    follower = following_row(batch)
    has_follower = follower >= 0
    follower = follower.clamp(min=0)
    chained = has_follower & (next_key == state_key.index_select(0, follower))
    own = host_sync.nonzero(~(chained | to_success), "node ids: next_states with a key of their own")
    keys = [state_key, next_key.index_select(0, own)]
    groups = [batch.group, batch.group.index_select(0, own)]
    if extra_key is not None:
        keys.append(extra_key)
        groups.append(extra_group)
    node_group, node = dense_pairs(torch.cat(groups), torch.cat(keys))
    state_node = node[:n]
    end = n + own.numel()
    next_node = torch.where(chained, state_node.index_select(0, follower), state_node).index_copy_(0, own, node[n:end])
    return node_group, state_node, next_node, (node[end:] if extra_key is not None else None)


def reverse_csr(graph: StepGraph) -> ReverseCSR:
    """Sort the edges by (dst, src), merge parallel edges, and index them by head node (reverse CSR)."""
    num_nodes = graph.num_nodes
    key = graph.dst * num_nodes + graph.src
    order = argsort(key)
    key = key.index_select(0, order)
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]
    unique_key = host_sync.compress(key, first, "reverse CSR: number of distinct edges")
    src = unique_key % num_nodes
    dst = torch.div(unique_key, num_nodes, rounding_mode="floor")
    cost = None
    if graph.cost is not None:
        edge = torch.cumsum(first, 0) - 1
        cost = torch.full((unique_key.numel(),), math.inf, dtype=F64, device=key.device).scatter_reduce_(
            0, edge, graph.cost.index_select(0, order), "amin")
    indptr = torch.zeros(num_nodes + 1, dtype=torch.int64, device=key.device)
    indptr[1:] = torch.cumsum(segment_counts(dst, num_nodes), 0)
    return ReverseCSR(indptr, src, dst, cost, unique_key.numel())


def _initial_distances(graph: StepGraph) -> torch.Tensor:
    """float64 [num_nodes]: 0 at the sinks of groups with a success, inf everywhere else."""
    dist = torch.full((graph.num_nodes,), math.inf, dtype=F64, device=graph.src.device)
    dist[graph.num_state_nodes:] = torch.where(graph.has_success, 0.0, math.inf)
    return dist


def sweep_distances(graph: StepGraph, csr: ReverseCSR | None = None) -> torch.Tensor:
    """Shortest distances to SUCCESS by Bellman-Ford sweeps over all edges at once (Jacobi order).

    Each sweep relaxes ``d[src] = min(d[src], d[dst] + cost)`` for every edge (the distinct edges of
    ``csr`` if given, else one per row); the loop stops at the first sweep that changes nothing. Distances
    are accumulated sink-outwards (d(next) + cost), the same float operations as the reference's Dijkstra,
    so they agree exactly. Unreachable nodes stay inf.
    """
    edges = csr if csr is not None else graph
    dist = _initial_distances(graph)
    cost = edges.cost if edges.cost is not None else 1.0
    while True:
        relaxed = dist.scatter_reduce(0, edges.src, dist.index_select(0, edges.dst) + cost, "amin")
        if not host_sync.differ(relaxed, dist, "sweep: any distance changed"):
            return dist
        dist = relaxed


def _expand_segments(starts: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Concatenation of ranges starts[i] .. starts[i]+counts[i]-1, without a Python loop."""
    total = host_sync.to_int(counts.sum(), "frontier: number of in-edges to expand")
    offsets = torch.cumsum(counts, 0) - counts
    shift = torch.repeat_interleave(starts - offsets, counts, output_size=total)
    return shift + torch.arange(total, device=starts.device)


def _dedupe(nodes: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``nodes`` without repeats, in O(len) using the scratch buffer ``owner`` [num_nodes] (no sort)."""
    position = torch.arange(nodes.numel(), device=nodes.device)
    owner.index_copy_(0, nodes, position)  # with repeats one arbitrary writer wins; exactly that copy is kept
    return host_sync.compress(nodes, owner.index_select(0, nodes) == position, "frontier: dedupe")


def frontier_distances(graph: StepGraph, csr: ReverseCSR) -> torch.Tensor:
    """Shortest distances to SUCCESS by a level-synchronous search from every sink at once.

    Each level expands only the in-edges of the frontier (the nodes whose distance changed in the previous
    level), so the total work is linear in the number of edges. Unit costs: plain BFS, a node's distance is
    the level at which it is first reached. Weighted costs: the frontier holds every node whose distance
    improved (Bellman-Ford restricted to changed nodes); it ends when no distance improves.
    """
    dist = _initial_distances(graph)
    owner = torch.empty(graph.num_nodes, dtype=torch.int64, device=dist.device)
    frontier = torch.arange(graph.num_state_nodes, graph.num_nodes, device=dist.device)
    level = 0
    while frontier.numel():
        starts = csr.indptr.index_select(0, frontier)
        edges = _expand_segments(starts, csr.indptr.index_select(0, frontier + 1) - starts)
        if edges.numel() == 0:
            break
        tails = csr.src.index_select(0, edges)
        if csr.cost is None:
            level += 1
            tails = host_sync.compress(tails, torch.isinf(dist.index_select(0, tails)), "frontier: newly reached")
            dist.index_fill_(0, tails, float(level))
        else:
            before = dist.index_select(0, tails)
            relaxed = dist.index_select(0, csr.dst.index_select(0, edges)) + csr.cost.index_select(0, edges)
            dist.scatter_reduce_(0, tails, relaxed, "amin")
            tails = host_sync.compress(tails, dist.index_select(0, tails) < before, "frontier: improved")
        frontier = _dedupe(tails, owner)
    return dist


def scipy_distances(graph: StepGraph, csr: ReverseCSR) -> torch.Tensor:
    """Shortest distances to SUCCESS by scipy's multi-source Dijkstra on the reversed graph (CPU).

    ``csr`` is already the reversed graph in CSR form (row v: the tails of the edges into v), so scipy gets it
    without a copy. Dijkstra accumulates d(v) + cost from the sources outwards, the reference's order, so
    weighted distances agree bit for bit.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import dijkstra

    n = graph.num_nodes
    unit = csr.cost is None
    weights = np.ones(csr.num_unique_edges) if unit else csr.cost.numpy()
    reverse = csr_matrix((weights, csr.src.numpy(), csr.indptr.numpy()), shape=(n, n))
    sinks = graph.num_state_nodes + np.flatnonzero(graph.has_success.numpy())  # no sync: CPU only
    if sinks.size == 0:
        return torch.full((n,), math.inf, dtype=F64)
    return torch.from_numpy(dijkstra(reverse, indices=sinks, min_only=True, unweighted=unit))


@functools.cache
def _has_scipy() -> bool:
    return importlib.util.find_spec("scipy") is not None


def distance_method(csr: ReverseCSR) -> str:
    """"sweep", "scipy" or "frontier" for this graph's size and device (limits: ``SWEEP_MAX_EDGES``)."""
    edges = csr.num_unique_edges
    if csr.src.device.type != "cpu":
        return "sweep" if edges <= SWEEP_MAX_EDGES["cuda"] else "frontier"
    if _has_scipy():
        return "sweep" if edges <= SWEEP_MAX_EDGES["cpu"] else "scipy"
    return "sweep" if edges <= SWEEP_MAX_EDGES["cpu-without-scipy"] else "frontier"


def shortest_distances(graph: StepGraph, csr: ReverseCSR, method: str | None = None) -> torch.Tensor:
    """float64 [num_nodes]: distance to the group's SUCCESS sink (inf where unreachable or no success)."""
    method = method or distance_method(csr)
    if method == "sweep":
        return sweep_distances(graph, csr)
    if method == "scipy":
        return scipy_distances(graph, csr)
    return frontier_distances(graph, csr)


def group_fill_unreachable(dist: torch.Tensor, graph: StepGraph) -> torch.Tensor:
    """SPEC 3: unreachable nodes get d_max + 1 (d_max = the group's largest finite distance); every node
    of a group without success gets 1."""
    finite = torch.isfinite(dist)
    d_max = torch.zeros(graph.num_groups, dtype=F64, device=dist.device).scatter_reduce_(
        0, graph.node_group, torch.where(finite, dist, 0.0), "amax")
    filled = torch.where(finite, dist, (d_max + 1.0).index_select(0, graph.node_group))
    return torch.where(graph.has_success.index_select(0, graph.node_group), filled, 1.0)


def graph_distances(graph: StepGraph) -> tuple[torch.Tensor, int]:
    """The distance stage: raw distances to SUCCESS (inf where unreachable) and the number of distinct edges."""
    csr = reverse_csr(graph)
    return shortest_distances(graph, csr), csr.num_unique_edges
