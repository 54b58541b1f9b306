"""A picture of one task's state graph: which steps each estimator credits and which it blames.

    graph = build_group_graph(batch, outputs, group=0, labels=state_labels(records))
    plot_group_graph(graph, "task0")          # task0.png and task0.svg, one panel per method
    write_html(graph, "task0.html")           # self-contained interactive page (inline SVG + JS)

Nodes are the distinct states of the group's rollouts (GraphGPO's graph: a successful trajectory's last
step goes to the SUCCESS sink). The horizontal axis is the graph distance to SUCCESS, goal on the right;
nodes that cannot reach it sit in the leftmost column. Each edge is one (state -> next state) transition,
drawn once however often it was taken (width grows with the count) and coloured by the mean advantage the
method gives the steps along it: blue = credited, grey = about zero, red = blamed, each panel scaled to
its own largest |advantage| (printed in the panel title), since the methods' scales differ.
Self-loops (no-ops) are drawn as small circles above their node.

``viz_main`` is ``graphgpo viz RUN_DIR --task N``: it plays the run's held-out room N with the run's
latest checkpoint (or a random policy; see ``graphgpo.analysis.run_rollouts``), since the trainer does not
save its rollouts, then writes PNG, SVG, HTML and the credit diagnostics of that group.
"""

from __future__ import annotations

import argparse
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from graphgpo.batch import StepBatch
from graphgpo.output import AdvantageOutput

__all__ = ["GraphNode", "GraphEdge", "GroupGraph", "state_labels", "build_group_graph", "plot_group_graph",
           "graph_html", "write_html", "viz_main"]

SINK = "SUCCESS"
MAX_COLUMN_HEIGHT = 9
"""Nodes stacked in one column before it is folded into sub-columns."""


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
    _layout(graph)
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


def _layout(graph: GroupGraph) -> None:
    """x = distance (drawn with the goal on the right; crowded columns fold into sub-columns within ±0.3);
    y = rank within the column, ordered by the mean y of
    already placed neighbours (one sweep from the farthest column to the goal) to limit crossings."""
    columns: dict[float, list[int]] = {}
    for i, n in enumerate(graph.nodes):
        columns.setdefault(n.distance, []).append(i)
    neighbours: dict[int, list[int]] = {}
    for e in graph.edges:
        if not e.is_loop:
            neighbours.setdefault(e.source, []).append(e.target)
            neighbours.setdefault(e.target, []).append(e.source)
    placed: dict[int, float] = {}
    for distance in sorted(columns, reverse=True):
        members = columns[distance]

        def barycenter(i: int) -> float:
            ys = [placed[j] for j in neighbours.get(i, ()) if j in placed]
            return sum(ys) / len(ys) if ys else 0.0

        members.sort(key=lambda i: (barycenter(i), i))
        # A crowded column (typically the unreachable one) is folded into side-by-side sub-columns within
        # ±0.3 of its distance, so the picture stays wide rather than tall.
        folds = math.ceil(len(members) / MAX_COLUMN_HEIGHT)
        per_fold = math.ceil(len(members) / folds)
        for rank, i in enumerate(members):
            fold, row = divmod(rank, per_fold)
            in_fold = min(per_fold, len(members) - fold * per_fold)
            x = distance + (0.6 * (fold / (folds - 1) - 0.5) if folds > 1 else 0.0)
            y = row - (in_fold - 1) / 2 + (0.5 * (fold % 2) if folds > 1 else 0.0)
            graph.nodes[i].x, graph.nodes[i].y = float(x), float(y)
            placed[i] = y


