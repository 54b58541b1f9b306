"""Configuration of the advantage estimators: one flat, frozen dataclass per method.

Every field documents its type, default and meaning in one place (see SPEC.md for the formulas). Defaults
are the authors' recipe (verl-agent ``recipe/GraphGPO``). Values are checked in ``__post_init__``; a bad
value raises ``ValueError`` naming the field.

``make_config(method, preset=..., config=..., **options)`` is how ``compute_advantages`` turns keyword
options into a config: unknown option names raise ``TypeError`` listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

NORMALIZE_MODES = ("mean_std", "mean")
EPISODE_STATS_MODES = ("cross_steps", "per_trajectory")
GRAPH_RETURN_MODES = ("recipe", "paper", "progress")


def _check_number(name: str, value: Any, *, low: float | None = None, high: float | None = None,
                  low_open: bool = False) -> None:
    """Raise ValueError naming ``name`` unless ``value`` is a finite real number in the range."""
    # bool is an int subclass; ``omega=True`` is almost certainly a mistake, so reject it. numpy scalars
    # (np.float32(0.5)) are real numbers too.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number (int or float), got {value!r} of type {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high:g}, got {value!r}")


def _as_floats(config, *names: str) -> None:
    """Store numeric fields as Python floats (np.float32(0.5) -> 0.5), once they are checked."""
    for name in names:
        object.__setattr__(config, name, float(getattr(config, name)))


NUMBER_LIMIT = 1e20
"""Bound of r_succ and invalid_penalty (as of rewards in StepBatch): beyond it the statistics may overflow."""
WEIGHT_LIMIT = 1e6
"""Bound of |step_weight| and |episode_weight|: keeps weighted advantages inside float32."""


def _check_similarity(value: Any) -> None:
    if value is not None:
        from graphgpo.similarity import check_threshold

        check_threshold(value)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


@dataclass(frozen=True)
class GraphGPOConfig:
    """GraphGPO (SPEC.md, "GraphGPO"): graph return from shortest distances to the group's SUCCESS sink."""

    omega: float = 0.1
    """Discount per graph step, in (0, 1]: R = r_succ * omega ** d(next). Recipe: 0.1 ALFWorld, 0.2 WebShop,
    0.8 Sokoban (see PRESETS)."""
    r_succ: float = 10.0
    """Return of reaching SUCCESS (the graph return of a successful last step), > 0."""
    invalid_penalty: float = 0.1
    """Subtracted from the graph return and from the episode score of every invalid step, >= 0."""
    step_weight: float = 1.0
    """Weight of the step (graph) advantage in A = step_weight * A_step + episode_weight * A_episode."""
    episode_weight: float = 1.0
    """Weight of the episode advantage."""
    normalize: Literal["mean_std", "mean"] = "mean_std"
    """"mean_std": (x - mean) / (std + eps) with unbiased std; "mean": x - mean. Step and episode parts."""
    episode_stats: Literal["cross_steps", "per_trajectory"] = "cross_steps"
    """Episode statistics over every row's score of the group ("cross_steps", recipe, length-weighted) or over
    one episode_reward per trajectory ("per_trajectory")."""
    graph_return: Literal["recipe", "paper", "progress"] = "recipe"
    """"recipe": r_succ*omega**d(next); "paper": r_succ*omega**(d(next)+cost);
    "progress": r_succ*omega**(d(next)-d(state)+1) (recipe's normalize_distance=True)."""
    eps: float = 1e-6
    """Added to the std in the denominator, > 0."""
    similarity: float | None = None
    """Similarity merge of near-duplicate text states (recipe ``enable_similarity`` / ``similarity_thresh``):
    None = exact state identity (recipe default); a threshold in (0, 1) (recipe 0.95, 0.9 for search QA)
    merges a state into the first cluster of its group whose representative reaches
    ``difflib.SequenceMatcher(None, state, representative).ratio() >= similarity``, greedily in row order, in
    two passes (graph nodes, step groups; graphgpo.similarity). Needs a batch from records with str states."""

    def __post_init__(self) -> None:
        _check_similarity(self.similarity)
        _check_number("omega", self.omega, low=0.0, low_open=True, high=1.0)
        _check_number("r_succ", self.r_succ, low=0.0, low_open=True, high=NUMBER_LIMIT)
        _check_number("invalid_penalty", self.invalid_penalty, low=0.0, high=NUMBER_LIMIT)
        _check_number("step_weight", self.step_weight, low=-WEIGHT_LIMIT, high=WEIGHT_LIMIT)
        _check_number("episode_weight", self.episode_weight, low=-WEIGHT_LIMIT, high=WEIGHT_LIMIT)
        _check_choice("normalize", self.normalize, NORMALIZE_MODES)
        _check_choice("episode_stats", self.episode_stats, EPISODE_STATS_MODES)
        _check_choice("graph_return", self.graph_return, GRAPH_RETURN_MODES)
        _check_number("eps", self.eps, low=0.0, low_open=True)
        _as_floats(self, "omega", "r_succ", "invalid_penalty", "step_weight", "episode_weight", "eps")


