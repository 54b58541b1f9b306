"""Sokoban levels: the data model and the standard text notation.

Notation (one character per cell, one line per row)::

    #  wall            @  player          +  player on goal
    $  box             *  box on goal     .  goal
    (space)  floor     -  floor           _  floor

A collection file holds several levels separated by blank lines and/or comment lines starting with
``;`` (a comment on the line directly above a level, e.g. ``; 12``, becomes its name). Every level must have exactly
one player, as many boxes as goals (at least one), and walls that enclose the player's reachable area.
Errors are ``ValueError`` naming the file (or ``<string>``) and the line.

Coordinates are ``(row, col)`` with row 0 at the top.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

__all__ = ["SokobanLevel", "parse_level", "parse_levels", "load_levels", "MOVES", "BUNDLED_LEVELS"]

Cell = tuple[int, int]

# Move name -> (d_row, d_col).
MOVES: dict[str, Cell] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}

# A few small hand-made levels shipped with the package (levels_file=str(BUNDLED_LEVELS)).
BUNDLED_LEVELS = Path(__file__).parent / "data" / "tiny_levels.txt"

_FLOOR_CHARS = {" ", "-", "_"}
_LEVEL_CHARS = {"#", "@", "+", "$", "*", "."} | _FLOOR_CHARS


@dataclass(frozen=True)
class SokobanLevel:
    """A Sokoban position: fixed walls and goals plus the movable player and boxes.

    Cells outside the walls (padding of ragged rows) are neither walls nor reachable; renderers draw
    them as walls.
    """

    height: int
    width: int
    walls: frozenset[Cell]
    goals: frozenset[Cell]
    boxes: frozenset[Cell]
    player: Cell
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"level {self.name!r}" if self.name else "level"
        if self.height < 1 or self.width < 1:
            raise ValueError(f"{where}: empty grid ({self.height}x{self.width})")
        for label, cells in (("wall", self.walls), ("goal", self.goals), ("box", self.boxes),
                             ("player", {self.player})):
            for r, c in cells:
                if not (0 <= r < self.height and 0 <= c < self.width):
                    raise ValueError(f"{where}: {label} at {(r, c)} is outside the {self.height}x{self.width} grid")
        if self.player in self.walls:
            raise ValueError(f"{where}: player at {self.player} is on a wall")
        if self.boxes & self.walls or self.goals & self.walls:
            raise ValueError(f"{where}: a box or goal is on a wall")
        if self.player in self.boxes:
            raise ValueError(f"{where}: player at {self.player} is on a box")
        if not self.boxes:
            raise ValueError(f"{where}: no boxes")
        if len(self.boxes) != len(self.goals):
            raise ValueError(f"{where}: {len(self.boxes)} boxes but {len(self.goals)} goals")
        reach = self.playable
        leak = [cell for cell in reach if cell[0] in (0, self.height - 1) or cell[1] in (0, self.width - 1)]
        if leak:
            raise ValueError(f"{where}: not enclosed by walls (the player can reach the edge at {min(leak)})")
        stray = sorted((self.boxes | self.goals) - reach)
        if stray:
            raise ValueError(f"{where}: box or goal at {stray[0]} is outside the player's area")

    @cached_property
    def playable(self) -> frozenset[Cell]:
        """Non-wall cells connected to the player (ignoring boxes): the room's playable area (cached)."""
        return frozenset(self.reachable_cells())

    def reachable_cells(self) -> set[Cell]:
        """Non-wall cells connected to the player (ignoring boxes)."""
        seen = {self.player}
        stack = [self.player]
        while stack:
            r, c = stack.pop()
            for dr, dc in MOVES.values():
                nxt = (r + dr, c + dc)
                if nxt in seen or nxt in self.walls:
                    continue
                if not (0 <= nxt[0] < self.height and 0 <= nxt[1] < self.width):
                    continue
                seen.add(nxt)
                stack.append(nxt)
        return seen

    def to_text(self) -> str:
        """The level in standard notation (inverse of ``parse_level``; trailing spaces trimmed)."""
        rows = []
        for r in range(self.height):
            chars = []
            for c in range(self.width):
                cell = (r, c)
                if cell in self.walls:
                    chars.append("#")
                elif cell == self.player:
                    chars.append("+" if cell in self.goals else "@")
                elif cell in self.boxes:
                    chars.append("*" if cell in self.goals else "$")
                elif cell in self.goals:
                    chars.append(".")
                else:
                    chars.append(" ")
            rows.append("".join(chars).rstrip())
        return "\n".join(rows)


