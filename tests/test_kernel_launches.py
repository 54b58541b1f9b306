"""What the compiled kernels would receive: scalar types, the signatures compile_check certifies, strides, device.

The Triton interpreter keeps Python floats in float64 and accepts any stride, where a compiled kernel gets
an unannotated float as fp32 and reads 1-D columns with unit stride. These tests record every launch the
triton backend makes (under the interpreter) and check it against what the compiler would do with it.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import inspect  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

triton = pytest.importorskip("triton")

from triton.runtime.jit import _normalize_ty, mangle_type  # noqa: E402

from benchmarks.synthetic import METHOD_CASES, make_synthetic_batch, synthetic_columns  # noqa: E402
from graphgpo import kernels  # noqa: E402
from graphgpo.backends import reference, torch_backend, triton_backend  # noqa: E402
from graphgpo.batch import StepBatch  # noqa: E402
from graphgpo.config import make_config  # noqa: E402
from graphgpo.kernels import compile_check, dedup, frontier, hashing, tail  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
interpreter_only = pytest.mark.skipif(DEVICE != "cpu", reason="imitates the compiled path on the interpreter")

# every @triton.jit function of the kernel modules (device functions too: they are never launched)
KERNELS = {name: obj for module in (dedup, frontier, hashing, tail) for name, obj in vars(module).items()
           if isinstance(obj, (triton.runtime.interpreter.InterpretedFunction, triton.runtime.jit.JITFunction))}

CASES = [case for case in METHOD_CASES if case[0] in ("graphgpo", "gigpo")]  # the kernels' methods


def annotations(kernel) -> dict[str, str]:
    """Parameter -> normalised annotation ("fp64", "i64", "constexpr"), as Triton's JIT reads them."""
    fn = kernel.fn
    hints = inspect.get_annotations(fn)
    return {name: _normalize_ty(hints[name]) for name in inspect.signature(fn).parameters if name in hints}


def compiled_signature(kernel, args, kwargs) -> tuple[dict, dict]:
    """(runtime signature, constexprs) the compiled JIT would specialise these launch arguments to."""
    notes = annotations(kernel)
    names = list(inspect.signature(kernel.fn).parameters)
    values = dict(zip(names, args)) | kwargs
    signature, constexprs = {}, {}
    for name in names:
        if notes.get(name) == "constexpr":
            constexprs[name] = values[name]
        elif name in notes:
            signature[name] = notes[name]
        else:
            signature[name] = mangle_type(values[name])
    return signature, constexprs


@pytest.fixture
def launches(monkeypatch):
    """Record (kernel name, args, kwargs) of every launch; ``launches.to_fp32 = True`` rounds the float
    scalars the compiled kernel would take as fp32 (unannotated ones), like a GPU launch does."""
    class Record(list):
        to_fp32 = False

    record = Record()

    for name, kernel in KERNELS.items():
        original = kernel.run

        def run(*args, grid, warmup, _name=name, _kernel=kernel, _original=original, **kwargs):
            record.append((_name, args, kwargs))
            if record.to_fp32:
                notes = annotations(_kernel)
                params = list(inspect.signature(_kernel.fn).parameters)
                args = tuple(float(np.float32(a)) if isinstance(a, float) and notes.get(p) != "fp64" else a
                             for p, a in zip(params, args))
            return _original(*args, grid=grid, warmup=warmup, **kwargs)

        monkeypatch.setattr(kernel, "run", run)
    return record


def _run_backend_everywhere(with_hash_table: bool = True):
    for with_cost in (False, True):
        batch = make_synthetic_batch(4, 6, 10, 9, seed=3, with_cost=with_cost, success_rate=0.4).to(DEVICE)
        for method, options in CASES:
            triton_backend.compute(batch, method, make_config(method, **options))
    tokens = torch.randint(0, 1000, (20, 9), device=DEVICE)
    for dtype in (torch.int32, torch.int64):
        hashing.hash_token_rows(tokens.to(dtype))
        hashing.hash_token_rows(tokens.to(dtype), lengths=torch.full((20,), 4, device=DEVICE))
        hashing.hash_token_rows(tokens.to(dtype), mask=tokens > 500)
    if with_hash_table:
        key = torch.arange(50, device=DEVICE) % 7
        dedup.dense_ids_hashed(key, key % 3)


def test_every_float_scalar_is_fp64(launches):
    """A compiled kernel takes an unannotated Python float as fp32; the reference computes in float64."""
    _run_backend_everywhere()
    certified = {kernel.fn.__name__ for _, kernel, _, _ in compile_check.variants()}
    assert {name for name, _, _ in launches} == certified, "launched kernels != the kernels compile_check compiles"
    for name, args, _ in launches:
        notes = annotations(KERNELS[name])
        params = list(inspect.signature(KERNELS[name].fn).parameters)
        for param, arg in zip(params, args):
            if isinstance(arg, float):
                assert notes.get(param) == "fp64", f"{name}({param}=...) would run as fp32 when compiled"


def test_compile_check_certifies_what_runs(launches):
    """Every launch's compiled signature and constexprs (block sizes aside, they differ on the
    interpreter) is one of the variants compile_check compiles for sm_90."""
    _run_backend_everywhere()
    certified = {}
    for _, kernel, signature, constexprs in compile_check.variants():
        fixed = {k: v for k, v in constexprs.items() if not k.startswith("BLOCK")}
        certified.setdefault(kernel.fn.__name__, []).append((signature, fixed))
    for name, args, kwargs in launches:
        signature, constexprs = compiled_signature(KERNELS[name], args, kwargs)
        constexprs = {k: v for k, v in constexprs.items() if not k.startswith("BLOCK")}
        assert (signature, constexprs) in certified[KERNELS[name].fn.__name__], (name, signature, constexprs)


