"""The one estimator pipeline of the tensor backends (torch, triton, cugraph), with swappable stages.

    node ids -> success edges -> distances -> returns -> statistics (advantages)

A backend is a ``Stages`` value: the torch backend defines every stage (``torch_backend.STAGES``); triton and
cugraph replace only the stages they accelerate (``dataclasses.replace(torch_backend.STAGES, ...)``). The
assembly of the graph from node ids (success sinks, block-diagonal layout), the step groups and the batch
diagnostics are shared by all of them and live here.

Two hooks change what the graph and the step groups are made of, without new rows (``GraphInputs``):

* graph keys and step keys: ``state_key`` / ``next_key`` replace the batch's keys as graph nodes, and
  ``step_key`` groups rows for the step advantage; the recipe's similarity merge builds nodes and step groups
  in two separate greedy passes, so the two may differ (SPEC.md, "Similarity merge");
* extra edges: per group, edges that enter the shortest distances but give no output row (graph memory:
  a task's edges remembered from earlier iterations, united with the group's graph).

Without them the pipeline computes exactly what SPEC.md describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from graphgpo.backends import host_sync
from graphgpo.backends.cpu_threads import cpu_threads
from graphgpo.backends.torch_graph import StepGraph, dense_pairs, is_success_step, segment_counts
from graphgpo.output import AdvantageOutput

F64 = torch.float64
METHODS = ("graphgpo", "gigpo", "grpo", "rloo")


@dataclass(frozen=True)
class GraphInputs:
    """Keys and edges that replace or extend what the batch gives the graph (all optional, on the batch's
    device). Keys are int64 like ``StepBatch.state``; groups are the batch's dense group ids."""

    state_key: torch.Tensor | None = None
    """int64 [rows]: graph node of each row's state (default ``batch.state``)."""
    next_key: torch.Tensor | None = None
    """int64 [rows]: graph node of each row's next_state (default ``batch.next_state``)."""
    step_key: torch.Tensor | None = None
    """int64 [rows]: step group of each row within its group (default: its state's graph node)."""
    extra_group: torch.Tensor | None = None
    """int64 [k]: dense group id of each extra edge."""
    extra_src: torch.Tensor | None = None
    """int64 [k]: key of each extra edge's tail."""
    extra_dst: torch.Tensor | None = None
    """int64 [k]: key of each extra edge's head (ignored where ``extra_success``)."""
    extra_success: torch.Tensor | None = None
    """bool [k]: the extra edge goes to its group's SUCCESS sink (default: none does)."""
    extra_cost: torch.Tensor | None = None
    """float64 [k]: costs of the extra edges; required exactly when the batch has costs."""

    @property
    def num_extra(self) -> int:
        return 0 if self.extra_src is None else self.extra_src.numel()

    def check(self, batch) -> None:
        """ValueError naming the field unless the inputs fit ``batch``."""
        n, device = batch.num_rows, batch.device
        for name in ("state_key", "next_key", "step_key"):
            _check_column(name, getattr(self, name), n, device, (torch.int64,))
        extra = ("extra_group", "extra_src", "extra_dst")
        given = [getattr(self, name) is not None for name in extra]
        if any(given) and not all(given):
            raise ValueError("graph inputs: give extra_group, extra_src and extra_dst together")
        if not all(given):
            if self.extra_success is not None or self.extra_cost is not None:
                raise ValueError("graph inputs: extra_success / extra_cost without extra edges")
            return
        k = self.extra_src.numel()
        for name in extra:
            _check_column(name, getattr(self, name), k, device, (torch.int64,))
        _check_column("extra_success", self.extra_success, k, device, (torch.bool,))
        _check_column("extra_cost", self.extra_cost, k, device, (F64,))
        if (self.extra_cost is None) != (batch.cost is None):
            raise ValueError("graph inputs: extra_cost must be given exactly when the batch has costs")
        if k and bool(((self.extra_group < 0) | (self.extra_group >= batch.num_groups)).any()):
            raise ValueError(f"graph inputs: extra_group holds ids outside 0..{batch.num_groups - 1}")
        if self.extra_cost is not None and k and bool((~torch.isfinite(self.extra_cost) | (self.extra_cost <= 0)).any()):
            raise ValueError("graph inputs: extra_cost must be finite and > 0")


