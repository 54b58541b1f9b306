"""ALFWorld (Shridhar et al., ICLR 2021): household tasks as text games, played offline from its game files.

    env = graphgpo.envs.make("alfworld", split="train")          # 3553 games; valid_seen 140, valid_unseen 134
    obs, info = env.reset(seed=17)                                 # game 17 of the sorted split, every time
    obs, reward, terminated, truncated, info = env.step(info["admissible_actions"][0])

Data: ALFWorld's text games (``json_2.1.1/<split>/<task folder>/<trial>/game.tw-pddl``, the layout that
``alfworld-download`` writes) under ``data_dir``, by default ``$ALFWORLD_DATA``, else ``~/.cache/alfworld``.
``task_types`` keeps only some of the six task types (``ALFWORLD_TASK_TYPES``); ``game_files=[...]`` plays
exactly those files (in the given order) instead of a split. Games are sorted by path, so ``reset(seed=k)``
plays game ``k % len(game_files)`` and a seed names the same game in training pools and evaluation;
``task_pool_size`` (= number of games) tells the trainer to draw its tasks from that finite pool.

Playing needs the ``alfworld`` package (``pip install graphgpo[alfworld]``: its base install brings
``textworld[pddl]`` and the Fast Downward planner, no simulator): each game is a PDDL problem played by
TextWorld's PDDL backend with ALFWorld's name demangler ("desk 2", "alarmclock 1").

Observations, admissible commands and rewards are ALFWorld's: the first observation is the welcome text
with the room and "Your task is to: ...", reward 1.0 on the step that wins (the game's score), else 0.
Any command is sent to the game; one that is not admissible gets ALFWorld's "Nothing happens." (the
recipe's convention) and ``is_action_valid=False``. ``admissible_actions`` leaves out "help" (as the
recipe's prompt does), so "help" counts as invalid too. ``terminated`` when the game is won (ALFWorld has
no losing state; the rollout's ``max_steps`` truncates).

``info``: ``won``, ``is_action_valid``, ``admissible_actions`` (sorted), ``state_key`` (the key selected
with ``state_key=``: "facts" or "recipe", see ``alfworld_keys``), ``state_keys`` (both), ``task`` (the
goal text), ``task_type`` (one of the six), ``gamefile``; at reset also ``walkthrough`` (the game file's
expert commands, which win from the start).
"""

from __future__ import annotations

import glob
import json
import os
import random
from dataclasses import dataclass
from typing import Any, Sequence

from .alfworld_cache import Outcome, TransitionCache, replay
from .alfworld_keys import (STATE_KEYS, AlfWorldTracker, alfworld_state_key, facts_state_key,  # noqa: F401
                            track)

__all__ = ["AlfWorldConfig", "AlfWorldEnv", "ALFWORLD_SPLITS", "ALFWORLD_TASK_TYPES", "alfworld_task_type",
           "find_games", "default_data_dir", "AlfWorldTracker", "track", "alfworld_state_key", "facts_state_key"]

ALFWORLD_SPLITS = ("train", "valid_seen", "valid_unseen")
ALFWORLD_TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
                       "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place")
"""ALFWorld's six task types; a game's folder name starts with its type (e.g. pick_and_place_simple-Book-...)."""
DATA_VERSION = "json_2.1.1"
GAME_FILE = "game.tw-pddl"
_GAME_KEYS = ("pddl_domain", "grammar", "pddl_problem")
_TASK_MARK = "Your task is to:"

_DATA_HELP = ("Get ALFWorld's games with `pip install alfworld && alfworld-download` (writes them to "
              "$ALFWORLD_DATA, ~/.cache/alfworld by default), or unpack an archive of json_2.1.1 there; then "
              "pass data_dir= (the folder holding json_2.1.1/) or set $ALFWORLD_DATA.")
_INSTALL_HELP = ("playing ALFWorld needs the `alfworld` package: pip install alfworld (or "
                 "pip install graphgpo[alfworld]); its base install brings textworld[pddl] and the Fast Downward "
                 "planner. The state keys (graphgpo.envs.alfworld_keys) need neither.")


def alfworld_task_type(game_file: str) -> str:
    """Task type of an ALFWorld game from its path (.../<type>-<object>-...-<receptacle>/trial_.../game.tw-pddl)."""
    for part in reversed(os.path.normpath(game_file).split(os.sep)):
        for task_type in ALFWORLD_TASK_TYPES:
            if part.startswith(task_type + "-"):
                return task_type
    raise ValueError(f"game file {game_file!r}: no ALFWorld task type ({', '.join(ALFWORLD_TASK_TYPES)}) "
                     "in its folder names")


