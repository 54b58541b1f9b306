"""An exact transition cache for ALFWorld: the outcome of a command history, shared by a process's games.

The G copies of a rollout group play one game from one start, and often the same commands (all of them
at step 0, most of them once a policy has learnt the task). TextWorld's PDDL engine is deterministic within
a process (no random numbers; the same calls in the same order give the same facts, sets and texts), so
the outcome of a step is a function of (game file, commands since reset). ``TransitionCache`` keeps these
outcomes (``Outcome``: observation, won, admissible commands, facts key, and the engine's command list
with its operator ids), least recently used first out, and every ``AlfWorldEnv`` of the process shares it.

Keyed on the whole history rather than the world state: TextWorld lists a receptacle's objects in the
iteration order of a Python set, which can depend on the order facts were added, so nothing guarantees that
one state reached by two paths reads the same (benchmarks/alfworld_keys.py counts how often it does not).
A history key is exact by construction.

A hit does not touch the engine; the environment remembers the commands it has not played. At the next
miss ``replay`` brings the engine there cheaply: for each command only Fast Downward's operator (the
cached id) is applied, skipping TextWorld's expensive part, the derivation of every admissible command's
text; then the engine's current command list is the cached one and its action list is rebuilt from the
planner (same order, checked by operator id). The real step that follows is TextWorld's own. Episodes
that only hit never load, reset or step the game at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from types import SimpleNamespace

__all__ = ["Outcome", "TransitionCache", "replay"]


@dataclass(frozen=True)
class Outcome:
    """What the environment reports after a reset or a step, plus what ``replay`` needs."""

    observation: str
    won: bool
    admissible: tuple[str, ...]
    """Sorted, without "help"."""
    facts_key: str
    commands: tuple[str, ...]
    """The engine's command list (``_valid_commands``: the order matters)."""
    operator_ids: tuple[int, ...]
    """Fast Downward operator id of each command."""

    @classmethod
    def from_game_state(cls, state, facts_key: str) -> "Outcome":
        return cls(observation=state.feedback.strip(), won=bool(state.won),
                   admissible=tuple(sorted(c for c in (state.admissible_commands or []) if c != "help")),
                   facts_key=facts_key, commands=tuple(state["_valid_commands"]),
                   operator_ids=tuple(a.id for a in state["_valid_actions"]))


class TransitionCache:
    """LRU map (game file, commands since reset) -> Outcome; thread-safe."""

    def __init__(self, max_entries: int):
        if max_entries < 1:
            raise ValueError(f"max_entries: must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple, Outcome] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> Outcome | None:
        with self._lock:
            outcome = self._entries.get(key)
            if outcome is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(key)
            return outcome

    def put(self, key: tuple, outcome: Outcome) -> None:
        with self._lock:
            self._entries[key] = outcome
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


def replay(pddl_env, path: list[Outcome], commands: list[str]) -> None:
    """Bring TextWorld's PDDL environment, which is at ``path[0]``, through ``commands`` (``path[i + 1]`` is
    the cached outcome after ``commands[i]``) without deriving any text."""
    from textworld.core import GameState

    state = pddl_env._pddl_state
    for before, command in zip(path, commands):
        if command in before.commands:  # else "Nothing happens.": the engine changes nothing
            state.all_applicable_actions()  # the planner's operators here (apply looks the id up in them)
            state.apply(SimpleNamespace(id=before.operator_ids[before.commands.index(command)]))
            pddl_env._moves += 1
    actions = state.all_applicable_actions()
    last = path[len(commands)]
    if tuple(a.id for a in actions) != last.operator_ids:
        raise RuntimeError("ALFWorld transition cache: the planner's operators after replay differ from the cached "
                           "ones (is the engine deterministic here?); construct the env with transition_cache=0")
    # What TextWorld's next step reads from the current state: the command list and its actions.
    pddl_env.state = GameState({"_valid_commands": list(last.commands), "_valid_actions": actions})
