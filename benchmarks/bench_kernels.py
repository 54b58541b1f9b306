"""Per-stage benchmarks of the credit-assignment pipeline across backends and batch sizes (pytest-benchmark).

    pytest benchmarks/bench_kernels.py --benchmark-only                      # what this machine supports
    GRAPHGPO_BENCH_SIZES=6400,100000,1000000 pytest benchmarks/bench_kernels.py --benchmark-only

Stages: hashing (token rows -> keys), dedup (node ids of (group, key)), distances (reverse shortest paths
from the SUCCESS sinks, given the reverse CSR) and the full pipeline (batch -> AdvantageOutput). CPU torch
always runs; scipy and networkx are outside references for the distance step; Triton, torch-CUDA and
cuGraph run only with a CUDA device (the Triton interpreter is a correctness tool, never timed here).
Every case checks its result against the CPU torch backend before timing, so a fast wrong answer fails.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

try:
    from benchmarks.synthetic import groups_for_steps, make_synthetic_batch
except ModuleNotFoundError:  # plain `pytest` does not put the repository root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.synthetic import groups_for_steps, make_synthetic_batch

from graphgpo.backends import pipeline, torch_backend, torch_graph
from graphgpo.config import make_config
from graphgpo.hashing import hash_token_rows

pytest.importorskip("pytest_benchmark")

HAS_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
SIZES = [int(s) for s in os.environ.get("GRAPHGPO_BENCH_SIZES", "6400,100000").split(",")]
TOKEN_WIDTH = 32


def _triton_ok() -> bool:
    if not HAS_CUDA or INTERPRET:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _skip_unless(backend: str) -> None:
    if backend in ("triton", "torch-cuda", "cugraph") and not HAS_CUDA:
        pytest.skip(f"{backend} needs a CUDA device")
    if backend == "triton" and not _triton_ok():
        pytest.skip("triton unusable here (not installed, or TRITON_INTERPRET=1)")
    if backend == "cugraph":
        pytest.importorskip("pylibcugraph")
    if backend == "scipy":
        pytest.importorskip("scipy")
    if backend == "networkx":
        pytest.importorskip("networkx")


def _device(backend: str) -> str:
    return "cuda" if backend in ("triton", "torch-cuda", "cugraph") else "cpu"


def _run(benchmark, fn, device: str, size: int):
    """Time ``fn`` with the device synchronised; few rounds for big sizes (2 shared CPU cores)."""
    def call():
        result = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    rounds = 20 if size <= 10_000 else (5 if size <= 200_000 else 2)
    return benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=1)


_BATCHES: dict[int, object] = {}


def _batch(size: int):
    if size not in _BATCHES:
        _BATCHES.clear()  # keep one size in memory at a time
        _BATCHES[size] = make_synthetic_batch(groups_for_steps(size), 8, 50, 40, seed=0)
    return _BATCHES[size]


# ---------------------------------------------------------------------------------------------- hashing


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", ["torch-cpu", "torch-cuda", "triton"])
def test_bench_hashing(benchmark, backend, size):
    _skip_unless(backend)
    device = _device(backend)
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, 50_000, (size, TOKEN_WIDTH), generator=g, dtype=torch.int32)
    lengths = torch.randint(1, TOKEN_WIDTH + 1, (size,), generator=g)
    expected = hash_token_rows(tokens, lengths)
    tokens, lengths = tokens.to(device), lengths.to(device)
    if backend == "triton":
        from graphgpo.kernels.hashing import hash_token_rows as kernel

        fn = lambda: kernel(tokens, lengths)  # noqa: E731
    else:
        fn = lambda: hash_token_rows(tokens, lengths)  # noqa: E731
    assert torch.equal(fn().cpu(), expected)
    benchmark.extra_info.update(rows=size, width=TOKEN_WIDTH)
    _run(benchmark, fn, device, size)


# ---------------------------------------------------------------------------------------------- dedup


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", ["torch-cpu", "torch-cuda", "triton", "triton-hash"])
def test_bench_dedup(benchmark, backend, size):
    """Node ids of (group, key): torch.unique twice, the sort-based kernels, the atomic_cas hash table."""
    _skip_unless(backend.split("-hash")[0])
    device = _device(backend.split("-hash")[0])
    batch = _batch(size)
    to_success = torch_graph.is_success_step(batch)
    expected = torch_graph.node_ids(batch, to_success, batch.state, batch.next_state)[1]
    batch_d, to_success_d = batch.to(device), to_success.to(device)
    if backend.startswith("triton"):
        from graphgpo.kernels.dedup import dense_ids, dense_ids_hashed

        keys = torch.cat([batch_d.state, torch.where(to_success_d, batch_d.state, batch_d.next_state)])
        groups = batch_d.group.repeat(2)
        dedup = dense_ids_hashed if backend == "triton-hash" else dense_ids
        rows = batch.num_rows
        fn = lambda: dedup(keys, groups)[0][:rows]  # noqa: E731
    else:
        fn = lambda: torch_graph.node_ids(batch_d, to_success_d, batch_d.state, batch_d.next_state)[1]  # noqa: E731
    assert torch.equal(fn().cpu(), expected)
    benchmark.extra_info.update(rows=batch.num_rows)
    _run(benchmark, fn, device, size)


# ---------------------------------------------------------------------------------------------- distances


def _reverse_graph(batch):
    graph = pipeline.build_graph(batch, torch_graph.node_ids)
    csr = torch_graph.reverse_csr(graph)
    return graph, csr


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", ["torch-cpu", "scipy", "networkx", "torch-cuda", "triton", "cugraph"])
def test_bench_distances(benchmark, backend, size):
    _skip_unless(backend)
    if backend == "networkx" and size > 200_000:
        pytest.skip("networkx is a pure-Python reference: sizes up to 2e5 only")
    device = _device(backend)
    batch = _batch(size)
    graph, csr = _reverse_graph(batch)
    expected = torch_graph.shortest_distances(graph, csr)
    sinks = graph.num_state_nodes + torch.nonzero(graph.has_success).flatten()

    if backend == "scipy":
        import scipy.sparse as sp
        from scipy.sparse.csgraph import dijkstra

        n = graph.num_nodes
        reverse = sp.csr_matrix((np.ones(csr.src.numel()), (csr.dst.numpy(), csr.src.numpy())), shape=(n, n))
        sink_ids = sinks.numpy()
        fn = lambda: torch.from_numpy(dijkstra(reverse, indices=sink_ids, min_only=True, unweighted=True))  # noqa: E731
    elif backend == "networkx":
        import networkx as nx

        reverse = nx.DiGraph()
        reverse.add_nodes_from(range(graph.num_nodes))
        reverse.add_edges_from(zip(csr.dst.tolist(), csr.src.tolist()))
        sink_list = sinks.tolist()

        def fn():
            lengths = nx.multi_source_dijkstra_path_length(reverse, sink_list)
            out = torch.full((graph.num_nodes,), float("inf"), dtype=torch.float64)
            out[list(lengths)] = torch.tensor(list(lengths.values()), dtype=torch.float64)
            return out
    elif backend == "triton":
        from graphgpo.kernels.dedup import unique_edges
        from graphgpo.kernels.frontier import reverse_distances

        edge_src, _, rowptr, _, _ = unique_edges(graph.src.cuda(), graph.dst.cuda(), graph.num_nodes)
        sinks_d = sinks.cuda()
        fn = lambda: reverse_distances(rowptr, edge_src, sinks_d)  # noqa: E731
    elif backend == "cugraph":
        from graphgpo.backends.cugraph_backend import cugraph_distances

        graph_d, csr_d = _reverse_graph(batch.to("cuda"))
        fn = lambda: cugraph_distances(graph_d, csr_d)  # noqa: E731
    else:
        graph_d, csr_d = _reverse_graph(batch.to(device))
        fn = lambda: torch_graph.shortest_distances(graph_d, csr_d)  # noqa: E731
    assert torch.equal(fn().cpu(), expected), f"{backend} distances differ from the torch backend"
    benchmark.extra_info.update(rows=batch.num_rows, nodes=graph.num_nodes)
    _run(benchmark, fn, device, size)


# ---------------------------------------------------------------------------------------------- pipeline


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("backend", ["reference", "torch-cpu", "torch-cuda", "triton", "cugraph"])
def test_bench_pipeline(benchmark, backend, size):
    _skip_unless(backend)
    if backend == "reference" and size > 10_000:
        pytest.skip("the reference backend is the plain-Python oracle: paper size only")
    from graphgpo.backends import get_backend, reference

    device = _device(backend)
    batch = _batch(size)
    config = make_config("graphgpo", preset="alfworld")
    expected = torch_backend.compute(batch, "graphgpo", config)
    module = {"reference": reference, "torch-cpu": torch_backend, "torch-cuda": torch_backend}.get(backend)
    module = module or get_backend(backend)
    batch_d = batch.to(device)
    fn = lambda: module.compute(batch_d, "graphgpo", config)  # noqa: E731
    out = fn()
    assert torch.allclose(out.advantages.cpu(), expected.advantages, atol=1e-6, rtol=0)
    benchmark.extra_info.update(rows=batch.num_rows)
    _run(benchmark, fn, device, size)