# ---------------------------------------------------------------------------------------------- matplotlib
def advantage_cmap():
    """Diverging red (blamed) - grey (about zero) - blue (credited); grey stays visible on white."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("advantage", ["#b2182b", "#f4a582", "#bdbdbd", "#92c5de", "#2166ac"])


def _edge_width(count: int) -> float:
    return 1.0 + 1.4 * math.log2(count)


def plot_group_graph(graph: GroupGraph, path_stem: str | Path, *, methods: Sequence[str] | None = None,
                     formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """One panel per method; writes ``path_stem.<format>`` for each format; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize
    from matplotlib.patches import Circle, FancyArrowPatch

    methods = list(methods or graph.methods)
    unknown = [m for m in methods if m not in graph.methods]
    if unknown:
        raise ValueError(f"methods: {unknown} not in the graph's methods {list(graph.methods)}")
    cmap = advantage_cmap()
    norm = Normalize(-1.0, 1.0)
    xs = [n.x for n in graph.nodes]
    ys = [n.y for n in graph.nodes]
    height = max(ys) - min(ys) if ys else 1
    width = max(xs) - min(xs) if xs else 1
    cols = 2 if len(methods) > 2 else len(methods)
    rows = math.ceil(len(methods) / cols)
    panel_w = min(max(5.0, 1.1 * width + 2), 9.0)
    panel_h = min(max(3.0, 0.45 * height + 2), 8.0)
    fig, axes = plt.subplots(rows, cols, figsize=(panel_w * cols, panel_h * rows + 0.9), squeeze=False,
                             layout="constrained")
    loop_r = 0.18
    for ax, method in zip(axes.flat, methods):
        limit = graph.color_limit(method)
        for e in sorted(graph.edges, key=lambda e: abs(e.advantage[method])):  # strongest on top
            color = cmap(norm(e.advantage[method] / limit))
            a, b = graph.nodes[e.source], graph.nodes[e.target]
            if e.is_loop:
                ax.add_patch(Circle((a.x, a.y + loop_r), loop_r, fill=False, ec=color, lw=_edge_width(e.count),
                                    zorder=2))
                continue
            ax.add_patch(FancyArrowPatch((a.x, a.y), (b.x, b.y), connectionstyle="arc3,rad=0.18", arrowstyle="-|>",
                                         mutation_scale=9, color=color, lw=_edge_width(e.count), shrinkA=6, shrinkB=6,
                                         zorder=2))
        for n in graph.nodes:
            if n.key is None:
                ax.scatter([n.x], [n.y], s=420, marker="*", c="gold", edgecolors="black", linewidths=1.2, zorder=4)
                ax.annotate(SINK, (n.x, n.y), xytext=(0, -16), textcoords="offset points", ha="center", fontsize=8,
                            weight="bold")
            else:
                ax.scatter([n.x], [n.y], s=70 if n.is_start else 36, c="white" if n.is_start else "0.55",
                           edgecolors="black", linewidths=1.6 if n.is_start else 0.6, zorder=3)
                if n.is_start:
                    ax.annotate("start", (n.x, n.y), xytext=(0, -15), textcoords="offset points", ha="center",
                                fontsize=8)
        ax.set_title(f"{method}  (colour scale ±{limit:.3g})", fontsize=11)
        ticks = sorted({n.distance for n in graph.nodes})
        ax.set_xticks(ticks)
        ax.set_xticklabels(["unreach." if graph.unreachable_distance is not None and t == graph.unreachable_distance
                            else f"{t:g}" for t in ticks], fontsize=8)
        ax.set_xlim(max(xs) + 0.6, min(xs) - 0.6)  # goal (distance 0) on the right
        ax.set_ylim(min(ys) - 0.8, max(ys) + 0.9)
        ax.set_yticks([])
        ax.set_xlabel("graph distance to SUCCESS (GraphGPO)", fontsize=8)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    for ax in list(axes.flat)[len(methods):]:
        ax.set_visible(False)
    mappable = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    cbar = fig.colorbar(mappable, ax=axes.ravel().tolist(), fraction=0.025, pad=0.02)
    cbar.set_label("mean advantage along the edge / panel's largest |advantage|\n(red blamed, blue credited)",
                   fontsize=8)
    title = graph.title or f"group {graph.group}"
    fig.suptitle(f"{title}\n{graph.num_trajectories} rollouts, {graph.num_successes} successful, "
                 f"{len(graph.nodes)} nodes, {len(graph.edges)} distinct transitions (width ~ log count)",
                 fontsize=10)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_name(f"{stem.name}.{fmt}")
        fig.savefig(path, dpi=130 if fmt == "png" else None)
        paths.append(path)
    plt.close(fig)
    return paths


# ---------------------------------------------------------------------------------------------- HTML
def _hex(color) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in color[:3])