def default_data_dir() -> str:
    """$ALFWORLD_DATA, else ~/.cache/alfworld (where ``alfworld-download`` puts the games)."""
    return os.environ.get("ALFWORLD_DATA") or os.path.join(os.path.expanduser("~"), ".cache", "alfworld")


def _check_task_types(task_types: Sequence[str] | None) -> None:
    if task_types is None:
        return
    if isinstance(task_types, str):
        raise ValueError(f"task_types: expected a list of task types, got the string {task_types!r}")
    unknown = [t for t in task_types if t not in ALFWORLD_TASK_TYPES]
    if unknown:
        raise ValueError(f"task_types: unknown {unknown}; ALFWorld's task types are {list(ALFWORLD_TASK_TYPES)}")
    if not task_types:
        raise ValueError("task_types: empty list (None keeps all six types)")


def find_games(split: str = "train", data_dir: str | None = None,
               task_types: Sequence[str] | None = None) -> list[str]:
    """Sorted game files of one split (``<data_dir>/json_2.1.1/<split>/*/*/game.tw-pddl``), optionally
    only some task types. Raises a clear error for a missing folder, an empty split or no game of the types."""
    if split not in ALFWORLD_SPLITS:
        raise ValueError(f"split: expected one of {list(ALFWORLD_SPLITS)}, got {split!r}")
    _check_task_types(task_types)
    root = os.path.expanduser(data_dir or default_data_dir())
    if not os.path.isdir(root):
        raise FileNotFoundError(f"ALFWorld data folder {root!r} does not exist. {_DATA_HELP}")
    folder = os.path.join(root, DATA_VERSION, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"ALFWorld split folder {folder!r} does not exist (expected the layout "
                                f"{DATA_VERSION}/<split>/<task folder>/<trial>/{GAME_FILE}). {_DATA_HELP}")
    files = sorted(glob.glob(os.path.join(folder, "*", "*", GAME_FILE)))
    if not files:
        raise ValueError(f"ALFWorld split folder {folder!r} holds no games (*/*/{GAME_FILE}). {_DATA_HELP}")
    if task_types is not None:
        files = [f for f in files if alfworld_task_type(f) in task_types]
        if not files:
            raise ValueError(f"{folder!r}: no games of task types {list(task_types)}")
    return files


