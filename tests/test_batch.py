import math

import numpy as np
import pytest
import torch

from graphgpo.batch import KeyCollisionWarning, StepBatch
from graphgpo.hashing import KeyHasher, hash_token_rows, stable_key
from graphgpo.columns import dense_ids


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
    (lambda r: r[1].update(reward=math.nan), r"row 1 .*'reward' must be finite"),
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
    (lambda r: r[0].update(next_state=0.5), r"row 0: field 'next_state': unsupported state key type float"),
    (lambda r: r[2].update(next_state=[1]), r"row 2: field 'next_state': unsupported state key type list"),
    (lambda r: r[1].update(step=-1), r"row 1 .*field 'step' must be >= 0"),
    (lambda r: r[1].update(step=7), r"row 1 .*contiguous from 0 \(previous step 0\)"),
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
    with pytest.raises(ValueError, match=r"row 2 .*'cost' must be finite, > 0"):
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
    with pytest.raises(ValueError, match="'cost' must be finite, > 0"):
        StepBatch.from_tensors(z, z, step, z, z, bools, bools, f, f, cost=torch.tensor([1.0, -1.0, 1.0]))


def test_take_permutes_and_validates():
    b = StepBatch.from_records(small_records())
    perm = torch.tensor([4, 2, 0, 3, 1])
    p = b.take(perm)
    assert torch.equal(p.state, b.state[perm]) and p.traj_labels == b.traj_labels
    with pytest.raises(ValueError, match="contiguous"):
        b.take(torch.tensor([0, 3, 4]))  # drops t2's step 0


# ------------------------------------------------------------------------------------------ one rule per field

def _rows_with(field, values):
    """One trajectory per value, so that only ``field`` varies between rows."""
    rows = []
    for i, value in enumerate(values):
        row = rec("g", f"t{i}", 0, f"s{i}", f"n{i}")
        row[field] = value
        rows.append(row)
    return rows


def _columns(rows):
    return {name: [r[name] for r in rows] for name in rows[0]}


def _tensors(rows, **dtypes):
    cols = _columns(rows)
    cols["group"] = [0] * len(rows)
    cols["traj"] = list(range(len(rows)))
    cols["state"] = list(range(len(rows)))
    cols["next_state"] = list(range(len(rows)))
    return {name: torch.tensor(values, dtype=dtypes.get(name)) for name, values in cols.items()}


@pytest.mark.parametrize("values", [[1, 1.0], [1.0, 1], [("x", 1), ("x", 1.0)], [("x", 1.0), ("x", 1)],
                                    [np.float64(2.0), 2]])
def test_float_states_rejected_whatever_the_row_order(values):
    rows = [rec("g", "t", i, v, "end") for i, v in enumerate(values)]
    bad = next(i for i, v in enumerate(values) if "float" in repr(type(v)) or (isinstance(v, tuple) and
                                                                              isinstance(v[1], float)))
    with pytest.raises(ValueError, match=rf"row {bad}: field 'state': unsupported state key type float"):
        StepBatch.from_records(rows)
    with pytest.raises(ValueError, match=rf"row {bad}: field 'state'"):
        StepBatch.from_columns(_columns(rows))


@pytest.mark.parametrize("field, values, message", [
    ("reward", [0.0, "1.5"], r"row 1: field 'reward' must be a number, got '1.5'"),
    ("reward", [True, 0.0], r"row 0: field 'reward' must be a number, got True"),
    ("episode_reward", [0.0, b"2"], r"row 1: field 'episode_reward' must be a number"),
    ("episode_reward", [0, 10**400], r"row 1: field 'episode_reward' is too large for a float64"),
    ("step", [0, "0"], r"row 1: field 'step' must be an integer, got '0'"),
    ("step", [0, True], r"row 1: field 'step' must be an integer, got True"),
    ("step", [0, 2**70], r"row 1: field 'step' must fit in int64"),
    ("valid", [True, "yes"], r"row 1: field 'valid' must be a bool \(or 0/1\), got 'yes'"),
    ("valid", [1, 2], r"row 1: field 'valid' must be a bool \(or 0/1\), got 2"),
    ("success", [0.0, 0.5], r"row 1: field 'success' must be a bool \(or 0/1\), got 0.5"),
])
def test_field_rules_in_records_and_columns(field, values, message):
    rows = _rows_with(field, values)
    for build in (StepBatch.from_records, lambda r: StepBatch.from_columns(_columns(r))):
        with pytest.raises(ValueError, match=message):
            build(rows)


