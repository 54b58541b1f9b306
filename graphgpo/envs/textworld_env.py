"""TextWorld text adventures, generated offline and played through TextWorld's API.

``graphgpo.envs.make("textworld", nb_rooms=2, nb_objects=4, quest_length=2, cache_dir=...)``; or
``difficulty="easy" | "medium" | "hard"`` for preset sizes; or ``game_file=`` to play one existing game.

Games: ``reset(seed)`` plays the game generated with TextWorld's generator (``textworld.make``, the API
behind ``tw-make custom``) from game seed ``seed``; with ``game_pool_size=P`` it plays game seed
``game_pool_offset + seed % P``, so a fixed set of P games is reused (``task_pool_size`` tells the trainer,
which then trains on tasks 0..P-1 and evaluates each game of its evaluation pool once; a second pool at
another offset is a held-out set). Compiled games are cached under ``cache_dir`` in a folder named
by the generation options and the seed; generation happens once per (options, seed), is safe when
several environments or processes ask for the same game at once (write to a temp folder, then an
atomic rename), and takes a few seconds (Inform 7 compilation).

Observation: the game's response to the last command (the reset banner and the status line removed).
``info``: ``won``, ``lost``, ``is_action_valid`` (the command was among the admissible ones; any text is
still sent to the game, which answers as it does), ``admissible_actions`` (TextWorld's admissible
commands), ``task`` (the objective text), ``walkthrough`` (the game's remaining winning commands from
here) and ``state_key``: the sorted world-state facts (TextWorld's propositions: where the player and
every object are, open/closed/locked, ...) plus the score and the remaining quest walkthrough, which
together capture quest progress that the facts alone do not (a "go south first" subgoal). Printed text
repeats across states ("You are carrying: a coffee cup." in any room); the key does not.

Reward: the increase in game score at that step. ``terminated`` when the game is won or lost.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import random
import re
import shutil
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TextWorldConfig", "TextWorldEnv", "generate_game", "DIFFICULTY_PRESETS", "textworld_available"]

DIFFICULTY_PRESETS: dict[str, dict[str, int]] = {
    "easy": {"nb_rooms": 2, "nb_objects": 4, "quest_length": 2},
    "medium": {"nb_rooms": 4, "nb_objects": 8, "quest_length": 4},
    "hard": {"nb_rooms": 8, "nb_objects": 16, "quest_length": 8},
}

_GENERATION_LOCK = threading.Lock()


def textworld_available() -> bool:
    try:
        import textworld  # noqa: F401
    except ImportError:
        return False
    return True


def _require_textworld():
    try:
        import textworld
    except ImportError as err:
        raise ImportError("the TextWorld environment needs the `textworld` package: pip install textworld "
                          "(or pip install graphgpo[envs]); it does not depend on torch") from err
    return textworld


def default_cache_dir() -> str:
    root = os.environ.get("GRAPHGPO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graphgpo")
    return os.path.join(root, "textworld")


@dataclass
class TextWorldConfig:
    """Options of one TextWorld environment (``make("textworld", **fields)``)."""

    game_file: str | None = None
    """Play this compiled game (.z8/.ulx) instead of generating; reset(seed) then ignores the seed."""
    difficulty: str | None = None
    """Preset ("easy", "medium", "hard") that sets nb_rooms, nb_objects and quest_length."""
    nb_rooms: int = 2
    """Rooms in generated games."""
    nb_objects: int = 4
    """Objects in generated games (quest objects plus distractors)."""
    quest_length: int = 2
    """Actions in the winning quest."""
    game_pool_size: int | None = None
    """If set, reset(seed) plays game seed game_pool_offset + seed % game_pool_size: a fixed set of games."""
    game_pool_offset: int = 0
    """First game seed of the pool (pools at different offsets do not share games)."""
    cache_dir: str | None = None
    """Where compiled games are kept (default $GRAPHGPO_CACHE/textworld or ~/.cache/graphgpo/textworld)."""
    seed: int = 0
    """Seeds the stream of games used when reset() gets no seed."""

    def __post_init__(self) -> None:
        if self.difficulty is not None:
            if self.difficulty not in DIFFICULTY_PRESETS:
                raise ValueError(f"difficulty: expected one of {sorted(DIFFICULTY_PRESETS)}, got {self.difficulty!r}")
            for key, value in DIFFICULTY_PRESETS[self.difficulty].items():
                setattr(self, key, value)
        for name, low in (("nb_rooms", 1), ("nb_objects", 1), ("quest_length", 1), ("game_pool_size", 1),
                          ("game_pool_offset", 0), ("seed", 0)):
            value = getattr(self, name)
            if value is None and name == "game_pool_size":
                continue
            # bool is an int subclass, and "4" or 2.5 are not counts: only integers pass
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                optional = " or None" if name == "game_pool_size" else ""
                raise ValueError(f"{name}: must be an integer >= {low}{optional}, got {value!r}")


def generate_game(game_seed: int, *, nb_rooms: int, nb_objects: int, quest_length: int,
                  cache_dir: str | None = None) -> str:
    """Path of the compiled game for these options and seed, generating it if not cached."""
    textworld = _require_textworld()
    spec = {"nb_rooms": nb_rooms, "nb_objects": nb_objects, "quest_length": quest_length, "seed": int(game_seed),
            "textworld": textworld.__version__}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir or default_cache_dir())
    final = root / f"r{nb_rooms}-o{nb_objects}-q{quest_length}-s{game_seed}-{digest}"
    game_path = final / "game.z8"
    if game_path.exists():
        return str(game_path)
    root.mkdir(parents=True, exist_ok=True)
    with _GENERATION_LOCK:  # threads of one process generate one at a time (Inform 7 is CPU-bound anyway)
        if game_path.exists():
            return str(game_path)
        tmp = Path(tempfile.mkdtemp(prefix=".gen-", dir=root))
        try:
            options = textworld.GameOptions()
            options.seeds = int(game_seed)
            options.nb_rooms = nb_rooms
            options.nb_objects = nb_objects
            options.chaining.min_length = quest_length
            options.chaining.max_length = quest_length
            options.chaining.max_depth = quest_length
            options.path = str(tmp / "game.z8")
            options.file_ext = ".z8"
            options.force_recompile = True
            textworld.make(options)
            (tmp / "spec.json").write_text(json.dumps(spec, sort_keys=True))
            try:
                os.rename(tmp, final)  # atomic; another process may have won the race
            except OSError:
                if not game_path.exists():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(game_path)


_STATUS_LINE = re.compile(r"\n>[^\n]*$", re.DOTALL)


def clean_feedback(text: str, *, first: bool = False) -> str:
    """Drop TextWorld's banner (first observation) and the trailing prompt/status line."""
    if first:
        lines = text.split("\n")
        art = [i for i, line in enumerate(lines) if "$$" in line]
        if art:
            text = "\n".join(lines[art[-1] + 1:])
    text = _STATUS_LINE.sub("", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def facts_key(facts) -> tuple[str, ...]:
    """Sorted text of TextWorld propositions: the world state as a hashable tuple."""
    return tuple(sorted(f"{p.name}({', '.join(v.name for v in p.arguments)})" for p in facts))


class TextWorldEnv:
    """One TextWorld game at a time; Gymnasium-style ``reset``/``step`` on command text."""

    def __init__(self, config: TextWorldConfig | None = None, **options: Any):
        if config is not None and options:
            raise TypeError("pass either a TextWorldConfig or keyword options, not both")
        self.config = config or TextWorldConfig(**options)
        self._tw = _require_textworld()
        self._infos = self._tw.EnvInfos(facts=True, admissible_commands=True, won=True, lost=True,
                                        objective=True, score=True, max_score=True, policy_commands=True)
        self._seed_stream = random.Random(self.config.seed)
        self._env = None
        self._game_path: str | None = None
        self._state = None
        self.done = True

    @property
    def task_pool_size(self) -> int | None:
        """How many distinct games ``reset`` can play (None: a new game per seed)."""
        if self.config.game_file is not None:
            return 1
        return self.config.game_pool_size

    def game_for_seed(self, seed: int) -> str:
        cfg = self.config
        if cfg.game_file is not None:
            return cfg.game_file
        game_seed = cfg.game_pool_offset + seed % cfg.game_pool_size if cfg.game_pool_size else seed
        return generate_game(game_seed, nb_rooms=cfg.nb_rooms, nb_objects=cfg.nb_objects,
                             quest_length=cfg.quest_length, cache_dir=cfg.cache_dir)

    def vocabulary(self, seeds) -> list[str]:
        """Every word the compact prompts of these games can show (``prompting.compact_words`` of the
        objective, the entity names and the command templates' fixed words), for word-level tokenizers.
        Generates the games that are not cached yet."""
        from graphgpo.prompting import compact_words

        infos = self._tw.EnvInfos(objective=True, entities=True, verbs=True, command_templates=True)
        words: set[str] = set()
        for path in sorted({self.game_for_seed(int(seed)) for seed in seeds}):
            env = self._tw.start(path, request_infos=infos)
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=".*is not fully supported.*")
                    state = env.reset()
            finally:
                env.close()
            texts = [state.objective or "", *(state.entities or ()), *(state.verbs or ())]
            texts += [re.sub(r"\{[a-z]+\}", " ", t) for t in state.command_templates or ()]
            for text in texts:
                words.update(compact_words(text))
        return sorted(words)

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        if seed is None:
            seed = self._seed_stream.randrange(2**31)
        path = self.game_for_seed(int(seed))
        if path != self._game_path:
            self.close()
            with warnings.catch_warnings():
                # Jericho cannot read scores of TextWorld-compiled games; TextWorld tracks them itself.
                warnings.filterwarnings("ignore", message=".*is not fully supported.*")
                self._env = self._tw.start(path, request_infos=self._infos)
            self._game_path = path
        self._state = self._env.reset()
        self.done = False
        info = self._info(valid=True)
        info["task"] = self._state.objective or ""
        return clean_feedback(self._state.feedback, first=True), info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._state is None:
            raise RuntimeError("call reset() before step()")
        if self.done:
            raise RuntimeError("episode is over: call reset()")
        command = action.strip() if isinstance(action, str) else ""
        valid = command in (self._state.admissible_commands or [])
        previous_score = self._state.score or 0
        self._state, _, _ = self._env.step(command)
        reward = float((self._state.score or 0) - previous_score)
        terminated = bool(self._state.won or self._state.lost)
        self.done = terminated
        return clean_feedback(self._state.feedback), reward, terminated, False, self._info(valid=valid)

    @property
    def state_key(self) -> tuple:
        s = self._state
        return (facts_key(s.facts), int(s.score or 0), tuple(s.policy_commands or ()))

    def _info(self, *, valid: bool) -> dict:
        s = self._state
        return {"won": bool(s.won), "lost": bool(s.lost), "is_action_valid": valid, "state_key": self.state_key,
                "admissible_actions": sorted(s.admissible_commands or []),
                "walkthrough": list(s.policy_commands or [])}

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
            self._game_path = None
