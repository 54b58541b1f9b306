"""Similarity merge of near-duplicate text states: the fast exact path and the reference backend against a
direct difflib.SequenceMatcher implementation written here, a hand-made example where the two greedy
passes disagree, and the upper bounds the fast path relies on."""

import difflib
import math
import random

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from graphgpo import StepBatch, compute_advantages
from graphgpo import similarity
from graphgpo.memory import GraphMemory


# ---------------------------------------------------------------------------------------------- direct
def direct_greedy(texts, threshold):
    """The recipe's pass, written out: each text joins the first cluster whose representative r gives
    SequenceMatcher(None, text, r).ratio() >= threshold; a text seen before keeps its cluster."""
    reps, out, seen = [], [], {}
    for text in texts:
        if text not in seen:
            for rep in reps:
                if difflib.SequenceMatcher(None, text, rep).ratio() >= threshold:
                    seen[text] = rep
                    break
            else:
                reps.append(text)
                seen[text] = text
        out.append(seen[text])
    return out


def direct_passes(records, threshold):
    """(node rep of state, node rep of next_state or None for a success edge, step rep of state) per row."""
    last = {}
    for r in records:
        last[r["traj"]] = max(last.get(r["traj"], -1), r["step"])
    groups = sorted({r["group"] for r in records}, key=[r["group"] for r in records].index)
    node_state, node_next, step = [None] * len(records), [None] * len(records), [None] * len(records)
    for g in groups:
        idx = [i for i, r in enumerate(records) if r["group"] == g]
        visits = []
        for i in idx:
            visits.append((i, "state", records[i]["state"]))
            if not (records[i]["success"] and records[i]["step"] == last[records[i]["traj"]]):
                visits.append((i, "next", records[i]["next_state"]))
        reps = direct_greedy([text for _, _, text in visits], threshold)
        for (i, kind, _), rep in zip(visits, reps):
            (node_state if kind == "state" else node_next)[i] = rep
        for i, rep in zip(idx, direct_greedy([records[i]["state"] for i in idx], threshold)):
            step[i] = rep
    return node_state, node_next, step


def text_walk_records(rng, num_groups=3, group_size=4, horizon=6, base_len=40, edits=2, success_rate=0.4):
    """Trajectories over near-duplicate texts: each group has a few base texts; a state is a base text with
    0..edits random character changes, so ratios fall on both sides of 0.9-0.95."""
    alphabet = "abcdefgh ."
    records, traj = [], 0
    for g in range(num_groups):
        bases = ["".join(rng.choice(alphabet) for _ in range(base_len)) for _ in range(3)]

        def variant():
            text = list(rng.choice(bases))
            for _ in range(rng.randint(0, edits)):
                text[rng.randrange(len(text))] = rng.choice(alphabet)
            return "".join(text)

        for _ in range(group_size):
            success, length = rng.random() < success_rate, rng.randint(1, horizon)
            state = variant()
            for step in range(length):
                nxt = variant()
                records.append(dict(group=g, traj=traj, step=step, state=state, next_state=nxt, success=success,
                                    valid=rng.random() > 0.2, episode_reward=10.0 * success, reward=0.0))
                state = nxt
            traj += 1
    return records


def keys_to_text(batch, keys):
    return [batch.state_objects[k] for k in keys]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("threshold", [0.9, 0.95])
def test_both_passes_equal_the_direct_implementation(seed, threshold):
    rng = random.Random(seed)
    records = text_walk_records(rng, base_len=rng.choice([30, 60, 250]))  # 250: difflib's autojunk applies
    batch = StepBatch.from_records(records)
    node_state, node_next, step = direct_passes(records, threshold)
    for fast in (False, True):
        state_keys, next_keys = similarity.node_keys(batch, threshold, fast=fast)
        assert keys_to_text(batch, state_keys) == node_state
        for i, (key, expected) in enumerate(zip(next_keys, node_next)):
            # a success edge's next_state is not visited: it keeps its own key
            assert batch.state_objects[key] == (expected if expected is not None else records[i]["next_state"])
        assert keys_to_text(batch, similarity.step_keys(batch, threshold, fast=fast)) == step
    assert len(set(step)) < len({r["state"] for r in records})  # the example does merge states


