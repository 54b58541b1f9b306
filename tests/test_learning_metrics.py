"""The learning comparison's metrics (benchmarks/learning.py) on hand-made run directories."""

import json

import numpy as np
import pytest

from benchmarks.learning import (LearningConfig, first_reaching, markdown_table, moving_average, parse_method,
                                 run_dir_for, summarise_task, write_report)


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


def _write_run(cfg, method, seed, train, final_eval, task="sokoban-easy"):
    run = run_dir_for(cfg, task, method, seed)
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


def test_heldout_column_and_report_keeps_other_tasks(tmp_path):
    """TextWorld's second evaluation (held-out games) is averaged per method, only when it was taken at the
    budget's last iteration; a report for one task keeps the other tasks already in learning.json."""
    out = tmp_path / "out"
    easy = LearningConfig(tasks=["sokoban-easy"], methods=["grpo"], seeds=[0], iterations=2, smooth=1,
                          run_root=str(tmp_path), out=str(out)).validate()
    _write_run(easy, "grpo", 0, [0.2, 0.4], 0.3)
    write_report(easy)
    tw = LearningConfig(tasks=["textworld"], methods=["grpo"], seeds=[0, 1, 2], iterations=2, smooth=1,
                        run_root=str(tmp_path), out=str(out)).validate()
    for seed, heldout, at in ((0, 0.25, 2), (1, 0.5, 2), (2, 0.9, 1)):  # seed 2 was evaluated too early
        _write_run(tw, "grpo", seed, [0.1, 0.3], 0.5, task="textworld")
        run = run_dir_for(tw, "textworld", "grpo", seed)
        (run / "heldout_eval.json").write_text(json.dumps({"iteration": at, "eval_success_rate": heldout}))
    s = summarise_task(tw, "textworld")
    assert s["methods"]["grpo"]["heldout_success"]["mean"] == pytest.approx(0.375)
    assert s["methods"]["grpo"]["heldout_success"]["n"] == 2
    assert "held-out games after training" in markdown_table(s) and "training games" in markdown_table(s)
    report = write_report(tw)
    assert [t["task"] for t in report["tasks"]] == ["sokoban-easy", "textworld"]
    text = (out / "learning.md").read_text()
    assert "### sokoban-easy" in text and "### textworld" in text
    assert "held-out games after training" not in markdown_table(report["tasks"][0])


def test_variant_labels_and_comparators():
    from benchmarks.learning import comparator, shares_baseline, uses_ds, variant_label

    spec = "graphgpo@advantage.omega=0.95,filter_groups.enable=true"
    assert variant_label(spec) == "graphgpo ω=0.95 +DS" and uses_ds(spec)
    assert variant_label("graphgpo@filter_groups.enable=true,advantage.memory=true,advantage.backend=reference") \
        == "graphgpo +DS +memory"
    assert variant_label("gigpo@advantage.options.normalize=mean") == "gigpo normalize=mean"
    assert comparator(spec, "gigpo") == "gigpo@filter_groups.enable=true"
    assert comparator("graphgpo@advantage.omega=0.95", "grpo") == "grpo"
    cfg = LearningConfig().validate()
    assert shares_baseline(cfg, spec) and shares_baseline(cfg, "grpo")
    assert not shares_baseline(cfg, "grpo@max_steps=20")  # a longer episode changes the random policy's success
    assert not shares_baseline(LearningConfig(overrides=["eval_tasks=8"]).validate(), "grpo")


