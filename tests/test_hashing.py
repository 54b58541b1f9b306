import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from graphgpo.hashing import (GOLDEN, LEN_SEED, POS_SEED, KeyHasher, hash_token_rows, mix64_int,
                              stable_key, to_signed64)

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


def test_stable_key_is_blake2b_of_tagged_bytes():
    digest = hashlib.blake2b(b"s" + "kitchen".encode(), digest_size=8, person=b"graphgpo-key").digest()
    assert stable_key("kitchen") == int.from_bytes(digest, "little", signed=True)


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
    assert keys == [42] * 4
    assert [c[1:] for c in hasher.collisions[:1]] == [("a", "b")]
    assert len(hasher.collisions) == 2  # "b" and the array both collide with "a"

    hasher = KeyHasher(hash_fn=lambda obj: 7)
    hasher.keys([np.array([1]), np.array([1]), np.array([2])])
    assert len(hasher.collisions) == 1


def test_key_hasher_equal_objects_are_not_collisions():
    hasher = KeyHasher()
    hasher.keys([1, np.int64(1), "x", "".join(["x"]), (1, 2), (np.int64(1), 2)])
    assert hasher.collisions == []
