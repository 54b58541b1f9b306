"""Text Sokoban with gym-sokoban's rules and rewards.

``SokobanEnv(SokobanConfig(...))`` or ``graphgpo.envs.make("sokoban", **fields)``.

Rooms come from (first match wins): ``level`` (a ``SokobanLevel`` or text in standard notation),
``levels_file`` (a collection; ``reset(seed)`` plays level ``seed % count``), or a generator:
``generator="reverse_play"`` (gym-sokoban style, ``dim_room``/``num_boxes``/``search_depth``) or
``generator="simple"`` (the embedded default's sampler: ``interior``/``reverse_moves``/``pull_prob``).
A generated room depends only on the reset seed, so G copies reset with one seed play the same room.

Actions are the words ``up``, ``down``, ``left``, ``right`` (a push when a box is ahead). Anything else
is not executed: the state stays, the step still costs the step penalty and ``is_action_valid`` is
False. Rewards as gym-sokoban: -0.1 per step, +1 for a box pushed onto a target, -1 for a box pushed
off one, +10 when every box is on a target. ``terminated`` and ``info["won"]`` come from the solved
flag. With ``max_steps`` set, reaching it without solving sets ``truncated``.

Observations: ``render="full"`` is the whole grid, one row per line, under a legend (for LLMs);
``render="compact"`` drops the outer ring of walls and writes symbols space-separated, rows joined by
" ; " (for tiny word-level models). Symbols in both: ``#`` wall, ``_`` floor, ``O`` target, ``X`` box,
``√`` box on target, ``P`` player, ``S`` player on target.

``info["state_key"]`` is ``"P r,c | B r,c r,c ..."``: player and sorted boxes, the exact position
(walls and targets are fixed per room).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from .levels import MOVES, Cell, SokobanLevel, load_levels, parse_level
from .sokoban_generator import ReversePlayConfig, SimpleRoomConfig, generate_room, sample_simple_room

__all__ = ["SokobanConfig", "SokobanEnv", "ACTIONS", "LEGEND", "render_grid", "render_compact"]

ACTIONS = ("up", "down", "left", "right")
SYMBOLS = {"wall": "#", "floor": "_", "target": "O", "box": "X", "box_on_target": "√", "player": "P",
           "player_on_target": "S"}
LEGEND = ("Symbols: # wall, _ floor, O target, X box, √ box on target, P you (the player), "
          "S you on a target.")

STEP_PENALTY = -0.1
BOX_ON_TARGET = 1.0
BOX_OFF_TARGET = -1.0
SOLVED_REWARD = 10.0


@dataclass
class SokobanConfig:
    """Options of one Sokoban environment (``make("sokoban", **fields)``)."""

    level: SokobanLevel | str | None = None
    """A fixed room (object or standard-notation text); overrides the generator."""
    levels_file: str | None = None
    """Collection file; reset(seed) plays level seed % count."""
    generator: str = "reverse_play"
    """"reverse_play" (gym-sokoban style) or "simple" (embedded default sampler)."""
    dim_room: tuple[int, int] = (6, 6)
    """reverse_play: grid size including walls (verl-agent's Sokoban recipe uses 6x6)."""
    num_boxes: int = 1
    """reverse_play: boxes per room."""
    search_depth: int = 30
    """reverse_play: reverse moves explored."""
    interior: tuple[int, int] = (5, 5)
    """simple: open floor size inside the walls."""
    reverse_moves: int = 6
    """simple: random reverse moves from the solved position."""
    pull_prob: float = 0.8
    """simple: chance of pulling the box when it is behind the player."""
    render: str = "full"
    """"full" (grid + legend) or "compact" (interior, space-separated, rows joined by " ; ")."""
    max_steps: int | None = None
    """Truncate after this many steps (None: only the vector manager's limit applies)."""
    seed: int = 0
    """Seeds the stream of rooms used when reset() gets no seed."""

    def __post_init__(self) -> None:
        if self.generator not in ("reverse_play", "simple"):
            raise ValueError(f"generator: expected 'reverse_play' or 'simple', got {self.generator!r}")
        if self.render not in ("full", "compact"):
            raise ValueError(f"render: expected 'full' or 'compact', got {self.render!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps: must be >= 1 or None, got {self.max_steps}")
        self.dim_room = tuple(self.dim_room)
        self.interior = tuple(self.interior)


def _base_rows(level: SokobanLevel) -> list[list[str]]:
    """Symbols of the fixed part of the room: walls (and cells outside them), targets, floor."""
    inside = level.playable
    rows = []
    for r in range(level.height):
        row = []
        for c in range(level.width):
            cell = (r, c)
            if cell in level.walls or cell not in inside:
                row.append(SYMBOLS["wall"])
            else:
                row.append(SYMBOLS["target" if cell in level.goals else "floor"])
        rows.append(row)
    return rows


def _symbol_rows(level: SokobanLevel, player: Cell, boxes: frozenset[Cell],
                 base: list[list[str]] | None = None) -> list[list[str]]:
    rows = [list(row) for row in (base or _base_rows(level))]
    for r, c in boxes:
        rows[r][c] = SYMBOLS["box_on_target" if (r, c) in level.goals else "box"]
    r, c = player
    rows[r][c] = SYMBOLS["player_on_target" if player in level.goals else "player"]
    return rows


def render_grid(level: SokobanLevel, player: Cell, boxes: frozenset[Cell],
                base: list[list[str]] | None = None) -> str:
    """Full grid, one row per line (cells outside the walls drawn as walls)."""
    return "\n".join("".join(row) for row in _symbol_rows(level, player, boxes, base))


def render_compact(level: SokobanLevel, player: Cell, boxes: frozenset[Cell],
                   base: list[list[str]] | None = None) -> str:
    """Interior only (outer ring dropped), symbols space-separated, rows joined by " ; "."""
    rows = _symbol_rows(level, player, boxes, base)
    inner = [row[1:-1] for row in rows[1:-1]]
    if not inner or not inner[0]:
        inner = rows  # a level too thin to have an interior: keep everything
    return " ; ".join(" ".join(row) for row in inner)


class SokobanEnv:
    """One Sokoban game; Gymnasium-style ``reset``/``step`` on action words."""

    actions = ACTIONS

    def __init__(self, config: SokobanConfig | None = None, **options: Any):
        if config is not None and options:
            raise TypeError("pass either a SokobanConfig or keyword options, not both")
        self.config = config or SokobanConfig(**options)
        cfg = self.config
        self._fixed: list[SokobanLevel] | None = None
        if cfg.level is not None:
            self._fixed = [cfg.level if isinstance(cfg.level, SokobanLevel) else parse_level(cfg.level)]
        elif cfg.levels_file is not None:
            self._fixed = load_levels(cfg.levels_file)
        elif cfg.generator == "reverse_play":
            self._reverse_cfg = ReversePlayConfig(dim_room=cfg.dim_room, num_boxes=cfg.num_boxes,
                                                  search_depth=cfg.search_depth)
        else:
            self._simple_cfg = SimpleRoomConfig(interior=cfg.interior, reverse_moves=cfg.reverse_moves,
                                                pull_prob=cfg.pull_prob)
        for number, level in enumerate(self._fixed or (), start=1):
            if level.boxes == level.goals:  # its first move would "solve" it and pay the +10
                where = f"{cfg.levels_file}, level {number}" if cfg.levels_file is not None else "level"
                raise ValueError(f"{where}{f' {level.name!r}' if level.name else ''}: already solved (every box "
                                 f"is on a target); a task needs a box off its target")
        self._seed_stream = random.Random(cfg.seed)
        self.level: SokobanLevel | None = None
        self._base: list[list[str]] | None = None  # symbols of the fixed room, overlaid when rendering
        self.player: Cell = (0, 0)
        self.boxes: frozenset[Cell] = frozenset()
        self.num_steps = 0
        self.done = True

    # -- room selection ------------------------------------------------------------------------------
    def room_for_seed(self, seed: int) -> SokobanLevel:
        """The room that ``reset(seed)`` plays."""
        if self._fixed is not None:
            return self._fixed[seed % len(self._fixed)]
        if self.config.generator == "reverse_play":
            return generate_room(seed, self._reverse_cfg)
        return sample_simple_room(seed, self._simple_cfg)

    # -- protocol ------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        if seed is None:
            seed = self._seed_stream.randrange(2**31)
        self.level = self.room_for_seed(int(seed))
        self._base = _base_rows(self.level)
        self.player = self.level.player
        self.boxes = self.level.boxes
        self.num_steps = 0
        self.done = False
        info = self._info(won=self.solved, valid=True)
        info["task"] = "Push every box onto a target."
        return self.observation(), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self.level is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("episode is over: call reset()")
        move = action.strip().lower() if isinstance(action, str) else None
        valid = move in MOVES
        reward = STEP_PENALTY
        if valid:
            reward += self._apply(MOVES[move])
        self.num_steps += 1
        won = self.solved
        if won:
            reward += SOLVED_REWARD
        truncated = (not won) and self.config.max_steps is not None and self.num_steps >= self.config.max_steps
        self.done = won or truncated
        return self.observation(), reward, won, truncated, self._info(won=won, valid=valid)

    # -- rules ---------------------------------------------------------------------------------------
    def _apply(self, d: Cell) -> float:
        """Move/push; returns the box-on/off-target part of the reward."""
        dest = (self.player[0] + d[0], self.player[1] + d[1])
        if dest in self.level.walls or not self._inside(dest):
            return 0.0
        if dest not in self.boxes:
            self.player = dest
            return 0.0
        beyond = (dest[0] + d[0], dest[1] + d[1])
        if beyond in self.level.walls or beyond in self.boxes or not self._inside(beyond):
            return 0.0  # a box cannot be pushed into a wall or another box
        self.boxes = (self.boxes - {dest}) | {beyond}
        self.player = dest
        goals = self.level.goals
        return (BOX_ON_TARGET if beyond in goals else 0.0) + (BOX_OFF_TARGET if dest in goals else 0.0)

    def _inside(self, cell: Cell) -> bool:
        return 0 <= cell[0] < self.level.height and 0 <= cell[1] < self.level.width

    @property
    def solved(self) -> bool:
        return self.level is not None and self.boxes == self.level.goals

    @property
    def state_key(self) -> str:
        boxes = " ".join(f"{r},{c}" for r, c in sorted(self.boxes))
        return f"P {self.player[0]},{self.player[1]} | B {boxes}"

    def observation(self) -> str:
        if self.config.render == "compact":
            return render_compact(self.level, self.player, self.boxes, self._base)
        return f"{LEGEND}\n{render_grid(self.level, self.player, self.boxes, self._base)}"

    def _info(self, *, won: bool, valid: bool) -> dict:
        return {"won": won, "is_action_valid": valid, "state_key": self.state_key,
                "admissible_actions": list(ACTIONS), "boxes_on_target": len(self.boxes & self.level.goals)}

    def vocabulary(self, seeds=()) -> list[str]:
        """Every symbol an observation can show (any room), for word-level tokenizers."""
        return sorted({*SYMBOLS.values(), ";"})

    def close(self) -> None:
        pass
