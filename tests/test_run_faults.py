"""Runs that go wrong: damaged checkpoints, torn metrics, bad configs, resume changes, failed starts; and what
a run directory and its logs hold. Tiny CPU runs (a few seconds); one finished run is shared and copied."""

import contextlib
import io
import json
import shutil
import sys

import pytest
import torch

pytest.importorskip("transformers")

from graphgpo.cli import main  # noqa: E402
from graphgpo.trainer.checkpoint import (CheckpointError, list_checkpoints, load_checkpoint,  # noqa: E402
                                         save_checkpoint, verify_checkpoint)
from graphgpo.trainer.config import load_config  # noqa: E402
from graphgpo.trainer.runlog import TIMING_KEYS, read_metrics  # noqa: E402

TINY = [
    "tasks_per_batch=2", "num_generations=4", "max_steps=4", "embedded_hidden_size=16", "embedded_num_heads=2",
    "embedded_intermediate_size=32", "mini_batch_size=8", "micro_batch_size=4", "eval_tasks=6", "eval_every=2",
    "save_every=1", "keep_checkpoints=3", "progress_bar=false", "env_kwargs.interior=[3,3]",
    "env_kwargs.reverse_moves=3", "save_final_model=false", "learning_rate=0.003",
]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """(run directory, what `graphgpo train` printed) of a finished 3-iteration run."""
    run = tmp_path_factory.mktemp("runs") / "done"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", "--output-dir", str(run), *TINY, "num_iterations=3"]) == 0
    return run, out.getvalue()


def copy_run(finished, tmp_path, name="run"):
    return shutil.copytree(finished[0], tmp_path / name)


def comparable(row):
    return {k: v for k, v in row.items() if k not in TIMING_KEYS}


