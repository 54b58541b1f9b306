"""StepBatch: one row per environment step, stored as columns of tensors on one device.

Build it from Python records (``from_records``; states are hashed on the host with a stable hash) or
from tensors already on a device (``from_tensors``; int64 keys, or token-id rows hashed in place).
Both validate the batch once, so backends can rely on the invariants listed in SPEC.md:
each trajectory lies in one group, its steps are exactly 0..L-1, ``success`` and ``episode_reward``
are constant within it, rewards and costs are finite and costs are positive.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .hashing import KeyHasher, hash_token_rows

__all__ = ["StepBatch", "REQUIRED_FIELDS", "KeyCollisionWarning"]

REQUIRED_FIELDS = ("group", "traj", "step", "state", "next_state", "success", "valid",
                   "episode_reward", "reward")
_COLUMNS = REQUIRED_FIELDS + ("cost",)


class KeyCollisionWarning(UserWarning):
    """Two different state objects of one batch hashed to the same 64-bit key."""


@dataclass(frozen=True, eq=False)
class StepBatch:
    """Columns of one batch of steps (length N each, one device).

    group, traj: int64 dense ids (0..num_groups-1, 0..num_trajs-1); step: int64;
    state, next_state: int64 keys; success, valid: bool; episode_reward, reward: float64;
    cost: float64 or None (unit costs).
    group_labels / traj_labels: the original ids, indexed by dense id (a list from records, an int64
    tensor from tensors); their length gives num_groups / num_trajs without a device sync.
    collisions: (key, object_a, object_b) for distinct states that share a 64-bit key.
    state_objects: key -> the state object it was hashed from (``from_records`` only; similarity merge
    reads the text of states from it); None for batches built from tensors.
    """

    group: torch.Tensor
    traj: torch.Tensor
    step: torch.Tensor
    state: torch.Tensor
    next_state: torch.Tensor
    success: torch.Tensor
    valid: torch.Tensor
    episode_reward: torch.Tensor
    reward: torch.Tensor
    cost: torch.Tensor | None = None
    group_labels: list | torch.Tensor | None = None
    traj_labels: list | torch.Tensor | None = None
    collisions: tuple = field(default=())
    state_objects: Mapping[int, Any] | None = None

    # ---------------------------------------------------------------------------------------------
    @property
    def num_rows(self) -> int:
        return self.group.numel()

    def __len__(self) -> int:
        return self.num_rows

    @property
    def num_groups(self) -> int:
        if self.group_labels is not None:
            return len(self.group_labels)
        return int(self.group.max()) + 1 if self.num_rows else 0

    @property
    def num_trajs(self) -> int:
        if self.traj_labels is not None:
            return len(self.traj_labels)
        return int(self.traj.max()) + 1 if self.num_rows else 0

    @property
    def device(self) -> torch.device:
        return self.group.device

    def columns(self) -> dict[str, torch.Tensor | None]:
        return {name: getattr(self, name) for name in _COLUMNS}

    def to(self, device) -> "StepBatch":
        moved = {k: (v.to(device) if v is not None else None) for k, v in self.columns().items()}
        return replace(self, **moved)

    def take(self, index) -> "StepBatch":
        """Rows ``index`` (a permutation or subset), keeping dense ids and labels.

        A subset must keep whole trajectories to stay a valid batch; it is validated again.
        """
        index = torch.as_tensor(index, dtype=torch.int64, device=self.device)
        picked = {k: (v[index] if v is not None else None) for k, v in self.columns().items()}
        out = replace(self, **picked)
        _validate(out)
        return out

    # ---------------------------------------------------------------------------------------------
    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], *, device: str | torch.device = "cpu",
                     hasher: KeyHasher | None = None) -> "StepBatch":
        """Batch from mappings with the fields of SPEC.md (``cost`` optional, all rows or none).

        States may be str, bytes, int, tuple or numpy integer/str arrays; they are hashed with a stable
        64-bit hash. Raises ValueError naming the row and field on bad input.
        """
        records = records if isinstance(records, Sequence) else list(records)
        if len(records) == 0:
            return cls.empty(device=device)
        has_cost = isinstance(records[0], Mapping) and "cost" in records[0]
        names = _COLUMNS if has_cost else REQUIRED_FIELDS
        getter = itemgetter(*names)
        try:
            rows = list(map(getter, records))
        except (KeyError, TypeError):
            _raise_missing_field(records, names)
        if not has_cost:
            for i, r in enumerate(records):
                if "cost" in r:
                    raise ValueError(f"row {i}: field 'cost' is given here but not in row 0; give cost on "
                                     "every row or on none")
        cols = dict(zip(names, zip(*rows)))

        group_ids, group_labels = _dense_ids(cols["group"], "group")
        traj_ids, traj_labels = _dense_ids(cols["traj"], "traj")
        hasher = hasher or KeyHasher()
        state = _hash_column(hasher, cols["state"], "state")
        next_state = _hash_column(hasher, cols["next_state"], "next_state")
        if hasher.collisions:
            warnings.warn(f"{len(hasher.collisions)} 64-bit state key collision(s) in this batch: "
                          f"{hasher.collisions[:3]}; these states are merged in the graph",
                          KeyCollisionWarning, stacklevel=2)

        arrays = {
            "group": np.asarray(group_ids, dtype=np.int64),
            "traj": np.asarray(traj_ids, dtype=np.int64),
            "step": int_column(cols["step"], "field 'step'"),
            "state": np.asarray(state, dtype=np.int64),
            "next_state": np.asarray(next_state, dtype=np.int64),
            "success": bool_column(cols["success"], "field 'success'"),
            "valid": bool_column(cols["valid"], "field 'valid'"),
            "episode_reward": float_column(cols["episode_reward"], "field 'episode_reward'"),
            "reward": float_column(cols["reward"], "field 'reward'"),
            "cost": float_column(cols["cost"], "field 'cost'") if has_cost else None,
        }
        tensors = {k: (torch.from_numpy(v).to(device) if v is not None else None) for k, v in arrays.items()}
        batch = cls(**tensors, group_labels=group_labels, traj_labels=traj_labels,
                    collisions=tuple(hasher.collisions), state_objects=hasher.objects)
        _validate(batch)
        return batch

    @classmethod
    def from_tensors(cls, group, traj, step, state, next_state, success, valid, episode_reward, reward,
                     cost=None, *, state_lengths=None, state_mask=None, next_state_lengths=None,
                     next_state_mask=None, validate: bool = True) -> "StepBatch":
        """Batch from tensors already on a device, with no Python objects and no host copy of the data.

        group, traj: any int64 labels (made dense in sorted label order). state, next_state: int64
        keys ([N]) or token-id rows ([N, width], hashed on the device with ``hash_token_rows`` using
        the optional lengths/mask). Validation costs one host sync; ``validate=False`` skips it for
        data you already trust.
        """
        given = {"group": group, "traj": traj, "step": step, "state": state, "next_state": next_state,
                 "success": success, "valid": valid, "episode_reward": episode_reward, "reward": reward,
                 "cost": cost}
        device = None
        for name, value in given.items():
            if value is None and name == "cost":
                continue
            if not isinstance(value, torch.Tensor):
                raise ValueError(f"field '{name}': expected a torch.Tensor, got {type(value).__name__}")
            if device is None:
                device = value.device
            elif value.device != device:
                raise ValueError(f"field '{name}' is on {value.device}, but 'group' is on {device}")
        if state.dim() == 2:
            state = hash_token_rows(state, lengths=state_lengths, mask=state_mask)
        if next_state.dim() == 2:
            next_state = hash_token_rows(next_state, lengths=next_state_lengths, mask=next_state_mask)
        given["state"], given["next_state"] = state, next_state

        n = group.shape[0] if group.dim() == 1 else -1
        for name, value in given.items():
            if value is None:
                continue
            if value.dim() != 1:
                raise ValueError(f"field '{name}' must be 1-D (one value per step), got shape {tuple(value.shape)}")
            if value.shape[0] != n:
                raise ValueError(f"mismatched column lengths: field '{name}' has {value.shape[0]} rows, "
                                 f"'group' has {n}")
        for name in ("group", "traj", "step", "state", "next_state"):
            if given[name].dtype.is_floating_point or given[name].dtype == torch.bool:
                raise ValueError(f"field '{name}' must be an integer tensor, got {given[name].dtype}")
        for name in ("episode_reward", "reward", "cost"):
            if given[name] is not None and not (given[name].dtype.is_floating_point
                                                or given[name].dtype in _INT_DTYPES
                                                or given[name].dtype == torch.bool):
                raise ValueError(f"field '{name}' must be numeric, got {given[name].dtype}")

        group_labels, dense_group = torch.unique(group.to(torch.int64), return_inverse=True)
        traj_labels, dense_traj = torch.unique(traj.to(torch.int64), return_inverse=True)
        # Columns are stored contiguous: the kernels read them with unit stride, and a column sliced from a
        # [rows, fields] tensor is a strided view.
        batch = cls(
            group=dense_group, traj=dense_traj, step=_column(step, torch.int64),
            state=_column(state, torch.int64), next_state=_column(next_state, torch.int64),
            success=_column(success, torch.bool), valid=_column(valid, torch.bool),
            episode_reward=_column(episode_reward, torch.float64), reward=_column(reward, torch.float64),
            cost=_column(cost, torch.float64) if cost is not None else None,
            group_labels=group_labels, traj_labels=traj_labels)
        if validate:
            if success.dtype != torch.bool:
                _check_binary(success, "success")
            if valid.dtype != torch.bool:
                _check_binary(valid, "valid")
            _validate(batch)
        return batch

    @classmethod
    def empty(cls, device: str | torch.device = "cpu") -> "StepBatch":
        i64 = torch.empty(0, dtype=torch.int64, device=device)
        f64 = torch.empty(0, dtype=torch.float64, device=device)
        b = torch.empty(0, dtype=torch.bool, device=device)
        return cls(group=i64, traj=i64, step=i64, state=i64, next_state=i64, success=b, valid=b,
                   episode_reward=f64, reward=f64, group_labels=[], traj_labels=[])


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _column(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return values.to(dtype).contiguous()


# -------------------------------------------------------------------------------------------------
# Column conversion (host), with errors naming the row
# -------------------------------------------------------------------------------------------------

def _raise_missing_field(records, names):
    for i, r in enumerate(records):
        if not isinstance(r, Mapping):
            raise ValueError(f"row {i}: expected a mapping of step fields, got {type(r).__name__}")
        for name in names:
            if name not in r:
                if name == "cost":
                    raise ValueError(f"row {i}: missing field 'cost' (row 0 has one; give cost on every "
                                     "row or on none)")
                raise ValueError(f"row {i}: missing field '{name}'")
    raise AssertionError("unreachable: itemgetter failed but every row has every field")


def _dense_ids(values: Sequence, name: str) -> tuple[list[int], list]:
    """Dense ids in order of first appearance, and the labels they stand for."""
    try:
        labels = list(dict.fromkeys(values))
    except TypeError:
        for i, v in enumerate(values):
            try:
                hash(v)
            except TypeError:
                raise ValueError(f"row {i}: field '{name}' must be hashable, got {type(v).__name__}") from None
        raise
    index = {label: i for i, label in enumerate(labels)}
    return list(map(index.__getitem__, values)), labels


def _hash_column(hasher: KeyHasher, values: Sequence, name: str) -> list[int]:
    try:
        return hasher.keys(values)
    except TypeError:
        for i, v in enumerate(values):
            try:
                hasher(v)
            except TypeError as err:
                raise ValueError(f"row {i}: field '{name}': {err}") from None
        raise


# These converters are shared with graphgpo.integrations.verl; ``label`` names the column in errors
# ("field 'reward'", "key 'is_action_valid'").

def int_column(values: Sequence, label: str) -> np.ndarray:
    """int64 array of a column of integers (bools rejected), or ValueError naming the first bad row."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu" and arr.ndim == 1:
        return arr.astype(np.int64, copy=False)
    for i, v in enumerate(values):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"row {i}: {label} must be an integer, got {v!r}")
    return np.asarray(values, dtype=np.int64)


