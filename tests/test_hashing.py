import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from benchmarks.synthetic import colliding_token_rows
from graphgpo.batch import KeyCollisionWarning, StepBatch
from graphgpo.hashing import (GOLDEN, LEN_SEED, POS_SEED, TYPE_SEEDS, KeyHasher, hash_token_rows, mix64_int, object_keys,
                              stable_key, to_signed64, token_row_collisions)

MASK = (1 << 64) - 1


def python_row_hash(tokens):
    """The documented token-row hash, written with Python ints (independent of the torch code)."""
    acc = 0
    for i, t in enumerate(tokens):
        acc = (acc + mix64_int(((t & MASK) * GOLDEN + mix64_int(i + POS_SEED)) & MASK)) & MASK
    return to_signed64(mix64_int(acc ^ mix64_int(len(tokens) + LEN_SEED)))


def test_mix64_int_known_vector():
    # splitmix64 reference: seed 0 -> first output 0xE220A8397B1DCDAF (state advances by GOLDEN first).
    assert mix64_int(GOLDEN) == 0xE220A8397B1DCDAF


def test_token_rows_match_python_definition_with_lengths():
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(-5, 50_000, (40, 13), generator=g)
    lengths = torch.randint(0, 14, (40,), generator=g)
    keys = hash_token_rows(tokens, lengths=lengths)
    expected = [python_row_hash(tokens[r, : lengths[r]].tolist()) for r in range(40)]
    assert keys.tolist() == expected
    assert keys.dtype == torch.int64


def test_token_rows_mask_equals_lengths_and_ignores_padding_values():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 100, (8, 6), generator=g, dtype=torch.int32)
    lengths = torch.tensor([0, 1, 2, 3, 4, 5, 6, 6])
    mask = torch.arange(6)[None, :] < lengths[:, None]
    padded = tokens.masked_fill(~mask, 7)
    assert torch.equal(hash_token_rows(tokens, lengths=lengths), hash_token_rows(padded, mask=mask))
    assert torch.equal(hash_token_rows(tokens.long(), lengths=lengths), hash_token_rows(tokens, lengths=lengths))


def test_token_rows_order_and_length_matter():
    a = hash_token_rows(torch.tensor([[1, 2, 3, 0]]), lengths=torch.tensor([3]))
    b = hash_token_rows(torch.tensor([[3, 2, 1, 0]]), lengths=torch.tensor([3]))
    c = hash_token_rows(torch.tensor([[1, 2, 3, 0]]), lengths=torch.tensor([4]))
    assert len({int(a), int(b), int(c)}) == 3