def graph_html(graph: GroupGraph) -> str:
    """A self-contained page: inline SVG of the graph, buttons to switch the method that colours the
    edges, and a tooltip with every method's advantage for the hovered edge or node. No external files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import Normalize

    cmap = advantage_cmap()
    norm = Normalize(-1.0, 1.0)
    limits = {m: graph.color_limit(m) for m in graph.methods}
    scale_x, scale_y, pad = 150.0, 46.0, 70.0
    xs = [n.x for n in graph.nodes] or [0.0]
    ys = [n.y for n in graph.nodes] or [0.0]
    width = (max(xs) - min(xs)) * scale_x + 2 * pad
    height = (max(ys) - min(ys)) * scale_y + 2 * pad

    def pos(n: GraphNode) -> tuple[float, float]:
        return (max(xs) - n.x) * scale_x + pad, (max(ys) - n.y) * scale_y + pad

    parts = []
    for k, e in enumerate(sorted(graph.edges, key=lambda e: abs(e.advantage[graph.methods[0]]))):
        colors = {m: _hex(cmap(norm(v / limits[m]))) for m, v in e.advantage.items()}
        a, b = graph.nodes[e.source], graph.nodes[e.target]
        info = {"from": a.label, "to": b.label, "count": e.count, "in successes": e.successes,
                "invalid": e.invalid, "d": f"{a.distance:g} -> {b.distance:g}",
                **{f"A {m}": round(v, 4) for m, v in e.advantage.items()}}
        (x1, y1), (x2, y2) = pos(a), pos(b)
        if e.is_loop:
            d = f"M {x1:.1f} {y1 - 5:.1f} a 9 9 0 1 1 0.1 0"
        else:
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2
            cx, cy = mx - 0.18 * (y2 - y1), my + 0.18 * (x2 - x1)  # same bend as the matplotlib arcs
            d = f"M {x1:.1f} {y1:.1f} Q {cx:.1f} {cy:.1f} {x2:.1f} {y2:.1f}"
        data = " ".join(f'data-c-{m}="{c}"' for m, c in colors.items())
        parts.append(f'<path class="edge" d="{d}" stroke="{colors[graph.methods[0]]}" '
                     f'stroke-width="{_edge_width(e.count):.2f}" fill="none" marker-end="url(#arrow)" {data} '
                     f"data-info='{html.escape(json.dumps(info), quote=True)}'/>")
    for n in graph.nodes:
        x, y = pos(n)
        info = html.escape(json.dumps({"state": n.label, "distance to SUCCESS": f"{n.distance:g}",
                                       "start": n.is_start}), quote=True)
        if n.key is None:
            parts.append(f'<g class="node" data-info=\'{info}\'><circle cx="{x:.1f}" cy="{y:.1f}" r="11" '
                         f'fill="gold" stroke="black" stroke-width="2"/><text x="{x:.1f}" y="{y + 26:.1f}" '
                         f'text-anchor="middle" font-weight="bold">SUCCESS</text></g>')
        else:
            fill, stroke = ("white", 2.5) if n.is_start else ("#8c8c8c", 1)
            label = f'<text x="{x:.1f}" y="{y + 20:.1f}" text-anchor="middle">start</text>' if n.is_start else ""
            parts.append(f'<g class="node" data-info=\'{info}\'><circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="{fill}" '
                         f'stroke="black" stroke-width="{stroke}"/>{label}</g>')
    axis = []
    for t in sorted({n.distance for n in graph.nodes}):
        x = (max(xs) - t) * scale_x + pad
        unreachable = graph.unreachable_distance is not None and t == graph.unreachable_distance
        name = "unreachable" if unreachable else f"d = {t:g}"
        axis.append(f'<text x="{x:.1f}" y="{height - 12:.1f}" text-anchor="middle" class="axis">{name}</text>')
    buttons = "".join(f'<button data-m="{m}" data-lim="{limits[m]:.3g}"{" class=on" if i == 0 else ""}>{m}</button>'
                      for i, m in enumerate(graph.methods))
    limit = limits[graph.methods[0]]
    stops = "".join(f'<stop offset="{k / 10:.1f}" stop-color="{_hex(cmap(k / 10))}"/>' for k in range(11))
    title = html.escape(graph.title or f"group {graph.group}")
    summary = (f"{graph.num_trajectories} rollouts, {graph.num_successes} successful, {len(graph.nodes)} nodes, "
               f"{len(graph.edges)} distinct transitions. Goal on the right; x = graph distance to SUCCESS.")
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 16px; color: #222; }}
button {{ margin-right: 6px; padding: 4px 10px; border: 1px solid #888; background: #f4f4f4; cursor: pointer; }}
button.on {{ background: #333; color: white; }}
.edge:hover {{ stroke-opacity: 0.6; }}
.axis {{ font-size: 11px; fill: #555; }}
svg text {{ font-size: 11px; }}
#tip {{ position: fixed; display: none; background: #fff; border: 1px solid #999; padding: 6px 8px;
       font-size: 12px; white-space: pre; pointer-events: none; box-shadow: 2px 2px 6px #0003; }}
</style></head><body>
<h3>{title}</h3><p>{html.escape(summary)} Edge colour: mean advantage of the steps along it under the selected
method (red blamed, grey about zero, blue credited; each method on its own scale, ± its largest |advantage|,
shown under the buttons). Width grows with the number of steps taken along the edge. Hover for details.</p>
<div>{buttons}</div>
<svg id="legend" width="320" height="34"><defs><linearGradient id="g">{stops}</linearGradient></defs>
<rect x="10" y="4" width="300" height="12" fill="url(#g)"/><text id="lo" x="10" y="30">-{limit:.3g}</text>
<text x="160" y="30" text-anchor="middle">0</text>
<text id="hi" x="310" y="30" text-anchor="end">+{limit:.3g}</text></svg>
<svg id="graph" width="{width:.0f}" height="{height:.0f}" xmlns="http://www.w3.org/2000/svg">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="16" refY="5" markerWidth="5" markerHeight="5" orient="auto">
<path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>
{chr(10).join(axis)}
{chr(10).join(parts)}
</svg><div id="tip"></div>
<script>
const tip = document.getElementById('tip');
document.querySelectorAll('button').forEach(b => b.onclick = () => {{
  document.querySelectorAll('button').forEach(o => o.classList.toggle('on', o === b));
  document.querySelectorAll('.edge').forEach(e => e.setAttribute('stroke', e.getAttribute('data-c-' + b.dataset.m)));
  document.getElementById('lo').textContent = '-' + b.dataset.lim;
  document.getElementById('hi').textContent = '+' + b.dataset.lim;
}});
document.querySelectorAll('[data-info]').forEach(el => {{
  el.addEventListener('mousemove', ev => {{
    const info = JSON.parse(el.getAttribute('data-info'));
    tip.textContent = Object.entries(info).map(([k, v]) => k + ': ' + v).join('\\n');
    tip.style.display = 'block'; tip.style.left = (ev.clientX + 14) + 'px'; tip.style.top = (ev.clientY + 10) + 'px';
  }});
  el.addEventListener('mouseleave', () => tip.style.display = 'none');
}});
</script></body></html>
"""


