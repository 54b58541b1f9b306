"""The vectorised torch backend against the reference backend and against independent shortest paths.

Random batches (hypothesis, derandomised profile from conftest.py) cover many groups, group sizes 1..8,
horizons 1..30, repeated states, self-loops, cycles, invalid actions, weighted costs, all-fail and
all-success groups, single-trajectory groups, extreme int64 keys and arbitrary row order. Expectations
come from the reference backend (plain Python), networkx's Dijkstra, or arithmetic written out here.
"""

from __future__ import annotations

import statistics

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from graphgpo.backends import pipeline, reference
from graphgpo.backends import torch_backend as tb
from graphgpo.backends import torch_graph as tg
from graphgpo.batch import StepBatch
from graphgpo.config import GiGPOConfig, GraphGPOConfig, GRPOConfig, RLOOConfig

from tests.random_batches import INT64_MAX, INT64_MIN, batch_params, random_rows, to_batch

graphgpo_options = st.fixed_dictionaries({
    "omega": st.sampled_from((0.1, 0.2, 0.8, 1.0)),
    "graph_return": st.sampled_from(("recipe", "paper", "progress")),
    "normalize": st.sampled_from(("mean_std", "mean")),
    "episode_stats": st.sampled_from(("cross_steps", "per_trajectory")),
    "step_weight": st.sampled_from((1.0, 0.5)),
    "invalid_penalty": st.sampled_from((0.1, 0.0)),
})
gigpo_options = st.fixed_dictionaries({
    "gamma": st.sampled_from((0.95, 0.5, 1.0, 0.0)),
    "normalize": st.sampled_from(("mean_std", "mean")),
    "episode_stats": st.sampled_from(("cross_steps", "per_trajectory")),
    "episode_weight": st.sampled_from((1.0, 2.0)),
})


# ------------------------------------------------------------------------------------------ comparisons

def assert_same_as_reference(batch, method, config):
    ours = tb.compute(batch, method, config)
    ref = reference.compute(batch, method, config)
    assert ours.backend == "torch" and ours.method == method
    assert ours.advantages.dtype == torch.float32 and ours.step_advantages.dtype == torch.float64
    if method == "graphgpo":
        assert torch.equal(ours.d_state, ref.d_state)
        assert torch.equal(ours.d_next, ref.d_next)
    else:
        assert ours.d_state is None and ours.d_next is None
    if method in ("graphgpo", "gigpo"):
        assert torch.equal(ours.step_group, ref.step_group)
    else:
        assert ours.step_group is None
    torch.testing.assert_close(ours.returns, ref.returns, rtol=1e-12, atol=1e-12)
    for name in ("step_advantages", "episode_advantages"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=0, atol=1e-6)
    # float32 outputs: within 1e-6 plus float32 rounding of values up to ~1e3
    torch.testing.assert_close(ours.advantages, ref.advantages, rtol=1e-6, atol=1e-6)
    assert ours.stats == ref.stats
    return ours


@given(batch_params, graphgpo_options)
def test_graphgpo_matches_reference(params, options):
    assert_same_as_reference(to_batch(random_rows(**params)), "graphgpo", GraphGPOConfig(**options))


@given(batch_params, gigpo_options)
def test_gigpo_matches_reference(params, options):
    assert_same_as_reference(to_batch(random_rows(**params)), "gigpo", GiGPOConfig(**options))


@given(batch_params, st.sampled_from(("mean_std", "mean")))
def test_grpo_and_rloo_match_reference(params, normalize):
    batch = to_batch(random_rows(**params))
    assert_same_as_reference(batch, "grpo", GRPOConfig(normalize=normalize))
    assert_same_as_reference(batch, "rloo", RLOOConfig())