def test_token_rows_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        hash_token_rows(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        hash_token_rows(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"lengths\[1\]"):
        hash_token_rows(torch.zeros(2, 3, dtype=torch.long), lengths=torch.tensor([1, 4]))
    with pytest.raises(ValueError, match="shape"):
        hash_token_rows(torch.zeros(2, 3, dtype=torch.long), mask=torch.ones(2, 2, dtype=torch.bool))


def python_object_key(data: bytes, kind: str) -> int:
    """The documented object hash over ``data``, written with Python ints (independent of the numpy code)."""
    acc = 0
    padded = data + b"\0" * (-len(data) % 8)
    for j in range(len(padded) // 8):
        word = int.from_bytes(padded[8 * j:8 * j + 8], "little")
        acc = (acc + mix64_int((word * GOLDEN + mix64_int(j + POS_SEED)) & MASK)) & MASK
    return to_signed64(mix64_int(acc ^ mix64_int(len(data) + TYPE_SEEDS[kind])))


def int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)


@pytest.mark.parametrize("text", ["", "kitchen", "abcdefgh", "abcdefghi", "é" * 100, "x" * 1000, "\ud800"])
def test_stable_key_of_text_is_the_documented_hash(text):
    assert stable_key(text) == python_object_key(text.encode("utf-8", "surrogatepass"), "str")
    assert stable_key(text.encode("utf-8", "surrogatepass")) == python_object_key(
        text.encode("utf-8", "surrogatepass"), "bytes")


def test_stable_key_of_ints_tuples_and_arrays_is_the_documented_hash():
    edges = [0, 1, -1, 127, 128, -128, -129, 2**15, 2**31 - 1, -2**31, 2**55, 2**56 - 1, 2**62, 2**63 - 1, -2**63,
             -2**63 + 1, 2**63, 2**64 + 3, -2**70, 10**30]
    for value in edges:
        assert stable_key(value) == python_object_key(int_bytes(value), "int"), value
    assert object_keys(edges).tolist() == [python_object_key(int_bytes(v), "int") for v in edges]
    item_keys = [stable_key("x"), stable_key(3), stable_key((b"y",))]
    assert stable_key(("x", 3, (b"y",))) == python_object_key(
        b"".join(k.to_bytes(8, "little", signed=True) for k in item_keys), "tuple")
    arr = np.array([[1, 2], [3, 4]], dtype=np.int32)
    header = f"{arr.dtype.str}|{arr.shape}".encode()
    assert stable_key(arr) == python_object_key(len(header).to_bytes(8, "little") + header + arr.tobytes(), "array")


def test_column_keys_equal_single_keys():
    column = ["a", "bb", 7, -2**63, (1, "a"), b"x", "a", np.int64(7), True, np.str_("s"), "long " * 40]
    assert KeyHasher().keys(column).tolist() == [stable_key(v) for v in column]
    numbers = np.array([3, -1, 3, 2**40], dtype=np.int64)
    assert KeyHasher().keys(numbers).tolist() == [stable_key(int(v)) for v in numbers]
    big = np.array([2**63 + 1, 5], dtype=np.uint64)
    assert KeyHasher().keys(big).tolist() == [stable_key(2**63 + 1), stable_key(5)]
    texts = np.array(["a", "b", "a"])
    assert KeyHasher().keys(texts).tolist() == [stable_key("a"), stable_key("b"), stable_key("a")]


def test_stable_key_same_in_another_process():
    objs = ["a room", b"\x00\x01", 12345678901234567890, ("x", 3, (b"y",)), "é"]
    code = ("from graphgpo.hashing import stable_key; import sys; "
            "print([stable_key(o) for o in [\"a room\", b'\\x00\\x01', 12345678901234567890, ('x', 3, (b'y',)), 'é']])")
    env = dict(os.environ, PYTHONHASHSEED="123")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == str([stable_key(o) for o in objs])


def test_stable_key_types_are_distinct_and_arrays_by_content():
    keys = {stable_key("1"), stable_key(b"1"), stable_key(1), stable_key((1,)), stable_key(np.array([1]))}
    assert len(keys) == 5
    assert stable_key(np.array([[1, 2], [3, 4]])) == stable_key(np.array([[1, 2], [3, 4]]))
    assert stable_key(np.array([1, 2, 3, 4])) != stable_key(np.array([[1, 2], [3, 4]]))  # shape counts
    assert stable_key(np.int64(7)) == stable_key(7)


@pytest.mark.parametrize("bad", [1.5, [1, 2], {"a": 1}, np.array([0.5])])
def test_stable_key_rejects_unsupported(bad):
    with pytest.raises(TypeError, match="unsupported state key"):
        KeyHasher().keys([bad])


def test_key_hasher_reports_collisions():
    hasher = KeyHasher(hash_fn=lambda obj: 42)  # every object collides
    keys = hasher.keys(["a", "a", "b", np.array([1])])
    assert keys.tolist() == [42] * 4
    assert [c[1:] for c in hasher.collisions[:1]] == [("a", "b")]
    assert len(hasher.collisions) == 2  # "b" and the array both collide with "a"

    hasher = KeyHasher(hash_fn=lambda obj: 7)
    hasher.keys([np.array([1]), np.array([1]), np.array([2])])
    assert len(hasher.collisions) == 1


def test_key_hasher_hashes_each_distinct_object_once_across_columns():
    hashed = []
    hasher = KeyHasher(hash_fn=lambda obj: hashed.append(obj) or stable_key(obj))
    first = hasher.keys(["a", "b", "a", "c"])
    second = hasher.keys(["c", "d", "a", "d"])
    assert first.tolist() == [stable_key(v) for v in ["a", "b", "a", "c"]]
    assert second.tolist() == [stable_key(v) for v in ["c", "d", "a", "d"]]
    assert hashed == ["a", "b", "c", "d"]
    assert hasher.objects == {stable_key(v): v for v in "abcd"}


def test_key_hasher_stays_usable_after_a_refused_column():
    hasher = KeyHasher()
    with pytest.raises(TypeError, match="dtype float"):
        hasher.keys(["a", "new", np.array([0.5])])  # fails while hashing, after the memo saw "new"
    assert hasher.keys(["new", "a", np.array([1])]).tolist() == [stable_key("new"), stable_key("a"),
                                                                  stable_key(np.array([1]))]


@pytest.mark.parametrize("columns", [(["a"], [1, 1.0]), (["a", 1], [1.0]), ([1], ["a", 1.0]),
                                     (["a"], [("x", 1), ("x", 1.0)]), ([("x", 1)], [("x", 1.0)]), ([b"a"], [1.0])])
def test_key_hasher_refuses_floats_hidden_behind_equal_numbers(columns):
    hasher = KeyHasher()
    *earlier, last = columns
    for column in earlier:
        hasher.keys(column)
    with pytest.raises(TypeError, match="float"):
        hasher.keys(last)


def test_key_hasher_equal_objects_are_not_collisions():
    hasher = KeyHasher()
    hasher.keys([1, np.int64(1), "x", "".join(["x"]), (1, 2), (np.int64(1), 2)])
    assert hasher.collisions == []


# ------------------------------------------------------------------------------------------------ forced collisions
# colliding_token_rows (benchmarks/synthetic.py) forces them with a generalised birthday search.

def test_different_token_rows_can_share_a_key():
    rows = colliding_token_rows()
    assert len(rows) > 20 and torch.unique(rows, dim=0).shape[0] == len(rows)
    keys = hash_token_rows(rows)
    assert (keys == keys[0]).all()
    count, pairs = token_row_collisions(rows, keys)
    assert count == 1 and len(pairs) == 1 and not torch.equal(rows[pairs[0][0]], rows[pairs[0][1]])
    assert token_row_collisions(rows[:1].repeat(5, 1), keys[:1].repeat(5))[0] == 0  # equal rows are no collision
    # the check compares rows, whatever the keys: two keys, each given to two different rows (repeated)
    mixed = torch.cat([rows[:2], rows[:2], rows[2:4], rows[5:6]])
    assert token_row_collisions(mixed, torch.tensor([7, 7, 7, 7, -3, -3, 5]))[0] == 2


def test_from_tensors_reports_colliding_token_rows():
    rows = colliding_token_rows()[:6]
    n = 3
    zeros, flags = torch.zeros(n, dtype=torch.int64), torch.zeros(n, dtype=torch.bool)
    args = dict(group=zeros, traj=torch.arange(n), step=zeros, state=rows[:3], next_state=rows[3:],
                success=flags, valid=~flags, episode_reward=zeros.double(), reward=zeros.double())
    with pytest.warns(KeyCollisionWarning, match=r"1 64-bit key\(s\) shared .*e\.g\. (next_)?state row \d and "):
        batch = StepBatch.from_tensors(**args)
    assert len(batch.collisions) == 1
    key, a, b = batch.collisions[0]
    assert key == int(batch.state[0]) and a != b and {len(a), len(b)} == {16}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        StepBatch.from_tensors(**args, check_collisions=False)
        # equal rows (and rows equal up to padding) are not collisions; lengths count
        same = torch.tensor([[1, 2, 3, 9], [1, 2, 3, 0], [1, 2, 3, 0]])
        b = StepBatch.from_tensors(**{**args, "state": same, "next_state": same},
                                   state_lengths=torch.tensor([3, 3, 4]), next_state_lengths=torch.tensor([3, 3, 4]))
    assert b.collisions == () and b.state[0] == b.state[1] != b.state[2]


# ------------------------------------------------------------------------------------------------ hash quality
# (torch only: they ran in tests/test_kernels.py before and were skipped wherever Triton was missing)

def test_hash_quality_million_rows_no_collisions():
    """1e6 distinct rows -> 1e6 distinct keys (expected collisions at 64 bits: ~3e-8)."""
    n, width = 1_000_000, 8
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 50_000, (n, width), generator=g)
    idx = torch.arange(n)
    tokens[:, 0], tokens[:, 1] = idx // 50_000, idx % 50_000  # rows distinct by construction
    keys = hash_token_rows(tokens)
    assert torch.unique(keys).numel() == n
    # near-identical rows: same tokens, lengths 0..width
    lengths = torch.arange(width + 1)
    same = hash_token_rows(tokens[:1].expand(width + 1, width).contiguous(), lengths)
    assert torch.unique(same).numel() == width + 1


