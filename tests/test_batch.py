import math

import numpy as np
import pytest
import torch

from graphgpo.batch import KeyCollisionWarning, StepBatch
from graphgpo.hashing import KeyHasher, hash_token_rows, stable_key


def rec(group, traj, step, state, next_state, success=False, valid=True, episode_reward=None, reward=0.0, **kw):
    if episode_reward is None:
        episode_reward = 10.0 if success else 0.0
    return dict(group=group, traj=traj, step=step, state=state, next_state=next_state, success=success,
                valid=valid, episode_reward=episode_reward, reward=reward, **kw)


def small_records():
    return [
        rec("task", "t1", 0, "A", "B", success=True),
        rec("task", "t1", 1, "B", "G", success=True),
        rec("task", "t2", 0, "A", "C"),
        rec("task", "t2", 1, "C", "D", valid=False),
        rec("other", "t3", 0, ("x", 1), ("x", 2)),
    ]


def test_from_records_columns():
    b = StepBatch.from_records(small_records())
    assert len(b) == 5 and b.num_groups == 2 and b.num_trajs == 3
    assert b.group.tolist() == [0, 0, 0, 0, 1]
    assert b.traj.tolist() == [0, 0, 1, 1, 2]
    assert b.group_labels == ["task", "other"] and b.traj_labels == ["t1", "t2", "t3"]
    assert b.state.tolist() == [stable_key(s) for s in ["A", "B", "A", "C", ("x", 1)]]
    assert b.success.tolist() == [True, True, False, False, False]
    assert b.valid.tolist() == [True, True, True, False, True]
    assert b.episode_reward.dtype == torch.float64 and b.cost is None


def test_from_records_accepts_arrays_bytes_ints_and_generators():
    records = (rec("g", 0, i, s, n) for i, (s, n) in enumerate(
        [(np.array([1, 2]), b"raw"), (b"raw", 5), (5, np.array([1, 2]))]))
    b = StepBatch.from_records(records)
    assert b.state[0] == b.next_state[2] and b.next_state[0] == b.state[1] and b.next_state[1] == b.state[2]


def test_costs_all_or_none():
    rows = [dict(r, cost=2.0) for r in small_records()]
    assert StepBatch.from_records(rows).cost.tolist() == [2.0] * 5
    rows[3].pop("cost")
    with pytest.raises(ValueError, match=r"row 3: missing field 'cost'"):
        StepBatch.from_records(rows)
    rows = small_records()
    rows[2]["cost"] = 1.0
    with pytest.raises(ValueError, match=r"row 2: field 'cost'"):
        StepBatch.from_records(rows)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r[2].pop("state"), r"row 2: missing field 'state'"),
    (lambda r: r[1].update(reward=math.nan), r"row 1 .*'reward' is not finite"),
    (lambda r: r[1].update(episode_reward=math.inf, success=True), r"row 1 .*'episode_reward'"),
    (lambda r: r[4].update(group="task"), None),  # moving a whole trajectory is fine
    (lambda r: r[3].update(group="other"), r"row 3 .*two groups \('task' and 'other'\)"),
    (lambda r: r[3].update(step=0), r"row 3 .*duplicate \(traj, step\): same as row 2"),
    (lambda r: r[3].update(step=2), r"row 3 .*contiguous from 0 \(previous step 0\)"),
    (lambda r: r[4].update(step=1), r"row 4 .*does not start at step 0"),
    (lambda r: r[1].update(success=False), r"row 1 .*'success' differs within the trajectory"),
    (lambda r: r[3].update(episode_reward=1.0), r"row 3 .*'episode_reward' differs"),
    (lambda r: r[0].update(state=[1, 2]), r"row 0: field 'state': unsupported state key type list"),
    (lambda r: r[4].update(next_state=0.5), r"row 4: field 'next_state': unsupported state key type float"),
    (lambda r: r[2].update(valid="yes"), r"row 2: field 'valid' must be a bool"),
    (lambda r: r[2].update(step=1.0), r"row 2: field 'step' must be an integer"),
    (lambda r: r[2].update(reward="x"), r"row 2: field 'reward' must be a number"),
    (lambda r: r[2].update(traj=["t2"]), r"row 2: field 'traj' must be hashable"),
])
def test_bad_records_name_row_and_field(mutate, message):
    rows = small_records()
    mutate(rows)
    if message is None:
        StepBatch.from_records(rows)
        return
    with pytest.raises(ValueError, match=message):
        StepBatch.from_records(rows)