def bool_column(values: Sequence, label: str, *, accept_float: bool = False) -> np.ndarray:
    """bool array of a column of bools or 0/1 integers (and 0.0/1.0 floats with ``accept_float``)."""
    arr = np.asarray(values)
    if arr.ndim == 1 and arr.dtype.kind == "b":
        return arr
    if arr.ndim == 1 and arr.dtype.kind in "iu" and bool(np.isin(arr, (0, 1)).all()):
        return arr.astype(bool)
    numbers = (int, np.integer, float, np.floating) if accept_float else (int, np.integer)
    out = np.empty(len(values), dtype=bool)
    for i, v in enumerate(values):
        if not (isinstance(v, (bool, np.bool_)) or (isinstance(v, numbers) and v in (0, 1))):
            raise ValueError(f"row {i}: {label} must be a bool (or 0/1), got {v!r}")
        out[i] = bool(v)
    return out


def float_column(values: Sequence, label: str) -> np.ndarray:
    """float64 array of a column of numbers, or ValueError naming the first bad row."""
    try:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError
    except (TypeError, ValueError):
        for i, v in enumerate(values):
            try:
                if np.ndim(v) != 0:
                    raise TypeError
                float(v)
            except (TypeError, ValueError):
                raise ValueError(f"row {i}: {label} must be a number, got {v!r}") from None
        raise
    return arr


