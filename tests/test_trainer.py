"""End-to-end trainer runs at tiny sizes on CPU (a few seconds each)."""

import json
import math
import os
import signal

import pytest
import torch

pytest.importorskip("transformers")

from graphgpo.cli import main
from graphgpo.trainer.runlog import TIMING_KEYS
from graphgpo.trainer.checkpoint import latest_checkpoint, list_checkpoints
from graphgpo.trainer.config import TrainConfig, load_config
from graphgpo.trainer.loop import Trainer, train
from graphgpo.trainer.runlog import read_metrics
from graphgpo.trainer.update import NonFiniteError

TINY = [
    "tasks_per_batch=2", "num_generations=4", "max_steps=4", "embedded_hidden_size=16", "embedded_num_heads=2",
    "embedded_intermediate_size=32", "mini_batch_size=8", "micro_batch_size=4", "eval_tasks=6", "eval_every=2",
    "save_every=1", "progress_bar=false", "env_kwargs.interior=[3,3]", "env_kwargs.reverse_moves=3",
    "save_final_model=false",
]
TIME_KEYS = TIMING_KEYS  # wall-clock metrics differ between identical runs


def tiny(tmp_path, name, *extra):
    return load_config(None, [*TINY, f"output_dir={tmp_path / name}", *extra])