@dataclass(frozen=True)
class GiGPOConfig:
    """GiGPO (SPEC.md, "GiGPO"): discounted step return, normalised within the same step groups."""

    gamma: float = 0.95
    """Discount of the per-step environment reward, in [0, 1]."""
    invalid_penalty: float = 0.1
    """Subtracted (after discounting) from the step return and from the episode score of invalid steps."""
    step_weight: float = 1.0
    """Weight of the step advantage: A = episode_weight * A_episode + step_weight * A_step."""
    episode_weight: float = 1.0
    """Weight of the episode advantage."""
    normalize: Literal["mean_std", "mean"] = "mean_std"
    """"mean_std": (x - mean) / (std + eps) with unbiased std; "mean": x - mean."""
    episode_stats: Literal["cross_steps", "per_trajectory"] = "cross_steps"
    """Episode statistics over every row's score ("cross_steps") or one value per trajectory."""
    eps: float = 1e-6
    """Added to the std in the denominator, > 0."""
    similarity: float | None = None
    """Similarity merge of near-duplicate text states in the step groups (recipe ``enable_similarity``):
    None = exact identity; a threshold in (0, 1) (see GraphGPOConfig.similarity)."""

    def __post_init__(self) -> None:
        _check_similarity(self.similarity)
        _check_number("gamma", self.gamma, low=0.0, high=1.0)
        _check_number("invalid_penalty", self.invalid_penalty, low=0.0, high=NUMBER_LIMIT)
        _check_number("step_weight", self.step_weight, low=-WEIGHT_LIMIT, high=WEIGHT_LIMIT)
        _check_number("episode_weight", self.episode_weight, low=-WEIGHT_LIMIT, high=WEIGHT_LIMIT)
        _check_choice("normalize", self.normalize, NORMALIZE_MODES)
        _check_choice("episode_stats", self.episode_stats, EPISODE_STATS_MODES)
        _check_number("eps", self.eps, low=0.0, low_open=True)
        _as_floats(self, "gamma", "invalid_penalty", "step_weight", "episode_weight", "eps")


@dataclass(frozen=True)
class GRPOConfig:
    """GRPO baseline: each trajectory's episode_reward normalised within its group."""

    normalize: Literal["mean_std", "mean"] = "mean_std"
    """"mean_std": (R - mean) / (std + eps) with unbiased std; "mean": R - mean (Dr. GRPO style)."""
    eps: float = 1e-6
    """Added to the std in the denominator, > 0."""

    def __post_init__(self) -> None:
        _check_choice("normalize", self.normalize, NORMALIZE_MODES)
        _check_number("eps", self.eps, low=0.0, low_open=True)
        _as_floats(self, "eps")


@dataclass(frozen=True)
class RLOOConfig:
    """RLOO baseline: R_i - mean of the other trajectories' rewards in the group. No options."""


CONFIG_CLASSES: dict[str, type] = {
    "graphgpo": GraphGPOConfig,
    "gigpo": GiGPOConfig,
    "grpo": GRPOConfig,
    "rloo": RLOOConfig,
}
"""Method name -> its config dataclass."""

METHODS = tuple(CONFIG_CLASSES)

PRESETS: dict[str, dict[str, float]] = {
    "alfworld": {"omega": 0.1},
    "webshop": {"omega": 0.2},
    "sokoban": {"omega": 0.8},
}
"""Recipe settings per environment. A preset sets only the fields the chosen method's config has (ω is a
GraphGPO field, so for the other methods a preset changes nothing)."""


def config_fields(method: str) -> tuple[str, ...]:
    """Names of the options ``method`` accepts."""
    return tuple(f.name for f in dataclasses.fields(_config_class(method)))


def _config_class(method: str) -> type:
    try:
        return CONFIG_CLASSES[method]
    except (KeyError, TypeError):
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}; got {method!r}") from None


def make_config(method: str, preset: str | None = None, config: Any = None, **options: Any):
    """Resolve the config of ``method``.

    Start from ``config`` (an instance of the method's config class) or the defaults, apply ``preset``, then
    ``options`` (which win). Unknown option names raise ``TypeError``; bad values raise ``ValueError``.
    """
    cls = _config_class(method)
    valid = config_fields(method)
    unknown = sorted(name for name in options if name not in valid)
    if unknown:
        raise TypeError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for method {method!r}; "
            f"valid options: {', '.join(valid) if valid else '(none)'}, preset"
        )
    if config is not None and not isinstance(config, cls):
        raise TypeError(f"config for method {method!r} must be a {cls.__name__}, got {type(config).__name__}")

    values: dict[str, Any] = dataclasses.asdict(config) if config is not None else {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(map(repr, PRESETS))}; got {preset!r}")
        values.update({k: v for k, v in PRESETS[preset].items() if k in valid})
    values.update(options)
    return cls(**values)