def _popcount64(x: torch.Tensor) -> torch.Tensor:
    bits = torch.zeros_like(x)
    for shift in range(64):
        bits += (x >> shift) & 1
    return bits


def test_hash_quality_avalanche():
    """Changing one token flips each key bit with probability ~1/2 (mean ~32 of 64, per bit ~0.5)."""
    n, width = 20_000, 16
    g = torch.Generator().manual_seed(2)
    tokens = torch.randint(0, 50_000, (n, width), generator=g)
    changed = tokens.clone()
    col = torch.randint(0, width, (n,), generator=g)
    rows = torch.arange(n)
    changed[rows, col] ^= 1 << torch.randint(0, 16, (n,), generator=g)  # flip one bit of one token
    diff = hash_token_rows(tokens) ^ hash_token_rows(changed)
    flips = _popcount64(diff).double()
    assert abs(flips.mean().item() - 32.0) < 0.3
    assert flips.min().item() >= 10  # no weak pairs
    per_bit = torch.stack([((diff >> b) & 1).double().mean() for b in range(64)])
    assert per_bit.min().item() > 0.47 and per_bit.max().item() < 0.53
    # swapping two positions changes the key as much as changing a token
    swapped = tokens.clone()
    swapped[:, 0], swapped[:, 1] = tokens[:, 1], tokens[:, 0]
    distinct = tokens[:, 0] != tokens[:, 1]
    sdiff = _popcount64(hash_token_rows(tokens) ^ hash_token_rows(swapped))[distinct].double()
    assert abs(sdiff.mean().item() - 32.0) < 0.3