def test_paired_differences_at_the_same_ds_setting_and_the_goal_table(tmp_path):
    from benchmarks.learning import goal_table

    ds = "filter_groups.enable=true"
    ours, ours_ds = "graphgpo@advantage.omega=0.95", f"graphgpo@advantage.omega=0.95,{ds}"
    methods = ["grpo", "gigpo", ours, f"grpo@{ds}", f"gigpo@{ds}", ours_ds]
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=methods, seeds=[0, 1], iterations=2, smooth=1,
                         run_root=str(tmp_path), out=str(tmp_path / "out")).validate()
    finals = {"grpo": (0.2, 0.3), "gigpo": (0.5, 0.4), ours: (0.6, 0.4),
              f"grpo@{ds}": (0.3, 0.3), f"gigpo@{ds}": (0.6, 0.7), ours_ds: (0.5, 0.6)}
    for method, values in finals.items():
        for seed, value in enumerate(values):
            _write_run(cfg, method, seed, [0.2, 0.4], value)
            run = run_dir_for(cfg, "sokoban-easy", method, seed)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for row in rows:
                row["episodes_rolled_out"] = 256 if ds in method else 128
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = summarise_task(cfg, "sokoban-easy")
    m = s["methods"]
    # without DS: ours - gigpo = (0.1, 0.0), ours - grpo = (0.4, 0.1); with DS against the DS baselines
    assert m[ours]["final_eval_success_minus_gigpo"]["mean"] == pytest.approx(0.05)
    assert m[ours]["final_eval_success_minus_grpo"]["mean"] == pytest.approx(0.25)
    assert m[ours_ds]["final_eval_success_minus_gigpo"]["mean"] == pytest.approx(-0.1)
    assert m[ours_ds]["final_eval_success_minus_grpo"]["mean"] == pytest.approx(0.25)
    assert "final_eval_success_minus_gigpo" not in m["gigpo"]
    assert m[ours_ds]["episodes_per_iteration"]["mean"] == 256 and m["grpo"]["episodes_per_iteration"]["mean"] == 128
    table = goal_table(s, "advantage.omega=0.95")
    off, on = table.splitlines()[2:]
    # off: ours 0.5 >= gigpo 0.45 > grpo 0.25 -> holds; on: ours 0.55 < gigpo 0.65 -> does not
    assert off.startswith("| off") and off.endswith("| yes |") and "0.050 ± 0.071 (1/2 > 0)" in off
    assert on.startswith("| on") and on.endswith("| no |") and "-0.100 ± 0.000" in on
    assert "graphgpo ω=0.95 +DS" in markdown_table(s)
    write_report(cfg)
    assert (tmp_path / "out" / "sokoban-easy.png").stat().st_size > 0
    assert "Goal check" in (tmp_path / "out" / "learning.md").read_text()


def test_option_table_pairs_each_option_with_the_same_variant_without_it(tmp_path):
    """+DS and +memory rows against the same variant without the option, paired on the seeds both ran."""
    from benchmarks.learning import option_table, without_option

    mean, ds = "advantage.options.normalize=mean", "filter_groups.enable=true"
    mem = "advantage.memory=true,advantage.backend=reference"
    ours, ours_mem, ours_ds = f"graphgpo@{mean}", f"graphgpo@{mean},{mem}", f"graphgpo@{mean},{ds}"
    assert without_option(ours_mem, "+memory") == ours and without_option(ours_ds, "+DS") == ours
    assert without_option(f"gigpo@{ds}", "+DS") == "gigpo" and without_option(ours, "+DS") is None
    # grpo +DS ran on no seed that grpo ran on: no row
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=["gigpo", f"gigpo@{ds}", ours, ours_mem, ours_ds, "grpo",
                                                          f"grpo@{ds}"],
                         seeds=[0, 1, 2], iterations=2, smooth=1, run_root=str(tmp_path)).validate()
    finals = {"gigpo": (0.2, 0.3, None), f"gigpo@{ds}": (0.4, 0.2, None), ours: (0.5, 0.5, 0.1),
              ours_mem: (0.7, None, 0.4), ours_ds: (None, None, 0.9), "grpo": (0.1, None, None),
              f"grpo@{ds}": (None, 0.3, None)}
    for method, values in finals.items():
        for seed, value in enumerate(values):
            if value is not None:
                _write_run(cfg, method, seed, [0.2, 0.4], value)
    rows = option_table(summarise_task(cfg, "sokoban-easy")).splitlines()[4:]
    by_base = {(r.split(" | ")[0][2:], r.split(" | ")[1]): r for r in rows}
    # gigpo +DS: seeds 0, 1 -> (+0.2, -0.1); memory: seeds 0, 2 -> (+0.2, +0.3); DS on ours: seed 2 only (+0.8)
    assert by_base[("+DS", "gigpo")].startswith("| +DS | gigpo | 2 |") and "0.050 ± 0.212" in by_base[("+DS", "gigpo")]
    # the without → with means cover the paired seeds only (ours on seeds 0, 2: 0.3; on seed 2: 0.1)
    memory_row = by_base[("+memory", "graphgpo normalize=mean")]
    assert "| 2 | 0.300 ± 0.283 → 0.550 ± 0.212 | 0.250 ± 0.071 (2/2 > 0) |" in memory_row
    ds_row = by_base[("+DS", "graphgpo normalize=mean")]
    assert "| 1 | 0.100 ± 0.000 → 0.900 ± 0.000 | 0.800 ± 0.000 (1/1 > 0) |" in ds_row
    assert len(rows) == 3