def _check_binary(values: torch.Tensor, name: str) -> None:
    bad = ~((values == 0) | (values == 1))
    if bool(bad.any()):
        row = int(bad.nonzero()[0, 0])
        raise ValueError(f"row {row}: field '{name}' must be a bool (or 0/1), got {values[row].item()!r}")


# -------------------------------------------------------------------------------------------------
# Batch invariants (vectorised; one host sync when the batch is valid)
# -------------------------------------------------------------------------------------------------

def _validate(b: StepBatch) -> None:
    n = b.num_rows
    if n == 0:
        return
    # Sort rows by (traj, step): every per-trajectory rule becomes a comparison with the previous row.
    order = torch.argsort(b.step, stable=True)
    order = order[torch.argsort(b.traj[order], stable=True)]
    traj, step = b.traj[order], b.step[order]
    same_traj = traj[1:] == traj[:-1]
    first_of_traj = torch.ones(n, dtype=torch.bool, device=b.device)
    first_of_traj[1:] = ~same_traj
    prev_step = torch.cat([step.new_full((1,), -1), step[:-1]])

    checks = {
        "nonfinite_reward": ~torch.isfinite(b.reward),
        "nonfinite_episode_reward": ~torch.isfinite(b.episode_reward),
        "negative_step": b.step < 0,
    }
    if b.cost is not None:
        checks["bad_cost"] = ~torch.isfinite(b.cost) | (b.cost <= 0)
    sorted_checks = {
        "duplicate_step": ~first_of_traj & (step == prev_step),
        "step_gap": torch.where(first_of_traj, step != 0, step != prev_step + 1),
    }
    for name in ("group", "success", "episode_reward"):
        col = getattr(b, name)[order]
        changed = torch.zeros(n, dtype=torch.bool, device=b.device)
        changed[1:] = same_traj & (col[1:] != col[:-1])
        sorted_checks[f"varying_{name}"] = changed

    flags = torch.stack([f.any() for f in list(checks.values()) + list(sorted_checks.values())])
    if not bool(flags.any()):  # the one host sync on the happy path
        return
    _raise_first_problem(b, checks, sorted_checks, order)