def _check_column(name, value, length, device, dtypes) -> None:
    if value is None:
        return
    if not isinstance(value, torch.Tensor) or value.dim() != 1 or value.numel() != length:
        raise ValueError(f"graph inputs: {name} must be a 1-D tensor of {length} values")
    if value.dtype not in dtypes or value.device != device:
        raise ValueError(f"graph inputs: {name} must be {dtypes[0]} on {device}, got {value.dtype} on {value.device}")


@dataclass(frozen=True)
class Stages:
    """The swappable stages of the pipeline (the torch backend's are the defaults of every other backend)."""

    name: str
    """Backend name written into ``AdvantageOutput.backend``."""
    node_ids: Callable
    """(batch, to_success, state_key, next_key, extra_group, extra_key) -> (node_group, state_node, next_node,
    extra_node): dense ids of (group, key) pairs in sorted order (see ``torch_graph.node_ids``)."""
    distances: Callable
    """(graph) -> (dist [num_nodes] float64, inf where SUCCESS is unreachable; number of distinct edges)."""
    graph_returns: Callable
    """(graph, dist, batch, config) -> (d_state, d_next, returns) per row, after the invalid penalty."""
    discounted_returns: Callable
    """(batch, gamma, invalid_penalty) -> GiGPO step returns per row, after the invalid penalty."""
    advantages: Callable
    """(batch, returns, step_group, num_step_groups, config) -> (step_adv, episode_adv float64, advantages
    float32)."""
    trajectory_values: Callable
    """(batch, method, config) -> GRPO / RLOO value of each row's trajectory (float64)."""


# ------------------------------------------------------------------------------------------------ shared stages

def build_graph(batch, node_ids: Callable, inputs: GraphInputs | None = None) -> StepGraph:
    """The success-edge stage: the block-diagonal graph of the batch from the node-id stage.

    One edge per row, ``state -> next_state``; the last step of a successful trajectory goes to its group's
    SUCCESS sink (node ``num_state_nodes + group``) instead. Extra edges follow the rows.
    """
    inputs = inputs or GraphInputs()
    to_success = is_success_step(batch)
    state_key = batch.state if inputs.state_key is None else inputs.state_key
    next_key = batch.next_state if inputs.next_key is None else inputs.next_key
    extra_group = extra_key = extra_success = None
    k = inputs.num_extra
    if k:
        extra_success = (inputs.extra_success if inputs.extra_success is not None
                         else torch.zeros(k, dtype=torch.bool, device=batch.device))
        # A success edge's head is the sink: give it its tail's key so that it creates no node.
        extra_key = torch.cat([inputs.extra_src, torch.where(extra_success, inputs.extra_src, inputs.extra_dst)])
        extra_group = inputs.extra_group.repeat(2)
    node_group, src, next_node, extra_node = node_ids(batch, to_success, state_key, next_key, extra_group, extra_key)
    num_state_nodes, num_groups = node_group.numel(), batch.num_groups
    device = src.device
    dst = torch.where(to_success, num_state_nodes + batch.group, next_node)
    success_count = torch.zeros(num_groups, dtype=torch.int64, device=device).index_add_(
        0, batch.group, to_success.long())
    cost = batch.cost
    if k:
        src = torch.cat([src, extra_node[:k]])
        dst = torch.cat([dst, torch.where(extra_success, num_state_nodes + inputs.extra_group, extra_node[k:])])
        success_count.index_add_(0, inputs.extra_group, extra_success.long())
        if cost is not None:
            cost = torch.cat([cost, inputs.extra_cost])
    node_group = torch.cat([node_group, torch.arange(num_groups, device=device)])
    return StepGraph(num_state_nodes, num_groups, node_group, src, dst, cost, success_count > 0, batch.num_rows)


def step_groups(graph: StepGraph, batch, inputs: GraphInputs | None = None) -> tuple[torch.Tensor, int]:
    """Dense step-group id per row in sorted (group id, key) order, and a bound on the number of ids.

    By default a step group is a (group, state node) pair: the state nodes are numbered in that order
    already, so the ids are their ranks among the nodes that are some row's state, and the number of state
    nodes bounds them (segment statistics allow empty segments; reading the exact count would be a sync).
    """
    if inputs is not None and inputs.step_key is not None:
        pair_group, step_group = dense_pairs(batch.group, inputs.step_key)
        return step_group, pair_group.numel()
    src = graph.src[:graph.num_rows]
    is_state = torch.zeros(graph.num_state_nodes, dtype=torch.int64, device=src.device)
    is_state.index_fill_(0, src, 1)
    rank = torch.cumsum(is_state, 0)
    return rank.index_select(0, src) - 1, graph.num_state_nodes