@interpreter_only
@pytest.mark.parametrize("method, options", CASES)
def test_advantages_hold_with_compiled_scalar_types(launches, method, options):
    """The paper-sized batch of gpu_check.py with every float scalar typed as a compiled launch types it
    (before the scalars were fp64, step advantages moved by 1.4e-3 here)."""
    launches.to_fp32 = True
    batch = make_synthetic_batch(16, 8, 50, 40, seed=2, success_rate=0.5)
    config = make_config(method, **options)
    got = triton_backend.compute(batch, method, config)
    want = torch_backend.compute(batch, method, config)
    for name in ("returns", "step_advantages", "episode_advantages"):
        err = (getattr(got, name) - getattr(want, name)).abs().max().item()
        assert err <= 1e-6, (name, err)


def _strided_batch(with_cost: bool):
    """The same synthetic batch twice: columns as they come, and every column a strided view into one 2-D
    tensor per dtype (what slicing a [rows, fields] table gives)."""
    columns = synthetic_columns(4, 6, 10, 9, seed=11, success_rate=0.4, with_cost=with_cost)
    strided = {}
    for kind in (torch.float64, torch.int64, torch.bool):
        names = [k for k, v in columns.items() if v.dtype == kind]
        table = torch.stack([columns[k] for k in names], dim=1)  # [rows, fields]: each column a strided view
        strided.update({name: table[:, i] for i, name in enumerate(names)})
    assert set(strided) == set(columns) and not any(t.is_contiguous() for t in strided.values())
    return StepBatch.from_tensors(**columns), StepBatch.from_tensors(**strided)


@pytest.mark.parametrize("with_cost", [False, True])
def test_strided_columns_give_the_same_results_in_every_backend(with_cost, monkeypatch):
    from types import SimpleNamespace

    from graphgpo.backends import cugraph_backend
    from tests.test_kernels import _FakePylibcugraph

    plain, strided = _strided_batch(with_cost)
    monkeypatch.setattr(cugraph_backend, "_load", lambda: (_FakePylibcugraph, SimpleNamespace(from_dlpack=lambda t: t)))
    monkeypatch.setattr(cugraph_backend, "_check_cuda", lambda batch: None)
    modules = {"reference": reference, "torch": torch_backend, "triton": triton_backend, "cugraph": cugraph_backend}
    for method, options in CASES:
        config = make_config(method, **options)
        want = reference.compute(plain, method, config)
        for name, module in modules.items():
            got = module.compute(strided.to(DEVICE) if name == "triton" else strided, method, config)
            for field in ("returns", "advantages", "d_state", "step_group"):
                a, b = getattr(got, field), getattr(want, field)
                if a is not None:
                    assert torch.allclose(a.cpu().double(), b.double(), atol=1e-6, rtol=0), (name, method, field)


def test_kernels_launch_under_the_tensors_device(monkeypatch):
    """Triton launches on the current CUDA device; every launch must make the batch's device current."""
    seen = []
    monkeypatch.setattr(kernels, "device_guard", lambda device: seen.append(device) or __import__("contextlib").nullcontext())
    batch = make_synthetic_batch(3, 4, 6, 5, seed=1).to(DEVICE)
    triton_backend.compute(batch, "graphgpo", make_config("graphgpo"))
    triton_backend.compute(batch, "gigpo", make_config("gigpo"))
    assert len(seen) >= 8 and set(seen) == {batch.device}


def test_strided_1d_kernel_argument_is_refused():
    values = torch.arange(20, dtype=torch.float64, device=DEVICE)[::2]
    with pytest.raises(ValueError, match="strided"):
        tail.group_dmax(values, torch.zeros(10, dtype=torch.int64, device=DEVICE), 1)


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_batch_on_the_second_gpu_while_the_first_is_current():
    batch = make_synthetic_batch(8, 8, 30, 20, seed=5)
    config = make_config("graphgpo")
    with torch.cuda.device(0):
        got = triton_backend.compute(batch.to("cuda:1"), "graphgpo", config)
    assert got.advantages.device == torch.device("cuda:1")
    want = torch_backend.compute(batch, "graphgpo", config)
    assert torch.equal(got.d_state.cpu(), want.d_state)
    assert torch.allclose(got.advantages.cpu(), want.advantages, atol=1e-6, rtol=0)


def test_from_tensors_hashes_with_the_kernel_once_triton_is_the_default(monkeypatch):
    from graphgpo import backends

    calls = []
    original = hashing.hash_token_rows
    monkeypatch.setattr(hashing, "hash_token_rows", lambda *a, **k: calls.append(a) or original(*a, **k))
    tokens = torch.randint(0, 100, (6, 5), device=DEVICE)
    lengths = torch.tensor([5, 4, 3, 2, 1, 5], device=DEVICE)
    n = 6
    z = torch.zeros(n, dtype=torch.int64, device=DEVICE)
    args = dict(group=z, traj=torch.arange(n, device=DEVICE), step=z, state=tokens, next_state=tokens,
                success=z.bool(), valid=~z.bool(), episode_reward=z.double(), reward=z.double(),
                state_lengths=lengths, next_state_lengths=lengths)
    plain = StepBatch.from_tensors(**args)
    assert calls == []
    monkeypatch.setattr(backends, "triton_by_default", lambda device: True)
    with_kernel = StepBatch.from_tensors(**args)
    assert len(calls) == 2 and torch.equal(with_kernel.state, plain.state)
