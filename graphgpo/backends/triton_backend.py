"""Triton backend: the whole estimator as a handful of kernel launches on the batch's device.

Pipeline (``graphgpo.kernels``; the torch backend's building blocks where a kernel buys nothing):

    is_success_step (torch)                    -> which rows point to their group's SUCCESS sink
    kernels.dedup.dense_ids                    -> node ids of (group, key), sorted order
    kernels.dedup.unique_edges                 -> distinct edges in reverse-CSR order
    kernels.frontier.reverse_distances         -> multi-source reverse BFS / Bellman-Ford from the sinks
    kernels.tail.fused_advantages              -> d_max, returns, penalties, step + episode advantages
    torch_backend.graph_stats                  -> diagnostics (one host sync)

GiGPO swaps the graph return for ``kernels.tail.discounted_returns`` (one lane per trajectory); GRPO and
RLOO use ``torch_backend.trajectory_advantages`` (a few segment ops: nothing for a kernel to fuse). The
graph is built for every method, as in the torch backend, because ``stats`` describe the batch.

Node numbering equals the torch backend's (state nodes in sorted (group, key) order, group g's sink at
``num_state_nodes + g``), so distances, step groups and stats agree element for element.

Runs on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``, tests only).
"""

from __future__ import annotations

import torch

from graphgpo.backends.torch_backend import graph_stats, step_groups, trajectory_output
from graphgpo.backends.torch_graph import StepGraph, is_success_step
from graphgpo.kernels import check_device
from graphgpo.kernels.dedup import dense_ids, unique_edges
from graphgpo.kernels.frontier import reverse_distances
from graphgpo.kernels.tail import discounted_returns, fused_advantages
from graphgpo.output import AdvantageOutput

METHODS = ("graphgpo", "gigpo", "grpo", "rloo")


def build_graph(batch) -> tuple[StepGraph, torch.Tensor]:
    """The block-diagonal state graph and the success-step mask (rows whose edge goes to SUCCESS)."""
    n = batch.num_rows
    device = batch.group.device
    to_success = is_success_step(batch)
    # A success step's next_state is not a node unless it occurs elsewhere: substitute the row's own state.
    next_key = torch.where(to_success, batch.state, batch.next_state)
    node, _, node_group = dense_ids(torch.cat([batch.state, next_key]), batch.group.repeat(2))
    num_state_nodes = node_group.numel()
    src, next_node = node[:n], node[n:]
    dst = torch.where(to_success, num_state_nodes + batch.group, next_node)
    num_groups = batch.num_groups
    has_success = torch.zeros(num_groups, dtype=torch.int64, device=device).index_add_(
        0, batch.group, to_success.long()) > 0
    node_group = torch.cat([node_group, torch.arange(num_groups, device=device)])
    return StepGraph(num_state_nodes, num_groups, node_group, src, dst, batch.cost, has_success), to_success


def graph_distances(graph: StepGraph):
    """Raw distances to SUCCESS (inf where unreachable; every node of a group without success is inf) and
    the number of distinct edges."""
    edge_src, _, rowptr, _, edge_cost = unique_edges(graph.src, graph.dst, graph.num_nodes, graph.cost)
    sinks = graph.num_state_nodes + torch.nonzero(graph.has_success).flatten()
    dist = reverse_distances(rowptr, edge_src, sinks, edge_cost)
    return dist, edge_src.numel()


def compute(batch, method: str, config) -> AdvantageOutput:
    """Advantages of ``method`` ("graphgpo", "gigpo", "grpo", "rloo") for every row of ``batch``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if batch.num_rows == 0:
        return AdvantageOutput.empty(method, "triton", batch.device)
    check_device(batch.group)

    graph, to_success = build_graph(batch)
    dist, num_unique_edges = graph_distances(graph)
    step_group, num_step_groups = step_groups(graph)
    stats = graph_stats(graph, dist, num_unique_edges, step_group, num_step_groups)

    if method not in ("graphgpo", "gigpo"):
        return trajectory_output(batch, method, config, stats, "triton")
    common = dict(group=batch.group, step_group=step_group, num_step_groups=num_step_groups,
                  num_groups=graph.num_groups, valid=batch.valid, episode_reward=batch.episode_reward,
                  step=batch.step, config=config)
    d_state = d_next = None
    if method == "graphgpo":
        out = fused_advantages(mode=config.graph_return, src=graph.src, dst=graph.dst, to_success=to_success,
                               cost=batch.cost, dist=dist, node_group=graph.node_group,
                               has_success=graph.has_success, **common)
        d_state, d_next = out["d_state"], out["d_next"]
    else:
        step_return = discounted_returns(batch.traj, batch.step, batch.reward, batch.num_trajs, config.gamma)
        out = fused_advantages(mode="given", given_returns=step_return, **common)
    return AdvantageOutput(advantages=out["advantages"], step_advantages=out["step_advantages"],
                           episode_advantages=out["episode_advantages"], returns=out["returns"], d_state=d_state,
                           d_next=d_next, step_group=step_group, stats=stats, method=method, backend="triton")
