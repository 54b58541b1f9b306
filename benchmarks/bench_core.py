"""Core estimator benchmarks (pytest-benchmark): ``pytest benchmarks/bench_core.py --benchmark-only``.

Targets (issue 2): the paper-sized batch (16 groups x 8 rollouts x up to 50 steps, string states) through
``StepBatch.from_records`` + ``compute_advantages(backend="torch")`` in <= 10 ms on CPU, and the torch
backend >= 20x faster than the reference on a prebuilt batch. Compare the rows of one group in the table.

Torch runs on one thread here: on a small shared machine, OpenMP's second thread is often descheduled and
each parallel region then waits milliseconds for it (measured: 8 ms instead of 8 us for one gather).
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.synthetic import groups_for_steps, make_synthetic_batch, make_synthetic_records
from graphgpo import StepBatch, compute_advantages

PAPER = dict(num_groups=16, group_size=8, horizon=50, num_states=40, seed=0, min_length=44)
"""~6k steps: failed ALFWorld rollouts run to the 50-step limit, so most trajectories are near full length."""


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def paper_records():
    return make_synthetic_records(**PAPER)


@pytest.fixture(scope="module")
def paper_batch():
    return make_synthetic_batch(**PAPER)


@pytest.mark.benchmark(group="paper batch: records -> advantages (CPU)")
def test_from_records_plus_torch(benchmark, paper_records):
    out = benchmark(lambda: compute_advantages(StepBatch.from_records(paper_records), backend="torch"))
    benchmark.extra_info["steps"] = len(out)


@pytest.mark.benchmark(group="paper batch: records -> advantages (CPU)")
def test_from_records_only(benchmark, paper_records):
    batch = benchmark(StepBatch.from_records, paper_records)
    benchmark.extra_info["steps"] = len(batch)


@pytest.mark.benchmark(group="paper batch: prebuilt, torch vs reference (CPU)")
@pytest.mark.parametrize("method", ["graphgpo", "gigpo", "grpo"])
@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_prebuilt(benchmark, paper_batch, backend, method):
    out = benchmark(compute_advantages, paper_batch, method=method, backend=backend)
    benchmark.extra_info["steps"] = len(out)


@pytest.fixture(scope="module")
def large_batch():
    return make_synthetic_batch(groups_for_steps(100_000), 8, 50, 40, seed=1)


@pytest.mark.benchmark(group="1e5 steps: prebuilt, torch vs reference (CPU)")
@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_prebuilt_large(benchmark, large_batch, backend):
    # few rounds: one reference run takes over a second
    out = benchmark.pedantic(compute_advantages, args=(large_batch,), kwargs=dict(backend=backend), rounds=3,
                             warmup_rounds=1)
    benchmark.extra_info["steps"] = len(out)
