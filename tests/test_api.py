"""compute_advantages dispatch, configs and presets, the backend registry, and AdvantageOutput."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types

import pytest
import torch

import graphgpo
from graphgpo import api, backends
from graphgpo.config import GiGPOConfig, GraphGPOConfig, GRPOConfig, RLOOConfig, make_config
from graphgpo.output import STAT_KEYS, AdvantageOutput

METHODS = ("graphgpo", "gigpo", "grpo", "rloo")


def worked_example_records():
    """SPEC.md's worked example: T1 A->B->(success), T2 A->C->D, T3 A->C->B->C."""
    records = []
    for traj, states, success in (("T1", "AB.", True), ("T2", "ACD", False), ("T3", "ACBC", False)):
        for i in range(len(states) - 1):
            records.append(dict(group="task", traj=traj, step=i, state=states[i], next_state=states[i + 1],
                                success=success, valid=True, episode_reward=10.0 if success else 0.0, reward=0.0))
    return records


@pytest.fixture
def batch():
    return graphgpo.StepBatch.from_records(worked_example_records())


# ------------------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("cls, field, value", [
    (GraphGPOConfig, "omega", 0.0),
    (GraphGPOConfig, "omega", 1.5),
    (GraphGPOConfig, "omega", True),
    (GraphGPOConfig, "omega", "0.1"),
    (GraphGPOConfig, "r_succ", float("nan")),
    (GraphGPOConfig, "r_succ", 0.0),
    (GraphGPOConfig, "invalid_penalty", -0.1),
    (GraphGPOConfig, "step_weight", float("inf")),
    (GraphGPOConfig, "normalize", "std"),
    (GraphGPOConfig, "episode_stats", "per_step"),
    (GraphGPOConfig, "graph_return", "bellman"),
    (GraphGPOConfig, "eps", 0.0),
    (GiGPOConfig, "gamma", 1.01),
    (GiGPOConfig, "gamma", -0.5),
    (GiGPOConfig, "episode_weight", None),
    (GRPOConfig, "normalize", "median"),
    (GRPOConfig, "eps", -1e-6),
])
def test_bad_config_value_names_field(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


def test_config_defaults_are_the_recipe():
    c = GraphGPOConfig()
    assert (c.omega, c.r_succ, c.invalid_penalty, c.step_weight, c.episode_weight) == (0.1, 10.0, 0.1, 1.0, 1.0)
    assert (c.normalize, c.episode_stats, c.graph_return, c.eps) == ("mean_std", "cross_steps", "recipe", 1e-6)
    assert GiGPOConfig().gamma == 0.95
    assert GRPOConfig().normalize == "mean_std"
    assert dataclasses.fields(RLOOConfig) == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.omega = 0.5


def test_omega_one_is_allowed():
    assert GraphGPOConfig(omega=1).omega == 1


def test_presets():
    assert graphgpo.PRESETS == {"alfworld": {"omega": 0.1}, "webshop": {"omega": 0.2}, "sokoban": {"omega": 0.8}}
    assert make_config("graphgpo", preset="webshop").omega == 0.2
    assert make_config("graphgpo", preset="sokoban").omega == 0.8
    assert make_config("graphgpo", preset="alfworld").omega == 0.1
    assert make_config("graphgpo", preset="sokoban", omega=0.3).omega == 0.3  # explicit options win
    assert make_config("gigpo", preset="sokoban") == GiGPOConfig()  # omega is not a GiGPO field
    with pytest.raises(ValueError, match="preset"):
        make_config("graphgpo", preset="minecraft")


def test_make_config_from_instance_and_options():
    base = GraphGPOConfig(omega=0.5, normalize="mean")
    resolved = make_config("graphgpo", config=base, eps=1e-3)
    assert (resolved.omega, resolved.normalize, resolved.eps) == (0.5, "mean", 1e-3)
    with pytest.raises(TypeError, match="GraphGPOConfig"):
        make_config("graphgpo", config=GiGPOConfig())


@pytest.mark.parametrize("method, option", [("graphgpo", "gamma"), ("grpo", "omega"), ("rloo", "eps"),
                                            ("gigpo", "omgea")])
def test_unknown_option_is_a_type_error_listing_valid_ones(method, option):
    with pytest.raises(TypeError, match=option) as info:
        make_config(method, **{option: 0.5})
    for valid in make_config(method).__dataclass_fields__:
        assert valid in str(info.value)


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        make_config("ppo")


# ------------------------------------------------------------------------------------------ compute_advantages


def test_compute_advantages_reference(batch):
    out = graphgpo.compute_advantages(batch, backend="reference")
    assert isinstance(out, AdvantageOutput)
    assert out.backend == "reference" and out.method == "graphgpo"
    assert out.advantages.dtype == torch.float32 and out.advantages.shape == (7,)
    assert out.returns.dtype == out.d_state.dtype == out.step_advantages.dtype == torch.float64
    assert out.step_group.dtype == torch.int64
    assert out.advantages.device == batch.device
    assert out.advantages[0] > 0 > out.advantages[2]  # worked example: T1's first step is credited


def test_options_and_presets_reach_the_backend(batch):
    out = graphgpo.compute_advantages(batch, backend="reference", preset="sokoban")
    assert out.returns[0].item() == pytest.approx(10 * 0.8)  # T1's A->B: r_succ * omega^d(B), d(B) = 1
    out = graphgpo.compute_advantages(batch, backend="reference", omega=0.2, r_succ=1.0)
    assert out.returns[0].item() == pytest.approx(0.2)
    out = graphgpo.compute_advantages(batch, backend="reference", config=GraphGPOConfig(omega=0.5))
    assert out.returns[0].item() == pytest.approx(5.0)


def test_compute_advantages_errors(batch):
    with pytest.raises(TypeError, match="bogus"):
        graphgpo.compute_advantages(batch, backend="reference", bogus=1)
    with pytest.raises(ValueError, match="omega"):
        graphgpo.compute_advantages(batch, backend="reference", omega=2.0)
    with pytest.raises(ValueError, match="method"):
        graphgpo.compute_advantages(batch, method="ppo", backend="reference")
    with pytest.raises(ValueError, match="backend"):
        graphgpo.compute_advantages(batch, backend="numpy")
    with pytest.raises(TypeError, match="StepBatch"):
        graphgpo.compute_advantages(worked_example_records(), backend="reference")


def test_gpu_backend_on_cpu_batch_fails_clearly(monkeypatch, batch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # tests/conftest.py turns the interpreter on
    with pytest.raises(RuntimeError, match="triton"):
        graphgpo.compute_advantages(batch, backend="triton")
    with pytest.raises(RuntimeError, match="cugraph"):
        graphgpo.compute_advantages(batch, backend="cugraph")


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch_returns_empty_results_without_calling_backend(monkeypatch, method):
    def refuse(name):
        raise AssertionError("the backend must not be called for an empty batch")

    monkeypatch.setattr(api, "get_backend", refuse)
    out = graphgpo.compute_advantages(graphgpo.StepBatch.from_records([]), method=method)
    assert out.method == method and out.backend == "torch"
    for name in ("advantages", "step_advantages", "episode_advantages", "returns"):
        assert getattr(out, name).shape == (0,)
    assert (out.d_state is not None) == (method == "graphgpo")
    assert (out.step_group is not None) == (method in ("graphgpo", "gigpo"))
    assert set(out.stats) == set(STAT_KEYS) and all(v == 0 for v in out.stats.values())
    assert len(out) == 0


def test_auto_dispatches_to_torch_on_cpu(monkeypatch, batch):
    calls = []

    def fake_compute(b, method, config, stats):
        calls.append((b, method, config, stats))
        return "result"

    def fake_get_backend(name):
        calls.append(name)
        return types.SimpleNamespace(compute=fake_compute)

    monkeypatch.setattr(api, "get_backend", fake_get_backend)
    assert graphgpo.compute_advantages(batch, method="gigpo", gamma=0.9) == "result"
    assert calls[0] == "torch"
    assert calls[1] == (batch, "gigpo", GiGPOConfig(gamma=0.9), True)


# ------------------------------------------------------------------------------------------ registry


def test_registry(monkeypatch):
    names = graphgpo.available_backends()
    assert "reference" in names and "torch" in names
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert "triton" not in graphgpo.available_backends("cpu")
    assert "cugraph" not in graphgpo.available_backends("cpu")
    assert backends.resolve_backend("auto", torch.device("cpu")) == "torch"
    assert backends.get_backend("reference").compute is not None
    with pytest.raises(ValueError, match="backend"):
        backends.get_backend("numpy")
    with pytest.raises(ValueError, match="backend"):
        backends.resolve_backend("numpy")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_triton_needs_cuda_message(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = backends.unavailable_reason("triton")
    assert reason is not None and ("CUDA" in reason or "not installed" in reason)


def test_triton_interpreter_allows_cpu_tensors_only_when_asked(monkeypatch):
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backends.resolve_backend("triton", torch.device("cpu")) == "triton"
    assert backends.resolve_backend("auto", torch.device("cpu")) == "torch"  # auto never interprets


def test_import_is_light():
    heavy = ("triton", "transformers", "pylibcugraph", "cupy")
    code = f"import sys, graphgpo; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]"


def test_public_names():
    for name in ("StepBatch", "compute_advantages", "GraphGPOConfig", "GiGPOConfig", "GRPOConfig", "RLOOConfig",
                 "PRESETS", "AdvantageOutput", "available_backends", "hash_token_rows", "stable_key"):
        assert hasattr(graphgpo, name), name


# ------------------------------------------------------------------------------------------ output


def test_summary_lists_stats(batch):
    out = graphgpo.compute_advantages(batch, backend="reference")
    text = out.summary()
    assert "graphgpo" in text and "reference" in text
    for key in STAT_KEYS:
        assert key in text
    assert "0.2500" in text  # unreachable_state_share of the worked example (D of A, B, C, D)
    empty = AdvantageOutput.empty("grpo", "torch")
    assert "num_steps" in empty.summary()


def test_numpy_scalars_are_numbers_and_limits_hold():
    import numpy as np

    config = GraphGPOConfig(omega=np.float32(0.5), r_succ=np.int64(10), step_weight=np.float64(0.25))
    assert config.omega == 0.5 and type(config.omega) is float and type(config.r_succ) is float
    assert make_config("gigpo", gamma=np.float16(0.5)).gamma == 0.5
    with pytest.raises(ValueError, match=r"omega must be a real number \(int or float\), got '0.5' of type str"):
        GraphGPOConfig(omega="0.5")
    with pytest.raises(ValueError, match=r"omega must be a real number"):
        GraphGPOConfig(omega=np.bool_(True))
    with pytest.raises(ValueError, match=r"r_succ must be <= 1e\+20"):
        GraphGPOConfig(r_succ=1e21)
    with pytest.raises(ValueError, match=r"step_weight must be <= 1e\+06"):
        GraphGPOConfig(step_weight=1e7)
    with pytest.raises(ValueError, match=r"episode_weight must be >= -1000000"):
        GiGPOConfig(episode_weight=-1e7)


def test_auto_keeps_cuda_batches_on_torch_until_the_gpu_check_flips_it(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(backends, "_cuda_usable", lambda: True)
    monkeypatch.setattr(backends, "_has_package", lambda name: True)
    cuda = torch.device("cuda")
    assert backends.unavailable_reason("triton", cuda) is None  # triton could run: auto still says torch
    assert backends.resolve_backend("auto", cuda) == "torch"
    assert backends.resolve_backend("triton", cuda) == "triton"  # opt-in
    monkeypatch.setattr(backends, "TRITON_BY_DEFAULT", True)  # the one-line switch
    assert backends.resolve_backend("auto", cuda) == "triton"
    assert backends.resolve_backend("auto", torch.device("cpu")) == "torch"