def test_memory_table_by_hand(tmp_path):
    """Groups without a success of their own and how many of them memory rescued: means over iterations, then
    over runs; a variant that does not log the memory columns shows its groups without success only."""
    from benchmarks.learning import memory_table

    mem = "graphgpo@advantage.memory=true"
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=["grpo", "graphgpo", mem], seeds=[0, 1], iterations=2,
                         smooth=1, run_root=str(tmp_path)).validate()
    logged = {("graphgpo", 0): [{"graph_groups_without_success": 6}, {"graph_groups_without_success": 4}],
              ("graphgpo", 1): [{"graph_groups_without_success": 8}, {"graph_groups_without_success": 8}],
              (mem, 0): [{"graph_groups_without_success": 6, "graph_memory_success_groups": 2,
                          "graph_memory_edges": 100, "advantage_std": 2.0},
                         {"graph_groups_without_success": 2, "graph_memory_success_groups": 2,
                          "graph_memory_edges": 300, "advantage_std": 1.0}],
              (mem, 1): [{"graph_groups_without_success": 4, "graph_memory_success_groups": 0,
                          "graph_memory_edges": 0, "advantage_std": 0.5},
                         {"graph_groups_without_success": 4, "graph_memory_success_groups": 1,
                          "graph_memory_edges": 50, "advantage_std": 0.5}]}
    for method in cfg.methods:
        for seed in cfg.seeds:
            _write_run(cfg, method, seed, [0.2, 0.4], 0.3)
            run = run_dir_for(cfg, "sokoban-easy", method, seed)
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for row, extra in zip(rows, logged.get((method, seed), [{}, {}])):
                row.update(extra)
            (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = memory_table(summarise_task(cfg, "sokoban-easy")).splitlines()
    # graphgpo: seed means 5 and 8; memory: without 4 and 4, rescued 2 and 0.5, edges 200 and 25, std 1.5 and 0.5
    assert lines[4] == "| graphgpo | 2 | 6.5 ± 2.1 | – | – | – |"
    assert lines[5] == "| graphgpo +memory | 2 | 4.0 ± 0.0 | 1.2 ± 1.1 | 112.5 ± 123.7 | 1.00 ± 0.71 |"
    assert len(lines) == 6  # grpo logs none of it
    assert memory_table(summarise_task(LearningConfig(tasks=["sokoban-easy"], methods=["graphgpo"], seeds=[0, 1],
                                                      iterations=2, run_root=str(tmp_path)).validate(),
                                       "sokoban-easy")) == ""


def test_assemble_puts_the_report_between_the_markers(tmp_path):
    """benchmarks/learning_assemble.py: the report's tables and a goal summary replace what the markers held;
    text outside them stays; a RESULTS file without the markers is an error that names it."""
    from benchmarks.learning_assemble import assemble

    ds = "filter_groups.enable=true"
    methods = ["grpo", "gigpo", "graphgpo@advantage.omega=0.95", f"grpo@{ds}", f"gigpo@{ds}",
               f"graphgpo@advantage.omega=0.95,{ds}"]
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=methods, seeds=[0], iterations=2, smooth=1,
                         run_root=str(tmp_path), out=str(tmp_path / "out")).validate()
    for value, method in zip((0.1, 0.5, 0.6, 0.2, 0.4, 0.7), methods):
        _write_run(cfg, method, 0, [0.2, 0.4], value)
    write_report(cfg)
    results = tmp_path / "RESULTS.md"
    results.write_text("intro\n<!-- goal summary: begin -->\nold goal\n<!-- goal summary: end -->\nmiddle\n"
                       "<!-- rerun tables: begin -->\nold tables\n<!-- rerun tables: end -->\nafter\n")
    summary = assemble(tmp_path / "out", results)
    text = results.read_text()
    assert "old goal" not in text and "old tables" not in text
    assert text.startswith("intro\n") and "\nmiddle\n" in text and text.endswith("after\n")
    assert "#### sokoban-easy" in text and "\n### sokoban-easy" not in text
    off, on = summary.splitlines()[2:]
    assert off.startswith("| sokoban-easy | off") and off.endswith("| yes |")   # 0.6 >= 0.5 > 0.1
    assert on.startswith("| sokoban-easy | on") and on.endswith("| yes |")     # 0.7 >= 0.4 > 0.2
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    with pytest.raises(ValueError, match="BARE.md"):
        assemble(tmp_path / "out", bare)


