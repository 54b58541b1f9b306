"""StepBatch: one row per environment step, stored as columns of tensors on one device.

Build it from Python records (``from_records``; states are hashed on the host with a stable hash) or
from tensors already on a device (``from_tensors``; int64 keys, or token-id rows hashed in place).
Both validate the batch once, so backends can rely on the invariants listed in SPEC.md:
each trajectory lies in one group, its steps are exactly 0..L-1, ``success`` and ``episode_reward``
are constant within it, rewards and costs are finite and costs are positive.
"""

from __future__ import annotations

import functools
import itertools
import operator
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from operator import itemgetter
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from .backends import host_sync
from .backends.cpu_threads import cpu_threads
from .backends.torch_graph import segment_counts
from .columns import (as_column, bool_column, dense_ids, float_column, gc_paused, int_column,
                      next_state_column, state_column)
from .hashing import KeyHasher, check_token_rows, hash_token_rows, token_row_collisions

__all__ = ["StepBatch", "REQUIRED_FIELDS", "KeyCollisionWarning", "int_column", "bool_column", "float_column"]

REQUIRED_FIELDS = ("group", "traj", "step", "state", "next_state", "success", "valid",
                   "episode_reward", "reward")
_COLUMNS = REQUIRED_FIELDS + ("cost",)


