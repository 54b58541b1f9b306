"""Triton backend: the pipeline's node-id, distance, returns and statistics stages as kernel launches.

Stages (``graphgpo.backends.pipeline``; the torch backend's where a kernel buys nothing):

    node ids      kernels.dedup.dense_ids                 (group, key) pairs, sorted order
    success edges pipeline.build_graph                    shared with every backend
    distances     kernels.dedup.unique_edges + kernels.frontier.reverse_distances
    returns       kernels.tail.graph_returns              d_max, final distances, graph return, penalty
                  kernels.tail.discounted_returns         GiGPO: one lane per trajectory
    statistics    kernels.tail.advantages                 moments, deviations, advantages
    GRPO / RLOO   torch (a few segment ops: nothing for a kernel to fuse)

Node numbering equals the torch backend's (state nodes in sorted (group, key) order, group g's sink at
``num_state_nodes + g``), so distances, step groups and stats agree element for element.

Runs on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``, tests only).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from graphgpo.backends import pipeline, torch_backend
from graphgpo.kernels import check_device, dedup, frontier, tail
from graphgpo.output import AdvantageOutput


def node_ids(batch, to_success, state_key, next_key, extra_group=None, extra_key=None):
    """The node-id stage (see ``torch_graph.node_ids``) with one sort-based dedup on the device."""
    n = batch.num_rows
    # A success step's next_state is not a node unless it occurs elsewhere: substitute the row's own state.
    keys = [state_key, torch.where(to_success, state_key, next_key)]
    groups = [batch.group, batch.group]
    if extra_key is not None:
        keys.append(extra_key)
        groups.append(extra_group)
    node, _, node_group = dedup.dense_ids(torch.cat(keys), torch.cat(groups))
    extra_node = node[2 * n:] if extra_key is not None else None
    return node_group, node[:n], node[n:2 * n], extra_node


def distances(graph):
    """The distance stage: distinct edges in reverse-CSR order, then a multi-source frontier search from
    the sinks (inf where unreachable; every node of a group without success is inf)."""
    edge_src, _, rowptr, _, edge_cost = dedup.unique_edges(graph.src, graph.dst, graph.num_nodes, graph.cost)
    sinks = torch.arange(graph.num_state_nodes, graph.num_nodes, device=graph.src.device)
    return frontier.reverse_distances(rowptr, edge_src, sinks, edge_cost, active=graph.has_success), edge_src.numel()


def graph_returns(graph, dist, batch, config):
    return tail.graph_returns(group=batch.group, src=graph.src, dst=graph.dst, valid=batch.valid, cost=batch.cost,
                              dist=dist, node_group=graph.node_group, has_success=graph.has_success, config=config)


def discounted_returns(batch, gamma, invalid_penalty):
    return tail.discounted_returns(batch.traj, batch.step, batch.reward, batch.valid, batch.num_trajs, gamma,
                                   invalid_penalty)


def advantages(batch, returns, step_group, num_step_groups, config):
    return tail.advantages(group=batch.group, valid=batch.valid, episode_reward=batch.episode_reward,
                           step=batch.step, returns=returns, step_group=step_group,
                           num_step_groups=num_step_groups, num_groups=batch.num_groups, config=config)


STAGES = replace(torch_backend.STAGES, name="triton", node_ids=node_ids, distances=distances,
                 graph_returns=graph_returns, discounted_returns=discounted_returns, advantages=advantages)


def compute(batch, method: str, config, inputs: pipeline.GraphInputs | None = None, *,
            stats: bool = True) -> AdvantageOutput:
    """Advantages of ``method`` ("graphgpo", "gigpo", "grpo", "rloo") for every row of ``batch``."""
    if batch.num_rows:
        check_device(batch.group)
    return pipeline.run(batch, method, config, STAGES, inputs, stats=stats)