@pytest.mark.parametrize("field, value", [("reward", 1e21), ("episode_reward", -1e21), ("reward", math.inf),
                                          ("cost", 1e21), ("cost", 0.0)])
def test_reward_magnitude_rule_in_every_constructor(field, value):
    rows = _rows_with(field, [1.0, value]) if field == "cost" else _rows_with(field, [0.0, value])
    if field == "cost":
        for r in rows:
            r.setdefault("cost", 1.0)
    message = rf"row 1 .*field '{field}' must be finite"
    with pytest.raises(ValueError, match=message):
        StepBatch.from_records(rows)
    with pytest.raises(ValueError, match=message):
        StepBatch.from_columns(_columns(rows))
    with pytest.raises(ValueError, match=message):
        StepBatch.from_tensors(**_tensors(rows, reward=torch.float64, episode_reward=torch.float64,
                                          cost=torch.float64))


def test_flag_rule_is_the_same_for_tensors():
    rows = _rows_with("valid", [1.0, 0.0])
    assert StepBatch.from_records(rows).valid.tolist() == [True, False]
    assert StepBatch.from_tensors(**_tensors(rows)).valid.tolist() == [True, False]
    with pytest.raises(ValueError, match=r"row 1: field 'valid' must be a bool \(or 0/1\), got 2"):
        StepBatch.from_tensors(**_tensors(_rows_with("valid", [1, 2])))
    with pytest.raises(ValueError, match=r"field 'reward' must be a number tensor .*not bool"):
        StepBatch.from_tensors(**_tensors(_rows_with("reward", [True, False])))


