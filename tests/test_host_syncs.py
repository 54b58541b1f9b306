"""Host syncs of the tensor pipeline, counted on the CPU at the read-back points (graphgpo.backends.host_sync).

Expected counts are derived from the batch by hand (BFS depth from the reference backend's graphs), not read
from the code under test. A source scan makes sure no read-back bypasses the counted helpers.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import io  # noqa: E402
import math  # noqa: E402
import re  # noqa: E402
import tokenize  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from benchmarks.synthetic import make_synthetic_batch  # noqa: E402
from graphgpo import kernels  # noqa: E402
from graphgpo.backends import reference, torch_backend, torch_graph  # noqa: E402
from graphgpo.backends.host_sync import count_syncs  # noqa: E402
from graphgpo.config import make_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def bfs_levels(batch) -> tuple[int, bool]:
    """Largest finite distance to SUCCESS over the batch (unit costs), and whether a node at that distance
    has predecessors (so the search expands edges once more before it stops), from the reference's graphs."""
    found = []
    for group_rows in reference.rows_by_group(reference.read_rows(batch)).values():
        graph = reference.build_graph(group_rows)
        if graph.has_success:
            found += [(int(d), bool(graph.reverse_edges.get(v))) for v, d in reference.bfs_distances(graph).items()]
    depth = max(d for d, _ in found)
    return depth, any(has_pred for d, has_pred in found if d == depth)


def bfs_depth(batch) -> int:
    return bfs_levels(batch)[0]


@pytest.fixture
def paper_batch():
    batch = make_synthetic_batch(16, 8, 50, 40, seed=2, success_rate=0.5)
    assert torch.unique(batch.state).numel() < 2**13  # the sweep path (below SWEEP_MAX_EDGES)
    return batch


@pytest.fixture
def cuda_like_sorts(monkeypatch):
    """Count the syncs of the device path: CPU tensors of this size are otherwise numbered by numpy sorts
    (torch_graph.NUMPY_SORT_MAX, a CPU-only branch with nothing to sync)."""
    monkeypatch.setattr(torch_graph, "NUMPY_SORT_MAX", 0)


def test_torch_backend_sync_count(paper_batch, cuda_like_sorts):
    depth = bfs_depth(paper_batch)
    with count_syncs() as log:
        torch_backend.compute(paper_batch, "graphgpo", make_config("graphgpo"))
    # node ids: extra next_state keys + 2 uniques; reverse CSR: distinct edges; one per sweep (depth + 1:
    # the last one changes nothing); stats
    assert len(log) == 4 + (depth + 1) + 1, log
    with count_syncs() as log:
        torch_backend.compute(paper_batch, "graphgpo", make_config("graphgpo"), stats=False)
    assert len(log) == 4 + (depth + 1) and "stats" not in log
    with count_syncs() as log:
        torch_backend.compute(paper_batch, "gigpo", make_config("gigpo"), stats=False)
    assert log == ["node ids: next_states with a key of their own"] + ["unique: number of distinct values"] * 2 \
        + ["discounted returns: longest trajectory"]
    with count_syncs() as log:
        torch_backend.compute(paper_batch, "grpo", make_config("grpo"), stats=False)
    assert log == []


def test_torch_frontier_sync_count(paper_batch, monkeypatch, cuda_like_sorts):
    monkeypatch.setattr(torch_graph, "distance_method", lambda csr: "frontier")
    depth, expands_once_more = bfs_levels(paper_batch)
    with count_syncs() as log:
        torch_backend.compute(paper_batch, "graphgpo", make_config("graphgpo"), stats=False)
    # per BFS level 1..depth: edge count, newly reached, dedupe; then the deepest nodes' in-edges (3 more
    # syncs, nothing new reached) or none to expand (1)
    assert len(log) == 4 + 3 * depth + (3 if expands_once_more else 1), log


def test_triton_backend_sync_count(paper_batch, monkeypatch):
    pytest.importorskip("triton")
    from graphgpo.backends import triton_backend

    monkeypatch.setattr(kernels, "TEST_BLOCK", 64)  # frontier: the host reads a level counter every 3 levels
    depth = bfs_depth(paper_batch)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with count_syncs() as log:
        triton_backend.compute(paper_batch.to(device), "graphgpo", make_config("graphgpo"))
    # two dedups (nodes, edges); levels 0..depth expand, so the counter is read ceil((depth + 1) / 3) times;
    # stats
    assert len(log) == 2 + math.ceil((depth + 1) / 3) + 1, log
    with count_syncs() as log:
        triton_backend.compute(paper_batch.to(device), "gigpo", make_config("gigpo"), stats=False)
    assert log == ["dense ids: number of distinct pairs"]  # the node ids; nothing else reads back


# Read-backs that must go through graphgpo.backends.host_sync in the pipeline's modules (a line may opt out
# with the comment "no sync: CPU only").
DIRECT_READS = re.compile(r"\.item\(\)|\.tolist\(\)|(?<!host_sync\.)nonzero\(|torch\.unique\(|torch\.equal\(|bincount\(|"
                          r"\bint\((?!np\.)[a-z_]+\[|\bbool\(")
PIPELINE_FILES = ["graphgpo/backends/pipeline.py", "graphgpo/backends/torch_graph.py",
                  "graphgpo/backends/torch_backend.py", "graphgpo/backends/triton_backend.py",
                  "graphgpo/backends/cugraph_backend.py", "kernels/dedup.py", "kernels/frontier.py",
                  "kernels/tail.py"]


def code_lines(text: str) -> dict[int, str]:
    """Line number -> the line's code without strings and comments."""
    lines: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in (tokenize.STRING, tokenize.COMMENT):
            lines[token.start[0]] = lines.get(token.start[0], "") + token.string
    return lines


@pytest.mark.parametrize("path", PIPELINE_FILES)
def test_no_uncounted_read_back(path):
    text = (ROOT / path).read_text()
    source = text.splitlines()
    hits = []
    for number, code in code_lines(text).items():
        if DIRECT_READS.search(code) and "no sync: CPU only" not in source[number - 1]:
            hits.append(f"{path}:{number}: {source[number - 1].strip()}")
    # GraphInputs.check validates user input (one sync, only when extra edges are given)
    allowed = [h for h in hits if "extra_group < 0" in h or "extra_cost <= 0" in h]
    assert [h for h in hits if h not in allowed] == []
