"""Host columns -> numpy arrays for ``StepBatch``: one rule per field, errors naming the row and the field.

Shared by ``StepBatch.from_records``, ``StepBatch.from_columns`` and the verl adapter, so every way into a
batch accepts and rejects the same values:

* ``step``: integers (Python or numpy), not bools; within int64.
* ``success``, ``valid``: bools, or numbers equal to 0 or 1 (verl-agent sends 0.0 / 1.0). Not strings.
* ``episode_reward``, ``reward``, ``cost``: real numbers (Python or numpy ints and floats), not bools, not
  strings. Finiteness and magnitude are checked once the batch exists (``StepBatch`` validation), for every
  constructor alike.
* ``state``, ``next_state``: str, bytes, int, tuple or numpy integer/str arrays, never floats (1.0 == 1 in
  Python, so a float state would silently merge with an int one); hashed by ``graphgpo.hashing``.
* ``group``, ``traj``: any hashable labels, made dense in order of first appearance.

A column may be a list or tuple, a numpy array, or anything with ``to_numpy()`` (pandas Series, pyarrow
arrays). Type checks scan a column's set of types at C speed (``set(map(type, column))``) and look at single
values only to name the first bad row.
"""

from __future__ import annotations

import contextlib
import gc
import operator
from typing import Any, Sequence

import numpy as np

from .hashing import KeyHasher, check_key_types

_INTS = (int, np.integer)
_BOOLS = (bool, np.bool_)
_NUMBERS = (int, float, np.integer, np.floating)


def as_column(values: Any) -> Sequence | np.ndarray:
    """A list/tuple/numpy array as is; pandas / pyarrow columns (and anything else with ``to_numpy``) as
    numpy; torch CPU tensors as numpy."""
    if isinstance(values, (list, tuple, np.ndarray)):
        return values
    module = type(values).__module__
    if module.startswith("torch"):
        return values.detach().cpu().numpy()
    if module.startswith("pyarrow"):
        return values.to_numpy(zero_copy_only=False)
    if hasattr(values, "to_numpy"):
        return values.to_numpy()
    if isinstance(values, Sequence):
        return values
    raise ValueError(f"a column must be a sequence or an array, got {type(values).__name__}")


def _first_bad_row(values: Sequence, ok) -> int:
    return next(i for i, v in enumerate(values) if not ok(v))


def _types_ok(values: Sequence, allowed: tuple, refused: tuple = ()) -> bool:
    return all(issubclass(t, allowed) and not issubclass(t, refused) for t in set(map(type, values)))


def _convert_numbers(values: Sequence, label: str, types: tuple, dtype, what: str, fits, too_big: str) -> np.ndarray:
    """A list of Python / numpy numbers of ``types`` (bools refused) as ``dtype``; ValueError naming the first
    row of another type, or the first one ``fits`` refuses when the conversion overflows."""
    is_ok = lambda v: isinstance(v, types) and not isinstance(v, _BOOLS)  # noqa: E731
    if not _types_ok(values, types, _BOOLS):
        row = _first_bad_row(values, is_ok)
        raise ValueError(f"row {row}: {label} must be {what}, got {values[row]!r}")
    try:
        return np.array(values, dtype=dtype)
    except OverflowError:
        row = _first_bad_row(values, fits)
        raise ValueError(f"row {row}: {label} {too_big}, got {values[row]}") from None


