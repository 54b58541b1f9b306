"""Environments with a Gymnasium-style text protocol, and a registry.

Protocol every environment follows (``action`` is plain action text, e.g. ``"up"``, ``"go north"``)::

    observation, info = env.reset(seed=None)
    observation, reward, terminated, truncated, info = env.step(action)
    env.close()

``info`` always holds ``"won"`` (the success flag: never inferred from rewards), ``"is_action_valid"``
and ``"state_key"`` (a str/tuple identity of the exact world state: what GraphGPO's graph merges on),
plus ``"admissible_actions"`` (list of str) where the task has an action list, and ``"task"`` (text of
the goal) in the info of ``reset``. ``reset`` with the same seed starts the same task.

    >>> import graphgpo.envs as envs
    >>> env = envs.make("sokoban", generator="simple", render="compact")
    >>> obs, info = env.reset(seed=3)

Registered names: ``sokoban``, ``textworld``, ``alfworld`` (ALFWorld's text games from its data folder:
``make("alfworld", split="train")``, needs the ``alfworld`` package), ``webshop`` (a seam that needs its
own package and data). ``register(name, factory)`` adds more.
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["make", "register", "registered", "task_pool_size"]

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register(name: str, factory: Callable[..., Any], *, overwrite: bool = False) -> None:
    """Register ``factory(**options) -> env`` under ``name``."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered")
    _REGISTRY[name] = factory


def registered() -> list[str]:
    """Names ``make`` accepts."""
    return sorted(_REGISTRY)


def make(name: str, **options: Any):
    """Build one environment by registered name; options are the environment's config fields."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown environment {name!r}; registered: {', '.join(registered())}") from None
    return factory(**options)


def task_pool_size(name: str, **options: Any) -> int | None:
    """How many distinct tasks the environment ``make(name, **options)`` plays (an env attribute
    ``task_pool_size``, e.g. TextWorld's ``game_pool_size``), or None for a new task per seed."""
    env = make(name, **options)
    try:
        return getattr(env, "task_pool_size", None)
    finally:
        env.close()


# Factories import lazily so that `import graphgpo.envs` stays cheap and optional packages (textworld,
# alfworld, webshop) are only needed when used.
def _sokoban(**options: Any):
    from .sokoban import SokobanEnv

    return SokobanEnv(**options)


def _textworld(**options: Any):
    from .textworld_env import TextWorldEnv

    return TextWorldEnv(**options)


def _alfworld(**options: Any):
    from .alfworld import AlfWorldEnv

    return AlfWorldEnv(**options)


def _webshop(**options: Any):
    from .webshop import WebShopEnv

    return WebShopEnv(**options)


register("sokoban", _sokoban)
register("textworld", _textworld)
register("alfworld", _alfworld)
register("webshop", _webshop)
