"""ALFWorld: the state key (pure functions, usable anywhere) and a seam to the real environment.

State key. ALFWorld's text repeats across different world states ("Nothing happens.", "You arrive at
cabinet 1. The cabinet 1 is closed." whether or not you hold the apple), so GraphGPO's recipe keys a
state on the observation *plus* what the agent has done that the text does not show. Here:

    key = (observation, location, held item, item states, moves, sorted admissible commands)

tracked from the (action, observation) stream by ``AlfWorldTracker``:

* location: the receptacle of the last successful ``go to X`` ("You arrive at ...");
* held item: set by "You pick up the X from the Y.", cleared by "You put/move the X in/on/to the Y.";
* item states: ``open``/``closed`` (open/close), ``hot``/``cool``/``clean`` (heat/cool/clean),
  ``on``/``off`` (use/toggle a lamp), ``sliced``;
* moves: where the agent has put each object ((object, receptacle) pairs), i.e. the object placements
  that differ from the initial layout.

Only the game's confirmations change the tracker, so a failed command ("Nothing happens.") changes
nothing. ``alfworld_state_key(observation, tracker, admissible)`` is a pure function of its inputs.

Environment seam. ``AlfWorldEnv`` plays ALFWorld's TextWorld games (the ``alfworld`` package and its
data). It cannot be exercised here (no data download); to use it::

    pip install alfworld          # pulls textworld; see https://github.com/alfworld/alfworld
    alfworld-download             # game files into $ALFWORLD_DATA (~/.cache/alfworld)
    make("alfworld", game_files=[".../trial_.../game.tw-pddl", ...])
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

__all__ = ["AlfWorldTracker", "track", "alfworld_state_key", "AlfWorldEnv"]

_OBJ = r"([a-z][a-z ]*? \d+)"  # ALFWorld names: "apple 1", "dining table 2", "cabinet 10"

_PATTERNS = [
    ("arrive", re.compile(r"^you arrive at (?:loc \d+|" + _OBJ + r")\b")),
    ("pick", re.compile(r"^you pick up the " + _OBJ + r" from the " + _OBJ)),
    ("put", re.compile(r"^you (?:put|move) the " + _OBJ + r" (?:in|on|in/on|to) the " + _OBJ)),
    ("open", re.compile(r"^you open the " + _OBJ)),
    ("close", re.compile(r"^you close the " + _OBJ)),
    ("hot", re.compile(r"^you heat the " + _OBJ + r" using")),
    ("cool", re.compile(r"^you cool the " + _OBJ + r" using")),
    ("clean", re.compile(r"^you clean the " + _OBJ + r" using")),
    ("sliced", re.compile(r"^you slice the " + _OBJ)),
    ("on", re.compile(r"^you turn on the " + _OBJ)),
    ("off", re.compile(r"^you turn off the " + _OBJ)),
]
_GO_TO = re.compile(r"^go to " + _OBJ + r"$")


@dataclass(frozen=True)
class AlfWorldTracker:
    """What the agent has done that the observation text may not show (immutable; see ``track``)."""

    location: str = "middle of room"
    held: str | None = None
    item_states: tuple[tuple[str, str], ...] = ()
    """Sorted (object, state) pairs."""
    moves: tuple[tuple[str, str], ...] = ()
    """Sorted (object, receptacle) pairs: where the agent put things."""


def _set(pairs: tuple[tuple[str, str], ...], key: str, value: str | None) -> tuple[tuple[str, str], ...]:
    d = dict(pairs)
    if value is None:
        d.pop(key, None)
    else:
        d[key] = value
    return tuple(sorted(d.items()))


def track(tracker: AlfWorldTracker, action: str, observation: str) -> AlfWorldTracker:
    """The tracker after ``action`` produced ``observation`` (first sentence decides)."""
    text = " ".join(observation.strip().lower().split())
    act = " ".join(action.strip().lower().split())
    for kind, pattern in _PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        if kind == "arrive":
            # Older ALFWorld prints "loc N": take the receptacle from the command instead.
            target = m.group(1) or (_GO_TO.match(act).group(1) if _GO_TO.match(act) else None)
            return replace(tracker, location=target or tracker.location)
        if kind == "pick":
            return replace(tracker, held=m.group(1), moves=_set(tracker.moves, m.group(1), None))
        if kind == "put":
            return replace(tracker, held=None, moves=_set(tracker.moves, m.group(1), m.group(2)))
        if kind in ("open", "close"):
            state = "open" if kind == "open" else "closed"
            return replace(tracker, item_states=_set(tracker.item_states, m.group(1), state))
        return replace(tracker, item_states=_set(tracker.item_states, m.group(1), kind))
    return tracker


def alfworld_state_key(observation: str, tracker: AlfWorldTracker,
                       admissible_commands: Sequence[str]) -> tuple:
    """Exact state identity: observation + tracked location, held item, item states, moves +
    sorted admissible commands."""
    return (observation.strip(), tracker.location, tracker.held or "", tracker.item_states, tracker.moves,
            tuple(sorted(admissible_commands)))


ALFWORLD_TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
                       "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place")
"""ALFWorld's six task types; a game's folder name starts with its type (e.g. pick_and_place_simple-Book-...)."""


def alfworld_task_type(game_file: str) -> str:
    """Task type of an ALFWorld game from its path (.../<type>-<object>-...-<receptacle>/trial_.../game.tw-pddl)."""
    for part in reversed(os.path.normpath(game_file).split(os.sep)):
        for task_type in ALFWORLD_TASK_TYPES:
            if part.startswith(task_type + "-"):
                return task_type
    raise ValueError(f"game file {game_file!r}: no ALFWorld task type ({', '.join(ALFWORLD_TASK_TYPES)}) "
                     "in its folder names")


@dataclass
class AlfWorldConfig:
    """Options of the ALFWorld seam."""

    game_files: Sequence[str] | None = None
    """ALFWorld game files (game.tw-pddl); default: all under $ALFWORLD_DATA/json_2.1.1/train."""
    data_dir: str | None = None
    """Root of the downloaded data (default $ALFWORLD_DATA or ~/.cache/alfworld)."""
    extra: dict = field(default_factory=dict)


_INSTALL_HELP = ("ALFWorld is not available: install it with `pip install alfworld` and download its games "
                 "with `alfworld-download` (sets up $ALFWORLD_DATA, ~/.cache/alfworld by default); then pass "
                 "game_files=[...game.tw-pddl] or data_dir=. The GraphGPO state key itself "
                 "(graphgpo.envs.alfworld.alfworld_state_key) needs neither.")


class AlfWorldEnv:
    """One ALFWorld game per reset (``seed % len(game_files)``), played through TextWorld.

    Not exercised in this repository's tests (the data cannot be downloaded here).
    """

    def __init__(self, config: AlfWorldConfig | None = None, **options: Any):
        self.config = config or AlfWorldConfig(**options)
        try:
            import textworld
            from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
        except ImportError as err:
            raise ImportError(_INSTALL_HELP) from err
        self._tw, self._wrappers = textworld, [AlfredDemangler(), AlfredInfos]
        files = list(self.config.game_files or [])
        if not files:
            root = self.config.data_dir or os.environ.get("ALFWORLD_DATA") or os.path.expanduser("~/.cache/alfworld")
            files = sorted(glob.glob(os.path.join(root, "json_2.1.1", "train", "*", "*", "game.tw-pddl")))
        if not files:
            raise ValueError(f"game_files: no ALFWorld games found. {_INSTALL_HELP}")
        self.game_files = files
        self._infos = textworld.EnvInfos(won=True, admissible_commands=True)
        self._env = None
        self._state = None
        self._tracker = AlfWorldTracker()
        self._obs = ""

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        path = self.game_files[(seed or 0) % len(self.game_files)]
        self.close()
        self._env = self._tw.start(path, request_infos=self._infos, wrappers=self._wrappers)
        self._state = self._env.reset()
        self._tracker = AlfWorldTracker()
        self._obs = self._state.feedback.strip()
        task = self._obs.split("Your task is to:")[-1].strip() if "Your task is to:" in self._obs else ""
        info = self._info(valid=True)
        info["task"] = task
        info["task_type"] = alfworld_task_type(path)
        return self._obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        admissible = self._state.admissible_commands or []
        valid = action.strip() in admissible
        self._state, _, _ = self._env.step(action.strip())
        self._obs = self._state.feedback.strip()
        self._tracker = track(self._tracker, action, self._obs)
        won = bool(self._state.won)
        return self._obs, (10.0 if won else 0.0), won, False, self._info(valid=valid)

    def _info(self, *, valid: bool) -> dict:
        admissible = [c for c in (self._state.admissible_commands or []) if c != "help"]
        return {"won": bool(self._state.won), "is_action_valid": valid, "admissible_actions": admissible,
                "state_key": alfworld_state_key(self._obs, self._tracker, admissible)}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