@given(batch_params)
def test_large_batch_paths_match_reference(params):
    """Force the code paths of large batches on small ones: the frontier search and scipy's Dijkstra (used
    above SWEEP_MAX_EDGES) and torch's sort (used above 2**18 keys; numpy sorts smaller CPU arrays)."""
    batch = to_batch(random_rows(**params))
    graph = pipeline.build_graph(batch, tg.node_ids)
    csr = tg.reverse_csr(graph)
    sweep = tg.sweep_distances(graph)
    for method in ("sweep", "scipy", "frontier"):
        assert torch.equal(tg.shortest_distances(graph, csr, method), sweep), method
    keys = torch.cat([batch.state, batch.next_state])
    expected = torch.unique(keys, return_inverse=True)
    got = tg.sorted_unique(keys)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    limits = dict(tg.SWEEP_MAX_EDGES), tg.NUMPY_SORT_MAX
    try:
        tg.SWEEP_MAX_EDGES.update(cpu=0)
        tg.NUMPY_SORT_MAX = 0
        assert_same_as_reference(batch, "graphgpo", GraphGPOConfig())
    finally:
        tg.SWEEP_MAX_EDGES.update(limits[0])
        tg.NUMPY_SORT_MAX = limits[1]


def networkx_distances(rows: list[dict]) -> dict:
    """(group, key) -> d, by networkx Dijkstra on each group's reversed graph, with SPEC.md's fill rules."""
    length = {}
    for row in rows:
        length[row["traj"]] = max(length.get(row["traj"], 0), row["step"] + 1)
    out = {}
    for group in {row["group"] for row in rows}:
        graph = nx.DiGraph()
        sink = ("SUCCESS",)
        for row in (r for r in rows if r["group"] == group):
            to_success = row["success"] and row["step"] == length[row["traj"]] - 1
            head = sink if to_success else row["next_state"]
            graph.add_node(row["state"])
            graph.add_node(head)
            cost = row.get("cost", 1.0)
            if not graph.has_edge(head, row["state"]) or graph[head][row["state"]]["w"] > cost:
                graph.add_edge(head, row["state"], w=cost)  # reversed: SUCCESS is the source
        nodes = [v for v in graph.nodes if v != sink]
        if sink not in graph:
            out.update({(group, v): 1.0 for v in nodes})
            continue
        reached = nx.single_source_dijkstra_path_length(graph, sink, weight="w")
        d_max = max(reached.values())
        out.update({(group, v): float(reached.get(v, d_max + 1.0)) for v in nodes})
    return out


@given(batch_params)
def test_distances_equal_networkx(params):
    rows = random_rows(**params)
    out = tb.compute(to_batch(rows), "graphgpo", GraphGPOConfig())
    expected = networkx_distances(rows)
    d_state = [expected[(row["group"], row["state"])] for row in rows]
    assert out.d_state.tolist() == d_state
    for row, d in zip(rows, out.d_next.tolist()):
        if d != 0.0:  # 0 only at SUCCESS; states are at distance >= min cost > 0
            assert d == expected[(row["group"], row["next_state"])]


