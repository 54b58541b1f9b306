"""GraphGPO and GiGPO as advantage estimators inside verl (tested against verl 0.9.1).

Importing this module registers, in verl's registry (``verl.trainer.ppo.core_algos.register_adv_est``):

=====================  ===========  =======================
estimator name          method       preset (omega)
=====================  ===========  =======================
``graphgpo``            graphgpo     none (omega = 0.1)
``graphgpo_alfworld``   graphgpo     alfworld (0.1)
``graphgpo_webshop``    graphgpo     webshop (0.2)
``graphgpo_sokoban``    graphgpo     sokoban (0.8)
``gigpo``               gigpo        none
=====================  ===========  =======================

Rows of the batch are environment steps, verl-agent style: each row is one LLM response (one action) and
``non_tensor_batch`` carries the step's metadata. Default key names (``VerlOptions`` renames them):

``field``         ``key``               notes
----------------  --------------------  ----------------------------------------------------------------
group             ``uid``               task group (the G rollouts of one task); required
traj              ``traj_uid``          trajectory id; required
step              ``step``              0..L-1 within the trajectory; see "Step index" below
state             ``anchor_obs``        str / bytes / tuple / numpy array / int (an int is taken as an
                                        already hashed int64 key); an int64 tensor in ``batch`` = keys,
                                        a 2-D integer tensor = token rows hashed on its device
next_state        ``next_obs``          same encodings as state; required by graphgpo only
valid             ``is_action_valid``   bool; required
episode_reward    ``episode_rewards``   falls back to ``token_level_rewards.sum(-1)`` when absent
reward            ``rewards``           per-step environment reward; required by gigpo only
success           ``success``           bool; when absent, ``episode_reward > 0`` (the recipe's rule)
                                        unless ``success_from_episode_reward=False``
cost              (off)                 optional edge cost (``cost_key``)

Step index. verl-agent batches carry no step index, and verl's ``_balance_batch`` reorders rows before
advantages are computed, so the time order of a trajectory cannot be read from row order at that point.
Call ``add_step_index(batch)`` right after the rollout (rows are still in time order there, as verl-agent's
``TrajectoryCollector.gather_rollout_data`` emits them) to store ``step``; or, only when rows are never
reordered (``trainer.balance_batch=False``), set ``step_from_row_order=True``.

Calling convention. verl 0.9.1's stock ``compute_advantage`` (ray_trainer.py) passes a registered estimator
only ``token_level_rewards``, ``response_mask``, ``index`` and ``config`` — not the per-step metadata these
estimators need. Two ways in:

* ``compute_advantage_dataproto(data, "graphgpo", config)`` from a trainer that owns its advantage step
  (verl-agent's ``compute_advantage``), or
* ``install_trainer_hook()``, which wraps ``verl.trainer.ppo.ray_trainer.compute_advantage`` so that the
  names above are routed here with the whole ``DataProto``, and every other name goes to verl unchanged.
  Set ``GRAPHGPO_VERL_TRAINER_HOOK=1`` to install it whenever this module is imported (e.g. through
  ``VERL_USE_EXTERNAL_MODULES=graphgpo.integrations.verl`` in every Ray worker).

The registered functions also accept ``non_tensor_batch=`` / ``batch=`` keywords (verl passes them to its
GDPO estimator the same way), so they can be called through ``get_adv_estimator_fn(name)`` directly.

Options. ``config`` is verl's ``algorithm`` config; its optional ``graphgpo`` mapping holds both adapter
options (fields of ``VerlOptions``, e.g. ``backend``) and estimator options (fields of the method's config,
e.g. ``omega``, ``step_weight``), e.g. ``+algorithm.graphgpo.backend=torch``. verl's own ``gamma`` (a GAE
setting, default 1.0) is not used: GiGPO's discount is ``algorithm.graphgpo.gamma`` (default 0.95).

Outputs are verl's shapes: ``advantages`` and ``returns`` are ``[rows, response_length]``, the step's scalar
times ``response_mask``. ``returns`` holds the method's per-step return (graph return for graphgpo,
discounted step return for gigpo), which verl only logs for critic-free estimators.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

try:
    from verl.trainer.ppo import core_algos as _core_algos
except ImportError as err:  # pragma: no cover - exercised only without verl
    raise ImportError("graphgpo.integrations.verl needs verl: pip install 'graphgpo[verl]'") from err

from graphgpo.api import compute_advantages
from graphgpo.batch import KeyCollisionWarning, StepBatch
from graphgpo.columns import bool_column, float_column, int_column
from graphgpo.hashing import KeyHasher
from graphgpo.output import AdvantageOutput

__all__ = [
    "ESTIMATORS",
    "VerlOptions",
    "add_step_index",
    "compute_advantage_dataproto",
    "install_trainer_hook",
    "register_estimators",
    "step_batch_from_verl",
]

ESTIMATORS: dict[str, tuple[str, str | None]] = {
    "graphgpo": ("graphgpo", None),
    "graphgpo_alfworld": ("graphgpo", "alfworld"),
    "graphgpo_webshop": ("graphgpo", "webshop"),
    "graphgpo_sokoban": ("graphgpo", "sokoban"),
    "gigpo": ("gigpo", None),
}
"""verl estimator name -> (graphgpo method, preset)."""

OPTIONS_KEY = "graphgpo"
"""Name of the mapping inside verl's ``algorithm`` config that holds this module's options."""

_MARK = "_graphgpo_estimator"


@dataclass(frozen=True)
class VerlOptions:
    """How the estimators read a verl batch. Every ``*_key`` names a ``non_tensor_batch`` or ``batch`` key."""

    group_key: str = "uid"
    """Task-group id per row (verl-agent ``uid``)."""
    traj_key: str = "traj_uid"
    """Trajectory id per row (verl-agent ``traj_uid``)."""
    step_key: str = "step"
    """Step index within the trajectory (0..L-1); written by ``add_step_index``."""
    state_key: str = "anchor_obs"
    """State the action was taken in (verl-agent ``anchor_obs``)."""
    next_state_key: str = "next_obs"
    """State that followed (GraphGPO recipe ``next_obs``); graphgpo only."""
    valid_key: str = "is_action_valid"
    """Whether the action parsed and was admissible."""
    episode_reward_key: str = "episode_rewards"
    """Trajectory outcome reward; absent -> ``token_level_rewards.sum(-1)``."""
    reward_key: str = "rewards"
    """Per-step environment reward; gigpo only."""
    success_key: str = "success"
    """Per-row success flag of the trajectory."""
    cost_key: str | None = None
    """Optional positive edge cost per row (None = unit costs)."""
    success_from_episode_reward: bool = True
    """Without a ``success_key`` column, treat ``episode_reward > 0`` as success (the recipe's rule)."""
    step_from_row_order: bool = False
    """Without a ``step_key`` column, number each trajectory's rows in batch order. Only correct when rows
    were never reordered (verl's ``_balance_batch`` reorders them)."""
    backend: str = "auto"
    """graphgpo backend: auto | reference | torch | triton | cugraph."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_key") and not (isinstance(value, str) and value) and not (
                    f.name == "cost_key" and value is None):
                raise ValueError(f"{f.name} must be a non-empty string, got {value!r}")
        for name in ("success_from_episode_reward", "step_from_row_order"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


_ADAPTER_FIELDS = frozenset(f.name for f in dataclasses.fields(VerlOptions))


# -------------------------------------------------------------------------------------------------
# Reading columns out of a verl batch
# -------------------------------------------------------------------------------------------------

class _Columns:
    """Uniform lookup over ``non_tensor_batch`` (numpy arrays) and ``batch`` (a TensorDict of tensors)."""

    def __init__(self, non_tensor_batch: Mapping | None, tensor_batch: Any):
        self.non_tensor = non_tensor_batch if non_tensor_batch is not None else {}
        self.tensors = tensor_batch

    def _tensor_keys(self) -> list[str]:
        if self.tensors is None:
            return []
        return [k if isinstance(k, str) else "/".join(k) for k in self.tensors.keys()]

    def has(self, key: str) -> bool:
        return key in self.non_tensor or key in self._tensor_keys()

    def get(self, key: str, *, field: str, why: str = ""):
        if key in self.non_tensor:
            return self.non_tensor[key]
        if key in self._tensor_keys():
            return self.tensors[key]
        raise ValueError(
            f"verl batch has no key {key!r} (the {field} column{': ' + why if why else ''}); "
            f"non_tensor_batch keys: {sorted(self.non_tensor)}, batch keys: {sorted(self._tensor_keys())}")


def _check_rows(values, key: str, n: int):
    if len(values) != n:
        raise ValueError(f"key {key!r} has {len(values)} rows, but response_mask has {n}")
    return values


def _label_tensor(values, key: str, n: int, device) -> torch.Tensor:
    """int64 labels for group/traj ids: integers as they are, anything else factorised in sorted order."""
    _check_rows(values, key, n)
    if isinstance(values, torch.Tensor):
        if values.dim() != 1 or values.dtype.is_floating_point or values.dtype == torch.bool:
            raise ValueError(f"key {key!r}: expected a 1-D integer tensor of ids, got {values.dtype} "
                             f"{tuple(values.shape)}")
        return values.to(device=device, dtype=torch.int64)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"key {key!r}: expected one id per row, got shape {arr.shape}")
    if arr.dtype.kind in "iu":
        return torch.from_numpy(arr.astype(np.int64)).to(device)
    try:
        # Sorted order makes the dense ids independent of row order.
        _, inverse = np.unique(arr.astype(object) if arr.dtype.kind != "O" else arr, return_inverse=True)
    except TypeError:  # mixed, unorderable id types: fall back to their stable keys
        hasher = KeyHasher()
        try:
            return torch.tensor(hasher.keys(list(arr)), dtype=torch.int64, device=device)
        except TypeError as err:
            raise ValueError(f"key {key!r}: ids must be str, bytes, int or tuple ({err})") from None
    return torch.from_numpy(inverse.reshape(-1).astype(np.int64)).to(device)


def _int_tensor(values, key: str, n: int, device) -> torch.Tensor:
    _check_rows(values, key, n)
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.dim() != 1:
            raise ValueError(f"key {key!r}: expected a 1-D integer tensor, got {values.dtype} {tuple(values.shape)}")
        return values.to(device=device, dtype=torch.int64)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"key {key!r}: expected one integer per row, got shape {arr.shape}")
    return torch.from_numpy(int_column(values, f"key {key!r}")).to(device)


def _float_tensor(values, key: str, n: int, device) -> torch.Tensor:
    _check_rows(values, key, n)
    if isinstance(values, torch.Tensor):
        if values.dim() != 1 or values.dtype == torch.bool:
            raise ValueError(f"key {key!r}: expected one number per row (float or int, not bool), got "
                             f"{values.dtype} {tuple(values.shape)}")
        return values.to(device=device, dtype=torch.float64)
    return torch.from_numpy(float_column(values, f"key {key!r}")).to(device)


def _bool_tensor(values, key: str, n: int, device) -> torch.Tensor:
    _check_rows(values, key, n)
    if isinstance(values, torch.Tensor):
        t = values.to(device)
        if t.dtype != torch.bool and bool(((t != 0) & (t != 1)).any()):
            row = int(((t != 0) & (t != 1)).nonzero()[0, 0])
            raise ValueError(f"row {row}: key {key!r} must be a bool (or 0/1), got {t[row].item()!r}")
        return t.to(torch.bool)
    # verl-agent batches may carry the flag as 0.0/1.0 floats (accepted everywhere: graphgpo.columns)
    return torch.from_numpy(bool_column(values, f"key {key!r}").copy()).to(device)


def _state_tensor(values, key: str, n: int, device, hasher: KeyHasher) -> torch.Tensor:
    """int64 keys ([rows]) or token rows ([rows, width]) for StepBatch.from_tensors.

    Integers are already keys (so pre-hashed int64 ids work in any container); other objects get the stable
    64-bit hash of graphgpo.hashing, shared by state and next_state through one ``hasher``.
    """
    _check_rows(values, key, n)
    if isinstance(values, torch.Tensor):
        if values.dtype.is_floating_point or values.dtype == torch.bool or values.dim() not in (1, 2):
            raise ValueError(f"key {key!r}: a state tensor must be int64 keys [rows] or integer token rows "
                             f"[rows, width], got {values.dtype} {tuple(values.shape)}")
        return values.to(device=device, dtype=torch.int64)
    arr = values if isinstance(values, np.ndarray) else np.asarray(values, dtype=object)
    if arr.ndim == 1 and arr.dtype.kind in "iu":
        if arr.dtype == np.uint64:
            arr = arr.view(np.int64)
        return torch.from_numpy(arr.astype(np.int64)).to(device)
    if arr.ndim == 1 and arr.dtype.kind == "O":
        rows = arr.tolist()
        if set(map(type, rows)) <= {str, bytes}:  # text observations, the common case: hash in one pass
            return torch.tensor(hasher.keys(rows), dtype=torch.int64, device=device)
    if arr.ndim >= 2 and arr.dtype.kind == "O":  # numpy turned per-row tuples/lists into a 2-D object array
        rows = [_freeze(arr[i].tolist()) for i in range(n)]
    elif arr.ndim >= 2:  # one numeric/string array per row
        rows = [arr[i] for i in range(n)]
    else:
        rows = [v.item() if isinstance(v, np.generic) and not isinstance(v, np.integer) else v for v in arr]
    out = np.empty(n, dtype=np.int64)
    objects, where = [], []
    for i, v in enumerate(rows):
        if isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            if not -(1 << 63) <= int(v) < (1 << 64):
                raise ValueError(f"row {i}: key {key!r}: integer state {int(v)} does not fit in 64 bits")
            out[i] = np.int64(int(v) - (1 << 64) if int(v) >= (1 << 63) else int(v))
        else:
            if isinstance(v, np.ndarray) and v.ndim == 0:
                v = v.item()
            objects.append(_freeze(v))
            where.append(i)
    if objects:
        try:
            keys = hasher.keys(objects)
        except TypeError:
            for i, v in zip(where, objects):
                try:
                    hasher(v)
                except TypeError as err:
                    raise ValueError(f"row {i}: key {key!r}: {err}") from None
            raise
        out[where] = keys
    return torch.from_numpy(out).to(device)


def _freeze(value):
    """Lists (e.g. from ``ndarray.tolist()``) as tuples, recursively, so they hash like tuples."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _step_from_order(traj_labels: torch.Tensor) -> torch.Tensor:
    """Rank of each row among its trajectory's rows, in batch order."""
    n = traj_labels.numel()
    order = torch.argsort(traj_labels, stable=True)
    sorted_traj = traj_labels[order]
    start = torch.ones(n, dtype=torch.bool, device=traj_labels.device)
    start[1:] = sorted_traj[1:] != sorted_traj[:-1]
    positions = torch.arange(n, device=traj_labels.device)
    first = torch.cummax(torch.where(start, positions, torch.zeros_like(positions)), dim=0).values
    step = torch.empty(n, dtype=torch.int64, device=traj_labels.device)
    step[order] = positions - first
    return step


def add_step_index(data, traj_key: str = "traj_uid", step_key: str = "step"):
    """Store each row's step index (its rank among its trajectory's rows, in current row order) in
    ``data.non_tensor_batch[step_key]``. Call it while rows are in time order: right after the rollout,
    before ``_balance_batch``. Returns ``data``."""
    cols = _Columns(data.non_tensor_batch, data.batch)
    traj = cols.get(traj_key, field="traj")
    n = len(traj)
    labels = _label_tensor(traj, traj_key, n, "cpu")
    data.non_tensor_batch[step_key] = _step_from_order(labels).numpy()
    return data


# -------------------------------------------------------------------------------------------------
# verl batch -> StepBatch -> token-level advantages
# -------------------------------------------------------------------------------------------------

def step_batch_from_verl(method: str, response_mask: torch.Tensor, non_tensor_batch: Mapping | None,
                         tensor_batch: Any = None, token_level_rewards: torch.Tensor | None = None,
                         options: VerlOptions = VerlOptions()) -> StepBatch:
    """The StepBatch of a verl batch (one row per response row), on ``response_mask``'s device."""
    n = response_mask.shape[0]
    device = response_mask.device
    cols = _Columns(non_tensor_batch, tensor_batch)
    o = options

    group = _label_tensor(cols.get(o.group_key, field="group", why="task group of each step"), o.group_key, n, device)
    traj = _label_tensor(cols.get(o.traj_key, field="traj", why="trajectory of each step"), o.traj_key, n, device)
    if cols.has(o.step_key):
        step = _int_tensor(cols.get(o.step_key, field="step"), o.step_key, n, device)
    elif o.step_from_row_order:
        step = _step_from_order(traj)
    else:
        cols.get(o.step_key, field="step", why=(
            "verl-agent batches carry none; call graphgpo.integrations.verl.add_step_index(batch) right after "
            "the rollout, before batch balancing, or set step_from_row_order=True if rows are never reordered"))

    hasher = KeyHasher()
    state = _state_tensor(cols.get(o.state_key, field="state", why="observation the action was taken in"),
                          o.state_key, n, device, hasher)
    if cols.has(o.next_state_key):
        next_state = _state_tensor(cols.get(o.next_state_key, field="next_state"), o.next_state_key, n, device,
                                   hasher)
    elif method == "graphgpo":
        cols.get(o.next_state_key, field="next_state", why="graphgpo builds its graph from state -> next_state")
    else:
        next_state = state  # gigpo never reads next_state
    if state.dim() != next_state.dim():
        raise ValueError(f"keys {o.state_key!r} and {o.next_state_key!r} must use the same encoding (both keys or "
                         f"both token rows), got shapes {tuple(state.shape)} and {tuple(next_state.shape)}")
    if hasher.collisions:
        warnings.warn(f"{len(hasher.collisions)} 64-bit state key collision(s) in this batch: "
                      f"{hasher.collisions[:3]}; these states are merged in the graph", KeyCollisionWarning,
                      stacklevel=3)

    valid = _bool_tensor(cols.get(o.valid_key, field="valid", why="whether each action was admissible"),
                         o.valid_key, n, device)
    if cols.has(o.episode_reward_key):
        episode_reward = _float_tensor(cols.get(o.episode_reward_key, field="episode_reward"),
                                       o.episode_reward_key, n, device)
    elif token_level_rewards is not None:
        episode_reward = token_level_rewards.to(device=device, dtype=torch.float64).sum(-1)
    else:
        cols.get(o.episode_reward_key, field="episode_reward", why="and no token_level_rewards to sum either")
    if cols.has(o.reward_key):
        reward = _float_tensor(cols.get(o.reward_key, field="reward"), o.reward_key, n, device)
    elif method == "gigpo":
        cols.get(o.reward_key, field="reward", why="gigpo discounts the per-step environment reward")
    else:
        reward = torch.zeros(n, dtype=torch.float64, device=device)  # graphgpo never reads it
    if cols.has(o.success_key):
        success = _bool_tensor(cols.get(o.success_key, field="success"), o.success_key, n, device)
    elif o.success_from_episode_reward:
        success = episode_reward > 0
    else:
        cols.get(o.success_key, field="success", why="success_from_episode_reward is off")
    cost = None
    if o.cost_key is not None:
        cost = _float_tensor(cols.get(o.cost_key, field="cost"), o.cost_key, n, device)

    return StepBatch.from_tensors(group, traj, step, state, next_state, success, valid, episode_reward, reward,
                                  cost)


def _split_options(config: Any) -> tuple[VerlOptions, dict[str, Any]]:
    """(adapter options, estimator options) from verl's algorithm config (``config[OPTIONS_KEY]``)."""
    raw = None
    if config is not None:
        raw = config.get(OPTIONS_KEY, None) if hasattr(config, "get") else getattr(config, OPTIONS_KEY, None)
    if raw is None:
        return VerlOptions(), {}
    if not isinstance(raw, Mapping) and not hasattr(raw, "items"):
        raise ValueError(f"algorithm.{OPTIONS_KEY} must be a mapping of options, got {type(raw).__name__}")
    items = {str(k): raw[k] for k in raw}
    adapter = {k: v for k, v in items.items() if k in _ADAPTER_FIELDS}
    method_options = {k: v for k, v in items.items() if k not in _ADAPTER_FIELDS}
    return VerlOptions(**adapter), method_options


def _estimate(name: str, token_level_rewards, response_mask, non_tensor_batch, tensor_batch, config,
              options: VerlOptions | None = None) -> tuple[torch.Tensor, torch.Tensor, AdvantageOutput]:
    method, preset = ESTIMATORS[name]
    adapter, method_options = _split_options(config)
    if options is not None:
        adapter = options
    if preset is not None:
        method_options.setdefault("preset", preset)
    steps = step_batch_from_verl(method, response_mask, non_tensor_batch, tensor_batch, token_level_rewards,
                                 adapter)
    out = compute_advantages(steps, method=method, backend=adapter.backend, **method_options)
    dtype = token_level_rewards.dtype if token_level_rewards is not None and \
        token_level_rewards.dtype.is_floating_point else torch.float32
    # Two [rows, response_length] allocations in all: the mask copy becomes ``returns`` in place.
    mask = response_mask.to(dtype, copy=True)
    advantages = mask * out.advantages.to(dtype).unsqueeze(-1)
    returns = mask.mul_(out.returns.to(dtype).unsqueeze(-1))
    return advantages, returns, out


def _make_estimator(name: str) -> Callable:
    method, preset = ESTIMATORS[name]

    def estimator(token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index=None, config=None,
                  non_tensor_batch: Mapping | None = None, batch: Any = None, **unused):
        if non_tensor_batch is None and batch is None:
            raise ValueError(
                f"advantage estimator {name!r} needs the batch's per-step metadata (uid, traj_uid, step, "
                "anchor_obs, ...), which verl's stock compute_advantage does not pass: call "
                "graphgpo.integrations.verl.install_trainer_hook() in the trainer process (or set "
                "GRAPHGPO_VERL_TRAINER_HOOK=1), or use compute_advantage_dataproto(data, ...)")
        if non_tensor_batch is not None and index is not None:
            key = _split_options(config)[0].group_key
            if key not in non_tensor_batch:
                non_tensor_batch = {**non_tensor_batch, key: index}
        advantages, returns, _ = _estimate(name, token_level_rewards, response_mask, non_tensor_batch, batch,
                                           config)
        return advantages, returns

    estimator.__name__ = f"compute_{name}_advantage"
    estimator.__qualname__ = estimator.__name__
    estimator.__doc__ = (f"verl advantage estimator {name!r}: graphgpo method {method!r}"
                         f"{f', preset {preset!r}' if preset else ''}. See graphgpo.integrations.verl.")
    setattr(estimator, _MARK, name)
    return estimator


_ESTIMATOR_FNS: dict[str, Callable] = {name: _make_estimator(name) for name in ESTIMATORS}


def register_estimators(names=None, *, overwrite: bool = False) -> list[str]:
    """Register the estimators (all of ``ESTIMATORS`` by default) with verl; returns the names registered.

    A name verl already maps to another function is skipped with a warning unless ``overwrite`` (a previous
    import of this module, e.g. after a reload, is always replaced).
    """
    registry = getattr(_core_algos, "ADV_ESTIMATOR_REGISTRY", None)
    if registry is None or not hasattr(_core_algos, "register_adv_est"):
        # Older verl forks (e.g. verl-agent's) dispatch estimators by hand: compute_advantage_dataproto
        # still works there, called from the fork's compute_advantage.
        warnings.warn("this verl has no advantage-estimator registry (register_adv_est); graphgpo's estimators "
                      "were not registered: call compute_advantage_dataproto from the trainer instead",
                      stacklevel=2)
        return []
    done = []
    for name in (ESTIMATORS if names is None else names):
        if name not in ESTIMATORS:
            raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
        fn = _ESTIMATOR_FNS[name]
        existing = registry.get(name)
        if existing is not None and existing is not fn:
            if getattr(existing, _MARK, None) == name or overwrite:
                del registry[name]
            else:
                warnings.warn(f"verl already has an advantage estimator named {name!r} ({existing!r}); "
                              "graphgpo's was not registered (register_estimators(overwrite=True) replaces it)",
                              stacklevel=2)
                continue
        _core_algos.register_adv_est(name)(fn)
        done.append(name)
    return done


# -------------------------------------------------------------------------------------------------
# Whole-DataProto entry points
# -------------------------------------------------------------------------------------------------

def _estimator_name(adv_estimator) -> str:
    return getattr(adv_estimator, "value", adv_estimator)


def compute_advantage_dataproto(data, adv_estimator="graphgpo", config: Any = None,
                                options: VerlOptions | None = None):
    """Write ``advantages`` and ``returns`` ([rows, response_length]) into ``data.batch`` and return ``data``.

    ``adv_estimator`` is one of ``ESTIMATORS``; ``config`` is verl's algorithm config (its ``graphgpo``
    mapping is read); ``options`` overrides the adapter options found there. The batch's diagnostics
    (``AdvantageOutput.stats``) go to ``data.meta_info["graphgpo_stats"]``.
    """
    name = _estimator_name(adv_estimator)
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {', '.join(ESTIMATORS)}")
    keys = list(data.batch.keys())
    if "response_mask" in keys:
        response_mask = data.batch["response_mask"]
    elif "responses" in keys and "attention_mask" in keys:  # what verl's compute_response_mask does
        response_mask = data.batch["attention_mask"][:, -data.batch["responses"].shape[1]:]
        data.batch["response_mask"] = response_mask
    else:
        raise ValueError(f"verl batch has no key 'response_mask' (nor 'responses' + 'attention_mask' to derive "
                         f"it); batch keys: {sorted(map(str, keys))}")
    token_level_rewards = data.batch["token_level_rewards"] if "token_level_rewards" in keys else None
    advantages, returns, out = _estimate(name, token_level_rewards, response_mask, data.non_tensor_batch,
                                         data.batch, config, options)
    data.batch["advantages"] = advantages
    data.batch["returns"] = returns
    data.meta_info["graphgpo_stats"] = dict(out.stats)
    return data


def install_trainer_hook() -> bool:
    """Route ``verl.trainer.ppo.ray_trainer.compute_advantage`` to ``compute_advantage_dataproto`` for the
    names in ``ESTIMATORS``; other names reach verl's function unchanged. Returns False if already installed.

    Only callers that look the function up through the module see the hook (verl's legacy ``RayPPOTrainer``
    and forks that keep that module path, like verl-agent). verl 0.9.1's v1 trainer (``trainer.use_v1=True``)
    fetches only its own fields from TransferQueue before computing advantages and is not supported.
    """
    from verl.trainer.ppo import ray_trainer

    original = ray_trainer.compute_advantage
    if getattr(original, _MARK, None) == "hook":
        return False
    signature = inspect.signature(original)

    @functools.wraps(original)
    def compute_advantage(data, adv_estimator, *args, **kwargs):
        name = _estimator_name(adv_estimator)
        if name not in ESTIMATORS:
            return original(data, adv_estimator, *args, **kwargs)
        bound = signature.bind_partial(data, adv_estimator, *args, **kwargs)
        config = bound.arguments.get("config", bound.arguments.get("kwargs", {}).get("config"))
        return compute_advantage_dataproto(data, name, config)

    setattr(compute_advantage, _MARK, "hook")
    compute_advantage.__wrapped_original__ = original
    ray_trainer.compute_advantage = compute_advantage
    return True


register_estimators()
if os.environ.get("GRAPHGPO_VERL_TRAINER_HOOK", "0") == "1":
    install_trainer_hook()