def write_html(graph: GroupGraph, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(graph_html(graph), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- CLI
def viz_main(argv: Sequence[str] | None = None) -> int:
    """``graphgpo viz RUN_DIR --task N``."""
    from graphgpo.analysis.diagnostics import METHODS, compute_method_outputs, credit_diagnostics
    from graphgpo.analysis.run_rollouts import collect_run_rollouts

    p = argparse.ArgumentParser(prog="graphgpo viz", description=(
        "Draw the state graph of one held-out task of a run: G fresh rollouts with the run's latest checkpoint "
        "(a random policy when the run has none), edges coloured by each method's advantage."))
    p.add_argument("run_dir")
    p.add_argument("--task", type=int, default=0, help="index of the run's evaluation task (default 0)")
    p.add_argument("--out", default=None, help="output directory (default RUN_DIR/viz)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--policy", default="auto", choices=["auto", "checkpoint", "random"])
    p.add_argument("--temperature", type=float, default=None, help="sampling temperature (default: the run's)")
    p.add_argument("--group-size", type=int, default=None, help="rollouts of the task (default: the run's G)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    a = p.parse_args(argv)
    methods = list(dict.fromkeys(["graphgpo", *a.methods]))
    if "grpo" not in methods:
        methods.append("grpo")  # the diagnostics compare against it
    runs = collect_run_rollouts(a.run_dir, [a.task], policy=a.policy, temperature=a.temperature, seed=a.seed,
                                group_size=a.group_size)
    batch = runs.result.batch
    outputs = compute_method_outputs(batch, methods, omega=runs.omega)
    cfg = runs.config
    policy = "random policy" if runs.policy_source == "random policy" else Path(runs.policy_source.split()[-1]).name
    title = (f"{cfg.env} {cfg.advantage.method} seed {cfg.seed}, evaluation task {a.task} (env seed "
             f"{runs.task_seeds[0]}), {policy}")
    graph = build_group_graph(batch, outputs, 0, labels=state_labels(runs.result.records), title=title)
    out = Path(a.out) if a.out else Path(a.run_dir) / "viz"
    stem = out / f"task{a.task}"
    paths = plot_group_graph(graph, stem, methods=a.methods)
    paths.append(write_html(graph, stem.with_name(stem.name + ".html")))
    diag = credit_diagnostics(batch, outputs)
    (stem.with_name(stem.name + "_diagnostics.json")).write_text(json.dumps(
        {"run_dir": str(a.run_dir), "task": a.task, "env_seed": runs.task_seeds[0], "policy": runs.policy_source,
         "omega": runs.omega, "success_rate": runs.result.stats["success_rate"], **diag.as_dict()}, indent=1))
    print(f"{title}: success {runs.result.stats['success_rate']:.2f} over {graph.num_trajectories} rollouts; "
          f"policy: {runs.policy_source}")
    if graph.num_successes == 0:
        print("No rollout of this task succeeded: every node has distance 1 and the graph has no SUCCESS sink.")
    print(diag.table())
    for path in paths:
        print(f"wrote {path}")
    return 0