def test_three_iterations_end_to_end(tmp_path):
    run = tmp_path / "run"
    code = main(["train", "--output-dir", str(run), *TINY, "num_iterations=3", "kl_coef=0.01", "entropy_coef=0.01"])
    assert code == 0
    rows = read_metrics(run)
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert 0.0 <= row["success_rate"] <= 1.0 and 0.0 <= row["valid_action_rate"] <= 1.0
        assert row["num_steps"] >= 2 * 4  # every episode has at least one step
        for key in ("loss", "pg_loss", "kl", "entropy", "grad_norm", *TIME_KEYS):
            assert math.isfinite(row[key]), key
        assert row["kl"] >= 0.0
    assert "eval_success_rate" in rows[1] and "eval_success_rate" in rows[2] and "eval_success_rate" not in rows[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["iterations"] == 3
    assert summary["eval_success_rate"] == rows[2]["eval_success_rate"]
    assert 0.0 <= summary["random_policy_success_rate"] <= 1.0
    saved = load_config(run / "config.yaml")
    assert saved.kl_coef == 0.01 and saved.env_kwargs["interior"] == [3, 3]
    assert [p.name for p in list_checkpoints(run)] == ["iter_000002", "iter_000003"]  # keep_checkpoints=2
    assert (run / "learning_curve.png").stat().st_size > 0
    assert any((run / "tensorboard").iterdir())
    # eval and plot on the finished run
    assert main(["eval", str(run), "--tasks", "4", "--output", str(tmp_path / "eval.json")]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["iteration"] == 3 and result["eval_tasks"] == 4
    assert main(["plot", str(run), str(run), "--output", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 0


def _interrupt_at(monkeypatch, stop_iteration):
    """Press Ctrl-C (SIGINT to this process) at the start of ``stop_iteration``."""
    real = Trainer.train_iteration

    def interrupted(self, iteration):
        if iteration == stop_iteration:
            os.kill(os.getpid(), signal.SIGINT)  # handled: the iteration still completes
        return real(self, iteration)

    monkeypatch.setattr(Trainer, "train_iteration", interrupted)
    return real


def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    full = train(tiny(tmp_path, "full", "num_iterations=3"))
    assert full["iterations"] == 3
    real = _interrupt_at(monkeypatch, 2)
    part = train(tiny(tmp_path, "part", "num_iterations=3", "save_every=0"))
    assert part["status"] == "interrupted" and part["iterations"] == 2
    monkeypatch.setattr(Trainer, "train_iteration", real)
    assert main(["train", "--resume", str(tmp_path / "part")]) == 0
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "part")
    assert [r["iteration"] for r in b] == [1, 2, 3]
    for key in set(a[2]) - TIME_KEYS:
        assert b[2][key] == pytest.approx(a[2][key], rel=1e-6, abs=1e-9), key
    wa = torch.load(latest_checkpoint(tmp_path / "full") / "policy.pt")
    wb = torch.load(latest_checkpoint(tmp_path / "part") / "policy.pt")
    assert all(torch.allclose(wa[k], wb[k], atol=1e-7) for k in wa)


def test_resume_can_extend_a_finished_run(tmp_path):
    train(tiny(tmp_path, "ext", "num_iterations=2"))
    assert main(["train", "--resume", str(tmp_path / "ext"), "num_iterations=3"]) == 0
    assert [r["iteration"] for r in read_metrics(tmp_path / "ext")] == [1, 2, 3]
    assert load_config(tmp_path / "ext" / "config.yaml").num_iterations == 3


@pytest.mark.parametrize("override, field", [
    ("learning_rate=-1", "learning_rate"),
    ("advantage.method=ppo", "advantage.method"),
    ("advantage.omega=1.5", "advantage.omega"),
    ("num_generations=two", "num_generations"),
    ("clip_ratio=0", "clip_ratio"),
    ("lerning_rate=0.1", "lerning_rate"),
    ("advantage.bogus=1", "advantage.bogus"),
])
def test_bad_config_values_name_the_field(override, field, tmp_path, capsys):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        load_config(None, [override])
    assert main(["train", "--output-dir", str(tmp_path / "x"), override]) == 2
    assert field in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_yaml_file_names_file_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("max_steps: 0\n")
    with pytest.raises(ValueError, match="max_steps"):
        load_config(path)
    with pytest.raises(ValueError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_non_finite_advantages_stop_and_keep_last_good_checkpoint(tmp_path, monkeypatch):
    import graphgpo.api as api

    real = api.compute_advantages
    calls = {"n": 0}

    def poisoned(batch, **kwargs):
        out = real(batch, **kwargs)
        calls["n"] += 1
        if calls["n"] == 2:
            out.advantages[0] = float("nan")
        return out

    monkeypatch.setattr(api, "compute_advantages", poisoned)
    cfg = tiny(tmp_path, "nan", "num_iterations=3")
    with pytest.raises(NonFiniteError, match="NaN/inf.*iter_000001"):
        train(cfg)
    run = tmp_path / "nan"
    assert [r["iteration"] for r in read_metrics(run)] == [1]
    assert [p.name for p in list_checkpoints(run)] == ["iter_000001"]
    assert json.loads((run / "summary.json").read_text())["status"].startswith("stopped")
    monkeypatch.setattr(api, "compute_advantages", real)
    assert train(load_config(run / "config.yaml", [f"output_dir={run}"]), resume=True)["iterations"] == 3


def test_ctrl_c_finishes_iteration_and_leaves_a_checkpoint(tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 2)
    summary = train(tiny(tmp_path, "sigint", "num_iterations=5", "save_every=0"))
    assert summary["status"] == "interrupted" and summary["iterations"] == 2
    assert [p.name for p in list_checkpoints(tmp_path / "sigint")] == ["iter_000002"]


def test_default_config_is_the_embedded_default():
    cfg = TrainConfig().validate()
    assert cfg.is_embedded and cfg.env == "sokoban" and cfg.advantage.method == "graphgpo"
    assert cfg.resolved_omega == 0.8 and cfg.env_kwargs["render"] == "compact"
    cfg.advantage.omega = cfg.resolved_omega  # the preset spells out the recipe's 0.8
    assert load_config("embedded-sokoban").to_dict() == cfg.to_dict()


def test_hugging_face_model_path_with_generate_lora_and_kl(tmp_path):
    """A local Hugging Face model directory goes through transformers generate (several tokens per
    step, left padding), LoRA adapters and the KL to the adapter-free reference."""
    pytest.importorskip("peft")
    from graphgpo.trainer.policy import build_embedded_model, build_word_tokenizer

    tok = build_word_tokenizer("# _ O X √ P S ; up down left right".split())
    model = build_embedded_model(len(tok), hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    model.save_pretrained(tmp_path / "hf")
    tok.save_pretrained(tmp_path / "hf")
    cfg = tiny(tmp_path, "hfrun", f"model_name_or_path={tmp_path / 'hf'}", "max_completion_length=2",
               "num_iterations=2", "use_peft=true", "lora_r=4", "lora_target_modules=[q_proj,v_proj]",
               "kl_coef=0.01", "save_final_model=true")
    summary = train(cfg)
    assert summary["iterations"] == 2 and summary["random_policy_success_rate"] is None
    rows = read_metrics(tmp_path / "hfrun")
    assert all(math.isfinite(r["kl"]) and r["kl"] >= 0 for r in rows)
    assert "entropy" not in rows[0]  # not computed without an entropy bonus
    assert (tmp_path / "hfrun" / "final_model" / "adapter_config.json").is_file()
    # only the adapters are checkpointed
    state = torch.load(latest_checkpoint(tmp_path / "hfrun") / "policy.pt")
    assert state and all("lora" in k for k in state)


@pytest.mark.parametrize("kind", ["embedded", "hf"])
def test_engine_logprobs_match_the_training_forward(kind, tmp_path):
    """Before any update the PPO ratio must be exactly 1: the engine's log-probs (left-padded batch of
    prompts of different lengths) equal the trainer's forward pass on [prompt | response]."""
    from graphgpo.trainer.engine import HFEngine, SamplingParams
    from graphgpo.trainer.policy import build_embedded_model, build_word_tokenizer, load_policy

    words = "# _ O X √ P S ;".split()
    actions = ["up", "down", "left", "right"]
    if kind == "embedded":
        cfg = load_config(None, ["embedded_hidden_size=16", "embedded_num_heads=2", "embedded_intermediate_size=32"])
        policy = load_policy(cfg, vocabulary=words, action_words=actions)
        max_new = 1
    else:
        tok = build_word_tokenizer(words + actions)
        build_embedded_model(len(tok), hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                             seed=3).save_pretrained(tmp_path / "m")
        tok.save_pretrained(tmp_path / "m")
        cfg = load_config(None, [f"model_name_or_path={tmp_path / 'm'}", "max_completion_length=3"])
        policy = load_policy(cfg)
        max_new = 3
    prompts = ["P _ ; O X", "# # _ ; _ P ; X O _ ; _ _ _", "S"]
    gens = HFEngine(policy).generate(prompts, SamplingParams(temperature=0.7, max_new_tokens=max_new, seed=5))
    assert [g.prompt_ids for g in gens] == [policy.encode_prompt(p) for p in prompts]
    assert all(len(g.response_ids) == len(g.logprobs) == max_new for g in gens)
    if kind == "embedded":
        assert all(g.text in actions for g in gens)
    with torch.no_grad():
        logp, mask, _ = policy.response_logprobs([g.prompt_ids for g in gens], [g.response_ids for g in gens], 0.7)
    for i, g in enumerate(gens):
        assert logp[i, :len(g.logprobs)].tolist() == pytest.approx(g.logprobs, abs=1e-5)
    # same seed, same samples
    again = HFEngine(policy).generate(prompts, SamplingParams(temperature=0.7, max_new_tokens=max_new, seed=5))
    assert [g.response_ids for g in again] == [g.response_ids for g in gens]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_a_clear_config_error():
    with pytest.raises(ValueError, match=r"device: 'cuda' was asked for"):
        load_config(None, ["device=cuda"])


def test_embedded_model_plays_textworld_menus_from_a_game_pool(tmp_path, monkeypatch):
    """The embedded one-token model on TextWorld: numbered menus, training on a pool of 2 games and
    evaluating each game of the pool once."""
    pytest.importorskip("textworld")
    monkeypatch.setenv("GRAPHGPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("graphgpo.trainer.loop.RANDOM_BASELINE_MIN_EPISODES", 16)  # 1024 in real runs
    cfg = load_config(None, [
        "env=textworld", "prompt_style=compact", "env_kwargs.nb_rooms=1", "env_kwargs.nb_objects=2",
        "env_kwargs.quest_length=1", "env_kwargs.game_pool_size=2", "num_iterations=2", "tasks_per_batch=2",
        "num_generations=3", "max_steps=3", "embedded_hidden_size=16", "embedded_num_heads=2",
        "embedded_intermediate_size=32", "eval_every=1", "eval_tasks=50", "progress_bar=false",
        "save_final_model=false", f"output_dir={tmp_path / 'tw'}"])
    trainer = Trainer(cfg)
    try:
        assert trainer.train_pool == trainer.eval_pool == 2
        assert trainer.eval_seeds == [0, 1]  # each pool game once, eval_tasks capped by the pool
        vocab = trainer.policy.tokenizer.get_vocab()
        assert {"#1", "#32", "take", "go"} <= set(vocab)
        summary = trainer.train()
    finally:
        trainer.close()
    rows = read_metrics(tmp_path / "tw")
    assert [r["iteration"] for r in rows] == [1, 2]
    assert all(0.0 <= r["valid_action_rate"] <= 1.0 and r["num_steps"] >= 6 for r in rows)
    assert summary["eval_tasks"] == 2 and 0.0 <= summary["eval_success_rate"] <= 1.0
    baseline = json.loads((tmp_path / "tw" / "random_baseline.json").read_text())
    assert baseline["eval_tasks"] == 2 and len(baseline["repeats"]) == 8  # 16 episodes on a pool of 2
    assert summary["random_policy_success_rate"] > 0  # 1-step quests


def test_textworld_preset_is_the_learning_benchmark_task():
    """`graphgpo train --config embedded-textworld` and benchmarks/learning.py's "textworld" task agree."""
    from benchmarks.learning import LearningConfig, train_config

    preset = load_config("embedded-textworld")
    bench = train_config(LearningConfig(tasks=["textworld"], iterations=100, eval_every=20, eval_tasks=32),
                         "textworld", "graphgpo", 0)
    for name in ("env", "env_kwargs", "prompt_style", "max_steps", "num_iterations", "eval_tasks",
                 "model_name_or_path", "learning_rate", "entropy_coef", "tasks_per_batch", "num_generations"):
        assert getattr(preset, name) == getattr(bench, name), name
    assert preset.resolved_omega == bench.resolved_omega