def test_the_two_passes_can_disagree():
    # Y is similar to X and to Z, X is not similar to Z (threshold 0.92)
    x, y, z, q = "abcdefghijklmnopqrst", "abcdefghijklmnopqrsT", "abcdefghiJklmnopqrsT", "zzzzzzzzzzzzzzzzzzzz"
    ratio = lambda a, b: difflib.SequenceMatcher(None, a, b).ratio()  # noqa: E731
    assert ratio(y, x) >= 0.92 and ratio(y, z) >= 0.92 and ratio(x, z) < 0.92 and ratio(z, x) < 0.92
    assert ratio(x, q) < 0.92 and ratio(z, q) < 0.92 and ratio(y, q) < 0.92
    # rows in order: Q -> Z, X -> Q, Y -> Q (one group, every rollout fails)
    records = [dict(group=0, traj=t, step=0, state=s, next_state=n, success=False, valid=True,
                    episode_reward=0.0, reward=0.0) for t, (s, n) in enumerate([(q, z), (x, q), (y, q)])]
    batch = StepBatch.from_records(records)
    state_keys, _ = similarity.node_keys(batch, 0.92)
    step = similarity.step_keys(batch, 0.92)
    # node pass visits Q, Z, X, (Q), Y: Y joins Z, the first cluster it is similar to
    assert keys_to_text(batch, state_keys) == [q, x, z]
    # step pass visits Q, X, Y: Y joins X
    assert keys_to_text(batch, step) == [q, x, x]


@pytest.mark.parametrize("seed", range(4))
def test_reference_graphgpo_with_similarity(seed):
    """Distances and returns equal the merge-free estimator on the batch rewritten with node
    representatives; step groups are the step pass's clusters; step advantages are their normalisation."""
    threshold = 0.9
    records = text_walk_records(random.Random(100 + seed))
    node_state, node_next, step = direct_passes(records, threshold)
    out = compute_advantages(StepBatch.from_records(records), "graphgpo", backend="reference", omega=0.5,
                             similarity=threshold)
    rewritten = [{**r, "state": s, "next_state": n if n is not None else r["next_state"]}
                 for r, s, n in zip(records, node_state, node_next)]
    plain = compute_advantages(StepBatch.from_records(rewritten), "graphgpo", backend="reference", omega=0.5)
    assert torch.equal(out.d_state, plain.d_state) and torch.equal(out.d_next, plain.d_next)
    assert torch.equal(out.returns, plain.returns)
    assert torch.equal(out.episode_advantages, plain.episode_advantages)
    partition = {}
    for i, r in enumerate(records):
        partition.setdefault((r["group"], step[i]), []).append(i)
    assert sorted(map(sorted, partition.values())) == sorted(
        sorted(i for i in range(len(records)) if out.step_group[i] == sg) for sg in set(out.step_group.tolist()))
    returns = out.returns.tolist()
    for members in partition.values():
        values = [returns[i] for i in members]
        if len(values) == 1 or len(set(values)) == 1:
            expected = [0.0] * len(values)
        else:
            mean = sum(values) / len(values)
            std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
            expected = [(v - mean) / (std + 1e-6) for v in values]
        assert [out.step_advantages[i].item() for i in members] == pytest.approx(expected, abs=1e-12)


def test_reference_gigpo_merges_step_groups_only():
    records = text_walk_records(random.Random(7))
    _, _, step = direct_passes(records, 0.9)
    out = compute_advantages(StepBatch.from_records(records), "gigpo", backend="reference", similarity=0.9)
    plain = compute_advantages(StepBatch.from_records(records), "gigpo", backend="reference")
    assert torch.equal(out.returns, plain.returns)
    clusters = {}
    for i, r in enumerate(records):
        clusters.setdefault((r["group"], step[i]), set()).add(out.step_group[i].item())
    assert all(len(ids) == 1 for ids in clusters.values())
    assert len({out.step_group[i].item() for i in range(len(records))}) == len(clusters)
    assert len(clusters) < len(set(plain.step_group.tolist()))


