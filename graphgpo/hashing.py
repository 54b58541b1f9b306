"""State keys: 64-bit identities for states.

Two ways in:

* ``stable_key(obj)`` / ``KeyHasher.keys(column)`` hash Python objects (str, bytes, int, tuple, numpy
  integer/str arrays) on the host with numpy, vectorised over a column, so a state gets the same key in
  every process and on every machine (Python's ``hash`` is salted per process for strings).
* ``hash_token_rows(tokens, lengths=None, mask=None)`` hashes padded token-id rows on the tokens' own
  device with PyTorch integer ops, so keys for observations that are already tokenised never leave the
  GPU. ``graphgpo.kernels`` has a Triton kernel that computes the same bits.

Token-row hash (all arithmetic mod 2**64, ``>>`` logical)::

    mix(z)  = splitmix64 finaliser (xor-shift-multiply, full avalanche)
    acc     = sum_i mix(t_i * GOLDEN + mix(i + POS_SEED))      over the row's tokens
    key     = mix(acc ^ mix(L + LEN_SEED))                      L = number of tokens

Object hash: the same sum over the object's bytes read as 8-byte little-endian words (zero-padded)::

    acc     = sum_j mix(w_j * GOLDEN + mix(j + POS_SEED))
    key     = mix(acc ^ mix(L + TYPE_SEEDS[type]))              L = number of bytes

with the bytes of a str its UTF-8 encoding, of an int ``int.to_bytes((bit_length + 8) // 8, "little",
signed=True)``, of a tuple the int64 keys of its items (little-endian), of a numpy array a length-prefixed
``dtype.str|shape`` header and its C-order bytes. Vectorised in numpy it costs ~0.1-0.3 us per distinct
short string, against ~1-4 us for one BLAKE2b call per object (benchmarks/RESULTS.md).

Each term depends on (word, position) through a full-avalanche mixer, so the sum behaves like a sum
of independent random 64-bit words: two different rows collide with probability ~2**-64, i.e. about
n**2 / 2**65 expected collisions among n distinct rows (1e7 rows: ~3e-6). The sum makes the hash a
single parallel reduction per row instead of a serial chain over positions. It is not a cryptographic
hash: collisions can be forced on purpose (a generalised birthday search), which is why both paths check
for them (``KeyHasher.collisions``, ``token_row_collisions``).
"""

from __future__ import annotations

import itertools
import struct
from typing import Any, Sequence

import numpy as np
import torch

from graphgpo.backends import host_sync

__all__ = [
    "stable_key",
    "object_keys",
    "check_key_types",
    "KeyHasher",
    "hash_token_rows",
    "check_token_rows",
    "token_row_collisions",
    "mix64",
    "to_signed64",
]

_MASK64 = (1 << 64) - 1
MIX_MUL1 = 0xBF58476D1CE4E5B9
MIX_MUL2 = 0x94D049BB133111EB
GOLDEN = 0x9E3779B97F4A7C15
POS_SEED = 0x632BE59BD9B4E019
LEN_SEED = 0xD6E8FEB86659FD93


def to_signed64(value: int) -> int:
    """Reinterpret an unsigned 64-bit integer as int64 (two's complement)."""
    value &= _MASK64
    return value - (1 << 64) if value >= (1 << 63) else value


# ---------------------------------------------------------------------------------------------------
# Host hashing of Python objects (numpy, vectorised over a column)
# ---------------------------------------------------------------------------------------------------

TYPE_SEEDS = {"str": 0x8EBC6AF09C88C6E3, "bytes": 0x589965CC75374CC3, "int": 0x1D8E4E27C47D124F,
              "tuple": 0xA0761D6478BD642F, "array": 0xE7037ED1A0B428DB}
"""Per-type seed of the length term: "1", b"1", 1, (1,) and np.array([1]) get different keys."""

_U64 = np.uint64
_CACHE_WORDS = 1 << 17  # 1 MiB of uint64 lanes per slice of the vectorised hash
_INT_TYPES = (int, np.integer)  # bool and np.bool_ are ints here (True == 1, as in a dict)