def test_rollout_cost_table_by_hand(tmp_path):
    """Rounds, groups trained on, informative groups and episodes per iteration: means over iterations, then
    over seeds; a run that does not log a metric on every row is left out of that column."""
    ds = "filter_groups.enable=true"
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=["grpo", f"grpo@{ds}"], seeds=[0, 1], iterations=2,
                         smooth=1, run_root=str(tmp_path)).validate()
    logged = {("grpo", 0): [(1, 16, 9), (1, 16, 11)], ("grpo", 1): [(1, 16, 10), None],
              (f"grpo@{ds}", 0): [(2, 16, 17), (3, 14, 14)], (f"grpo@{ds}", 1): [(1, 16, 16), (2, 16, 20)]}
    for (method, seed), rows in logged.items():
        _write_run(cfg, method, seed, [0.2, 0.4], 0.3)
        run = run_dir_for(cfg, "sokoban-easy", method, seed)
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for row, values in zip(metrics, rows):
            if values:
                rounds, trained, informative = values
                row.update(rollout_rounds=rounds, groups_trained=trained, groups_informative=informative,
                           episodes_rolled_out=128 * rounds)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    m = summarise_task(cfg, "sokoban-easy")["methods"]
    # DS seed 0: rounds (2+3)/2 = 2.5, seed 1: 1.5 -> 2.0; trained 15 and 16 -> 15.5; informative 15.5, 18 -> 16.75
    assert m[f"grpo@{ds}"]["rounds_per_iteration"]["mean"] == pytest.approx(2.0)
    assert m[f"grpo@{ds}"]["groups_trained_per_iteration"]["mean"] == pytest.approx(15.5)
    assert m[f"grpo@{ds}"]["groups_informative_per_iteration"]["mean"] == pytest.approx(16.75)
    assert m[f"grpo@{ds}"]["episodes_per_iteration"]["mean"] == pytest.approx(256.0)
    # GRPO seed 1 lacks the metrics on its second row: only seed 0 counts (informative (9+11)/2 = 10)
    assert m["grpo"]["groups_informative_per_iteration"] == {"mean": 10.0, "std": 0.0, "n": 1}
    table = markdown_table(summarise_task(cfg, "sokoban-easy"))
    assert "| grpo +DS | 2 | 2.00 ± 0.71 | 15.5 ± 0.7 | 16.8 ± 1.8 | 256.0 ± 90.5 |" in table


def test_archive_keeps_finished_runs_small_and_reportable(tmp_path):
    """The archive holds the finished runs' small files and cut metrics (no checkpoints); a report built
    from it equals the report from the full run directories, and a run root seeded with it skips them."""
    from benchmarks.learning import archive_runs, run_state

    cfg = LearningConfig(tasks=["sokoban-easy"], methods=["grpo", "gigpo"], seeds=[0, 1], iterations=2,
                         smooth=1, run_root=str(tmp_path / "runs")).validate()
    for method, seed, final in (("grpo", 0, 0.25), ("grpo", 1, 0.5), ("gigpo", 0, 0.75)):
        _write_run(cfg, method, seed, [0.1234567, 0.5], final)
        run = run_dir_for(cfg, "sokoban-easy", method, seed)
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        for row in metrics:
            row.update(loss=0.123456789, entropy=1.23456789, time_iteration=2.0)
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
        (run / "summary.json").write_text(json.dumps({"status": "completed", "iterations": 2}))
        (run / "checkpoints" / "iter_000002").mkdir(parents=True)
        (run / "checkpoints" / "iter_000002" / "state.pt").write_bytes(b"weights")
    unfinished = run_dir_for(cfg, "sokoban-easy", "gigpo", 1)
    unfinished.mkdir(parents=True)
    (unfinished / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "success_rate": 1.0}) + "\n")

    dest = tmp_path / "archive"
    copied = archive_runs(cfg, dest)
    assert sorted(p.relative_to(dest).as_posix() for p in copied) == [
        "sokoban-easy/gigpo/seed0", "sokoban-easy/grpo/seed0", "sokoban-easy/grpo/seed1"]
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert files == [f"sokoban-easy/{m}/seed{s}/{f}" for m, s in (("gigpo", 0), ("grpo", 0), ("grpo", 1))
                     for f in ("metrics.jsonl", "random_baseline.json", "summary.json")]
    row = json.loads((dest / "sokoban-easy/grpo/seed0/metrics.jsonl").read_text().splitlines()[0])
    assert row == {"iteration": 1, "success_rate": 0.1234567, "entropy": 1.2346, "time_iteration": 2.0}
    full, archived = summarise_task(cfg, "sokoban-easy"), summarise_task(
        LearningConfig(**{**cfg.__dict__, "run_root": str(dest)}), "sokoban-easy")
    assert archived["methods"] == full["methods"] and archived["curves"] == full["curves"]
    assert run_state(dest / "sokoban-easy/grpo/seed1", 2) == "done"


