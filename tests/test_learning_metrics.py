"""The learning comparison's metrics (benchmarks/learning.py) on hand-made run directories."""

import json

import numpy as np
import pytest

from benchmarks.learning import (LearningConfig, first_reaching, markdown_table, moving_average, parse_method,
                                 run_dir_for, summarise_task)


def test_moving_average_and_first_reaching():
    assert moving_average([1, 2, 3, 4], 2).tolist() == [1.0, 1.5, 2.5, 3.5]
    assert first_reaching(np.array([0.1, 0.4, 0.6, 0.7]), 0.5) == 3  # 1-based iteration
    assert first_reaching(np.array([0.1, 0.2]), 0.5) is None


def test_parse_method_variants():
    assert parse_method("graphgpo") == ("graphgpo", [])
    assert parse_method("graphgpo@advantage.omega=0.95,ppo_epochs=1") == (
        "graphgpo", ["advantage.omega=0.95", "ppo_epochs=1"])
    with pytest.raises(ValueError, match="unknown method"):
        LearningConfig(methods=["ppo"]).validate()


def _write_run(cfg, method, seed, train, final_eval):
    run = run_dir_for(cfg, "sokoban-easy", method, seed)
    run.mkdir(parents=True)
    rows = [{"iteration": i + 1, "success_rate": s} for i, s in enumerate(train)]
    rows[-1]["eval_success_rate"] = final_eval
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "random_baseline.json").write_text(json.dumps({"random_policy_success_rate": 0.2}))


def test_summarise_task_by_hand(tmp_path):
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=["grpo", "graphgpo"], seeds=[0, 1], iterations=4,
                         smooth=1, run_root=str(tmp_path)).validate()
    _write_run(cfg, "grpo", 0, [0.2, 0.2, 0.4, 0.4], 0.3)
    _write_run(cfg, "grpo", 1, [0.2, 0.2, 0.2, 0.2], 0.1)
    _write_run(cfg, "graphgpo", 0, [0.2, 0.6, 0.8, 0.8], 0.7)
    _write_run(cfg, "graphgpo", 1, [0.2, 0.4, 0.6, 0.8], 0.5)
    # An unfinished run is left out of the means.
    unfinished = run_dir_for(cfg, "sokoban-easy", "graphgpo", 2)
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "success_rate": 1.0}) + "\n")

    s = summarise_task(cfg, "sokoban-easy")
    g, r = s["methods"]["graphgpo"], s["methods"]["grpo"]
    assert g["seeds"] == [0, 1] and r["seeds"] == [0, 1]
    # last-10 window covers all 4 iterations: means 0.6 and 0.5 -> 0.55; grpo 0.3 and 0.2 -> 0.25
    assert g["final_train_success"]["mean"] == pytest.approx(0.55)
    assert r["final_train_success"]["mean"] == pytest.approx(0.25)
    assert g["final_eval_success"]["mean"] == pytest.approx(0.6)
    assert g["final_eval_success"]["std"] == pytest.approx(np.std([0.7, 0.5], ddof=1))
    # best = 0.55, half of it 0.275: graphgpo seeds reach it at iterations 2 and 2; grpo seed 0 at 3, seed 1 never
    assert s["half_best_threshold"] == pytest.approx(0.275)
    assert g["iters_to_half_best"]["mean"] == pytest.approx(2.0)
    assert r["iters_to_half_best"]["never"] == 1 and r["iters_to_half_best"]["mean"] == pytest.approx((3 + 5) / 2)
    # paired differences to GRPO on the same seed: 0.7-0.3 and 0.5-0.1
    assert g["final_eval_success_minus_grpo"]["mean"] == pytest.approx(0.4)
    table = markdown_table(s)
    assert "graphgpo" in table and "0.600 ± 0.141" in table