@given(batch_params, st.sampled_from(("graphgpo", "gigpo", "grpo", "rloo")), st.integers(0, 2**32 - 1))
def test_results_independent_of_row_order(params, method, perm_seed):
    batch = to_batch(random_rows(**params))
    perm = torch.randperm(batch.num_rows, generator=torch.Generator().manual_seed(perm_seed))
    config = {"graphgpo": GraphGPOConfig, "gigpo": GiGPOConfig, "grpo": GRPOConfig, "rloo": RLOOConfig}[method]()
    base = tb.compute(batch, method, config)
    permuted = tb.compute(batch.take(perm), method, config)
    for name in ("d_state", "d_next", "step_group"):
        if getattr(base, name) is not None:
            assert torch.equal(getattr(permuted, name), getattr(base, name)[perm])
    for name in ("returns", "step_advantages", "episode_advantages"):
        torch.testing.assert_close(getattr(permuted, name), getattr(base, name)[perm], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(permuted.advantages, base.advantages[perm], rtol=1e-6, atol=1e-6)
    assert permuted.stats == base.stats


# ------------------------------------------------------------------------------------------ hand cases

def chain(group, traj, keys, success, episode_reward=None, rewards=None, valid=None):
    steps = len(keys) - 1
    return [dict(group=group, traj=traj, step=t, state=keys[t], next_state=keys[t + 1], success=success,
                 valid=True if valid is None else valid[t],
                 episode_reward=(10.0 if success else 0.0) if episode_reward is None else episode_reward,
                 reward=0.0 if rewards is None else rewards[t]) for t in range(steps)]


def test_spec_worked_example():
    # T1: A->B->(success); T2: A->C->D; T3: A->C->B->C. Keys A=1, B=2, C=3, D=4, T1's end 99.
    rows = chain(0, 1, [1, 2, 99], True) + chain(0, 2, [1, 3, 4], False) + chain(0, 3, [1, 3, 2, 3], False)
    out = tb.compute(to_batch(rows), "graphgpo", GraphGPOConfig())
    assert out.d_state.tolist() == [2, 1, 2, 2, 2, 2, 1]
    assert out.d_next.tolist() == [1, 0, 2, 3, 2, 1, 2]
    assert out.returns.tolist() == pytest.approx([1, 10, 0.1, 0.01, 0.1, 1, 0.1], rel=1e-12)
    # step group of A: returns (1, 0.1, 0.1)
    a = [1.0, 0.1, 0.1]
    expected_a = [(x - statistics.mean(a)) / (statistics.stdev(a) + 1e-6) for x in a]
    assert out.step_advantages[[0, 2, 4]].tolist() == pytest.approx(expected_a, rel=1e-9)
    assert out.step_advantages[0] > 0
    # nodes A, B, C, D and one sink; 99 is not a node. Edges: 7 rows, A->C twice.
    assert out.stats["num_nodes"] == 5
    assert out.stats["num_unique_edges"] == 6
    assert out.stats["unreachable_state_share"] == 0.25  # D of A, B, C, D


def test_segment_normalize_hand_values():
    values = torch.tensor([1.0, 3.0, 5.0, 2.0, 7.0, 7.0, 4.0], dtype=torch.float64)
    seg = torch.tensor([0, 0, 0, 1, 2, 2, 3])
    out = tb.segment_normalize(values, seg, 4, "mean_std", 1e-6)
    # segment 0: mean 3, std 2; segment 1 alone -> 0; segment 2 equal values -> 0; segment 3 alone -> 0
    assert out.tolist() == pytest.approx([-2 / (2 + 1e-6), 0.0, 2 / (2 + 1e-6), 0.0, 0.0, 0.0, 0.0], abs=1e-15)
    assert tb.segment_normalize(values, seg, 4, "mean", 1e-6).tolist() == [-2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]
    # equal values whose float mean is not the value itself (0.1 + 0.1 + 0.1 = 0.30000000000000004):
    # exactly 0, not a 1e-11 residue of (x - mean) / eps
    tenths = torch.full((3,), 0.1, dtype=torch.float64)
    assert tenths.sum() / 3 != 0.1
    for mode in ("mean_std", "mean"):
        assert tb.segment_normalize(tenths, torch.zeros(3, dtype=torch.int64), 1, mode, 1e-6).tolist() == [0.0] * 3


def test_equal_episode_samples_give_exact_zero():
    # per-trajectory samples (0.1, 0.1, 0.1) are equal; the invalid row's score differs but still gets 0
    rows = [row for t in range(3) for row in chain(0, t, [1, 2], False, episode_reward=0.1, valid=[t != 1])]
    config = GraphGPOConfig(episode_stats="per_trajectory")
    assert tb.episode_advantages(to_batch(rows), config).tolist() == [0.0, 0.0, 0.0]


def test_discounted_returns_hand_values():
    # two trajectories, rows shuffled: rewards (1, 2, 4) and (8,)
    rows = chain(0, 0, [1, 2, 3, 4], False, rewards=[1.0, 2.0, 4.0], valid=[True, False, True]) \
        + chain(0, 1, [1, 5], False, rewards=[8.0])
    order = [2, 3, 0, 1]
    batch = to_batch([rows[i] for i in order])
    got = tb.discounted_returns(batch, 0.5, 0.1).tolist()
    expected = {0: 1 + 0.5 * 2 + 0.25 * 4, 1: 2 + 0.5 * 4 - 0.1, 2: 4.0, 3: 8.0}
    assert got == pytest.approx([expected[i] for i in order], rel=1e-15)


def test_long_trajectory_discounting_is_stable():
    horizon = 1000
    rows = chain(0, 0, list(range(horizon + 1)), False, rewards=[1.0] * horizon)
    got = tb.discounted_returns(to_batch(rows), 0.99, 0.0)
    expected = [(1 - 0.99 ** (horizon - t)) / (1 - 0.99) for t in range(horizon)]
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=0)


