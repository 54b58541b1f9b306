"""Node and edge deduplication on the device, sort-based.

* ``dense_ids(key, group=None)``: dense ids of distinct ``(group, key)`` pairs, numbered in sorted order of
  (group id, key as int64) - the order ``AdvantageOutput.step_group`` is defined in - plus the distinct
  pairs themselves.
* ``unique_edges(src, dst, num_nodes, cost=None)``: distinct ``(src, dst)`` edges in reverse-CSR order
  (sorted by dst, then src), the CSR row pointer over dst, each row's edge id and the cheapest cost of the
  duplicates.

Sorting uses ``torch.sort`` (radix sort on CUDA); a lexicographic (group, key) order is two stable sorts.
The Triton kernels then do in one pass each what would otherwise be a handful of elementwise launches:
``_flag_kernel`` marks where a sorted run starts, ``_scatter_kernel`` writes every entry's dense id back in
input order and each run's key once. Between them one ``cumsum`` numbers the runs. The number of distinct
pairs is read back once (it sizes the outputs); nothing else syncs.

``dense_ids_hashed`` is the alternative the issue asks to measure against: an open-addressing hash table
(``atomic_cas`` on int64 slots holding the index of the first entry seen with a pair; linear probing, load
factor <= 1/2) finds one representative per distinct pair in one pass, and only the distinct pairs are then
sorted (two stable sorts of u instead of n entries) to number them in the same sorted order. It wins when
pairs repeat a lot (u << n), which is the normal case for states. Both give identical outputs; which is
faster on a GPU has not been measured (no GPU was lent): ``benchmarks/bench_kernels.py`` times both.
"""

from __future__ import annotations

import torch

from graphgpo import kernels
from graphgpo.backends import host_sync

from . import HAS_TRITON, check_device, launch

if HAS_TRITON:
    import triton
    import triton.language as tl

    from .hashing import _mix64

    @triton.jit
    def _flag_kernel(key_ptr, group_ptr, flag_ptr, n, HAS_GROUP: tl.constexpr, BLOCK: tl.constexpr):
        # flag[i] = 1 where sorted entry i starts a new (group, key) run
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        prev = tl.maximum(i - 1, 0)
        k = tl.load(key_ptr + i, mask=m, other=0)
        kp = tl.load(key_ptr + prev, mask=m, other=0)
        new = (i == 0) | (k != kp)
        if HAS_GROUP:
            g = tl.load(group_ptr + i, mask=m, other=0)
            gp = tl.load(group_ptr + prev, mask=m, other=0)
            new = new | (g != gp)
        tl.store(flag_ptr + i, new.to(tl.int64), mask=m)

    @triton.jit
    def _scatter_kernel(key_ptr, group_ptr, perm_ptr, flag_ptr, run_ptr, inv_ptr, ukey_ptr, ugroup_ptr, n,
                        HAS_GROUP: tl.constexpr, BLOCK: tl.constexpr):
        # inv[perm[i]] = run id of sorted entry i; the first entry of each run writes the distinct pair
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = i < n
        rid = tl.load(run_ptr + i, mask=m, other=1) - 1   # inclusive cumsum -> 0-based run id
        p = tl.load(perm_ptr + i, mask=m, other=0)
        tl.store(inv_ptr + p, rid, mask=m)
        first = m & (tl.load(flag_ptr + i, mask=m, other=0) != 0)
        tl.store(ukey_ptr + rid, tl.load(key_ptr + i, mask=m, other=0), mask=first)
        if HAS_GROUP:
            tl.store(ugroup_ptr + rid, tl.load(group_ptr + i, mask=m, other=0), mask=first)


    @triton.jit
    def _insert_kernel(key_ptr, group_ptr, table_ptr, rep_ptr, n, table_mask: tl.int64, BLOCK: tl.constexpr):
        # rep[i] = index of the entry whose (group, key) claimed the slot first (i itself if it did)
        i = (tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)).to(tl.int64)
        m = i < n
        k = tl.load(key_ptr + i, mask=m, other=0)
        g = tl.load(group_ptr + i, mask=m, other=0)
        z = _mix64(k.to(tl.uint64, bitcast=True) ^ _mix64(g.to(tl.uint64, bitcast=True) + 0x9E3779B97F4A7C15))
        h = (z & table_mask.to(tl.uint64)).to(tl.int64, bitcast=True)
        rep = i
        active = m
        while tl.max(active.to(tl.int32), axis=0) > 0:
            # atomic_cas has no mask: finished lanes compare against -2, which no slot ever holds
            cmp = tl.where(active, -1, -2).to(tl.int64)
            old = tl.atomic_cas(table_ptr + h, cmp, i)
            inserted = active & (old == -1)
            probe = active & (old >= 0)
            other = tl.maximum(old, 0)
            same = probe & (tl.load(group_ptr + other, mask=probe, other=0) == g) \
                & (tl.load(key_ptr + other, mask=probe, other=0) == k)
            rep = tl.where(same, other, rep)
            active = active & ~(inserted | same)
            h = tl.where(active, (h + 1) & table_mask, h)
        tl.store(rep_ptr + i, rep, mask=m)


BLOCK = 1024
"""Entries per program on a GPU (compile_check compiles this size)."""