def cli(argv, capsys):
    """(exit status, stderr) of `graphgpo ARGV`, whether argparse or the command reports the error."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def assert_one_line_error(code, err, command):
    assert code == 2, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"graphgpo {command}: error:"), err


# ---------------------------------------------------------------------------------------------- checkpoints
def test_resume_falls_back_past_a_truncated_checkpoint_and_names_it(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    damaged = run / "checkpoints" / "iter_000003" / "policy.pt"
    with open(damaged, "r+b") as handle:
        handle.truncate(100)
    assert main(["train", "--resume", str(run)]) == 0
    err = capsys.readouterr().err
    assert str(damaged) in err and "manifest says" in err
    rows = read_metrics(run)
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    # iteration 3 was redone from checkpoint 2 and repeats the original exactly
    assert comparable(rows[2]) == comparable(read_metrics(finished[0])[2])
    verify_checkpoint(run / "checkpoints" / "iter_000003")  # rewritten whole


def test_no_intact_checkpoint_is_one_line_naming_them(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    for checkpoint in list_checkpoints(run):
        (checkpoint / "optimizer.pt").write_bytes(b"garbage")
    code, err = cli(["train", "--resume", str(run)], capsys)
    assert_one_line_error(code, err, "train")
    assert "no intact checkpoint" in err and "iter_000001" in err and "iter_000003" in err


class Counter:
    """Extra checkpoint state: anything with state_dict()/load_state_dict()."""

    def __init__(self, value=0):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def test_checkpoint_carries_extra_state_and_an_interrupted_save_leaves_nothing(tmp_path, monkeypatch):
    from graphgpo.trainer.policy import load_policy

    cfg = load_config(None, ["embedded_hidden_size=16", "embedded_num_heads=2", "embedded_intermediate_size=32"])
    policy = load_policy(cfg, vocabulary=["#", "_"], action_words=["up", "down"])
    optimizer = torch.optim.AdamW(policy.model.parameters(), lr=1e-3)
    path = save_checkpoint(tmp_path, 7, policy, optimizer, extra={"counter": Counter(41)})
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"policy.pt", "optimizer.pt", "state.pt"}
    restored = Counter()
    assert load_checkpoint(path, policy, optimizer, extra={"counter": restored})["iteration"] == 7
    assert restored.value == 41
    with pytest.raises(CheckpointError, match="no saved state 'other'"):
        load_checkpoint(path, policy, extra={"other": Counter()})

    real_save = torch.save

    def dies_on_the_optimizer(obj, file, *args, **kwargs):
        if str(file).endswith("optimizer.pt"):
            raise KeyboardInterrupt  # killed mid-save
        return real_save(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", dies_on_the_optimizer)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 8, policy, optimizer)
    assert list_checkpoints(tmp_path) == [path]  # the half-written iteration 8 is not a checkpoint
    (path / "state.pt").unlink()
    with pytest.raises(CheckpointError, match=r"state\.pt: missing"):
        verify_checkpoint(path)


# ---------------------------------------------------------------------------------------------- metrics
def test_torn_last_metrics_line_is_skipped_by_plot_and_resume(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    with open(run / "metrics.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"iteration": 4, "success_rate": 0.')  # killed mid-write
    with pytest.warns(UserWarning, match=r"metrics\.jsonl:4: skipping a torn last line"):
        assert len(read_metrics(run)) == 3
    assert main(["plot", str(run), "--output", str(tmp_path / "p.png")]) == 0
    assert main(["train", "--resume", str(run), "num_iterations=4"]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1, 2, 3, 4]


def test_a_bad_line_inside_metrics_names_file_and_line(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    code, err = cli(["plot", str(run), "--output", str(tmp_path / "p.png")], capsys)
    assert_one_line_error(code, err, "plot")
    assert "metrics.jsonl:2" in err


# ---------------------------------------------------------------------------------------------- config
def test_numbers_in_yaml_are_numbers_and_options_are_checked_before_building(tmp_path, monkeypatch, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 1e-3\nadvantage: {method: grpo, options: {eps: 1e-8}}\n")
    cfg = load_config(path, ["advantage.options.normalize=mean"])
    assert cfg.learning_rate == 1e-3 and cfg.advantage.options == {"eps": 1e-8, "normalize": "mean"}
    assert load_config(None, ["advantage.options.eps=1e-8"]).advantage.options["eps"] == 1e-8

    def never(*args, **kwargs):
        raise AssertionError("the model was built before the config was checked")

    monkeypatch.setattr("graphgpo.trainer.loop.load_policy", never)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the tests' Triton interpreter runs on CPU
    for override, message in [("advantage.options.foo=1", "advantage.options: unknown option(s) 'foo'"),
                              ("advantage.options.eps=-1", "advantage.options.eps must be > 0"),
                              ("advantage.backend=triton", "advantage.backend: backend 'triton' needs a CUDA"),
                              ("advantage.memory=true", "advantage.memory is a GraphGPO option")]:
        extra = ["advantage.method=grpo"] if "memory" in override else []
        code, err = cli(["train", "--output-dir", str(tmp_path / "x"), *extra, override], capsys)
        assert_one_line_error(code, err, "train")
        assert message in err
        assert not (tmp_path / "x").exists()


def test_invalid_yaml_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("seed: 1\nadvantage: {method: grpo\n")
    code, err = cli(["train", "--config", str(path)], capsys)
    assert_one_line_error(code, err, "train")
    assert f"{path}:3: invalid YAML" in err


def test_failed_start_leaves_no_run_directory(tmp_path, capsys):
    run = tmp_path / "x"
    code, err = cli(["train", "--output-dir", str(run), *TINY, "env_kwargs.generator=bogus"], capsys)
    assert_one_line_error(code, err, "train")
    assert "generator" in err and not run.exists()
    (tmp_path / "file").write_text("")
    code, err = cli(["train", "--output-dir", str(tmp_path / "file" / "run"), *TINY], capsys)
    assert_one_line_error(code, err, "train")
    assert "not a writable directory" in err


def test_missing_train_extra_says_which_extra(finished, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # as on an install without the train extra
    code, err = cli(["train", "--output-dir", str(tmp_path / "x"), *TINY], capsys)
    assert_one_line_error(code, err, "train")
    assert "'tokenizers' package of the 'train' extra" in err and "pip install" in err
    assert not (tmp_path / "x").exists()
    monkeypatch.setitem(sys.modules, "transformers", None)
    for argv in (["eval", str(finished[0])], ["viz", str(finished[0]), "--out", str(tmp_path / "v")],
                 ["diagnose", str(finished[0]), "--tasks", "1"]):
        code, err = cli(argv, capsys)
        assert_one_line_error(code, err, argv[0])
        assert "'transformers' package of the 'train' extra" in err


# ---------------------------------------------------------------------------------------------- resume rules
@pytest.mark.parametrize("override, field", [
    ("seed=7", "seed"), ("advantage.method=grpo", "advantage.method"), ("num_iterations=2", "num_iterations"),
    ("learning_rate=0.1", "learning_rate"), ("env_kwargs.interior=[4,4]", "env_kwargs"),
])
def test_resume_refuses_changes_of_meaning(finished, override, field, capsys):
    run = finished[0]
    before = {p.name: p.read_bytes() for p in (run / "config.yaml", run / "run_history.jsonl")}
    code, err = cli(["train", "--resume", str(run), override], capsys)
    assert_one_line_error(code, err, "train")
    assert field in err
    assert {p.name: p.read_bytes() for p in (run / "config.yaml", run / "run_history.jsonl")} == before


def test_more_iterations_hold_the_final_learning_rate_unless_the_decay_is_stretched(finished, tmp_path):
    lr = 0.003
    held = copy_run(finished, tmp_path, "held")
    assert main(["train", "--resume", str(held), "num_iterations=4", "eval_every=4"]) == 0
    rows = read_metrics(held)
    assert [r["learning_rate"] for r in rows] == pytest.approx([lr, lr * 2 / 3, lr / 3, lr / 3])
    saved = load_config(held / "config.yaml")
    assert saved.num_iterations == 4 and saved.lr_decay_iterations == 3 and saved.eval_every == 4
    history = [json.loads(line) for line in (held / "run_history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"]
    assert history[1]["iteration"] == 3
    assert history[1]["config_changes"] == {"num_iterations": [3, 4], "eval_every": [2, 4]}

    stretched = copy_run(finished, tmp_path, "stretched")
    assert main(["train", "--resume", str(stretched), "num_iterations=4", "lr_decay_iterations=4"]) == 0
    assert read_metrics(stretched)[3]["learning_rate"] == pytest.approx(lr / 4)


# ---------------------------------------------------------------------------------------------- run directory, logs
def test_run_directory_states_resolved_config_versions_and_commit(finished):
    run, printed = finished
    saved = load_config(run / "config.yaml")
    assert saved.advantage.omega == 0.8  # Sokoban's recipe value, not null
    assert saved.lr_decay_iterations == 3 and saved.bf16 is False and saved.random_baseline is True
    assert saved.use_chat_template is False and saved.recompute_old_logprobs is False
    start = json.loads((run / "run_history.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["iteration"] == 0 and start["device"] == "cpu"
    assert start["packages"]["torch"] == torch.__version__ and "graphgpo" in start["packages"]
    assert len(start["git_commit"]) == 40  # the tests run from the repository
    lines = printed.splitlines()
    assert lines[0].startswith(f"run directory: {run}")
    assert any(line.startswith("iteration 3/3: succ") for line in lines)  # progress bar off: one line per N
    assert lines[-1] == f"run directory: {run}"
    assert not (run / "metrics.jsonl").read_text().count("NaN")


def test_tensorboard_tags_are_grouped_and_kl_only_when_computed(finished):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(finished[0] / "tensorboard")).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/success_rate", "train/loss", "train/learning_rate", "eval/success_rate",
                "eval/success_by_task_type/sokoban", "time/rollout", "time/env_steps_per_s", "time/tokens_per_s",
                "adv/mean", "adv/graph_num_nodes"):
        assert tag in scalars, tag
    assert all(tag.split("/")[0] in ("train", "eval", "time", "adv") for tag in scalars)
    assert "train/kl" not in scalars and "kl" not in read_metrics(finished[0])[0]  # kl_coef=0: not computed
    assert "config/text_summary" in events.Tags()["tensors"]


def test_resuming_a_finished_run_adds_no_event_files(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    before = sorted(p.name for p in (run / "tensorboard").iterdir())
    assert main(["train", "--resume", str(run)]) == 0
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == before


def test_plot_without_output_writes_into_the_run_not_the_current_directory(finished, tmp_path, monkeypatch,
                                                                             capsys):
    run = copy_run(finished, tmp_path / "runs")
    (run / "learning_curve.png").unlink()
    monkeypatch.chdir(tmp_path)
    assert main(["plot", str(run)]) == 0
    assert (run / "learning_curve.png").is_file() and f"wrote {run / 'learning_curve.png'}" in capsys.readouterr().out
    other = copy_run(finished, tmp_path / "runs", "other")
    assert main(["plot", str(run), str(other)]) == 0
    assert (tmp_path / "runs" / "comparison.png").is_file()
    assert not list(tmp_path.glob("*.png"))


def test_report_to_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "wb"
    assert main(["train", "--output-dir", str(run), *TINY, "num_iterations=1", "report_to=wandb",
                 "tensorboard=false", "random_baseline=false"]) == 0
    offline = list((run / "wandb").glob("offline-run-*"))
    run_id = (run / "wandb_run_id").read_text().strip()
    assert len(offline) == 1 and offline[0].name.endswith(run_id)
    assert not (run / "tensorboard").exists()


def test_unwritable_output_paths_are_one_line(finished, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "out"  # a path below a regular file cannot be created
    code, err = cli(["plot", str(finished[0]), "--output", str(blocked / "p.png")], capsys)
    assert_one_line_error(code, err, "plot")
    code, err = cli(["eval", str(finished[0]), "--tasks", "2", "--output", str(blocked / "e.json")], capsys)
    assert_one_line_error(code, err, "eval")
    assert str(blocked) in err


def test_python_api_resume_with_a_fresh_config_as_the_benchmarks_do(finished, tmp_path):
    """benchmarks/learning.py resumes with a config built from scratch (None = auto defaults, no
    lr_decay_iterations): the same run, extended; the decay then spans the new num_iterations."""
    from graphgpo.trainer.loop import train

    run = copy_run(finished, tmp_path)
    summary = train(load_config(None, [*TINY, "num_iterations=4", f"output_dir={run}"]), resume=True)
    assert summary["iterations"] == 4
    assert read_metrics(run)[3]["learning_rate"] == pytest.approx(0.003 / 4)


def test_default_run_directory_is_named_at_start_and_end(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *TINY, "num_iterations=1", "random_baseline=false", "tensorboard=false"]) == 0
    lines = capsys.readouterr().out.splitlines()
    (run,) = (tmp_path / "runs").iterdir()
    assert run.name.startswith("sokoban-graphgpo-seed0-")
    assert lines[0] == f"run directory: runs/{run.name}" and lines[-1] == f"run directory: runs/{run.name}"
