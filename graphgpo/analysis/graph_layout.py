"""Positions of a GroupGraph's nodes: distance to SUCCESS across, crossing-limiting order down."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graphgpo.analysis.graph import GroupGraph

MAX_COLUMN_HEIGHT = 9
"""Nodes stacked in one column before it is folded into sub-columns."""


def layout_graph(graph: GroupGraph) -> None:
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