def test_no_success_group_and_self_loop():
    # group 0 all fail: d = 1 everywhere; group 1: a self-loop at the start, then success
    rows = chain(0, 0, [1, 2, 1], False) + chain(1, 1, [1, 1, 2, 3], True)
    out = tb.compute(to_batch(rows), "graphgpo", GraphGPOConfig(omega=0.5))
    assert out.d_state.tolist() == [1, 1, 2, 2, 1]
    assert out.d_next.tolist() == [1, 1, 2, 1, 0]
    assert out.stats["groups_without_success"] == 1
    assert out.stats["num_nodes"] == 2 + 2 + 1  # {1, 2} in group 0, {1, 2} + sink in group 1 (3 is no node)
    assert out.returns.tolist() == pytest.approx([5.0, 5.0, 2.5, 5.0, 10.0], rel=1e-15)


def test_empty_batch():
    out = tb.compute(StepBatch.empty(), "graphgpo", GraphGPOConfig())
    assert out.advantages.numel() == 0 and out.stats["num_steps"] == 0


def test_node_ids_fold_group_exactly():
    # The same extreme keys in two groups: four distinct nodes in (group, key) order.
    rows = chain(0, 0, [INT64_MAX, INT64_MIN], False) + chain(1, 1, [INT64_MIN, INT64_MAX], False)
    batch = to_batch(rows)
    node_group, state_node, next_node, extra = tg.node_ids(batch, torch.zeros(2, dtype=torch.bool), batch.state,
                                                           batch.next_state)
    assert extra is None
    assert node_group.tolist() == [0, 0, 1, 1]
    assert state_node.tolist() == [1, 2] and next_node.tolist() == [0, 3]


@pytest.mark.parametrize("num_groups", [1, 7, 70_000])  # 70k groups: beyond uint16, the torch sort path
def test_dense_pairs_number_pairs_in_sorted_order(num_groups):
    rng = np.random.default_rng(num_groups)
    pool = np.array([INT64_MIN, INT64_MAX, -1, 0, 1, 2**40] + rng.integers(-2**62, 2**62, 20).tolist(), dtype=np.int64)
    n = 3000
    group = torch.from_numpy(rng.integers(0, num_groups, n))
    key = torch.from_numpy(pool[rng.integers(0, len(pool), n)])
    pairs = sorted(set(zip(group.tolist(), key.tolist())))  # independent: Python's sort of the distinct pairs
    rank = {pair: i for i, pair in enumerate(pairs)}
    pair_group, node = tg.dense_pairs(group, key)
    assert pair_group.tolist() == [g for g, _ in pairs]
    assert node.tolist() == [rank[pair] for pair in zip(group.tolist(), key.tolist())]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("method", ["graphgpo", "gigpo", "grpo", "rloo"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cuda_matches_cpu(method, weighted):
    config = {"graphgpo": GraphGPOConfig, "gigpo": GiGPOConfig, "grpo": GRPOConfig, "rloo": RLOOConfig}[method]()
    for seed in range(5):
        batch = to_batch(random_rows(seed, 30, 8, 30, 12, weighted))
        cpu = tb.compute(batch, method, config)
        for limit in (0, 1 << 30):  # frontier and sweeps
            tg_limit = tg.SWEEP_MAX_EDGES["cuda"]
            tg.SWEEP_MAX_EDGES["cuda"] = limit
            try:
                gpu = tb.compute(batch.to("cuda"), method, config)
            finally:
                tg.SWEEP_MAX_EDGES["cuda"] = tg_limit
            assert gpu.advantages.is_cuda
            if method == "graphgpo":
                assert torch.equal(gpu.d_state.cpu(), cpu.d_state)
            torch.testing.assert_close(gpu.advantages.cpu(), cpu.advantages, rtol=1e-6, atol=1e-6)
            assert gpu.stats == cpu.stats