def graph_stats(graph: StepGraph, dist: torch.Tensor, num_unique_edges: int, step_group: torch.Tensor,
                num_step_groups: int) -> dict[str, float | int]:
    """AdvantageOutput.stats (graphgpo/output.py); ``dist`` before filling, so inf marks unreachable."""
    n = graph.num_rows
    num_edges = graph.src.numel()
    state_in_success = graph.has_success.index_select(0, graph.node_group[:graph.num_state_nodes])
    unreachable = state_in_success & torch.isinf(dist[:graph.num_state_nodes])
    sizes = segment_counts(step_group, num_step_groups)
    counts = host_sync.to_list(torch.stack([
        graph.has_success.sum(),
        (sizes.index_select(0, step_group) == 1).sum(),
        state_in_success.sum(),
        unreachable.sum(),
    ]), "stats")  # the one host sync for all diagnostics
    num_sinks, singleton_rows, states_in_success, num_unreachable = counts
    return {
        "num_steps": n,
        "num_groups": graph.num_groups,
        "num_nodes": graph.num_state_nodes + num_sinks,
        "num_edges": num_edges,
        "num_unique_edges": num_unique_edges,
        "duplicate_edge_rate": 1.0 - num_unique_edges / num_edges if num_edges else 0.0,
        "singleton_step_group_share": singleton_rows / n if n else 0.0,
        "unreachable_state_share": num_unreachable / states_in_success if states_in_success else 0.0,
        "groups_without_success": graph.num_groups - num_sinks,
    }


# ------------------------------------------------------------------------------------------------ the pipeline

def run(batch, method: str, config, stages: Stages, inputs: GraphInputs | None = None, *,
        stats: bool = True) -> AdvantageOutput:
    """Advantages of ``method`` ("graphgpo", "gigpo", "grpo", "rloo") for every row of ``batch``.

    ``stats=False`` leaves ``AdvantageOutput.stats`` empty and skips what only the diagnostics need (one host
    sync; the graph for GRPO / RLOO; the distances for GiGPO). CPU batches run on ``CPU_THREADS`` threads.
    """
    with cpu_threads(batch.device):
        return _run(batch, method, config, stages, inputs, stats)


def _run(batch, method: str, config, stages: Stages, inputs: GraphInputs | None, stats: bool) -> AdvantageOutput:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}")
    if batch.num_rows == 0:
        return AdvantageOutput.empty(method, stages.name, batch.device)
    if inputs is not None:
        inputs.check(batch)

    step_method = method in ("graphgpo", "gigpo")
    diagnostics = {}
    if stats or step_method:
        # The diagnostics describe the batch's graph, whatever the method.
        graph = build_graph(batch, stages.node_ids, inputs)
        step_group, num_step_groups = step_groups(graph, batch, inputs)
        if stats or method == "graphgpo":
            dist, num_unique_edges = stages.distances(graph)
        if stats:
            diagnostics = graph_stats(graph, dist, num_unique_edges, step_group, num_step_groups)
    out = dict(method=method, backend=stages.name, stats=diagnostics)

    if not step_method:
        value = stages.trajectory_values(batch, method, config)
        return AdvantageOutput(advantages=value.to(torch.float32),
                               step_advantages=torch.zeros(batch.num_rows, dtype=F64, device=batch.device),
                               episode_advantages=value, returns=batch.episode_reward.clone(), d_state=None,
                               d_next=None, step_group=None, **out)
    d_state = d_next = None
    if method == "graphgpo":
        d_state, d_next, returns = stages.graph_returns(graph, dist, batch, config)
    else:
        returns = stages.discounted_returns(batch, config.gamma, config.invalid_penalty)
    step_adv, episode_adv, advantages = stages.advantages(batch, returns, step_group, num_step_groups, config)
    return AdvantageOutput(advantages=advantages, step_advantages=step_adv, episode_advantages=episode_adv,
                           returns=returns, d_state=d_state, d_next=d_next, step_group=step_group, **out)