def _label(labels, dense_id: int):
    if labels is None:
        return dense_id
    label = labels[dense_id]
    return label.item() if isinstance(label, torch.Tensor) else label


def _raise_first_problem(b: StepBatch, checks, sorted_checks, order) -> None:
    def row_of(mask, sorted_positions=False):
        idx = mask.nonzero()
        if idx.numel() == 0:
            return None
        if sorted_positions:
            return int(order[idx[:, 0]].min())
        return int(idx[0, 0])

    def where(row):
        traj = _label(b.traj_labels, int(b.traj[row]))
        return f"row {row} (traj {traj!r}, step {int(b.step[row])})"

    row = row_of(checks["nonfinite_reward"])
    if row is not None:
        raise ValueError(f"{where(row)}: field 'reward' is not finite ({b.reward[row].item()})")
    row = row_of(checks["nonfinite_episode_reward"])
    if row is not None:
        raise ValueError(f"{where(row)}: field 'episode_reward' is not finite ({b.episode_reward[row].item()})")
    if "bad_cost" in checks:
        row = row_of(checks["bad_cost"])
        if row is not None:
            raise ValueError(f"{where(row)}: field 'cost' must be finite and > 0, got {b.cost[row].item()}")
    row = row_of(checks["negative_step"])
    if row is not None:
        raise ValueError(f"{where(row)}: field 'step' must be >= 0")

    # Trajectory rules: report the row that breaks the rule against an earlier row of its trajectory.
    sorted_index = order
    for key, message in (
        ("varying_group", "field 'group': trajectory is in two groups ({} and {})"),
        ("varying_success", "field 'success' differs within the trajectory ({} vs {})"),
        ("varying_episode_reward", "field 'episode_reward' differs within the trajectory ({} vs {})"),
        ("duplicate_step", "duplicate (traj, step): same as row {}"),
        ("step_gap", "field 'step': steps of a trajectory must be contiguous from 0 (previous step {})"),
    ):
        bad = sorted_checks[key].nonzero()
        if bad.numel() == 0:
            continue
        pos = int(bad[0, 0])
        row, prev = int(sorted_index[pos]), (int(sorted_index[pos - 1]) if pos > 0 else None)
        if key == "varying_group":
            labels = b.group_labels
            g_row, g_prev = int(b.group[row]), int(b.group[prev])
            show = (_label(labels, g_prev), _label(labels, g_row))
            raise ValueError(f"{where(row)}: " + message.format(*(repr(x) for x in show)))
        if key == "varying_success":
            raise ValueError(f"{where(row)}: " + message.format(bool(b.success[prev]), bool(b.success[row])))
        if key == "varying_episode_reward":
            raise ValueError(f"{where(row)}: " + message.format(b.episode_reward[prev].item(),
                                                                 b.episode_reward[row].item()))
        if key == "duplicate_step":
            raise ValueError(f"{where(row)}: " + message.format(prev))
        first = pos == 0 or int(b.traj[sorted_index[pos - 1]]) != int(b.traj[row])
        detail = "none: the trajectory does not start at step 0" if first else int(b.step[prev])
        raise ValueError(f"{where(row)}: " + message.format(detail))
    raise AssertionError("validation flagged a problem but none was found")