def _lexsort(key: torch.Tensor, group: torch.Tensor | None):
    """Permutation sorting by (group, key); two stable radix sorts."""
    key_sorted, perm = torch.sort(key, stable=True)
    if group is None:
        return perm, key_sorted, None
    group_sorted, p2 = torch.sort(group[perm], stable=True)
    perm = perm[p2]
    return perm, key[perm], group_sorted


def dense_ids(key: torch.Tensor, group: torch.Tensor | None = None):
    """Dense ids of distinct ``(group, key)`` pairs (or keys), numbered in sorted order.

    Returns ``(inverse, unique_key, unique_group)``: ``inverse[i]`` is entry i's id, and id j is the pair
    ``(unique_group[j], unique_key[j])`` (``unique_group`` is None without ``group``). int64 throughout.
    """
    check_device(key, group)
    key = key.to(torch.int64).contiguous()
    n = key.numel()
    dev = key.device
    if group is not None:
        group = group.to(torch.int64).contiguous()
        if group.shape != key.shape:
            raise ValueError(f"group has shape {tuple(group.shape)}, key has {tuple(key.shape)}")
    if n == 0:
        empty = torch.empty(0, dtype=torch.int64, device=dev)
        return empty, empty.clone(), (empty.clone() if group is not None else None)
    perm, key_sorted, group_sorted = _lexsort(key, group)
    has_group = group_sorted is not None
    g_arg = group_sorted if has_group else key_sorted
    flag = torch.empty(n, dtype=torch.int64, device=dev)
    block = kernels.TEST_BLOCK or BLOCK
    grid = (triton.cdiv(n, block),)
    launch(_flag_kernel, grid, key_sorted, g_arg, flag, n, HAS_GROUP=has_group, BLOCK=block)
    run = torch.cumsum(flag, 0)
    num_unique = host_sync.to_int(run[-1], "dense ids: number of distinct pairs")  # sizes the outputs
    inverse = torch.empty(n, dtype=torch.int64, device=dev)
    ukey = torch.empty(num_unique, dtype=torch.int64, device=dev)
    ugroup = torch.empty(num_unique, dtype=torch.int64, device=dev) if has_group else ukey
    launch(_scatter_kernel, grid, key_sorted, g_arg, perm, flag, run, inverse, ukey, ugroup, n,
                          HAS_GROUP=has_group, BLOCK=block)
    return inverse, ukey, (ugroup if has_group else None)


def unique_edges(src: torch.Tensor, dst: torch.Tensor, num_nodes: int, cost: torch.Tensor | None = None):
    """Distinct edges in reverse-CSR order.

    ``src``/``dst`` are dense node ids < 2**31. Returns ``(edge_src, edge_dst, rowptr, inverse, edge_cost)``:
    edges sorted by (dst, src); ``rowptr`` [num_nodes + 1] so that the edges into v are
    ``rowptr[v]:rowptr[v+1]``; ``inverse[i]`` the edge id of input i; ``edge_cost`` the minimum ``cost``
    over each edge's duplicates (None without ``cost``).
    """
    check_device(src, dst, cost)
    if num_nodes >= 2**31:
        raise ValueError(f"num_nodes = {num_nodes} does not fit the 31-bit packing of edge ids")
    packed = (dst.to(torch.int64) << 32) | src.to(torch.int64)  # sorting packed = sorting by (dst, src)
    inverse, upacked, _ = dense_ids(packed)
    edge_src = upacked & 0xFFFFFFFF
    edge_dst = upacked >> 32
    nodes = torch.arange(num_nodes + 1, device=src.device, dtype=torch.int64)
    rowptr = torch.searchsorted(edge_dst, nodes)
    edge_cost = None
    if cost is not None:
        edge_cost = torch.full((upacked.numel(),), float("inf"), dtype=torch.float64, device=src.device)
        edge_cost.scatter_reduce_(0, inverse, cost.to(torch.float64), reduce="amin")
    return edge_src, edge_dst, rowptr, inverse, edge_cost


def dense_ids_hashed(key: torch.Tensor, group: torch.Tensor):
    """Same result as ``dense_ids(key, group)``, via an ``atomic_cas`` hash table and a sort of the
    distinct pairs only."""
    check_device(key, group)
    key = key.to(torch.int64).contiguous()
    group = group.to(torch.int64).contiguous()
    if group.shape != key.shape:
        raise ValueError(f"group has shape {tuple(group.shape)}, key has {tuple(key.shape)}")
    n = key.numel()
    dev = key.device
    if n == 0:
        empty = torch.empty(0, dtype=torch.int64, device=dev)
        return empty, empty.clone(), empty.clone()
    size = triton.next_power_of_2(2 * n)
    table = torch.full((size,), -1, dtype=torch.int64, device=dev)
    rep = torch.empty(n, dtype=torch.int64, device=dev)
    block = kernels.TEST_BLOCK or (BLOCK if n >= BLOCK else triton.next_power_of_2(n))
    launch(_insert_kernel, (triton.cdiv(n, block),), key, group, table, rep, n, size - 1, BLOCK=block)
    first = host_sync.nonzero(rep == torch.arange(n, device=dev), "hash table: representatives")
    compact = torch.empty(n, dtype=torch.int64, device=dev)
    compact[first] = torch.arange(first.numel(), device=dev)
    perm, ukey, ugroup = _lexsort(key[first], group[first])
    rank = torch.empty_like(perm)
    rank[perm] = torch.arange(perm.numel(), device=dev)
    return rank[compact[rep]], ukey, ugroup
