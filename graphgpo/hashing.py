"""State keys: 64-bit identities for states.

Two ways in:

* ``stable_key(obj)`` hashes a Python object (str, bytes, int, tuple, numpy array) on the host with
  BLAKE2b, so a state gets the same key in every process and on every machine (Python's ``hash`` is
  salted per process for strings).
* ``hash_token_rows(tokens, lengths=None, mask=None)`` hashes padded token-id rows on the tokens' own
  device with PyTorch integer ops, so keys for observations that are already tokenised never leave the
  GPU. ``graphgpo.kernels`` has a Triton kernel that computes the same bits.

Token-row hash (all arithmetic mod 2**64, ``>>`` logical)::

    mix(z)  = splitmix64 finaliser (xor-shift-multiply, full avalanche)
    acc     = sum_i mix(t_i * GOLDEN + mix(i + POS_SEED))      over the row's tokens
    key     = mix(acc ^ mix(L + LEN_SEED))                      L = number of tokens

Each term depends on (token, position) through a full-avalanche mixer, so the sum behaves like a sum
of independent random 64-bit words: two different rows collide with probability ~2**-64, i.e. about
n**2 / 2**65 expected collisions among n distinct rows (1e7 rows: ~3e-6). The sum makes the hash a
single parallel reduction per row instead of a serial chain over positions.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any, Sequence

import numpy as np
import torch

__all__ = [
    "stable_key",
    "KeyHasher",
    "hash_token_rows",
    "check_token_rows",
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
# Host hashing of Python objects
# ---------------------------------------------------------------------------------------------------

def _digest(tag: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(tag + payload, digest_size=8, person=b"graphgpo-key").digest()


def _object_digest(obj: Any) -> bytes:
    """8-byte digest of one state object; the type is part of the input so "1", b"1" and 1 differ."""
    if isinstance(obj, str):
        return _digest(b"s", obj.encode("utf-8", "surrogatepass"))
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return _digest(b"b", bytes(obj))
    if isinstance(obj, (bool, np.bool_)):
        return _digest(b"i", int(obj).to_bytes(1, "little", signed=True))
    if isinstance(obj, (int, np.integer)):
        value = int(obj)
        width = max(1, (value.bit_length() + 8) // 8)
        return _digest(b"i", value.to_bytes(width, "little", signed=True))
    if isinstance(obj, tuple):
        return _digest(b"t", struct.pack("<q", len(obj)) + b"".join(_object_digest(x) for x in obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuSUa":
            raise TypeError(f"unsupported state key: numpy array of dtype {obj.dtype} (use integer, bool, "
                            "bytes or str arrays; float states do not compare exactly)")
        arr = np.ascontiguousarray(obj)
        header = f"{arr.dtype.str}|{arr.shape}".encode()
        return _digest(b"a", struct.pack("<q", len(header)) + header + arr.tobytes())
    if isinstance(obj, torch.Tensor):
        return _object_digest(obj.detach().cpu().numpy())
    raise TypeError(f"unsupported state key type {type(obj).__name__}: use str, bytes, int, tuple or a numpy "
                    "integer/str array (or pre-hashed int64 tensors through StepBatch.from_tensors)")


def stable_key(obj: Any) -> int:
    """Stable signed 64-bit key of a state object (same value in every process and machine)."""
    return int.from_bytes(_object_digest(obj), "little", signed=True)


class KeyHasher:
    """Hashes many state objects with a memo (states repeat a lot) and detects 64-bit collisions.

    ``collisions`` lists ``(key, first_object, other_object)`` for two different objects that hashed to
    the same key within the lifetime of this hasher (one batch).
    """

    def __init__(self, hash_fn=stable_key):
        self._hash_fn = hash_fn
        self._memo: dict[Any, int] = {}        # hashable state object -> key (fast path)
        self._owner: dict[int, Any] = {}       # key -> canonical form of the first object seen
        self.collisions: list[tuple[int, Any, Any]] = []

    def __call__(self, obj: Any) -> int:
        return self.keys((obj,))[0]

    @property
    def objects(self) -> dict[int, Any]:
        """key -> the first object hashed to it (so a batch can keep the text of its states)."""
        return self._owner

    def keys(self, objs: Sequence) -> list[int]:
        """Keys of a column of state objects, hashing each distinct object once."""
        memo = self._memo
        try:
            distinct = dict.fromkeys(objs)  # C-speed dedup of the column
        except TypeError:  # unhashable objects (arrays, tensors): memoise them by content
            return [self._key_of(obj, _memo_key(obj)) for obj in objs]
        for obj in distinct:
            if obj not in memo:
                self._key_of(obj, obj)
        return list(map(memo.__getitem__, objs))

    def _key_of(self, obj: Any, memo_key: Any) -> int:
        key = self._memo.get(memo_key)
        if key is not None:
            return key
        key = self._hash_fn(obj)
        self._memo[memo_key] = key
        first = self._owner.setdefault(key, obj)
        if first is not obj and _canonical(first) != _canonical(obj):
            self.collisions.append((key, first, obj))
        return key


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
