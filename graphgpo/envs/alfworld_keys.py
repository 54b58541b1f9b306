"""ALFWorld state keys: pure functions of what the game shows, usable without ALFWorld installed.

Two keys, selected with ``make("alfworld", state_key=...)``:

``"facts"``: the exact world state. ALFWorld's games are PDDL problems; TextWorld exposes the current
PDDL facts (``EnvInfos(facts=True)``: where the agent is, what it holds, what lies where, what is open,
hot, cool, clean, sliced, on). Two things in that list are history, not state, and are left out:

* ``not_*`` facts: TextWorld's PDDL backend records every negative effect it applied ("not_atlocation(agent1,
  loc 8)" after leaving loc 8) and keeps it until the positive fact returns, so A -> B -> A would not come
  back to A's fact list. The state is the set of true atoms (PDDL's closed world), as at reset.
* ``checked(x)``: set by look, inventory, examine, open and help, and read by no precondition, goal or text
  template of ALFWorld's domain (a write-only flag; tests check this on the fixture's games), so it cannot
  change what can happen next. Keeping it would make "look" a move to a new state.

``facts_state_key`` writes each remaining fact as ``name(arg, arg)`` with ALFWorld's demangled names
("desk 2", "loc 12"; stable: ALFWorld numbers objects in sorted id order), sorts them and hashes the list
(BLAKE2b, 128 bits): equal world states give equal keys whatever the fact order or the path that led there,
and different states differ except with probability ~2**-128. The digest keeps a row's key 32 characters
instead of ~300 facts.

``"recipe"``: the GraphGPO/GiGPO recipe's text key. ALFWorld's text repeats across different world states
("Nothing happens.", "You arrive at cabinet 1. The cabinet 1 is closed." whether or not you hold the
apple), so the recipe keys a state on the observation *plus* what the agent has done that the text does
not show::

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
benchmarks/alfworld_keys.py measures how the two keys differ on real rollouts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from typing import Iterable, Sequence

from .textworld_env import facts_key

__all__ = ["AlfWorldTracker", "track", "alfworld_state_key", "facts_state_key", "world_facts", "STATE_KEYS",
           "WRITE_ONLY_PREDICATES"]

STATE_KEYS = ("facts", "recipe")
WRITE_ONLY_PREDICATES = frozenset({"checked"})
"""Predicates of ALFWorld's PDDL domain that actions set but nothing reads (see the module docstring)."""

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
    ("sliced", re.compile(r"^you sliced? the " + _OBJ)),  # ALFWorld says "You sliced the X with the Y."
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
    """The recipe's text key: observation + tracked location, held item, item states, moves + sorted
    admissible commands."""
    return (observation.strip(), tracker.location, tracker.held or "", tracker.item_states, tracker.moves,
            tuple(sorted(admissible_commands)))


def world_facts(facts: Iterable) -> list:
    """The facts that make up the world state: true atoms only, without write-only bookkeeping."""
    return [f for f in facts if not f.name.startswith("not_") and f.name not in WRITE_ONLY_PREDICATES]


def facts_state_key(facts: Iterable) -> str:
    """The exact world state as a 32-hex-digit key: BLAKE2b-128 of the sorted ``name(arg, arg)`` texts of
    ``world_facts`` of TextWorld propositions (``state.facts``); the order of ``facts`` does not matter."""
    text = "\n".join(facts_key(world_facts(facts)))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()
