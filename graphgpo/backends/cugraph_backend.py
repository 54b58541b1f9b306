"""cuGraph backend: the pipeline with the torch backend's stages except distances, done by pylibcugraph.

The graph (node ids, success sinks, reverse CSR) and the tail (returns, segment statistics, advantages) are
the torch backend's stages; only the shortest distances come from pylibcugraph (not the ``cugraph``
package, which pins numba against vllm's pin):

* unit costs: ``pylibcugraph.bfs`` from all sinks at once (multi-source) on the reversed graph;
* costs: ``pylibcugraph.sssp`` is single-source, so a virtual super-source gets a 0-cost edge to every sink;
  ``fl(0 + 0) = 0`` and ``fl(0 + c) = c``, so the distances are the same floats as from the sinks.

Arrays cross between torch and pylibcugraph through DLPack (``cupy.from_dlpack`` / ``torch.from_dlpack``):
no copy of the edge lists or distances. pylibcugraph and cupy are imported on first use; without them (or
without a GPU) ``compute`` raises an ImportError / RuntimeError saying what is missing.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from graphgpo.backends import pipeline, torch_backend
from graphgpo.backends.torch_graph import StepGraph, reverse_csr
from graphgpo.output import AdvantageOutput

F64 = torch.float64


def _load():
    """Import pylibcugraph and cupy, with an error that says how to get them."""
    try:
        import cupy
        import pylibcugraph
    except Exception as exc:  # ImportError, or a CUDA runtime that fails to load
        raise ImportError(
            "backend 'cugraph' needs pylibcugraph and cupy on a CUDA machine "
            f"(pip install 'graphgpo[cugraph,gpu]'): {type(exc).__name__}: {exc}"
        ) from exc
    return pylibcugraph, cupy


def _check_cuda(batch) -> None:
    if batch.group.device.type != "cuda":
        raise RuntimeError(f"backend 'cugraph' works on CUDA tensors; the batch is on {batch.group.device} "
                           "(use batch.to('cuda'))")


def cugraph_distances(graph: StepGraph, csr) -> torch.Tensor:
    """float64 [num_nodes]: distance to the group's SUCCESS sink, inf where unreachable (as torch_graph)."""
    plc, cp = _load()
    device = graph.src.device
    num_nodes = graph.num_nodes
    if num_nodes >= 2**31 - 1:
        raise ValueError(f"num_nodes = {num_nodes} exceeds pylibcugraph's int32 vertex ids")
    # The reversed graph: sink-side node -> state-side node. reverse_csr already merged parallel edges
    # (keeping the cheapest cost), so these are distinct.
    rev_src = csr.dst.to(torch.int32)
    rev_dst = csr.src.to(torch.int32)
    weighted = csr.cost is not None
    if weighted:
        weight = csr.cost
    # Every group's sink is a source (selecting the successful ones would read them back to the host); a failed
    # group's sink has no edges, so it reaches nothing, and its own 0 is reset to inf below.
    sinks = torch.arange(graph.num_state_nodes, num_nodes, dtype=torch.int32, device=device)
    total = num_nodes
    if weighted:  # super-source at id num_nodes, 0-cost edges to every sink
        total = num_nodes + 1
        rev_src = torch.cat([rev_src, torch.full_like(sinks, num_nodes)])
        rev_dst = torch.cat([rev_dst, sinks])
        weight = torch.cat([weight, torch.zeros(sinks.numel(), dtype=F64, device=device)])
    else:  # bfs ignores weights, but graph creation wants an array
        weight = torch.ones(rev_src.numel(), dtype=torch.float32, device=device)
    vertices = torch.arange(total, dtype=torch.int32, device=device)  # sinks of failed groups are isolated
    handle = plc.ResourceHandle()
    plc_graph = plc.SGGraph(
        resource_handle=handle,
        graph_properties=plc.GraphProperties(is_symmetric=False, is_multigraph=False),
        src_or_offset_array=cp.from_dlpack(rev_src.contiguous()),
        dst_or_index_array=cp.from_dlpack(rev_dst.contiguous()),
        vertices_array=cp.from_dlpack(vertices),
        weight_array=cp.from_dlpack(weight.contiguous()),
        store_transposed=False,
        renumber=False,
        do_expensive_check=False,
        input_array_format="COO",
    )
    if weighted:
        vert, d, _ = plc.sssp(handle, plc_graph, num_nodes, math.inf, True, False)
        vert = torch.from_dlpack(vert).long()
        d = torch.from_dlpack(d).to(F64)
        d = torch.where(d >= torch.finfo(d.dtype).max, math.inf, d)
    else:
        d, _, vert = plc.bfs(handle, plc_graph, cp.from_dlpack(sinks), False, -1, False, False)
        vert = torch.from_dlpack(vert).long()
        d = torch.from_dlpack(d)
        unreached = d >= torch.iinfo(d.dtype).max
        d = torch.where(unreached, math.inf, d.to(F64))
    dist = torch.full((total,), math.inf, dtype=F64, device=device).index_copy_(0, vert, d)[:num_nodes]
    dist[graph.num_state_nodes:] = torch.where(graph.has_success, dist[graph.num_state_nodes:], math.inf)
    return dist


def distances(graph: StepGraph) -> tuple[torch.Tensor, int]:
    """The distance stage: the torch backend's reverse CSR (parallel edges merged), then pylibcugraph."""
    csr = reverse_csr(graph)
    return cugraph_distances(graph, csr), csr.num_unique_edges


STAGES = replace(torch_backend.STAGES, name="cugraph", distances=distances)


def compute(batch, method: str, config, inputs: pipeline.GraphInputs | None = None, *,
            stats: bool = True) -> AdvantageOutput:
    """Advantages of ``method`` for every row of ``batch`` (CUDA tensors), distances from pylibcugraph."""
    if batch.num_rows:
        _check_cuda(batch)
        _load()
    return pipeline.run(batch, method, config, STAGES, inputs, stats=stats)