def parse_level(text: str, *, source: str = "<string>", first_line: int = 1, name: str = "") -> SokobanLevel:
    """Parse one level in standard notation.

    ``source`` and ``first_line`` only make error messages point at the right file and line. Leading and
    trailing blank lines are ignored; a blank line inside the level is an error (use ``parse_levels``
    for collections).
    """
    lines = text.split("\n")
    # Drop surrounding blank lines but keep line numbers right.
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    end = len(lines)
    while end > start and not lines[end - 1].strip():
        end -= 1
    if start == end:
        raise ValueError(f"{source}:{first_line}: no level found (empty text)")
    rows = [line.rstrip("\r") for line in lines[start:end]]
    walls, goals, boxes, players = set(), set(), set(), []
    for r, row in enumerate(rows):
        lineno = first_line + start + r
        if not row.strip():
            raise ValueError(f"{source}:{lineno}: blank line inside a level")
        for c, ch in enumerate(row):
            if ch not in _LEVEL_CHARS:
                raise ValueError(f"{source}:{lineno}: unknown character {ch!r} in column {c + 1} "
                                 "(expected one of # @ + $ * . space - _)")
            cell = (r, c)
            if ch == "#":
                walls.add(cell)
            if ch in "@+":
                players.append((cell, lineno))
            if ch in "$*":
                boxes.add(cell)
            if ch in ".+*":
                goals.add(cell)
    first, last = first_line + start, first_line + end - 1
    if len(players) != 1:
        where = ", ".join(f"line {ln}" for _, ln in players) or "none found"
        raise ValueError(f"{source}:{first}-{last}: a level needs exactly one player (@ or +), got "
                         f"{len(players)} ({where})")
    try:
        return SokobanLevel(height=len(rows), width=max(len(row) for row in rows), walls=frozenset(walls),
                            goals=frozenset(goals), boxes=frozenset(boxes), player=players[0][0], name=name)
    except ValueError as err:
        raise ValueError(f"{source}:{first}-{last}: {err}") from None


def _is_level_line(line: str) -> bool:
    return bool(line.strip()) and not line.lstrip().startswith(";")


def parse_levels(text: str, *, source: str = "<string>") -> list[SokobanLevel]:
    """Parse a collection: levels separated by blank lines or ``;`` comment lines."""
    levels: list[SokobanLevel] = []
    block: list[str] = []
    block_start = 0
    pending_name = ""

    def flush() -> None:
        nonlocal block, pending_name
        if block:
            name = pending_name or f"{Path(source).name}#{len(levels) + 1}"
            levels.append(parse_level("\n".join(block), source=source, first_line=block_start, name=name))
            pending_name = ""
        block = []

    for lineno, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if _is_level_line(line):
            if not block:
                block_start = lineno
            block.append(line)
            continue
        flush()
        # A comment directly above a level names it; a blank line in between cancels that.
        pending_name = line.lstrip()[1:].strip() if line.lstrip().startswith(";") else ""
    flush()
    if not levels:
        raise ValueError(f"{source}: no levels found")
    return levels


def load_levels(path: str | os.PathLike) -> list[SokobanLevel]:
    """Read a level or a collection file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read level file ({err.strerror})") from None
    return parse_levels(text, source=str(path))