# ---------------------------------------------------------------------------------------------- bounds
@given(st.text(alphabet="abcde .", max_size=60), st.text(alphabet="abcde .", max_size=60))
def test_the_fast_path_bounds_are_upper_bounds_of_ratio(a, b):
    matcher = difflib.SequenceMatcher(None, a, b)
    ratio = matcher.ratio()
    assert matcher.real_quick_ratio() >= matcher.quick_ratio() >= ratio
    if similarity._Indel is not None:
        assert similarity._Indel.normalized_similarity(a, b) >= ratio - 1e-12


def test_long_texts_with_autojunk_still_bounded():
    rng = random.Random(3)
    for _ in range(50):
        a = "".join(rng.choice("ab c") for _ in range(rng.randint(200, 400)))
        b = "".join(ch if rng.random() > 0.05 else rng.choice("ab c") for ch in a)
        ratio = difflib.SequenceMatcher(None, a, b).ratio()
        if similarity._Indel is not None:
            assert similarity._Indel.normalized_similarity(a, b) >= ratio - 1e-12


def test_fast_path_without_rapidfuzz_gives_the_same_clusters(monkeypatch):
    records = text_walk_records(random.Random(9), base_len=80)
    batch = StepBatch.from_records(records)
    with_c = similarity.step_keys(batch, 0.93), similarity.node_keys(batch, 0.93)
    monkeypatch.setattr(similarity, "_cdist", None)
    assert (similarity.step_keys(batch, 0.93), similarity.node_keys(batch, 0.93)) == with_c


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.9"])
def test_threshold_must_lie_in_the_open_unit_interval(bad):
    with pytest.raises(ValueError, match=r"similarity must be a number in \(0, 1\)"):
        compute_advantages(StepBatch.from_records(text_walk_records(random.Random(0))), "graphgpo",
                           backend="reference", similarity=bad)


def test_similarity_needs_text_states():
    records = [dict(group=0, traj=0, step=0, state=(1, 2), next_state=(1, 3), success=True, valid=True,
                    episode_reward=10.0, reward=0.0)]
    with pytest.raises(ValueError, match=r"row 0: field 'state' is a tuple"):
        compute_advantages(StepBatch.from_records(records), "graphgpo", backend="reference", similarity=0.9)
    tensor_batch = StepBatch.from_records(text_walk_records(random.Random(0))).to("cpu")
    from_tensors = StepBatch.from_tensors(*(getattr(tensor_batch, n) for n in (
        "group", "traj", "step", "state", "next_state", "success", "valid", "episode_reward", "reward")))
    with pytest.raises(ValueError, match="similarity needs the text of the states"):
        compute_advantages(from_tensors, "gigpo", backend="reference", similarity=0.9)


def test_similarity_cannot_be_combined_with_memory():
    batch = StepBatch.from_records(text_walk_records(random.Random(0)))
    with pytest.raises(ValueError, match="memory and similarity cannot be combined"):
        compute_advantages(batch, "graphgpo", backend="reference", similarity=0.9, memory=GraphMemory())


@pytest.mark.parametrize("method", ["graphgpo", "gigpo"])
@pytest.mark.parametrize("seed", range(3))
def test_torch_backend_equals_the_reference_with_similarity(method, seed):
    """The torch pipeline gets the merged keys from the exact fast path, the reference from the literal loop."""
    batch = StepBatch.from_records(text_walk_records(random.Random(200 + seed), base_len=50))
    ref = compute_advantages(batch, method, backend="reference", similarity=0.9)
    fast = compute_advantages(batch, method, backend="torch", similarity=0.9)
    plain = compute_advantages(batch, method, backend="torch")
    assert torch.equal(fast.step_group, ref.step_group)
    assert not torch.equal(fast.step_group, plain.step_group)  # the merge changes the step groups
    if method == "graphgpo":
        assert torch.equal(fast.d_state, ref.d_state) and torch.equal(fast.d_next, ref.d_next)
    assert torch.allclose(fast.advantages, ref.advantages, atol=1e-6)
    assert fast.stats == ref.stats
