"""Cross-iteration graph memory for GraphGPO (beyond the recipe; off by default).

In a deterministic environment every rollout of a task walks the same transition graph, so the union of a
task's rollout graphs over past iterations is still a graph of real paths, and its shortest distances to
SUCCESS are at least as close to the true ones as one batch's. ``GraphMemory`` remembers, per task, the
edges its groups walked (``state -> next_state``, and ``state -> SUCCESS`` for the last step of a
successful rollout); GraphGPO then computes its distances on the union of the current group's graph and
the remembered graph of that task. A group whose rollouts all fail now still gets step credit for states
from which earlier rollouts reached the goal.

    memory = GraphMemory(max_edges_per_task=4096, max_tasks=1024)
    out = compute_advantages(batch, "graphgpo", memory=memory, task_keys=task_seeds)   # reads the memory
    memory.add(batch, task_keys=task_seeds)                                             # then remember

Valid only for deterministic transitions (the same action in the same state always leads to the same
state, and a remembered success step always succeeds): with stochastic transitions a remembered path
may not be repeatable and the distances it implies are wrong. Memory never changes GiGPO, GRPO or RLOO,
and an empty memory gives exactly the memory-free result.

Tasks need an identity that is stable across iterations (``task_keys``: one hashable per group, e.g. the
task seed or game index); several groups of one batch may share a task. The memory is bounded: at most
``max_edges_per_task`` edges per task (the least recently seen dropped first) and ``max_tasks`` tasks (the
least recently added dropped first); ties are broken by the edges' keys and the tasks' stable hashes, so
the content never depends on row order. Dropping edges keeps every remembered path real, so distances stay
valid upper bounds of the true ones. ``state_dict`` / ``load_state_dict`` make it part of a checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Hashable, Sequence

import torch

from graphgpo.hashing import stable_key

__all__ = ["GraphMemory", "ExtraEdges"]


@dataclass(frozen=True)
class ExtraEdges:
    """Edges that enter a batch's distance computation without producing rows (one tensor each, length E).

    group: dense group id of the batch the edge belongs to; source / target: int64 state keys;
    to_success: the edge leads to the group's SUCCESS sink (``target`` is then ignored); cost: float64.
    """

    group: torch.Tensor
    source: torch.Tensor
    target: torch.Tensor
    to_success: torch.Tensor
    cost: torch.Tensor

    def __len__(self) -> int:
        return self.group.numel()

    def costed(self, batch):
        """``batch`` itself, or with explicit unit costs when remembered edges cost other than 1 (edges
        remembered from a weighted batch joining an unweighted one); unit costs give the same distances."""
        if batch.cost is not None or len(self) == 0 or bool((self.cost == 1.0).all()):
            return batch
        return replace(batch, cost=torch.ones(batch.num_rows, dtype=torch.float64, device=batch.device))

    def graph_inputs(self, batch):
        """The edges as the estimator pipeline's extra edges (``graphgpo.backends.pipeline.GraphInputs``)."""
        from graphgpo.backends.pipeline import GraphInputs

        if len(self) == 0:
            return None
        return GraphInputs(extra_group=self.group, extra_src=self.source, extra_dst=self.target,
                           extra_success=self.to_success, extra_cost=self.cost if batch.cost is not None else None)

    def stats(self, batch) -> dict[str, int]:
        """``memory_edges``, and ``memory_success_groups``: groups without a success of their own whose
        remembered edges reach SUCCESS."""
        own = torch.zeros(batch.num_groups, dtype=torch.int64, device=batch.device).index_add_(
            0, batch.group, batch.success.long()) > 0
        remembered = torch.zeros_like(own, dtype=torch.int64).index_add_(0, self.group, self.to_success.long()) > 0
        return {"memory_edges": len(self), "memory_success_groups": int((remembered & ~own).sum())}


