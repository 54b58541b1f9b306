"""A GroupGraph as a self-contained interactive HTML page (templates/graph.html): inline SVG, buttons to
switch the method that colours the edges, hover tooltips. No external files, no CDN."""

from __future__ import annotations

import html
import json
from pathlib import Path
from string import Template

from graphgpo.analysis.graph import GraphNode, GroupGraph
from graphgpo.analysis.graph_plot import advantage_cmap, edge_width

__all__ = ["graph_html", "write_html"]

TEMPLATE = Template((Path(__file__).parent / "templates" / "graph.html").read_text(encoding="utf-8"))


def _hex(color) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in color[:3])


def graph_html(graph: GroupGraph) -> str:
    """A self-contained page: inline SVG of the graph, buttons to switch the method that colours the
    edges, and a tooltip with every method's advantage for the hovered edge or node. No external files."""
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
                     f'stroke-width="{edge_width(e.count):.2f}" fill="none" marker-end="url(#arrow)" {data} '
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
    return TEMPLATE.substitute(
        title=title, summary=html.escape(summary), buttons=buttons, stops=stops, limit=f"{limit:.3g}",
        width=f"{width:.0f}", height=f"{height:.0f}", axis="\n".join(axis), parts="\n".join(parts))


def write_html(graph: GroupGraph, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(graph_html(graph), encoding="utf-8")
    return path