def test_earlier_seeds_fill_in_only_where_the_runs_reproduce_them(tmp_path):
    """An earlier report's seeds count for a variant only if every seed run here matches it exactly."""
    cfg = LearningConfig(tasks=["sokoban-easy"], methods=["grpo", "gigpo", "graphgpo"], seeds=[0, 1, 2],
                         iterations=2, smooth=1, run_root=str(tmp_path)).validate()
    _write_run(cfg, "grpo", 0, [0.25, 0.5], 0.25)       # AUC 0.375, train 0.375
    _write_run(cfg, "gigpo", 0, [0.25, 0.5], 0.5)       # earlier says 0.75 for seed 0: not reproduced
    _write_run(cfg, "graphgpo", 0, [0.5, 0.5], 0.75)    # earlier has no seed 0: no overlap

    def row(seed, final, auc=0.375):
        return {"seed": seed, "final_eval_success": final, "final_train_success": auc, "auc": auc,
                "heldout_success": None, "iters_to_half_best": 1}
    earlier = {"tasks": [{"task": "sokoban-easy", "methods": {
        "grpo": {"per_seed": [row(0, 0.25), row(1, 0.125), row(2, 0.375), row(3, 0.5)]},
        "gigpo": {"per_seed": [row(0, 0.75), row(1, 0.5)]},
        "graphgpo": {"per_seed": [row(1, 0.875)]}}}]}
    path = tmp_path / "earlier.json"
    path.write_text(json.dumps(earlier))
    s = summarise_task(LearningConfig(**{**cfg.__dict__, "earlier": [str(path)]}), "sokoban-easy")
    m = s["methods"]
    # grpo: seed 0 reproduced -> seeds 1 and 2 added (seed 3 is outside the grid): finals 0.25, 0.125, 0.375
    assert m["grpo"]["seeds"] == [0, 1, 2] and m["grpo"]["earlier_seeds"] == [1, 2]
    assert m["grpo"]["final_eval_success"]["mean"] == pytest.approx(0.25)
    assert m["grpo"]["iters_to_half_best"]["n"] == 1  # only the run here has iterations-to-bar
    assert m["gigpo"]["seeds"] == [0] and m["graphgpo"]["seeds"] == [0]
    # paired on seed 0 only (gigpo has no seeds 1-2): 0.5 - 0.25
    assert m["gigpo"]["final_eval_success_minus_grpo"] == {"mean": 0.25, "std": 0.0, "n": 1, "above": 1}
    assert "| grpo | 3 (2 earlier) |" in markdown_table(s)
    path.write_text("not json")
    with pytest.raises(ValueError, match="earlier.json is not a learning.json report"):
        summarise_task(LearningConfig(**{**cfg.__dict__, "earlier": [str(path)]}), "sokoban-easy")


def test_extending_the_budget_stretches_the_learning_rate_decay(tmp_path):
    """A resumed run keeps its decay length unless told otherwise; learning.py's --iterations sets both."""
    from benchmarks.learning import train_config

    for iterations in (100, 150):
        cfg = LearningConfig(tasks=["sokoban-easy"], iterations=iterations, run_root=str(tmp_path)).validate()
        tc = train_config(cfg, "sokoban-easy", "graphgpo@filter_groups.enable=true", 0)
        assert tc.num_iterations == tc.lr_decay_iterations == iterations and tc.filter_groups.enable