def _threads_of_group_device(build):
    """Run a tensor constructor on ``CPU_THREADS`` threads when its ``group`` column is on the CPU."""
    @functools.wraps(build)
    def wrapper(cls, group, *args, **kwargs):
        with cpu_threads(group.device if isinstance(group, torch.Tensor) else "cpu"):
            return build(cls, group, *args, **kwargs)

    return wrapper


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
    state_objects: key -> the state object it was hashed from (``from_records`` and ``from_columns``; similarity merge
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
        64-bit hash. Raises ValueError naming the row and field on bad input (rules: ``graphgpo.columns``).
        """
        records = records if isinstance(records, Sequence) else list(records)
        if len(records) == 0:
            return cls.empty(device=device)
        has_cost = isinstance(records[0], Mapping) and "cost" in records[0]
        names = _COLUMNS if has_cost else REQUIRED_FIELDS
        # One pass per field (map(itemgetter)) builds no per-row tuples: linear time, and with the cyclic
        # garbage collector paused it does not rescan the records (graphgpo.columns.gc_paused).
        with gc_paused():
            try:
                columns = {name: list(map(itemgetter(name), records)) for name in names}
            except (KeyError, TypeError):
                _raise_missing_field(records, names)
            if not has_cost and any(map(operator.contains, records, itertools.repeat("cost"))):
                row = next(i for i, r in enumerate(records) if "cost" in r)
                raise ValueError(f"row {row}: field 'cost' is given here but not in row 0; give cost on every row "
                                 "or on none")
            with cpu_threads(device):
                return cls._from_host_columns(columns, device, hasher)

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any], *, device: str | torch.device = "cpu",
                     hasher: KeyHasher | None = None) -> "StepBatch":
        """Batch from one column per field (``cost`` optional): lists, tuples, numpy arrays (ints, floats,
        bools, strings or objects), pandas Series or pyarrow arrays. The fastest way in from the host:
        integer group / traj / state columns are handled in numpy. Same rules and errors as
        ``from_records``."""
        if not isinstance(columns, Mapping):
            raise ValueError(f"columns must be a mapping of field name -> column, got {type(columns).__name__}")
        missing = [name for name in REQUIRED_FIELDS if name not in columns]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(map(repr, missing))}")
        names = _COLUMNS if "cost" in columns else REQUIRED_FIELDS
        converted = {name: as_column(columns[name]) for name in names}
        lengths = {name: len(column) for name, column in converted.items()}
        n = lengths["group"]
        for name, length in lengths.items():
            if length != n:
                raise ValueError(f"mismatched column lengths: field '{name}' has {length} rows, 'group' has {n}")
        if n == 0:
            return cls.empty(device=device)
        with cpu_threads(device):
            return cls._from_host_columns(converted, device, hasher)

    @classmethod
    def _from_host_columns(cls, cols: Mapping[str, Any], device, hasher: KeyHasher | None) -> "StepBatch":
        group, group_labels = dense_ids(cols["group"], "field 'group'")
        traj, traj_labels = dense_ids(cols["traj"], "field 'traj'")
        hasher = hasher or KeyHasher()
        step = int_column(cols["step"], "field 'step'")  # fields are checked in this order: errors name the first
        state = state_column(hasher, cols["state"], "field 'state'")
        arrays = {
            "group": group,
            "traj": traj,
            "step": step,
            "state": state,
            "next_state": next_state_column(hasher, cols["next_state"], cols["state"], state, "field 'next_state'"),
            "success": bool_column(cols["success"], "field 'success'"),
            "valid": bool_column(cols["valid"], "field 'valid'"),
            "episode_reward": float_column(cols["episode_reward"], "field 'episode_reward'"),
            "reward": float_column(cols["reward"], "field 'reward'"),
            "cost": float_column(cols["cost"], "field 'cost'") if "cost" in cols else None,
        }
        if hasher.collisions:
            warnings.warn(f"{len(hasher.collisions)} 64-bit state key collision(s) in this batch: "
                          f"{hasher.collisions[:3]}; these states are merged in the graph",
                          KeyCollisionWarning, stacklevel=3)
        tensors = {k: (torch.from_numpy(v).to(device) if v is not None else None) for k, v in arrays.items()}
        batch = cls(**tensors, group_labels=group_labels, traj_labels=traj_labels,
                    collisions=tuple(hasher.collisions), state_objects=hasher.objects)
        _validate(batch)
        return batch

    @classmethod
    @_threads_of_group_device
    def from_tensors(cls, group, traj, step, state, next_state, success, valid, episode_reward, reward,
                     cost=None, *, state_lengths=None, state_mask=None, next_state_lengths=None,
                     next_state_mask=None, validate: bool = True, check_collisions: bool = True) -> "StepBatch":
        """Batch from tensors already on a device, with no Python objects and no host copy of the data.

        group, traj: any int64 labels (made dense in sorted label order). state, next_state: int64
        keys ([N]) or token-id rows ([N, width], hashed on the device with ``hash_token_rows`` using
        the optional lengths/mask). Validation costs one host sync; ``validate=False`` skips it for
        data you already trust. Hashed token rows are checked for 64-bit collisions (distinct rows, same
        key: one sort, one gather, one sync), reported like ``from_records`` does (``KeyCollisionWarning``,
        ``batch.collisions``); ``check_collisions=False`` skips it.
        """
        given = {"group": group, "traj": traj, "step": step, "state": state, "next_state": next_state,
                 "success": success, "valid": valid, "episode_reward": episode_reward, "reward": reward,
                 "cost": cost}
        collisions = ()
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
        token_rows = {name: (rows, lengths, mask) for name, rows, lengths, mask in (
            ("state", state, state_lengths, state_mask), ("next_state", next_state, next_state_lengths, next_state_mask))
            if rows.dim() == 2}
        if token_rows:
            hash_rows = _token_row_hasher(device)
            keys = {name: hash_rows(rows, lengths, mask) for name, (rows, lengths, mask) in token_rows.items()}
            collisions = _token_row_collisions(token_rows, keys) if check_collisions else ()
            state, next_state = keys.get("state", state), keys.get("next_state", next_state)
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
                                                or given[name].dtype in _INT_DTYPES):
                raise ValueError(f"field '{name}' must be a number tensor (float or int, not bool), got "
                                 f"{given[name].dtype}")
        for name in ("success", "valid"):
            if given[name].is_complex():
                raise ValueError(f"field '{name}' must be a bool (or 0/1) tensor, got {given[name].dtype}")

        group_labels, dense_group = host_sync.unique(group.to(torch.int64), "from_tensors: dense group ids")
        traj_labels, dense_traj = host_sync.unique(traj.to(torch.int64), "from_tensors: dense trajectory ids")
        # Columns are stored contiguous: the kernels read them with unit stride, and a column sliced from a
        # [rows, fields] tensor is a strided view.
        batch = cls(
            group=dense_group, traj=dense_traj, step=_column(step, torch.int64),
            state=_column(state, torch.int64), next_state=_column(next_state, torch.int64),
            success=_column(success, torch.bool), valid=_column(valid, torch.bool),
            episode_reward=_column(episode_reward, torch.float64), reward=_column(reward, torch.float64),
            cost=_column(cost, torch.float64) if cost is not None else None,
            group_labels=group_labels, traj_labels=traj_labels, collisions=collisions)
        if validate:
            _validate(batch, {name: value for name, value in (("success", success), ("valid", valid))
                              if value.dtype != torch.bool})
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


def _token_row_hasher(device):
    """The Triton hash kernel where Triton is the default for ``device`` (the same bits), else torch's."""
    from graphgpo.backends import triton_by_default

    if triton_by_default(device):
        from graphgpo.kernels.hashing import hash_token_rows as kernel

        return lambda rows, lengths, mask: kernel(rows, lengths, mask)
    return lambda rows, lengths, mask: hash_token_rows(rows, lengths=lengths, mask=mask)


def _token_row_collisions(token_rows: dict, keys: dict) -> tuple:
    """(key, tokens, other_tokens) for keys shared by different token rows of the batch (state and
    next_state together, up to three keys); warns KeyCollisionWarning naming the rows."""
    names = list(token_rows)
    width = max(token_rows[name][0].shape[1] for name in names)
    tokens, masks = [], []
    for name in names:
        rows, lengths, mask = token_rows[name]
        rows_lengths, rows_mask = check_token_rows(rows, lengths, mask)
        n, w = rows.shape
        if rows_mask is None:
            lengths = rows_lengths if rows_lengths is not None else torch.full((n,), w, device=rows.device)
            rows_mask = torch.arange(w, device=rows.device).unsqueeze(0) < lengths.unsqueeze(1)
        tokens.append(torch.nn.functional.pad(rows, (0, width - w)))
        masks.append(torch.nn.functional.pad(rows_mask, (0, width - w)))
    if len({t.dtype for t in tokens}) > 1:
        tokens = [t.to(torch.int64) for t in tokens]
    tokens, masks = torch.cat(tokens), torch.cat(masks)
    all_keys = torch.cat([keys[name] for name in names])
    count, pairs = token_row_collisions(tokens, all_keys, mask=masks)
    if count == 0:
        return ()
    n = token_rows[names[0]][0].shape[0]
    where = lambda i: f"{names[i // n]} row {i % n}"  # noqa: E731
    found = tuple((int(all_keys[a]), tuple(tokens[a][masks[a]].tolist()), tuple(tokens[b][masks[b]].tolist()))
                  for a, b in pairs)
    shown = "; ".join(f"{where(a)} and {where(b)}" for a, b in pairs)
    warnings.warn(f"{count} 64-bit key(s) shared by different token rows in this batch (e.g. {shown}); these states "
                  "are merged in the graph", KeyCollisionWarning, stacklevel=3)
    return found


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


# -------------------------------------------------------------------------------------------------
# Batch invariants (vectorised; one host sync when the batch is valid)
# -------------------------------------------------------------------------------------------------

REWARD_LIMIT = 1e20
"""Largest |episode_reward|, |reward| and cost accepted: beyond it sums of squares in the statistics (float64)
or the advantages (float32) could overflow, and backends would disagree on how (NaN, inf or an error)."""


def _validate(b: StepBatch, flags: Mapping[str, torch.Tensor] | None = None) -> None:
    """Check the batch invariants (one host sync when all hold). ``flags``: success / valid columns as given
    (not bool), to check that they hold 0 or 1."""
    n = b.num_rows
    if n == 0:
        return
    checks = {f"nonbinary_{name}": (values != 0) & (values != 1) for name, values in (flags or {}).items()}
    checks.update({
        "bad_reward": ~(b.reward.abs() <= REWARD_LIMIT),  # NaN fails <= too
        "bad_episode_reward": ~(b.episode_reward.abs() <= REWARD_LIMIT),
        "negative_step": b.step < 0,
    })
    if b.cost is not None:
        checks["bad_cost"] = ~((b.cost > 0) & (b.cost <= REWARD_LIMIT))
    # Happy path without a sort: if every trajectory's steps are exactly 0..L-1 (L its row count), row
    # (traj, step) belongs at position start[traj] + step of the (traj, step) order, and those positions are
    # a permutation of 0..n-1. "Not a permutation" is one flag; only a bad batch pays for the sort that
    # finds the row to name (_sorted_checks).
    lengths = segment_counts(b.traj, b.num_trajs)
    starts = torch.cumsum(lengths, 0) - lengths
    step_ok = (b.step >= 0) & (b.step < lengths.index_select(0, b.traj))
    position = torch.where(step_ok, starts.index_select(0, b.traj) + b.step, 0)
    checks["not_contiguous"] = segment_counts(position, n) != 1
    order = torch.zeros_like(position).index_copy_(0, position, torch.arange(n, device=b.device))
    found = torch.cat(list(checks.values()) + list(_varying(b, order).values())).any()  # few ops: small batches too
    if host_sync.to_int(found, "batch validation") == 0:  # the one host sync on the happy path
        return
    order, sorted_checks = _sorted_checks(b)
    _raise_first_problem(b, checks, sorted_checks, order, flags or {})


def _varying(b: StepBatch, order: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows (in ``order``, sorted by (traj, step)) whose group / success / episode_reward differ from the
    previous row's of the same trajectory."""
    traj = b.traj.index_select(0, order)
    same_traj = traj[1:] == traj[:-1]
    out = {}
    for name in ("group", "success", "episode_reward"):
        col = getattr(b, name).index_select(0, order)
        changed = torch.zeros(b.num_rows, dtype=torch.bool, device=b.device)
        changed[1:] = same_traj & (col[1:] != col[:-1])
        out[f"varying_{name}"] = changed
    return out


def _sorted_checks(b: StepBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Rows sorted by (traj, step), and the per-trajectory rules as flags in that order (error path)."""
    n = b.num_rows
    order = torch.argsort(b.step, stable=True)
    order = order[torch.argsort(b.traj[order], stable=True)]
    traj, step = b.traj[order], b.step[order]
    first_of_traj = torch.ones(n, dtype=torch.bool, device=b.device)
    first_of_traj[1:] = traj[1:] != traj[:-1]
    prev_step = torch.cat([step.new_full((1,), -1), step[:-1]])
    return order, {
        **_varying(b, order),
        "duplicate_step": ~first_of_traj & (step == prev_step),
        "step_gap": torch.where(first_of_traj, step != 0, step != prev_step + 1),
    }


def _label(labels, dense_id: int):
    if labels is None:
        return dense_id
    label = labels[dense_id]
    return label.item() if isinstance(label, torch.Tensor) else label


def _raise_first_problem(b: StepBatch, checks, sorted_checks, order, flags) -> None:
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

    for name, values in flags.items():
        row = row_of(checks[f"nonbinary_{name}"])
        if row is not None:
            raise ValueError(f"row {row}: field '{name}' must be a bool (or 0/1), got {values[row].item()!r}")
    for name in ("reward", "episode_reward"):
        row = row_of(checks[f"bad_{name}"])
        if row is not None:
            raise ValueError(f"{where(row)}: field '{name}' must be finite with |{name}| <= {REWARD_LIMIT:g}, got "
                             f"{getattr(b, name)[row].item()}")
    if "bad_cost" in checks:
        row = row_of(checks["bad_cost"])
        if row is not None:
            raise ValueError(f"{where(row)}: field 'cost' must be finite, > 0 and <= {REWARD_LIMIT:g}, got "
                             f"{b.cost[row].item()}")
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