class GraphMemory:
    """Per task: the edges its rollouts walked, with the cheapest cost seen and when last seen."""

    def __init__(self, max_edges_per_task: int = 4096, max_tasks: int = 1024):
        for name, value in (("max_edges_per_task", max_edges_per_task), ("max_tasks", max_tasks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        self.max_edges_per_task = max_edges_per_task
        self.max_tasks = max_tasks
        self._clock = 0
        self._tasks: dict[Hashable, dict[tuple[int, int | None], list]] = {}  # task -> edge -> [tick, cost]
        self._task_tick: dict[Hashable, int] = {}

    # ------------------------------------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task: Hashable) -> bool:
        return task in self._tasks

    @property
    def num_edges(self) -> int:
        return sum(len(edges) for edges in self._tasks.values())

    def edges(self, task: Hashable) -> list[tuple[int, int | None, float]]:
        """The remembered edges of ``task`` as (source, target or None for SUCCESS, cost), sorted."""
        return sorted(((s, t, c) for (s, t), (_, c) in self._tasks.get(task, {}).items()), key=_edge_order)

    def extra_edges(self, task_keys: Sequence[Hashable], device: Any = "cpu") -> ExtraEdges:
        """The remembered edges of each group's task, for a batch whose dense group ``g`` plays
        ``task_keys[g]``."""
        rows = [(g, s, t, c) for g, task in enumerate(task_keys) for s, t, c in self.edges(task)]
        i64 = lambda values: torch.tensor(values, dtype=torch.int64, device=device)  # noqa: E731
        return ExtraEdges(group=i64([r[0] for r in rows]), source=i64([r[1] for r in rows]),
                          target=i64([r[2] if r[2] is not None else 0 for r in rows]),
                          to_success=torch.tensor([r[2] is None for r in rows], dtype=torch.bool, device=device),
                          cost=torch.tensor([r[3] for r in rows], dtype=torch.float64, device=device))

    # ------------------------------------------------------------------------------------------ writing
    def add(self, batch, task_keys: Sequence[Hashable]) -> None:
        """Remember every group's edges under its task (``task_keys[g]`` for dense group ``g``)."""
        task_keys = check_task_keys(batch, task_keys)
        if batch.num_rows == 0:
            return
        self._clock += 1
        tick = self._clock
        group = batch.group.tolist()
        traj, step = batch.traj.tolist(), batch.step.tolist()
        state, next_state = batch.state.tolist(), batch.next_state.tolist()
        success = batch.success.tolist()
        cost = batch.cost.tolist() if batch.cost is not None else [1.0] * batch.num_rows
        length: dict[int, int] = {}
        for t, s in zip(traj, step):
            length[t] = max(length.get(t, 0), s + 1)
        for i in range(batch.num_rows):
            to_success = success[i] and step[i] == length[traj[i]] - 1
            task = task_keys[group[i]]
            edges = self._tasks.setdefault(task, {})
            self._task_tick[task] = tick
            key = (state[i], None if to_success else next_state[i])
            seen = edges.get(key)
            edges[key] = [tick, cost[i] if seen is None else min(seen[1], cost[i])]
        for task in {task_keys[g] for g in set(group)}:
            self._evict_edges(self._tasks[task])
        while len(self._tasks) > self.max_tasks:
            oldest = min(self._tasks, key=lambda t: (self._task_tick[t], stable_key(t)))
            del self._tasks[oldest], self._task_tick[oldest]

    def _evict_edges(self, edges: dict) -> None:
        excess = len(edges) - self.max_edges_per_task
        if excess > 0:
            order = sorted(edges, key=lambda e: (edges[e][0], *_edge_order(e)))
            for key in order[:excess]:
                del edges[key]

    def clear(self) -> None:
        self._tasks.clear()
        self._task_tick.clear()

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Plain Python data (lists, ints, floats): safe for torch.save and JSON-like inspection."""
        return {"max_edges_per_task": self.max_edges_per_task, "max_tasks": self.max_tasks, "clock": self._clock,
                "tasks": [[task, self._task_tick[task], [[s, t, tick, c] for (s, t), (tick, c) in edges.items()]]
                          for task, edges in self._tasks.items()]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.max_edges_per_task = int(state["max_edges_per_task"])
        self.max_tasks = int(state["max_tasks"])
        self._clock = int(state["clock"])
        self._tasks = {_hashable(task): {(s, t): [tick, c] for s, t, tick, c in edges}
                       for task, _, edges in state["tasks"]}
        self._task_tick = {_hashable(task): tick for task, tick, _ in state["tasks"]}


def check_task_keys(batch, task_keys: Sequence[Hashable]) -> list:
    """``task_keys`` as a list with one hashable per dense group of ``batch``, or ValueError."""
    keys = task_keys.tolist() if isinstance(task_keys, torch.Tensor) else list(task_keys)
    if len(keys) != batch.num_groups:
        raise ValueError(f"task_keys has {len(keys)} entries, the batch has {batch.num_groups} groups "
                         f"(one task key per group, in dense group order)")
    for g, key in enumerate(keys):
        try:
            hash(key)
        except TypeError:
            raise ValueError(f"task_keys[{g}] must be hashable, got {type(key).__name__}") from None
    return keys


def _edge_order(edge: tuple) -> tuple:
    """Sort key of (source, target or None, cost): by source, then SUCCESS after every state."""
    source, target = edge[0], edge[1]
    return (source, target is None, target if target is not None else 0)


def _hashable(value: Any) -> Hashable:
    """Task keys come back from a state dict as saved; lists (from tuples through some serialisers) become
    tuples again."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value
