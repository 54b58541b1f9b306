"""Drawing a GroupGraph with matplotlib: one panel per method, edges coloured by mean advantage.

Blue = credited, grey = about zero, red = blamed, each panel scaled to its own largest |advantage| (printed
in the panel title), since the methods' scales differ; edge width grows with how often the transition was
taken; self-loops (no-ops) are small circles above their node; the goal is on the right. Figures are
built with ``matplotlib.figure.Figure`` (no pyplot state, no backend switch: works headless and in
notebooks alike).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from graphgpo.analysis.graph import SINK, GroupGraph

__all__ = ["advantage_cmap", "edge_width", "plot_group_graph"]


def advantage_cmap():
    """Diverging red (blamed) - grey (about zero) - blue (credited); grey stays visible on white."""
    from matplotlib.colors import LinearSegmentedColormap

    return LinearSegmentedColormap.from_list("advantage", ["#b2182b", "#f4a582", "#bdbdbd", "#92c5de", "#2166ac"])


def edge_width(count: int) -> float:
    return 1.0 + 1.4 * math.log2(count)


def plot_group_graph(graph: GroupGraph, path_stem: str | Path, *, methods: Sequence[str] | None = None,
                     formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """One panel per method; writes ``path_stem.<format>`` for each format; returns the paths."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
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
    fig = Figure(figsize=(panel_w * cols, panel_h * rows + 0.9), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    loop_r = 0.18
    for ax, method in zip(axes.flat, methods):
        limit = graph.color_limit(method)
        for e in sorted(graph.edges, key=lambda e: abs(e.advantage[method])):  # strongest on top
            color = cmap(norm(e.advantage[method] / limit))
            a, b = graph.nodes[e.source], graph.nodes[e.target]
            if e.is_loop:
                ax.add_patch(Circle((a.x, a.y + loop_r), loop_r, fill=False, ec=color, lw=edge_width(e.count),
                                    zorder=2))
                continue
            ax.add_patch(FancyArrowPatch((a.x, a.y), (b.x, b.y), connectionstyle="arc3,rad=0.18", arrowstyle="-|>",
                                         mutation_scale=9, color=color, lw=edge_width(e.count), shrinkA=6, shrinkB=6,
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
    mappable = ScalarMappable(norm=norm, cmap=cmap)
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
    return paths