def test_nonpositive_cost_rejected():
    rows = [dict(r, cost=1.0) for r in small_records()]
    rows[2]["cost"] = 0.0
    with pytest.raises(ValueError, match=r"row 2 .*'cost' must be finite and > 0"):
        StepBatch.from_records(rows)


def test_not_a_mapping():
    with pytest.raises(ValueError, match=r"row 1: expected a mapping"):
        StepBatch.from_records([small_records()[0], ("a", "b")])


def test_empty_batch():
    b = StepBatch.from_records([])
    assert len(b) == 0 and b.num_groups == 0 and b.state.dtype == torch.int64


def test_collisions_are_reported():
    with pytest.warns(KeyCollisionWarning, match="collision"):
        b = StepBatch.from_records(small_records(), hasher=KeyHasher(hash_fn=lambda o: len(str(o))))
    assert any({c[1], c[2]} == {"A", "B"} for c in b.collisions)


def test_from_tensors_matches_from_records():
    ref = StepBatch.from_records(small_records())
    b = StepBatch.from_tensors(torch.tensor([7, 7, 7, 7, 3]), torch.tensor([10, 10, 11, 11, 2]), ref.step,
                               ref.state, ref.next_state, ref.success.int(), ref.valid, ref.episode_reward.float(),
                               ref.reward)
    # Dense ids follow sorted label order here; the trajectories' contents are the same.
    assert b.group.tolist() == [1, 1, 1, 1, 0] and b.traj.tolist() == [1, 1, 2, 2, 0]
    for name in ("step", "state", "next_state", "success", "valid", "episode_reward", "reward"):
        assert torch.equal(getattr(b, name), getattr(ref, name)), name


def test_from_tensors_hashes_token_rows():
    tokens = torch.tensor([[5, 6, 0], [5, 6, 7], [5, 6, 0]])
    lengths = torch.tensor([2, 3, 2])
    z = torch.zeros(3, dtype=torch.long)
    b = StepBatch.from_tensors(z, z, torch.tensor([0, 1, 2]), tokens, tokens, torch.zeros(3, dtype=torch.bool),
                               torch.ones(3, dtype=torch.bool), torch.zeros(3), torch.zeros(3),
                               state_lengths=lengths, next_state_lengths=lengths)
    assert torch.equal(b.state, hash_token_rows(tokens, lengths=lengths))
    assert b.state[0] == b.state[2] != b.state[1]


def test_from_tensors_errors():
    z = torch.zeros(3, dtype=torch.long)
    f = torch.zeros(3)
    bools = torch.zeros(3, dtype=torch.bool)
    step = torch.arange(3)
    with pytest.raises(ValueError, match="field 'reward' has 2 rows"):
        StepBatch.from_tensors(z, z, step, z, z, bools, bools, f, torch.zeros(2))
    with pytest.raises(ValueError, match="field 'state' must be an integer"):
        StepBatch.from_tensors(z, z, step, f, z, bools, bools, f, f)
    with pytest.raises(ValueError, match="field 'valid' must be a bool"):
        StepBatch.from_tensors(z, z, step, z, z, bools, torch.tensor([0, 2, 1]), f, f)
    with pytest.raises(ValueError, match="row 1 .*duplicate"):
        StepBatch.from_tensors(z, z, torch.tensor([0, 0, 1]), z, z, bools, bools, f, f)
    with pytest.raises(ValueError, match="field 'step': expected a torch.Tensor"):
        StepBatch.from_tensors(z, z, [0, 1, 2], z, z, bools, bools, f, f)
    with pytest.raises(ValueError, match="'cost' must be finite and > 0"):
        StepBatch.from_tensors(z, z, step, z, z, bools, bools, f, f, cost=torch.tensor([1.0, -1.0, 1.0]))


def test_take_permutes_and_validates():
    b = StepBatch.from_records(small_records())
    perm = torch.tensor([4, 2, 0, 3, 1])
    p = b.take(perm)
    assert torch.equal(p.state, b.state[perm]) and p.traj_labels == b.traj_labels
    with pytest.raises(ValueError, match="contiguous"):
        b.take(torch.tensor([0, 3, 4]))  # drops t2's step 0