def _mix_np(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on uint64 lanes, in place (numpy wraps multiplication mod 2**64)."""
    z ^= z >> _U64(30)
    z *= _U64(MIX_MUL1)
    z ^= z >> _U64(27)
    z *= _U64(MIX_MUL2)
    z ^= z >> _U64(31)
    return z


def _finish(acc: np.ndarray, lengths: np.ndarray, kind: str) -> np.ndarray:
    return _mix_np(acc ^ _mix_np(lengths.astype(_U64) + _U64(TYPE_SEEDS[kind]))).view(np.int64)


def _bytes_keys(chunks: list[bytes], kind: str) -> np.ndarray:
    """Keys of byte strings: sum over 8-byte little-endian words of mix(word * GOLDEN + mix(j + POS_SEED)),
    finished with the length and the type seed. Strings are padded in buckets of power-of-two word counts,
    so one long string does not pad all the others; the padding words' terms (a constant per position) are
    taken off the sums again, which costs one gather instead of a mask."""
    n = len(chunks)
    lengths = np.fromiter(map(len, chunks), np.int64, n)
    words = (lengths + 7) >> 3
    width = np.where(words > 1, 1 << np.ceil(np.log2(np.maximum(words, 1))).astype(np.int64), words)
    acc = np.zeros(n, _U64)
    # the widths present (0 and powers of two): bincount of their bit lengths is far cheaper than np.unique
    for bits in np.flatnonzero(np.bincount(np.log2(np.maximum(width, 1)).astype(np.int64) + (width > 0))).tolist():
        if bits == 0:
            continue
        w = 1 << (bits - 1)
        idx = np.flatnonzero(width == w)
        block = np.array(chunks if len(idx) == n else [chunks[i] for i in idx.tolist()], dtype=f"S{8 * w}")
        lanes = block.view("<u8").reshape(len(idx), w)
        position = _mix_np(np.arange(w, dtype=_U64) + _U64(POS_SEED))
        sums = np.empty(len(idx), _U64)
        step = max(1, _CACHE_WORDS // w)  # rows per slice: the temporaries stay in cache (2.5x faster)
        for start in range(0, len(idx), step):
            terms = lanes[start:start + step] * _U64(GOLDEN)
            terms += position
            sums[start:start + step] = _mix_np(terms).sum(axis=1, dtype=_U64)
        # a padding word is 0, so its term is mix(position): subtract those of positions >= words
        padding = np.concatenate([np.cumsum(_mix_np(position.copy())[::-1], dtype=_U64)[::-1], [_U64(0)]])
        acc[idx] = sums - padding[words[idx]]
    return _finish(acc, lengths, kind)


def _int_keys(values: list) -> np.ndarray:
    """Keys of integers: the bytes of int.to_bytes((bit_length + 8) // 8, "little", signed=True)."""
    try:
        arr = np.array(values, dtype=np.int64)
    except OverflowError:  # beyond int64: through the bytes of each value
        arr = None
    if arr is None or (arr == np.iinfo(np.int64).min).any():  # INT64_MIN needs 9 bytes
        chunks = [int(v).to_bytes((int(v).bit_length() + 8) // 8, "little", signed=True) for v in values]
        return _bytes_keys(chunks, "int")
    magnitude = np.abs(arr)
    width = 1 + sum((magnitude >= (1 << (8 * k - 1))).astype(np.int64) for k in range(1, 8))
    masks = np.array([0] + [(1 << (8 * w)) - 1 for w in range(1, 8)] + [_MASK64], dtype=_U64)
    word = arr.view(_U64) & masks[width]  # array arithmetic wraps mod 2**64 without warnings
    acc = _mix_np(word * _U64(GOLDEN) + _mix_np(np.array(POS_SEED, dtype=_U64)))
    return _finish(acc, width, "int")


def _array_bytes(obj) -> bytes:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if obj.dtype.kind not in "biuSUa":
        raise TypeError(f"unsupported state key: array of dtype {obj.dtype} (use integer, bool, bytes or str "
                        "arrays; float states do not compare exactly)")
    arr = np.ascontiguousarray(obj)
    header = f"{arr.dtype.str}|{arr.shape}".encode()
    return struct.pack("<q", len(header)) + header + arr.tobytes()


def _kind(cls: type) -> str:
    """The hashing kind of a state object's type; TypeError for types that are no state keys."""
    if issubclass(cls, str):
        return "str"
    if issubclass(cls, (bytes, bytearray, memoryview)):
        return "bytes"
    if issubclass(cls, (bool, np.bool_)) or issubclass(cls, _INT_TYPES):
        return "int"
    if issubclass(cls, tuple):
        return "tuple"
    if issubclass(cls, (np.ndarray, torch.Tensor)):
        return "array"
    raise TypeError(f"unsupported state key type {cls.__name__}: use str, bytes, int, tuple or a numpy integer/str "
                    "array (float states do not compare exactly), or pre-hashed int64 tensors through "
                    "StepBatch.from_tensors")


def check_key_types(objs: Sequence) -> None:
    """TypeError unless every object (and every item of a tuple, recursively) has a key type. Checks types,
    not values, so the verdict does not depend on which of two equal objects (1 and 1.0) comes first."""
    types = set(map(type, objs))
    for cls in types:
        _kind(cls)
    if any(issubclass(cls, tuple) for cls in types):
        items = [item for obj in objs if isinstance(obj, tuple) for item in obj]
        if items:
            check_key_types(items)


def object_keys(objs: Sequence) -> np.ndarray:
    """int64 keys of state objects (see the module docstring), vectorised by type."""
    n = len(objs)
    out = np.empty(n, np.int64)
    kinds = {cls: _kind(cls) for cls in set(map(type, objs))}
    if len(set(kinds.values())) == 1:
        groups = {next(iter(kinds.values())): (slice(None), objs)}  # one kind: no positions to scatter back
    else:
        groups = {}
        for i, obj in enumerate(objs):
            positions, members = groups.setdefault(kinds[type(obj)], ([], []))
            positions.append(i)
            members.append(obj)
    for kind, (positions, members) in groups.items():
        if kind == "str":
            keys = _bytes_keys([s.encode("utf-8", "surrogatepass") for s in members], "str")
        elif kind == "bytes":
            keys = _bytes_keys([bytes(b) for b in members], "bytes")
        elif kind == "int":
            keys = _int_keys(members)
        elif kind == "array":
            keys = _bytes_keys([_array_bytes(a) for a in members], "array")
        else:  # tuples: the little-endian int64 keys of their items, as bytes
            item_keys = object_keys([item for t in members for item in t]).astype("<i8")
            ends = np.cumsum([len(t) for t in members]).tolist()
            starts = [0] + ends[:-1]
            keys = _bytes_keys([item_keys[a:b].tobytes() for a, b in zip(starts, ends)], "tuple")
        out[positions if isinstance(positions, slice) else np.asarray(positions, dtype=np.int64)] = keys
    return out


def stable_key(obj: Any) -> int:
    """Stable signed 64-bit key of a state object (same value in every process and machine)."""
    return int(object_keys([obj])[0])


class KeyHasher:
    """Hashes columns of state objects with a memo (states repeat a lot) and detects 64-bit collisions.

    ``collisions`` lists ``(key, first_object, other_object)`` for two different objects that hashed to
    the same key within the lifetime of this hasher (one batch). ``hash_fn`` (one object -> int) replaces the
    stable hash, for tests.

    Every object given to ``keys`` gets a position (a running count over all calls). The memo maps each distinct
    object to the position of its first occurrence, and ``_key_at`` holds the key at those positions, so one
    ``dict.setdefault`` per object both finds the repeats and numbers the new objects (one pass over the
    column at C speed instead of a dedup pass and a lookup pass).
    """

    def __init__(self, hash_fn=None):
        self._hash_many = object_keys if hash_fn is None else (lambda objs: np.array([hash_fn(o) for o in objs],
                                                                                     dtype=np.int64))
        self._first: dict[Any, int] = {}       # hashable state object (or its content) -> position of its first copy
        self._key_at = np.empty(0, np.int64)  # position -> key (meaningful at first copies only)
        self._owner: dict[int, Any] = {}       # key -> first object seen with it
        self._text_only = True                 # every memoised object is a str or bytes (see _check_new_types)
        self.collisions: list[tuple[int, Any, Any]] = []

    def __call__(self, obj: Any) -> int:
        return int(self.keys((obj,))[0])

    @property
    def objects(self) -> dict[int, Any]:
        """key -> the first object hashed to it (so a batch can keep the text of its states)."""
        return self._owner

    def keys(self, objs: Sequence) -> np.ndarray:
        """int64 keys of a column of state objects (a sequence or a numpy array), hashing each distinct object
        once."""
        if isinstance(objs, np.ndarray):
            if objs.ndim == 1 and objs.dtype.kind in "iub":  # numbers: dedupe in numpy
                unique, inverse = np.unique(objs, return_inverse=True)
                return self.keys(unique.tolist())[inverse.reshape(-1)]
            objs = objs.tolist() if objs.ndim == 1 else list(objs)
        n, start, known = len(objs), len(self._key_at), len(self._first)
        if not self._text_only:  # a float could equal a memoised number or tuple: check every object's type
            check_key_types(objs)
        try:
            try:
                first = np.fromiter(map(self._first.setdefault, objs, itertools.count(start)), np.int64, n)
            except TypeError:  # unhashable objects (arrays, tensors, bytearrays): memoise them by content
                self._forget_since(known)
                check_key_types(objs)
                first = np.fromiter(map(self._first.setdefault, map(_memo_key, objs), itertools.count(start)),
                                    np.int64, n)
            new = np.fromiter(itertools.islice(self._first.values(), known, None), np.int64,
                              len(self._first) - known) - start  # rows of this call's new distinct objects
            objects = list(map(objs.__getitem__, new.tolist()))
            if self._text_only:
                self._check_new_types(objs, objects)
            key_at = np.empty(n, np.int64)
            if new.size:
                key_at[new] = self._learn(objects)
        except BaseException:  # e.g. an array of floats: leave the memo as it was, so the caller can retry
            self._forget_since(known)
            raise
        self._key_at = np.concatenate([self._key_at, key_at]) if start else key_at
        return self._key_at[first]

    def _check_new_types(self, objs: Sequence, objects: list) -> None:
        """Type check of a column from its new distinct objects alone, valid while every memoised object is a
        str or bytes: an object that is no str / bytes cannot equal one (1.0 == 1 is the danger, and
        ``1.0 != "1"``), so it is either among the new objects or absent. Once a number, tuple or array is
        memoised, every later column gets the full check."""
        types = set(map(type, objects))
        if all(issubclass(cls, (str, bytes)) for cls in types):
            return
        self._text_only = False
        check_key_types(objs)  # the column's own floats too: 1 and 1.0 in one column give one new object

    def _forget_since(self, known: int) -> None:
        """Drop the memo entries added after the first ``known`` (dicts keep insertion order)."""
        for obj in list(itertools.islice(self._first, known, None)):
            del self._first[obj]

    def _learn(self, objects: list) -> np.ndarray:
        """Keys of distinct new ``objects``; records collisions with each other and with earlier objects."""
        keys = self._hash_many(objects)
        owners = dict(zip(keys.tolist(), objects))
        if len(owners) == len(objects) and self._owner.keys().isdisjoint(owners):
            self._owner.update(owners)
            return keys
        for key, obj in zip(keys.tolist(), objects):
            first = self._owner.setdefault(key, obj)
            if first is not obj and _canonical(first) != _canonical(obj):
                self.collisions.append((key, first, obj))
        return keys


def _memo_key(obj: Any) -> Any:
    try:
        hash(obj)
        return obj
    except TypeError:
        return _content_key(obj)


def _content_key(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return ("ndarray", obj.dtype.str, obj.shape, obj.tobytes())
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"unsupported state key type {type(obj).__name__}: use str, bytes, int, tuple or a numpy "
                    "integer/str array")


def _canonical(obj: Any) -> Any:
    """A comparable form of a state object: equal forms always hash to the same key."""
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return _content_key(obj)
    if isinstance(obj, tuple):
        return ("tuple",) + tuple(_canonical(x) for x in obj)
    if isinstance(obj, (bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, (bool, np.bool_, np.integer)):
        return int(obj)
    return obj


# ---------------------------------------------------------------------------------------------------
# Device hashing of token rows (PyTorch; the Triton kernel matches it bit for bit)
# ---------------------------------------------------------------------------------------------------

def _i64(value: int) -> int:
    return to_signed64(value)


def _shr(z: torch.Tensor, shift: int) -> torch.Tensor:
    """Logical right shift of int64 lanes (torch's >> is arithmetic)."""
    return (z >> shift) & ((1 << (64 - shift)) - 1)


def mix64(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping multiplication = arithmetic mod 2**64)."""
    z = z ^ _shr(z, 30)
    z = z * _i64(MIX_MUL1)
    z = z ^ _shr(z, 27)
    z = z * _i64(MIX_MUL2)
    return z ^ _shr(z, 31)


def mix64_int(z: int) -> int:
    """Same finaliser on a Python int (for tests and host-side checks); returns unsigned."""
    z &= _MASK64
    z ^= z >> 30
    z = (z * MIX_MUL1) & _MASK64
    z ^= z >> 27
    z = (z * MIX_MUL2) & _MASK64
    return z ^ (z >> 31)


def check_token_rows(tokens: torch.Tensor, lengths=None, mask=None):
    """Validate hash_token_rows' arguments (shared with the Triton kernel's wrapper).

    Returns ``(lengths, mask)`` on the tokens' device: lengths as int64 [rows] or None, mask as bool
    [rows, width] or None (at most one of them given).
    """
    if tokens.dim() != 2:
        raise ValueError(f"tokens must be a 2-D [rows, width] tensor, got shape {tuple(tokens.shape)}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool or tokens.is_complex():
        raise ValueError(f"tokens must be an integer tensor, got {tokens.dtype}")
    if lengths is not None and mask is not None:
        raise ValueError("give lengths or mask, not both")
    rows, width = tokens.shape
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=tokens.device).to(torch.int64)
        if lengths.shape != (rows,):
            raise ValueError(f"lengths must have shape ({rows},), got {tuple(lengths.shape)}")
        bad = (lengths < 0) | (lengths > width)
        if rows and bool(bad.any()):  # one host sync, on the validation path
            i = int(bad.nonzero()[0, 0])
            raise ValueError(f"lengths[{i}] = {int(lengths[i])} is outside [0, {width}]")
    elif mask is not None:
        mask = torch.as_tensor(mask, device=tokens.device)
        if mask.shape != tokens.shape:
            raise ValueError(f"mask must have the tokens' shape {tuple(tokens.shape)}, got {tuple(mask.shape)}")
        mask = mask.to(torch.bool)
    return lengths, mask


def hash_token_rows(tokens: torch.Tensor, lengths: torch.Tensor | None = None,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """64-bit keys (int64) of padded token-id rows, computed on the tokens' device.

    tokens: [rows, width] integer tensor. Give ``lengths`` ([rows], tokens past it are padding) or a
    boolean ``mask`` ([rows, width], True = token); with neither, every column counts.
    """
    lengths, mask = check_token_rows(tokens, lengths, mask)
    rows, width = tokens.shape
    device = tokens.device
    positions = torch.arange(width, device=device, dtype=torch.int64)
    if lengths is not None:
        mask = positions.unsqueeze(0) < lengths.unsqueeze(1)
    elif mask is not None:
        lengths = mask.sum(dim=1, dtype=torch.int64)
    else:
        lengths = torch.full((rows,), width, device=device, dtype=torch.int64)

    position_term = mix64(positions + _i64(POS_SEED))                      # [width]
    terms = mix64(tokens.to(torch.int64) * _i64(GOLDEN) + position_term)  # [rows, width]
    if mask is not None:
        terms = terms.masked_fill(~mask, 0)
    acc = terms.sum(dim=1)  # int64 sum wraps mod 2**64
    return mix64(acc ^ mix64(lengths + _i64(LEN_SEED)))


def token_row_collisions(tokens: torch.Tensor, keys: torch.Tensor, lengths: torch.Tensor | None = None,
                         mask: torch.Tensor | None = None, *, limit: int = 3) -> tuple[int, list[tuple[int, int]]]:
    """Keys shared by different token rows, found on the rows' device.

    After sorting by key, neighbours with equal keys must hold equal rows (the same tokens at the same kept
    positions); one gather of the rows in key order and one comparison check that. Returns the number of
    keys that stand for two or more different rows (one host sync) and, for up to ``limit`` of them, two
    such rows ``(row, other_row)``.
    """
    lengths, mask = check_token_rows(tokens, lengths, mask)
    n, width = tokens.shape
    if n < 2:
        return 0, []
    if lengths is not None:
        mask = torch.arange(width, device=tokens.device).unsqueeze(0) < lengths.unsqueeze(1)
    order = torch.argsort(keys)
    same_key = keys.index_select(0, order).diff() == 0
    rows = tokens.index_select(0, order)
    if mask is None:
        differ = (rows[1:] != rows[:-1]).any(dim=1)
    else:
        kept = mask.index_select(0, order)
        rows = rows.masked_fill(~kept, 0)
        differ = ((rows[1:] != rows[:-1]) | (kept[1:] != kept[:-1])).any(dim=1)
    bad = (same_key & differ).long()
    # one flag per run of equal keys: does the run hold two different rows?
    run = torch.cat([torch.zeros(1, dtype=torch.int64, device=keys.device), torch.cumsum(~same_key, 0)])
    run_bad = torch.zeros(n, dtype=torch.int64, device=keys.device).scatter_reduce_(0, run[1:], bad, "amax")
    count = host_sync.to_int(run_bad.sum(), "token rows: key collisions")
    if count == 0:
        return 0, []
    pairs, seen = [], set()
    for j in torch.nonzero(bad).flatten().tolist():  # only when there are collisions
        if int(run[j]) not in seen and len(pairs) < limit:
            seen.add(int(run[j]))
            pairs.append((int(order[j]), int(order[j + 1])))
    return count, pairs
