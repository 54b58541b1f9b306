"""Credit diagnostics on hand-made batches; expected values computed by hand in the comments."""

import math
import random

import pytest

from graphgpo import StepBatch
from graphgpo.analysis.diagnostics import compute_method_outputs, credit_diagnostics, step_categories


def traj_rows(group, traj, path, success, *, valid=None):
    """Rows of one trajectory walking through ``path`` (a list of states; len(path) - 1 steps)."""
    rows = []
    for step, (a, b) in enumerate(zip(path[:-1], path[1:])):
        rows.append({"group": group, "traj": traj, "step": step, "state": a, "next_state": b, "success": success,
                     "valid": True if valid is None else valid[step], "episode_reward": 10.0 if success else 0.0,
                     "reward": 10.0 if success and step == len(path) - 2 else 0.0})
    return rows


def spec_example(group=0, offset=0):
    """SPEC.md's worked example: T1 A->B->(success), T2 A->C->D, T3 A->C->B->C."""
    return (traj_rows(group, offset + 1, ["A", "B", "G"], True)
            + traj_rows(group, offset + 2, ["A", "C", "D"], False)
            + traj_rows(group, offset + 3, ["A", "C", "B", "C"], False))


def loop_example(group=0, offset=0):
    """T1 A->A (no-op), A->B, B->(success); T2 A->C (fails)."""
    return traj_rows(group, offset + 1, ["A", "A", "B", "G"], True) + traj_rows(group, offset + 2, ["A", "C"], False)


def diagnose(records, omega):
    batch = StepBatch.from_records(records)
    return credit_diagnostics(batch, compute_method_outputs(batch, backend="reference", omega=omega))


def test_spec_example_rescues_the_progress_step_of_a_failure():
    # d: B 1, A 2, C 2, D 3 (unreachable). Failed rows: A->C, C->D, A->C, C->B, B->C; only C->B progresses.
    # GraphGPO (omega 0.1): step group C = {C->D: 0.01, C->B: 1} -> C->B step adv (1-0.505)/0.70004 = +0.7071;
    # episode adv of a failed row: scores 10,10,0,0,0,0,0: (0-20/7)/sqrt(142.857/6) = -0.5855. Total +0.1216 > 0.
    # GRPO: rewards 10,0,0 -> failed trajectories (0-3.333)/5.7735 = -0.5774 < 0. So 1 rescued of 5 failed steps.
    diag = diagnose(spec_example(), omega=0.1)
    assert diag.failed_steps == 5
    assert diag.failed_progress_steps == 1
    assert diag.failed_rescued_steps == 1
    assert diag.rescued_share == pytest.approx(0.2)
    assert diag.rescued_share_of_progress == pytest.approx(1.0)
    assert diag.mixed_failed_steps == 5 and diag.mixed_rescued_share == pytest.approx(0.2)
    assert diag.failed_progress_mean_advantage("graphgpo") == pytest.approx(0.7071068 - 0.5855400, abs=1e-5)
    assert diag.failed_progress_mean_advantage("grpo") == pytest.approx(-0.5773503, abs=1e-6)
    # Both steps of the success move closer to SUCCESS (2 -> 1 -> 0): no non-progress steps.
    assert diag.success_steps == 2 and diag.success_non_progress_steps == 0
    assert diag.non_progress_share == 0.0
    assert math.isnan(diag.non_progress_mean_advantage("grpo"))