def test_from_columns_matches_from_records():
    rows = small_records()
    want = StepBatch.from_records(rows)
    cols = _columns(rows)
    variants = [cols, {k: tuple(v) for k, v in cols.items()},
                {k: np.array(v, dtype=object) for k, v in cols.items()}]
    for columns in variants:
        got = StepBatch.from_columns(columns)
        for name in ("group", "traj", "step", "state", "next_state", "success", "valid", "episode_reward", "reward"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        assert got.group_labels == want.group_labels and got.traj_labels == want.traj_labels


def test_from_columns_numpy_numbers_and_errors():
    n = 6
    cols = dict(group=np.array([5, 5, 5, 2, 2, 2]), traj=np.array([9, 9, 7, 3, 3, 4]),
                step=np.array([0, 1, 0, 0, 1, 0]), state=np.array([10, 11, 10, 10, 12, 2**63 + 5], dtype=np.uint64),
                next_state=np.arange(n), success=np.zeros(n, dtype=bool), valid=np.ones(n, dtype=np.int64),
                episode_reward=np.zeros(n, dtype=np.float32), reward=np.zeros(n))
    got = StepBatch.from_columns(cols)
    records = [{k: (v[i].item()) for k, v in cols.items()} for i in range(n)]
    want = StepBatch.from_records(records)
    for name in ("group", "traj", "state", "next_state", "valid"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert got.group_labels == [5, 2] and got.traj_labels == [9, 7, 3, 4]
    assert got.state[0] == stable_key(10) and got.state[5] == stable_key(2**63 + 5)
    with pytest.raises(ValueError, match=r"missing field\(s\) 'reward'"):
        StepBatch.from_columns({k: v for k, v in cols.items() if k != "reward"})
    with pytest.raises(ValueError, match=r"field 'step' has 5 rows, 'group' has 6"):
        StepBatch.from_columns({**cols, "step": cols["step"][:5]})
    with pytest.raises(ValueError, match=r"row 2: field 'valid' must be a bool \(or 0/1\), got 3"):
        StepBatch.from_columns({**cols, "valid": np.array([1, 1, 3, 0, 0, 0])})
    with pytest.raises(ValueError, match=r"row 0: field 'step' must be an integer"):
        StepBatch.from_columns({**cols, "step": np.zeros(n, dtype=bool)})


def test_from_columns_pandas_and_pyarrow_if_installed():
    cols = _columns(small_records())
    want = StepBatch.from_records(small_records())
    for module, make in (("pandas", lambda m, v: m.Series(v)), ("pyarrow", lambda m, v: m.array(v))):
        try:
            lib = __import__(module)
        except ImportError:
            continue
        if module == "pyarrow":  # mixed str / tuple states are no arrow column: only the numeric ones
            converted = {k: (make(lib, v) if k not in ("state", "next_state", "group", "traj") else v)
                         for k, v in cols.items()}
        else:
            converted = {k: make(lib, v) for k, v in cols.items()}
        got = StepBatch.from_columns(converted)
        assert torch.equal(got.state, want.state) and torch.equal(got.reward, want.reward)


# ------------------------------------------------------------------------------------------------ fast host paths

def _oracle(rows):
    """What from_records must give, computed row by row in plain Python (no dedup, no shortcuts)."""
    def dense(values):
        ids = {}
        return [ids.setdefault(v, len(ids)) for v in values], list(ids)
    group, group_labels = dense([r["group"] for r in rows])
    traj, traj_labels = dense([r["traj"] for r in rows])
    return dict(group=group, traj=traj, group_labels=group_labels, traj_labels=traj_labels,
                state=[stable_key(r["state"]) for r in rows], next_state=[stable_key(r["next_state"]) for r in rows])


def _random_rollouts(seed):
    """Rows of random walks where labels and states are sometimes the very same object as the previous row's,
    sometimes an equal copy, sometimes different; rows shuffled or not."""
    rng = np.random.default_rng(seed)
    copy = lambda text: "".join(list(text))  # equal, not the same object  # noqa: E731
    rows = []
    for g in range(int(rng.integers(1, 4))):
        group = f"task{g}"
        for t in range(int(rng.integers(1, 4))):
            traj, state = (g, t), f"s{rng.integers(5)}"
            for step in range(int(rng.integers(1, 6))):
                following = f"s{rng.integers(5)}"
                rows.append(rec(group if rng.random() < 0.5 else copy(group), traj, step, state,
                                following if rng.random() < 0.7 else copy(following)))
                if rng.random() < 0.7:
                    state = following
                else:
                    state = copy(following) if rng.random() < 0.5 else f"s{rng.integers(5)}"
    if rng.random() < 0.5:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_from_records_and_columns_match_a_plain_python_oracle(seed):
    rows = _random_rollouts(seed)
    want = _oracle(rows)
    traj_ids = {}
    int_columns = {**_columns(rows), "group": np.array([int(r["group"][4:]) for r in rows]),
                   "traj": np.array([traj_ids.setdefault(r["traj"], len(traj_ids) * 7 % 5 + 10 * len(traj_ids))
                                     for r in rows])}
    for batch in (StepBatch.from_records(rows), StepBatch.from_columns(_columns(rows))):
        for name in ("group", "traj", "state", "next_state"):
            assert getattr(batch, name).tolist() == want[name], name
        assert batch.group_labels == want["group_labels"] and batch.traj_labels == want["traj_labels"]
    batch = StepBatch.from_columns(int_columns)  # integer labels: dense ids from numpy runs
    relabelled = [dict(r, group=g) for r, g in zip(rows, int_columns["group"].tolist())]
    assert batch.group.tolist() == _oracle(relabelled)["group"]
    assert batch.traj.tolist() == want["traj"]


@pytest.mark.parametrize("values", [[], [7], [3, 3, 1, 1, 3, 2, 2], [5, 4, 5, 4]])
def test_dense_ids_of_integer_arrays_match_first_appearance_order(values):
    """The run-based numpy path (integer arrays) against a dict of first appearances, empty included."""
    first = {}
    want = [first.setdefault(v, len(first)) for v in values]
    ids, labels = dense_ids(np.array(values, dtype=np.int64), "field 'group'")
    assert ids.dtype == np.int64 and ids.tolist() == want and labels == list(first)
