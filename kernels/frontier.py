"""Multi-source reverse shortest paths from every group's SUCCESS sink, in one block-diagonal graph.

All groups' graphs are one graph with disjoint node ranges, so one traversal serves the whole batch. The
traversal walks the reverse CSR from ``dedup.unique_edges`` (edges into v are ``rowptr[v]:rowptr[v+1]``)
outwards from the sinks, one launch per level:

* every frontier node v relaxes each in-edge u -> v with ``atomic_min(d[u], d[v] + cost)``;
* a lane whose relaxation lowered ``d[u]`` claims u for the next frontier with ``atomic_xchg`` on a
  per-node level stamp, so each node enters a frontier at most once per level (frontier compaction);
* the claimed nodes are appended with one ``atomic_add`` per block (block-local ``cumsum`` gives slots).

Distances are float64 and non-negative, so their IEEE bits order like int64 and ``atomic_min`` runs on
the int64 view. With unit costs this is breadth-first search (each level's distances are final); with
costs it is a frontier Bellman-Ford that converges to the same least fixed point
``d(u) = min_v fl(d(v) + c(u, v))`` as Dijkstra, i.e. the same floats as a sequential relaxation.

The host does not sync per level: the frontier sizes live in a device ring of counters (the launch for
level L zeroes the counter of level L+2) and the host reads the current one every ``check_every`` levels;
launches on an empty frontier exit at once. The grid is fixed (a persistent grid-stride loop over the
frontier), so the launch parameters never depend on device values.
"""

from __future__ import annotations

import torch

from graphgpo import kernels
from graphgpo.backends import host_sync

from . import HAS_TRITON, INTERPRET, check_device, launch

if HAS_TRITON:
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["level"])
    def _expand_kernel(front_in_ptr, front_out_ptr, counts_ptr, rowptr_ptr, esrc_ptr, ecost_ptr,
                       dbits_ptr, stamp_ptr, level, num_programs,
                       HAS_COST: tl.constexpr, RING: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        count = tl.load(counts_ptr + level % RING)
        if pid == 0:  # nobody reads or writes level+2's counter during this launch
            tl.store(counts_ptr + (level + 2) % RING, 0)
        out_count_ptr = counts_ptr + (level + 1) % RING
        for start in range(pid * BLOCK, count, num_programs * BLOCK):
            idx = start + tl.arange(0, BLOCK)
            m = idx < count
            v = tl.load(front_in_ptr + idx, mask=m, other=0).to(tl.int64)
            dv = tl.load(dbits_ptr + v, mask=m, other=0).to(tl.float64, bitcast=True)
            beg = tl.load(rowptr_ptr + v, mask=m, other=0)
            deg = tl.load(rowptr_ptr + v + 1, mask=m, other=0) - beg
            max_deg = tl.max(deg, axis=0).to(tl.int32)
            for k in range(0, max_deg):
                em = m & (k < deg)
                e = beg + k
                u = tl.load(esrc_ptr + e, mask=em, other=0)
                if HAS_COST:
                    cand = dv + tl.load(ecost_ptr + e, mask=em, other=0.0)
                else:
                    cand = dv + 1.0
                cand_bits = cand.to(tl.int64, bitcast=True)
                old = tl.atomic_min(dbits_ptr + u, cand_bits, mask=em)
                lowered = em & (cand_bits < old)
                prev = tl.atomic_xchg(stamp_ptr + u, level + 1, mask=lowered)
                push = lowered & (prev != level + 1)
                push_i = push.to(tl.int32)
                base = tl.atomic_add(out_count_ptr, tl.sum(push_i, axis=0))
                slot = base + tl.cumsum(push_i, axis=0) - 1
                tl.store(front_out_ptr + slot, u.to(tl.int32), mask=push)


RING = 4
GPU_BLOCK = 128
"""Frontier entries per program and step on a GPU (compile_check compiles this size)."""


def reverse_distances(rowptr: torch.Tensor, edge_src: torch.Tensor, sinks: torch.Tensor,
                      edge_cost: torch.Tensor | None = None, *, active: torch.Tensor | None = None,
                      check_every: int | None = None, block: int | None = None,
                      num_programs: int | None = None) -> torch.Tensor:
    """Shortest distance from every node to the nearest source in ``sinks`` along forward edges.

    ``rowptr``/``edge_src``: reverse CSR (edges into v are ``edge_src[rowptr[v]:rowptr[v+1]] -> v``).
    ``edge_cost``: positive float64 per edge, or None for unit costs. ``active``: bool per sink, the sinks
    that are sources (default all); an inactive sink starts at inf and relaxes nothing, so callers pass every
    group's sink without selecting the successful ones on the host. Returns float64 [num_nodes] with ``inf``
    where no source is reachable and 0 at the sources.
    """
    check_device(rowptr, edge_src, sinks, edge_cost)
    num_nodes = rowptr.numel() - 1
    dev = rowptr.device
    dist = torch.full((num_nodes,), float("inf"), dtype=torch.float64, device=dev)
    num_sinks = sinks.numel()
    if num_nodes == 0 or num_sinks == 0:
        return dist
    if kernels.TEST_BLOCK:  # several small programs, so that their atomics interleave
        block = block or kernels.TEST_BLOCK
        num_programs = num_programs or 3
        check_every = check_every or 3
    elif INTERPRET:  # the interpreter runs programs one after another: few, wide programs
        block = block or 256
        num_programs = num_programs or 1
        check_every = check_every or 1
    else:
        block = block or GPU_BLOCK
        if num_programs is None:
            sms = torch.cuda.get_device_properties(dev).multi_processor_count
            num_programs = max(1, min(4 * sms, triton.cdiv(num_nodes, block)))
        check_every = check_every or 8
    dist[sinks] = 0.0 if active is None else torch.where(active, 0.0, float("inf")).to(torch.float64)
    dbits = dist.view(torch.int64)
    stamp = torch.full((num_nodes,), -1, dtype=torch.int32, device=dev)
    stamp[sinks] = 0
    front = [torch.empty(num_nodes, dtype=torch.int32, device=dev) for _ in range(2)]
    front[0][:num_sinks] = sinks.to(torch.int32)
    counts = torch.zeros(RING, dtype=torch.int32, device=dev)
    counts[0] = num_sinks
    rowptr = rowptr.to(torch.int64).contiguous()
    edge_src = edge_src.to(torch.int64).contiguous()
    has_cost = edge_cost is not None
    cost_arg = edge_cost.to(torch.float64).contiguous() if has_cost else dist
    # Each level settles at least one more node (a node is expanded only after its distance fell), so
    # num_nodes + 1 levels always suffice; exceeding them would mean a bug, not a big input.
    max_levels = num_nodes + 1
    level = 0
    while True:
        for _ in range(check_every):
            launch(_expand_kernel, (num_programs,), front[level % 2], front[(level + 1) % 2], counts, rowptr, edge_src,
                                            cost_arg, dbits, stamp, level, num_programs,
                                            HAS_COST=has_cost, RING=RING, BLOCK=block)
            level += 1
        if host_sync.to_int(counts[level % RING], "frontier: size of the current level") == 0:
            return dist
        if level > max_levels + check_every:
            raise RuntimeError(f"reverse_distances did not converge in {level} levels ({num_nodes} nodes)")