def int_column(values: Sequence, label: str) -> np.ndarray:
    """int64 array of a column of integers (bools refused), or ValueError naming the first bad row."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu":
        if values.dtype == np.uint64 and values.size and int(values.max()) >= 1 << 63:
            row = int(np.argmax(values >= np.uint64(1 << 63)))
            raise ValueError(f"row {row}: {label} must fit in int64, got {int(values[row])}")
        return values.astype(np.int64, copy=False)
    values = values.tolist() if isinstance(values, np.ndarray) else values
    return _convert_numbers(values, label, _INTS, np.int64, "an integer", lambda v: -(1 << 63) <= int(v) < (1 << 63),
                            "must fit in int64")


def bool_column(values: Sequence, label: str) -> np.ndarray:
    """bool array of a column of flags: bools, or numbers equal to 0 or 1."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "biuf":
        bad = (values != 0) & (values != 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise ValueError(f"row {row}: {label} must be a bool (or 0/1), got {values[row].item()!r}")
        return values.astype(bool)
    values = values.tolist() if isinstance(values, np.ndarray) else values
    if _types_ok(values, _BOOLS):
        return np.fromiter(values, bool, len(values))  # ~25 ns per value against ~40 for np.array(dtype=bool)
    ok = lambda v: isinstance(v, _BOOLS) or (isinstance(v, _NUMBERS) and v in (0, 1))  # noqa: E731
    if _types_ok(values, _BOOLS + _NUMBERS):
        arr = np.array(values, dtype=np.float64)
        if ((arr == 0) | (arr == 1)).all():
            return arr.astype(bool)
    row = _first_bad_row(values, ok)
    raise ValueError(f"row {row}: {label} must be a bool (or 0/1), got {values[row]!r}")


def float_column(values: Sequence, label: str) -> np.ndarray:
    """float64 array of a column of real numbers (ints and floats; bools and strings refused)."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iuf":
        return values.astype(np.float64, copy=False)
    values = values.tolist() if isinstance(values, np.ndarray) else values
    return _convert_numbers(values, label, _NUMBERS, np.float64, "a number", lambda v: abs(v) < 1e308,
                            "is too large for a float64")


def dense_ids(values: Sequence, label: str) -> tuple[np.ndarray, list]:
    """Dense ids (int64) in order of first appearance, and the labels they stand for.

    Integer arrays: rows come in runs of one label (a trajectory's steps, a task's rollouts), so only the first
    row of each run goes through ``np.unique`` (a label's first row always starts a run). Lists: two passes
    over a dict (a pointer comparison per row to find runs costs as much as a dict pass; measured)."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iub":
        run_starts = np.flatnonzero(values[1:] != values[:-1]) + 1
        if len(values):
            run_starts = np.concatenate([[0], run_starts])
        unique, first, inverse = np.unique(values[run_starts], return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        run_lengths = np.diff(np.append(run_starts, len(values)))
        return np.repeat(rank[inverse].astype(np.int64), run_lengths), unique[order].tolist()
    values = values.tolist() if isinstance(values, np.ndarray) else values
    try:
        labels = list(dict.fromkeys(values))
    except TypeError:
        row = _first_bad_row(values, _hashable)
        raise ValueError(f"row {row}: {label} must be hashable, got {type(values[row]).__name__}") from None
    index = {value: i for i, value in enumerate(labels)}
    return np.fromiter(map(index.__getitem__, values), np.int64, len(values)), labels


def _hashable(value) -> bool:
    try:
        hash(value)
        return True
    except TypeError:
        return False


def state_column(hasher: KeyHasher, values: Sequence, label: str, rows: Sequence[int] | None = None) -> np.ndarray:
    """int64 keys of a column of state objects (see the module docstring), hashed with ``hasher``. ``rows``:
    the row of each value, when ``values`` is a subset of a column (for the error message)."""
    try:
        return hasher.keys(values)
    except TypeError:
        values = values.tolist() if isinstance(values, np.ndarray) else values
        for i, value in enumerate(values):
            try:
                check_key_types([value])
                hasher.keys([value])
            except TypeError as err:
                raise ValueError(f"row {i if rows is None else rows[i]}: {label}: {err}") from None
        raise


def next_state_column(hasher: KeyHasher, values: Sequence, states: Sequence, state_keys: np.ndarray,
                      label: str) -> np.ndarray:
    """Keys of the next_state column, given the state column and its keys. A row's next_state is usually the
    very object of the next row's state (the next step of its trajectory): those take that row's key after a
    pointer comparison; only the others are looked up (same keys, same errors as ``state_column``)."""
    n = len(values)
    if not (isinstance(values, (list, tuple)) and isinstance(states, (list, tuple))) or n < 2:
        return state_column(hasher, values, label)
    chained = np.zeros(n, bool)
    chained[:-1] = np.fromiter(map(operator.is_, values[:-1], states[1:]), bool, n - 1)
    keys = np.empty(n, np.int64)
    keys[:-1][chained[:-1]] = state_keys[1:][chained[:-1]]
    own = np.flatnonzero(~chained)
    rows = own.tolist()
    keys[own] = state_column(hasher, list(map(values.__getitem__, rows)), label, rows)
    return keys


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector while a large batch is transposed: the millions of short-lived
    tuples would otherwise make it walk every record again and again (time grows faster than linear)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