def read_game(path: str) -> dict:
    """The JSON of one game file, checked for the fields TextWorld's PDDL backend needs."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as err:
        raise FileNotFoundError(f"ALFWorld game file {path!r} cannot be read: {err}. {_DATA_HELP}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"ALFWorld game file {path!r} is not valid JSON ({err}); re-download the data. "
                         f"{_DATA_HELP}") from None
    missing = [k for k in _GAME_KEYS if not isinstance(data, dict) or not isinstance(data.get(k), str)]
    if missing:
        raise ValueError(f"ALFWorld game file {path!r} is malformed: missing {missing} (an ALFWorld "
                         f"{GAME_FILE} holds {list(_GAME_KEYS)} and a walkthrough). {_DATA_HELP}")
    return data


@dataclass
class AlfWorldConfig:
    """Options of one ALFWorld environment (``make("alfworld", **fields)``)."""

    split: str = "train"
    """"train" (3553 games), "valid_seen" (140) or "valid_unseen" (134, the paper's evaluation split)."""
    data_dir: str | None = None
    """Folder holding json_2.1.1/ (default $ALFWORLD_DATA, else ~/.cache/alfworld)."""
    task_types: Sequence[str] | None = None
    """Keep only these of the six task types (None: all)."""
    game_files: Sequence[str] | None = None
    """Play exactly these game.tw-pddl files, in this order (split, data_dir and task_types then unused)."""
    state_key: str = "facts"
    """info["state_key"]: "facts" (exact PDDL world state) or "recipe" (observation text + tracked agent
    state, the GiGPO/GraphGPO recipe's key). benchmarks/alfworld_keys.py compares them on real rollouts: the
    text key splits one world state into several keys for ~30-44% of rows, so the exact facts key shares more
    steps (benchmarks/RESULTS.md, "State keys")."""
    seed: int = 0
    """Seeds the stream of games used when reset() gets no seed."""
    memoize: bool = True
    """Cache TextWorld's PDDL translation and grammar parses (exact, process-wide; resets ~9-11x and steps
    ~3-4x faster in benchmarks/alfworld_speed.py; see alfworld_memo)."""
    transition_cache: int = 8192
    """Entries (~5 KB each) of the process-wide exact cache of outcomes by (game, commands since reset) that
    the copies of a group share (see alfworld_cache); 0 turns it off. Needs memoize=True."""

    def __post_init__(self) -> None:
        if self.state_key not in STATE_KEYS:
            raise ValueError(f"state_key: expected one of {list(STATE_KEYS)}, got {self.state_key!r}")
        if self.split not in ALFWORLD_SPLITS:
            raise ValueError(f"split: expected one of {list(ALFWORLD_SPLITS)}, got {self.split!r}")
        _check_task_types(self.task_types)
        if self.transition_cache < 0:
            raise ValueError(f"transition_cache: must be >= 0, got {self.transition_cache}")
        if self.transition_cache and not self.memoize:
            raise ValueError("transition_cache needs memoize=True (replay uses the operator ids of the shared "
                             "PDDL translation); set transition_cache=0 to play without it")
        if self.game_files is not None and isinstance(self.game_files, str):
            raise ValueError(f"game_files: expected a list of paths, got the string {self.game_files!r}")


def _require_alfworld():
    """TextWorld's PDDL environment class and ALFWorld's name demangler, or an ImportError saying what to
    install."""
    try:
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs.pddl import PddlEnv
    except ImportError as err:
        raise ImportError(_INSTALL_HELP) from err
    return PddlEnv, AlfredDemangler


class AlfWorldEnv:
    """One ALFWorld game at a time; Gymnasium-style ``reset``/``step`` on command text."""

    def __init__(self, config: AlfWorldConfig | None = None, **options: Any):
        if config is not None and options:
            raise TypeError("pass either an AlfWorldConfig or keyword options, not both")
        self.config = cfg = config or AlfWorldConfig(**options)
        if cfg.game_files is not None:
            files = [os.path.expanduser(str(f)) for f in cfg.game_files]
            if not files:
                raise ValueError(f"game_files: empty list. {_DATA_HELP}")
            for f in files:
                if not os.path.isfile(f):
                    raise FileNotFoundError(f"game_files: {f!r} does not exist. {_DATA_HELP}")
                alfworld_task_type(f)  # a clear error now rather than at reset
        else:
            files = find_games(cfg.split, cfg.data_dir, cfg.task_types)
        self.game_files: list[str] = files
        self._pddl_env, self._demangler = _require_alfworld()
        import textworld

        if cfg.memoize:
            from . import alfworld_memo

            alfworld_memo.install()
        self._cache = shared_cache(cfg.transition_cache) if cfg.transition_cache else None
        self._infos = textworld.EnvInfos(facts=True, admissible_commands=True, won=True)
        self._seed_stream = random.Random(cfg.seed)
        self._env = None  # TextWorld's PDDL environment behind ALFWorld's demangler
        self._loaded: str | None = None  # the game it has loaded
        self._synced = -1  # commands of this episode it has played (-1: not reset for this episode)
        self._walkthroughs: dict[str, list[str]] = {}
        self._game_path: str | None = None
        self._history: list[str] = []  # commands since reset
        self._outcomes: list[Outcome] = []  # outcome after reset and after each command
        self._tracker = AlfWorldTracker()
        self._task = ""
        self.done = True

    @property
    def task_pool_size(self) -> int:
        """How many distinct games ``reset`` plays (the trainer then draws tasks from 0..size-1)."""
        return len(self.game_files)

    def game_for_seed(self, seed: int) -> str:
        if seed < 0:
            raise ValueError(f"seed: must be >= 0, got {seed}")
        return self.game_files[seed % len(self.game_files)]

    # ------------------------------------------------------------------ the engine
    def _load(self, path: str) -> None:
        data = read_game(path)
        if self._env is None:
            self._env = self._demangler()(self._pddl_env(self._infos))  # ALFWorld's names: "desk 2"
        self._loaded = None
        try:
            self._env.load(data)  # the checked JSON: TextWorld's PDDL backend takes it as is
        except Exception as err:  # TextWorld's PDDL parser/translator: name the file
            raise ValueError(f"ALFWorld game file {path!r} could not be loaded by TextWorld's PDDL backend: "
                             f"{type(err).__name__}: {err}") from err
        self._loaded = path
        self._walkthroughs[path] = [str(c) for c in data.get("walkthrough") or []]

    def _engine_reset(self, path: str) -> Outcome:
        if self._loaded != path:
            self._load(path)
        state = self._env.reset()
        self._synced = 0
        return Outcome.from_game_state(state, facts_state_key(state.facts))

    def _sync(self) -> None:
        """Bring the engine to the end of this episode's history (after cache hits)."""
        if self._synced == len(self._history):
            return
        if self._synced < 0:
            if self._engine_reset(self._game_path) != self._outcomes[0]:
                raise RuntimeError(f"{self._game_path}: the game's start differs from the cached one")
        if self._synced < len(self._history):
            replay(self._env.unwrapped, self._outcomes[self._synced:], self._history[self._synced:])
            self._synced = len(self._history)

    def facts(self) -> list:
        """The engine's current PDDL facts (TextWorld propositions with ALFWorld's names), as
        ``EnvInfos(facts=True)`` gives them."""
        if not self._outcomes:
            raise RuntimeError("call reset() before facts()")
        self._sync()
        engine = self._env.unwrapped
        return [engine._get_human_readable_fact(f) for f in engine._pddl_state.facts]

    # ------------------------------------------------------------------ the protocol
    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        if seed is None:
            seed = self._seed_stream.randrange(len(self.game_files))
        path = self.game_for_seed(int(seed))
        self._game_path, self._history, self._synced = path, [], -1
        start = self._cache.get((path, ())) if self._cache is not None else None
        if start is None:
            start = self._engine_reset(path)
            if self._cache is not None:
                self._cache.put((path, ()), start)
        if path not in self._walkthroughs:
            self._walkthroughs[path] = [str(c) for c in read_game(path).get("walkthrough") or []]
        self._outcomes = [start]
        self._tracker = AlfWorldTracker()
        self._task = start.observation.split(_TASK_MARK, 1)[1].strip() if _TASK_MARK in start.observation else ""
        self.done = False
        info = self._info(valid=True)
        info["walkthrough"] = list(self._walkthroughs[path])
        return start.observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if not self._outcomes:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("episode is over: call reset()")
        command = action.strip() if isinstance(action, str) else ""
        valid = command in self._outcomes[-1].admissible
        key = (self._game_path, (*self._history, command))
        outcome = self._cache.get(key) if self._cache is not None else None
        if outcome is None:
            self._sync()
            state, _, _ = self._env.step(command)
            outcome = Outcome.from_game_state(state, facts_state_key(state.facts))
            self._synced += 1
            if self._cache is not None:
                self._cache.put(key, outcome)
        self._history.append(command)
        self._outcomes.append(outcome)
        self._tracker = track(self._tracker, command, outcome.observation)
        self.done = outcome.won
        return outcome.observation, (1.0 if outcome.won else 0.0), outcome.won, False, self._info(valid=valid)

    @property
    def admissible_actions(self) -> list[str]:
        """The game's admissible commands without "help", sorted."""
        return list(self._outcomes[-1].admissible)

    @property
    def state_keys(self) -> dict[str, Any]:
        """Both keys of the current state: {"facts": ..., "recipe": ...}."""
        now = self._outcomes[-1]
        return {"facts": now.facts_key, "recipe": alfworld_state_key(now.observation, self._tracker, now.admissible)}

    def _info(self, *, valid: bool) -> dict:
        keys = self.state_keys
        return {"won": self._outcomes[-1].won, "is_action_valid": valid,
                "admissible_actions": self.admissible_actions, "state_key": keys[self.config.state_key],
                "state_keys": keys, "task": self._task, "task_type": alfworld_task_type(self._game_path),
                "gamefile": self._game_path}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
        self._loaded, self._synced, self._outcomes = None, -1, []
        self.done = True


_SHARED_CACHE: list[TransitionCache] = []


def shared_cache(max_entries: int) -> TransitionCache:
    """The process's transition cache (grown to ``max_entries`` if a larger one is asked for)."""
    if not _SHARED_CACHE:
        _SHARED_CACHE.append(TransitionCache(max_entries))
    cache = _SHARED_CACHE[0]
    cache.max_entries = max(cache.max_entries, max_entries)
    return cache
