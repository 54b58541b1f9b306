"""The state graph of one group's rollouts, with each method's advantages on its edges.

    graph = build_group_graph(batch, outputs, group=0, labels=state_labels(records))

Nodes are the distinct states of the group's rollouts (GraphGPO's graph: a successful trajectory's last
step goes to the SUCCESS sink), placed by ``graph_layout.layout_graph``: x = graph distance to SUCCESS;
nodes that cannot reach it share the farthest column. Each edge is one (state -> next state) transition,
counted once however often it was taken, with the mean advantage each method gives the steps along it.
Drawing: ``graph_plot.plot_group_graph`` (PNG/SVG) and ``graph_html.write_html`` (interactive page).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from graphgpo.analysis.graph_layout import layout_graph
from graphgpo.batch import StepBatch
from graphgpo.output import AdvantageOutput

__all__ = ["SINK", "GraphNode", "GraphEdge", "GroupGraph", "state_labels", "build_group_graph"]

SINK = "SUCCESS"


@dataclass
class GraphNode:
    key: int | None
    """State key; None for the SUCCESS sink."""
    label: str
    distance: float
    """GraphGPO distance to SUCCESS (0 for the sink; d_max + 1 when unreachable)."""
    is_start: bool = False
    x: float = 0.0
    y: float = 0.0


@dataclass
class GraphEdge:
    source: int
    """Index into GroupGraph.nodes."""
    target: int
    count: int
    """Rows (steps) along this edge."""
    successes: int
    """... of which in successful trajectories."""
    invalid: int
    """... of which with an invalid action."""
    advantage: dict[str, float]
    """Mean advantage per method over those rows."""

    @property
    def is_loop(self) -> bool:
        return self.source == self.target


@dataclass
class GroupGraph:
    group: int
    nodes: list[GraphNode]
    edges: list[GraphEdge]
    methods: tuple[str, ...]
    num_trajectories: int
    num_successes: int
    title: str = ""
    unreachable_distance: float | None = None
    """Distance given to nodes that cannot reach SUCCESS (None if every node can)."""
    extra: dict[str, Any] = field(default_factory=dict)

    def color_limit(self, method: str) -> float:
        """Symmetric colour scale of one method's panel: its largest |mean advantage| over the edges (scales
        differ between methods: RLOO is not normalised, GraphGPO adds a step and an episode part)."""
        values = [abs(e.advantage[method]) for e in self.edges if math.isfinite(e.advantage[method])]
        return max(values, default=0.0) or 1e-9


def state_labels(records: Sequence[Mapping[str, Any]]) -> dict[int, str]:
    """State key -> readable text (the environment's own state object), from rollout records."""
    from graphgpo.hashing import stable_key

    labels: dict[int, str] = {}
    for r in records:
        for obj in (r["state"], r["next_state"]):
            if isinstance(obj, (str, int, tuple, bytes)):
                labels.setdefault(stable_key(obj), str(obj))
    return labels


def build_group_graph(batch: StepBatch, outputs: Mapping[str, AdvantageOutput], group: int, *,
                      labels: Mapping[int, str] | None = None, title: str = "") -> GroupGraph:
    """The graph of group ``group`` (dense group id) with each method's mean advantage per edge.

    ``outputs`` must contain ``"graphgpo"`` (its distances place the nodes)."""
    if "graphgpo" not in outputs:
        raise ValueError(f"outputs: the 'graphgpo' output is required for the distances (got {sorted(outputs)})")
    if not 0 <= group < batch.num_groups:
        raise ValueError(f"group: {group} is not a group of this batch (0..{batch.num_groups - 1})")
    labels = labels or {}
    graph_out = outputs["graphgpo"]
    rows = torch.nonzero(batch.group.cpu() == group).flatten()
    traj, step = batch.traj.cpu()[rows], batch.step.cpu()[rows]
    state, next_state = batch.state.cpu()[rows].tolist(), batch.next_state.cpu()[rows].tolist()
    success, valid = batch.success.cpu()[rows].tolist(), batch.valid.cpu()[rows].tolist()
    d_state, d_next = graph_out.d_state.cpu()[rows].tolist(), graph_out.d_next.cpu()[rows].tolist()
    adv = {m: o.advantages.detach().cpu().double()[rows].tolist() for m, o in outputs.items()}
    last_step = {}
    for t, s in zip(traj.tolist(), step.tolist()):
        last_step[t] = max(last_step.get(t, -1), s)

    # Rows in (traj, step) order, so node order (and the layout's tie-breaks) never depends on row order.
    order = sorted(range(len(rows)), key=lambda i: (int(traj[i]), int(step[i])))
    index: dict[int | None, int] = {}
    nodes: list[GraphNode] = []

    def node(key: int | None, distance: float) -> int:
        if key not in index:
            index[key] = len(nodes)
            nodes.append(GraphNode(key, SINK if key is None else labels.get(key, f"{key & 0xFFFFFFFF:08x}"),
                                   distance))
        return index[key]

    sums: dict[tuple[int, int], dict[str, Any]] = {}
    for i in order:
        src = node(state[i], d_state[i])
        if int(step[i]) == 0:
            nodes[src].is_start = True
        sink_step = success[i] and int(step[i]) == last_step[int(traj[i])]
        dst = node(None, 0.0) if sink_step else node(next_state[i], d_next[i])
        entry = sums.setdefault((src, dst), {"count": 0, "successes": 0, "invalid": 0,
                                             "adv": {m: 0.0 for m in outputs}})
        entry["count"] += 1
        entry["successes"] += int(success[i])
        entry["invalid"] += int(not valid[i])
        for m in outputs:
            entry["adv"][m] += adv[m][i]
    edges = [GraphEdge(s, t, e["count"], e["successes"], e["invalid"], {m: v / e["count"] for m, v in e["adv"].items()})
             for (s, t), e in sums.items()]
    trajs = set(traj.tolist())
    has_sink = None in index
    # Unreachable nodes get d_max + 1, so if there are any they fill the largest-distance column.
    far = max(n.distance for n in nodes)
    unreachable = far if has_sink and any(n.distance == far and _is_unreachable(n, nodes, edges) for n in nodes) \
        else None
    graph = GroupGraph(group=group, nodes=nodes, edges=edges, methods=tuple(outputs), num_trajectories=len(trajs),
                       num_successes=len({int(traj[i]) for i in range(len(rows)) if success[i]}), title=title,
                       unreachable_distance=unreachable)
    layout_graph(graph)
    return graph


def _is_unreachable(n: GraphNode, nodes: list[GraphNode], edges: list[GraphEdge]) -> bool:
    """No path of the group's edges leads from ``n`` to the SUCCESS sink."""
    sink = next(i for i, m in enumerate(nodes) if m.key is None)
    start = nodes.index(n)
    out: dict[int, list[int]] = {}
    for e in edges:
        out.setdefault(e.source, []).append(e.target)
    seen, stack = {start}, [start]
    while stack:
        v = stack.pop()
        if v == sink:
            return False
        for w in out.get(v, ()):
            if w not in seen:
                seen.add(w)
                stack.append(w)
    return True