def test_no_op_in_a_success_gets_less_credit_from_graphgpo_than_from_grpo():
    # d: B 1, A 2, C 3 (unreachable). omega 0.5 returns: A->A 10*.5^2 = 2.5, A->B 5, B->G 10, A->C 1.25.
    # Step group A = {2.5, 5, 1.25}: mean 2.9167, std 1.90941 -> A->A -0.21822, A->B +1.09109; B alone -> 0.
    # Episode adv (row scores 10,10,10,0: mean 7.5, std 5): success rows +0.5.
    # GRPO (rewards 10, 0): success rows +0.70711.
    diag = diagnose(loop_example(), omega=0.5)
    assert diag.success_steps == 3
    assert diag.success_non_progress_steps == 1 and diag.success_no_op_steps == 1
    assert diag.non_progress_share == pytest.approx(1 / 3)
    assert diag.non_progress_mean_advantage("graphgpo") == pytest.approx(0.5 - 0.2182179, abs=1e-5)
    assert diag.non_progress_mean_advantage("grpo") == pytest.approx(0.7071068, abs=1e-6)
    assert diag.non_progress_negative_share("grpo") == 0.0
    assert diag.progress_mean_advantage("graphgpo") == pytest.approx((1.0910895 + 0.5 + 0.5) / 2, abs=1e-5)
    assert diag.progress_mean_advantage("grpo") == pytest.approx(0.7071068, abs=1e-6)
    # The failed step A->C moves away (2 -> 3): no progress, nothing rescued.
    assert diag.failed_steps == 1 and diag.failed_progress_steps == 0 and diag.failed_rescued_steps == 0


def test_group_without_success_has_no_progress_steps():
    # Every node of a group without success has d = 1, so no step makes progress; GRPO gives 0 everywhere.
    records = traj_rows(0, 1, ["A", "B", "C"], False) + traj_rows(0, 2, ["A", "D"], False)
    diag = diagnose(records, omega=0.8)
    assert diag.failed_steps == 3 and diag.failed_progress_steps == 0 and diag.failed_rescued_steps == 0
    assert diag.mixed_failed_steps == 0 and math.isnan(diag.mixed_rescued_share)


def test_categories_of_the_spec_example():
    records = spec_example()
    batch = StepBatch.from_records(records)
    cat = step_categories(batch, compute_method_outputs(batch, ["graphgpo"], backend="reference")["graphgpo"])
    # rows: T1 A->B, B->G | T2 A->C, C->D | T3 A->C, C->B, B->C
    assert cat.progress.tolist() == [True, True, False, False, False, True, False]
    assert cat.non_progress.tolist() == [False, False, True, True, True, False, True]
    assert cat.failed.tolist() == [False, False, True, True, True, True, True]


def test_diagnostics_add_up_over_batches_and_ignore_row_order():
    first, second = spec_example(group=0), loop_example(group=1, offset=10)
    a, b = diagnose(first, 0.5), diagnose(second, 0.5)
    shuffled = first + second
    random.Random(3).shuffle(shuffled)
    whole = diagnose(shuffled, 0.5)
    total = a + b
    for key in ("failed_steps", "failed_rescued_steps", "success_steps", "success_non_progress_steps"):
        assert getattr(total, key) == getattr(whole, key) == getattr(a, key) + getattr(b, key)
    for method in total.methods:
        assert total.non_progress_mean_advantage(method) == pytest.approx(whole.non_progress_mean_advantage(method))
        assert total.progress_mean_advantage(method) == pytest.approx(whole.progress_mean_advantage(method))


def test_missing_graphgpo_output_is_a_clear_error():
    batch = StepBatch.from_records(spec_example())
    outputs = compute_method_outputs(batch, ["grpo", "gigpo"], backend="reference")
    with pytest.raises(ValueError, match="graphgpo"):
        credit_diagnostics(batch, outputs)


def test_table_mentions_every_method():
    text = diagnose(loop_example(), 0.5).table()
    for method in ("graphgpo", "gigpo", "grpo", "rloo"):
        assert method in text


def test_json_of_diagnostics_without_some_steps_is_strict_json():
    import json

    # One failed trajectory only: no successful steps, so the success-side ratios have nothing to count.
    diag = diagnose(traj_rows(0, 1, ["A", "B", "C"], False), 0.5)
    data = diag.as_dict()
    text = json.dumps(data, allow_nan=False)  # NaN would raise here
    assert data["non_progress_share"] is None and data["per_method"]["grpo"]["progress_mean_advantage"] is None
    assert json.loads(text)["failed_steps"] == 2
    assert "n/a" in diag.table()
