"""Sokoban room generation by reverse play, plus a breadth-first solver.

Two generators, both deterministic given the seed (``random.Random``, identical on every platform):

* ``generate_room`` follows the scheme of the standard gym-sokoban generator: carve a room topology by
  a random walk that stamps small floor patterns, put the boxes on their targets and the player on a
  free cell, then search the reverse game (the player walks and may *pull* a box) depth-first up to
  ``search_depth`` moves and keep the reachable position that scores highest, where
  score = (number of times the pulled box changes) x (sum of box-to-own-target Manhattan distances).
  A position reached by pulls is solvable by pushing the same boxes back.
* ``sample_simple_room`` is the tiny sampler the embedded CPU default uses (docs: EMBEDDED_DEFAULT.md):
  an open ``interior`` room, one box on its target, a random player, ``reverse_moves`` random reverse
  moves, each pulling the box with probability ``pull_prob`` when the box is right behind the player;
  rooms whose box ends on the target are rejected and redrawn.

``shortest_solution`` is an independent forward breadth-first solver used to check solvability and to
measure optimal solution lengths.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass

from .levels import MOVES, Cell, SokobanLevel

__all__ = [
    "RoomGenerationError",
    "ReversePlayConfig",
    "SimpleRoomConfig",
    "generate_room",
    "sample_simple_room",
    "shortest_solution",
]

_DIRS = list(MOVES.values())

# Floor patterns stamped around the random walker (3x3 masks centred on the walker), as in the
# standard generator: a single cell, bars, an L and a full block, chosen uniformly.
_MASKS = [
    ((0, 0, 0), (1, 1, 1), (0, 0, 0)),
    ((0, 1, 0), (0, 1, 0), (0, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (0, 1, 0)),
    ((0, 0, 0), (1, 1, 0), (1, 1, 0)),
    ((0, 0, 0), (0, 1, 1), (0, 1, 0)),
]


class RoomGenerationError(RuntimeError):
    """No acceptable room after the configured number of tries."""


@dataclass(frozen=True)
class ReversePlayConfig:
    """Options of the gym-sokoban style generator."""

    dim_room: tuple[int, int] = (6, 6)
    """Grid size (rows, cols) including the outer wall ring."""
    num_boxes: int = 1
    """Boxes (and targets) per room."""
    search_depth: int = 30
    """Maximum number of reverse moves explored from the solved position."""
    num_steps: int = 25
    """Length of the random walk that carves the room topology."""
    p_change_directions: float = 0.35
    """Probability that the topology walker turns at each step."""
    tries: int = 4
    """Rooms drawn before giving up when every candidate scores 0 (no box moved)."""
    max_states: int = 300_000
    """Cap on positions explored by the reverse search (bounds time on big rooms)."""

    def __post_init__(self) -> None:
        h, w = self.dim_room
        if h < 3 or w < 3:
            raise ValueError(f"dim_room: need at least 3x3 including walls, got {self.dim_room}")
        if (h - 2) * (w - 2) < self.num_boxes + 1:
            raise ValueError(f"dim_room: {self.dim_room} has no room for {self.num_boxes} boxes and a player")
        if self.num_boxes < 1:
            raise ValueError(f"num_boxes: must be >= 1, got {self.num_boxes}")
        if self.search_depth < 1:
            raise ValueError(f"search_depth: must be >= 1, got {self.search_depth}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps: must be >= 1, got {self.num_steps}")
        if not 0.0 <= self.p_change_directions <= 1.0:
            raise ValueError(f"p_change_directions: must be in [0, 1], got {self.p_change_directions}")
        if self.tries < 1:
            raise ValueError(f"tries: must be >= 1, got {self.tries}")


@dataclass(frozen=True)
class SimpleRoomConfig:
    """Options of the tiny reverse-play sampler (the embedded CPU default)."""

    interior: tuple[int, int] = (5, 5)
    """Open floor area (rows, cols) inside one ring of walls."""
    reverse_moves: int = 6
    """Random reverse moves applied from the solved position."""
    pull_prob: float = 0.8
    """Probability of pulling the box along when it is right behind the player."""
    max_tries: int = 10_000
    """Redraws allowed when the box ends on its target."""

    def __post_init__(self) -> None:
        h, w = self.interior
        if h < 1 or w < 1 or h * w < 3:
            raise ValueError(f"interior: need at least 3 floor cells, got {self.interior}")
        if self.reverse_moves < 1:
            raise ValueError(f"reverse_moves: must be >= 1, got {self.reverse_moves}")
        if not 0.0 < self.pull_prob <= 1.0:
            raise ValueError(f"pull_prob: must be in (0, 1], got {self.pull_prob}")


def _add(a: Cell, b: Cell) -> Cell:
    return (a[0] + b[0], a[1] + b[1])


def _sub(a: Cell, b: Cell) -> Cell:
    return (a[0] - b[0], a[1] - b[1])


def _walls_around(h: int, w: int, floor: set[Cell]) -> frozenset[Cell]:
    return frozenset((r, c) for r in range(h) for c in range(w) if (r, c) not in floor)


def _carve_topology(rng: random.Random, cfg: ReversePlayConfig) -> set[Cell]:
    h, w = cfg.dim_room
    pos = (rng.randrange(1, h - 1), rng.randrange(1, w - 1))
    direction = rng.choice(_DIRS)
    floor: set[Cell] = set()
    for _ in range(cfg.num_steps):
        if rng.random() < cfg.p_change_directions:
            direction = rng.choice(_DIRS)
        nxt = _add(pos, direction)
        # Keep the walker inside the wall ring.
        pos = (min(max(nxt[0], 1), h - 2), min(max(nxt[1], 1), w - 2))
        mask = rng.choice(_MASKS)
        for i in range(3):
            for j in range(3):
                r, c = pos[0] + i - 1, pos[1] + j - 1
                if mask[i][j] and 1 <= r <= h - 2 and 1 <= c <= w - 2:
                    floor.add((r, c))
    floor.add(pos)
    return floor


def _reverse_search(floor: set[Cell], player: Cell, targets: tuple[Cell, ...], cfg: ReversePlayConfig):
    """Depth-first search of the reverse game; returns (best score, player, boxes in target order)."""
    best = (0, player, targets)
    start = (player, targets, 0, -1, 0)  # player, boxes (box i started on targets[i]), depth, last pulled, swaps
    seen = {(player, frozenset(targets))}
    stack = [start]
    while stack and len(seen) < cfg.max_states:
        p, boxes, depth, last, swaps = stack.pop()
        displacement = sum(abs(b[0] - t[0]) + abs(b[1] - t[1]) for b, t in zip(boxes, targets))
        score = swaps * displacement
        if score > best[0]:
            best = (score, p, boxes)
        if depth == cfg.search_depth:
            continue
        for d in _DIRS:
            dest = _add(p, d)
            if dest not in floor or dest in boxes:
                continue
            # Plain walk.
            walk = (dest, boxes, depth + 1, last, swaps)
            children = [walk]
            behind = _sub(p, d)
            if behind in boxes:
                i = boxes.index(behind)
                pulled = boxes[:i] + (p,) + boxes[i + 1:]
                children.append((dest, pulled, depth + 1, i, swaps + (1 if i != last else 0)))
            for child in children:
                key = (child[0], frozenset(child[1]))
                if key not in seen:
                    seen.add(key)
                    stack.append(child)
    return best


def generate_room(seed: int, config: ReversePlayConfig | None = None) -> SokobanLevel:
    """Generate one solvable room; the same seed and config always give the same room."""
    cfg = config or ReversePlayConfig()
    rng = random.Random(seed)
    h, w = cfg.dim_room
    for _ in range(cfg.tries):
        floor = _carve_topology(rng, cfg)
        if len(floor) < cfg.num_boxes + 1:
            continue
        cells = sorted(floor)
        chosen = rng.sample(cells, cfg.num_boxes + 1)
        player, targets = chosen[0], tuple(chosen[1:])
        score, player, boxes = _reverse_search(floor, player, targets, cfg)
        if score > 0:
            return SokobanLevel(height=h, width=w, walls=_walls_around(h, w, floor), goals=frozenset(targets),
                                boxes=frozenset(boxes), player=player, name=f"generated-{seed}")
    raise RoomGenerationError(f"seed {seed}: no room with a moved box after {cfg.tries} tries ({cfg})")


def sample_simple_room(seed: int, config: SimpleRoomConfig | None = None) -> SokobanLevel:
    """Draw one room from the embedded default's distribution (one box, open interior)."""
    cfg = config or SimpleRoomConfig()
    rng = random.Random(seed)
    ih, iw = cfg.interior
    h, w = ih + 2, iw + 2
    floor = {(r, c) for r in range(1, ih + 1) for c in range(1, iw + 1)}
    cells = sorted(floor)
    for _ in range(cfg.max_tries):
        target, player = rng.sample(cells, 2)
        box = target
        for _ in range(cfg.reverse_moves):
            d = rng.choice(_DIRS)
            dest = _add(player, d)
            if dest not in floor or dest == box:
                continue  # blocked: the move is spent without effect
            if _sub(player, d) == box and rng.random() < cfg.pull_prob:
                box = player
            player = dest
        if box != target:
            return SokobanLevel(height=h, width=w, walls=_walls_around(h, w, floor), goals=frozenset({target}),
                                boxes=frozenset({box}), player=player, name=f"simple-{seed}")
    raise RoomGenerationError(f"seed {seed}: box stayed on its target in {cfg.max_tries} draws ({cfg})")


def shortest_solution(level: SokobanLevel, max_states: int = 1_000_000) -> list[str] | None:
    """Fewest-moves solution (list of move names) by forward BFS; None if unsolvable within the cap."""
    goals = level.goals
    start = (level.player, frozenset(level.boxes))
    if start[1] == goals:
        return []
    parent: dict = {start: None}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        p, boxes = state
        for name, d in MOVES.items():
            dest = _add(p, d)
            if dest in level.walls:
                continue
            new_boxes = boxes
            if dest in boxes:
                beyond = _add(dest, d)
                if beyond in level.walls or beyond in boxes:
                    continue
                new_boxes = (boxes - {dest}) | {beyond}
            nxt = (dest, new_boxes)
            if nxt in parent:
                continue
            parent[nxt] = (state, name)
            if new_boxes == goals:
                moves = []
                node = nxt
                while parent[node] is not None:
                    node, move = parent[node]
                    moves.append(move)
                return moves[::-1]
            if len(parent) >= max_states:
                return None
            queue.append(nxt)
    return None
