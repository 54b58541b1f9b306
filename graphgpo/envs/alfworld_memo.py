"""Exact memoisation of the two slow pure functions inside TextWorld's PDDL backend (ALFWorld's engine).

Profiling an ALFWorld game (2-core Xeon) puts ~75% of a reset in Fast Downward's PDDL-to-SAS translation
(``fast_downward.pddl2sas``: run twice per reset, and twice more per game load) and most of a step in
re-parsing the same short grammar strings with TatSu (``textworld.envs.pddl.textgen._parse_and_convert``:
every admissible command and every feedback sentence is derived from a template string that is parsed
anew each time). Both are pure functions of their text arguments, so ``install()`` wraps them with LRU
caches:

* ``pddl2sas(domain, problem, verbose, optimize)`` -> the cached (task, SAS text). The G copies of a group
  (same game) in one process translate it once; the task object is only read by TextWorld afterwards.
  The wrapper also restores ``sys.argv``, which the translator overwrites.
* ``_parse_and_convert(text, rule_name=...)`` -> a deep copy of the cached symbol list (TextWorld sets a
  context on the symbols it derives, so each caller gets fresh objects). Grammar rules are shared across
  games, so this also speeds up loading a new game.

Nothing else changes: the game logic, the C planner state and the derivation order are TextWorld's own.
tests/test_envs_alfworld.py checks that observations, admissible commands and facts are identical with
and without the caches; benchmarks/alfworld_speed.py measures what they buy. The patch is process-wide
and idempotent; ``uninstall()`` restores the originals.
"""

from __future__ import annotations

import copy
import functools
import sys

__all__ = ["install", "uninstall", "installed"]

_ORIGINALS: dict[str, object] = {}
_TRANSLATIONS = 32  # games kept translated per process (a worker holds a few groups' games at a time)
_PARSES = 20_000  # grammar strings (a game's grammar has a few hundred, mostly shared between games)


def installed() -> bool:
    return bool(_ORIGINALS)


def _memoised_parser(parse):
    """``parse(text, rule_name=..., trace=...)`` answered from an LRU cache with a deep copy (callers set
    attributes on the parsed objects)."""

    @functools.lru_cache(maxsize=_PARSES)
    def cached(text: str, rule_name: str | None):
        return parse(text, rule_name=rule_name) if rule_name is not None else parse(text)

    def parse_and_convert(text, rule_name=None, trace=False, **kwargs):
        if trace or kwargs or not isinstance(text, str):  # TatSu tracing (TW_CSG_TRACE): parse for real
            return parse(text, rule_name=rule_name, trace=trace, **kwargs)
        return copy.deepcopy(cached(text, rule_name))

    return parse_and_convert


def install() -> None:
    """Wrap ``fast_downward.pddl2sas`` and TextWorld's two grammar parsers with exact caches (once per
    process)."""
    if _ORIGINALS:
        return
    import fast_downward
    import textworld.logic
    from textworld.envs.pddl import textgen

    translate = fast_downward.pddl2sas

    @functools.lru_cache(maxsize=_TRANSLATIONS)
    def cached_translation(domain: str, problem: str, verbose: bool, optimize: bool):
        argv = list(sys.argv)
        try:
            return translate(domain, problem, verbose=verbose, optimize=optimize)
        finally:
            sys.argv[:] = argv

    def pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False):
        return cached_translation(domain, problem, bool(verbose), bool(optimize))

    _ORIGINALS.update(pddl2sas=translate, textgen=textgen._parse_and_convert,
                      logic=textworld.logic._parse_and_convert)
    fast_downward.pddl2sas = pddl2sas
    textgen._parse_and_convert = _memoised_parser(_ORIGINALS["textgen"])
    textworld.logic._parse_and_convert = _memoised_parser(_ORIGINALS["logic"])


def uninstall() -> None:
    """Restore TextWorld's and Fast Downward's own functions (and drop the caches)."""
    if not _ORIGINALS:
        return
    import fast_downward
    import textworld.logic
    from textworld.envs.pddl import textgen

    fast_downward.pddl2sas = _ORIGINALS.pop("pddl2sas")
    textgen._parse_and_convert = _ORIGINALS.pop("textgen")
    textworld.logic._parse_and_convert = _ORIGINALS.pop("logic")
