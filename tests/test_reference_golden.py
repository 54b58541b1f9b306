"""Golden tests of the reference backend: hand-computed expectations from SPEC.md's formulas.

Expected values are written as the arithmetic of the formulas (or computed with Python's ``statistics``
module, an independent implementation of mean and unbiased std), never read from the code under test.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest
import torch

from graphgpo.backends import reference
from graphgpo.batch import StepBatch
from graphgpo.config import GiGPOConfig, GraphGPOConfig, GRPOConfig, RLOOConfig

EPS = 1e-6


def traj(group, traj_id, states, success, *, valid=None, costs=None, rewards=None, episode_reward=None):
    """Records of one trajectory visiting ``states`` (len L + 1: the last one is the final next_state)."""
    steps = len(states) - 1
    valid = valid or [True] * steps
    rewards = rewards or [0.0] * steps
    if episode_reward is None:
        episode_reward = 10.0 if success else 0.0
    records = []
    for i in range(steps):
        record = dict(group=group, traj=traj_id, step=i, state=states[i], next_state=states[i + 1],
                      success=success, valid=valid[i], episode_reward=episode_reward, reward=rewards[i])
        if costs is not None:
            record["cost"] = costs[i]
        records.append(record)
    return records


def run(records, method="graphgpo", **options):
    config = {"graphgpo": GraphGPOConfig, "gigpo": GiGPOConfig, "grpo": GRPOConfig, "rloo": RLOOConfig}[method]
    return reference.compute(StepBatch.from_records(records), method, config(**options))


def approx(values):
    return pytest.approx(values, rel=1e-12, abs=1e-12)


def normalized(x, samples):
    """(x - mean) / (std + eps) with statistics.mean / statistics.stdev (ddof 1) of ``samples``."""
    return (x - statistics.mean(samples)) / (statistics.stdev(samples) + EPS)


# SPEC.md worked example. Rows: T1 A->B, B->(success); T2 A->C, C->D; T3 A->C, C->B, B->C.
WORKED = traj("task", "T1", ["A", "B", "end1"], True) + traj("task", "T2", ["A", "C", "D"], False) \
    + traj("task", "T3", ["A", "C", "B", "C"], False)


# ------------------------------------------------------------------------------------------ worked example


def test_worked_example_distances_and_returns():
    out = run(WORKED)
    assert out.d_state.tolist() == [2.0, 1.0, 2.0, 2.0, 2.0, 2.0, 1.0]
    assert out.d_next.tolist() == [1.0, 0.0, 2.0, 3.0, 2.0, 1.0, 2.0]  # D unreachable: d_max + 1 = 3
    assert out.returns.tolist() == approx([1.0, 10.0, 0.1, 0.01, 0.1, 1.0, 0.1])


def test_worked_example_step_advantages():
    out = run(WORKED)
    s = out.step_advantages.tolist()
    # step group A = rows 0, 2, 4: returns 1, 0.1, 0.1 -> mean 0.4, var (0.36 + 0.09 + 0.09) / 2 = 0.27
    std_a = math.sqrt(0.27)
    assert s[0] == pytest.approx(0.6 / (std_a + EPS), rel=1e-9)
    assert s[2] == s[4] == pytest.approx(-0.3 / (std_a + EPS), rel=1e-9)
    assert s[0] > 0 > s[2]  # T1's first step is the one credited
    # step group B = rows 1 (10) and 6 (0.1): mean 5.05, std 9.9 / sqrt 2
    assert s[1] == pytest.approx(4.95 / (9.9 / math.sqrt(2) + EPS), rel=1e-9)
    assert s[6] == pytest.approx(-4.95 / (9.9 / math.sqrt(2) + EPS), rel=1e-9)
    # step group C = rows 3 (0.01) and 5 (1): mean 0.505, std 0.99 / sqrt 2
    assert s[3] == pytest.approx(-0.495 / (0.99 / math.sqrt(2) + EPS), rel=1e-9)
    assert s[5] == pytest.approx(0.495 / (0.99 / math.sqrt(2) + EPS), rel=1e-9)


def test_worked_example_episode_and_total():
    out = run(WORKED)
    # cross_steps: scores 10, 10, 0 x 5 -> mean 20/7, sum of squares 2 (50/7)^2 + 5 (20/7)^2 = 1000/7, var 500/21
    std = math.sqrt(500 / 21)
    win, lose = (50 / 7) / (std + EPS), (-20 / 7) / (std + EPS)
    assert out.episode_advantages.tolist() == pytest.approx([win, win] + [lose] * 5, rel=1e-9)
    total = out.step_advantages + out.episode_advantages
    assert out.advantages.dtype == torch.float32
    assert out.advantages.tolist() == pytest.approx(total.tolist(), rel=1e-6)


def test_worked_example_stats_and_step_groups():
    batch = StepBatch.from_records(WORKED)
    out = reference.compute(batch, "graphgpo", GraphGPOConfig())
    assert out.stats == {
        "num_steps": 7, "num_groups": 1,
        "num_nodes": 5,  # SUCCESS, A, B, C, D (T1's final next_state is not a node)
        "num_edges": 7,
        "num_unique_edges": 6,  # A->C twice
        "duplicate_edge_rate": pytest.approx(1 / 7),
        "singleton_step_group_share": 0.0,
        "unreachable_state_share": pytest.approx(1 / 4),  # D of A, B, C, D
        "groups_without_success": 0,
    }
    # step groups: dense ranks of (group, state key) in sorted order, computed independently here
    pairs = list(zip(batch.group.tolist(), batch.state.tolist()))
    rank = {pair: i for i, pair in enumerate(sorted(set(pairs)))}
    assert out.step_group.tolist() == [rank[p] for p in pairs]
    assert out.method == "graphgpo" and out.backend == "reference"


def test_graph_return_paper_and_progress():
    d_next = [1, 0, 2, 3, 2, 1, 2]
    d_state = [2, 1, 2, 2, 2, 2, 1]
    paper = run(WORKED, graph_return="paper").returns.tolist()
    assert paper == approx([10 * 0.1 ** (d + 1) for d in d_next])  # unit cost: omega^(d(next) + 1)
    progress = run(WORKED, graph_return="progress").returns.tolist()
    # exponents d(next) - d(state) + 1 = 0, 0, 1, 2, 1, 0, 2
    assert progress == approx([10.0, 10.0, 1.0, 0.1, 1.0, 10.0, 0.1])
    assert progress == approx([10 * 0.1 ** (n - s + 1) for n, s in zip(d_next, d_state)])


def test_per_trajectory_episode_stats():
    out = run(WORKED, episode_stats="per_trajectory")
    # samples 10, 0, 0 -> mean 10/3, std 10/sqrt(3)
    std = 10 / math.sqrt(3)
    win, lose = (20 / 3) / (std + EPS), (-10 / 3) / (std + EPS)
    assert out.episode_advantages.tolist() == pytest.approx([win, win] + [lose] * 5, rel=1e-9)


def test_mean_mode_subtracts_mean_only():
    out = run(WORKED, normalize="mean")
    assert out.step_advantages.tolist() == approx([0.6, 4.95, -0.3, -0.495, -0.3, 0.495, -4.95])
    assert out.episode_advantages.tolist() == approx([50 / 7, 50 / 7] + [-20 / 7] * 5)


def test_weights_combine_parts():
    base = run(WORKED)
    out = run(WORKED, step_weight=0.5, episode_weight=2.0)
    expected = 0.5 * base.step_advantages + 2.0 * base.episode_advantages
    assert out.advantages.tolist() == pytest.approx(expected.tolist(), rel=1e-6)


def test_omega_changes_returns():
    out = run(WORKED, omega=0.8, r_succ=5.0)
    assert out.returns.tolist() == approx([5 * 0.8 ** d for d in [1, 0, 2, 3, 2, 1, 2]])


# ------------------------------------------------------------------------------------------ special groups


def test_all_fail_group_every_node_at_distance_one():
    records = traj(0, 0, ["A", "B", "C"], False) + traj(0, 1, ["A", "D"], False)
    out = run(records)
    assert out.d_state.tolist() == [1.0, 1.0, 1.0]
    assert out.d_next.tolist() == [1.0, 1.0, 1.0]
    assert out.returns.tolist() == approx([1.0, 1.0, 1.0])  # r_succ * omega
    assert out.advantages.tolist() == [0.0, 0.0, 0.0]  # equal returns, equal scores: exactly 0
    assert out.stats["groups_without_success"] == 1
    assert out.stats["num_nodes"] == 4  # A, B, C, D and no sink
    assert out.stats["unreachable_state_share"] == 0.0  # only groups with a success count
    assert out.stats["singleton_step_group_share"] == pytest.approx(1 / 3)  # B's row is alone


def test_all_success_identical_rollouts_give_exact_zero():
    records = []
    for t in range(3):
        records += traj(0, t, ["A", "B", f"goal{t}"], True)
    out = run(records)
    assert out.returns.tolist() == approx([1.0, 10.0] * 3)
    assert out.step_advantages.tolist() == [0.0] * 6
    assert out.episode_advantages.tolist() == [0.0] * 6
    assert out.advantages.tolist() == [0.0] * 6
    # mean mode too: zero variance is exactly zero, not a float residue
    assert run(records, normalize="mean").advantages.tolist() == [0.0] * 6


def test_self_loops():
    records = traj(0, 0, ["A", "A", "B", "goal"], True) + traj(0, 1, ["A", "A", "A", "A"], False)
    out = run(records)
    assert out.d_state.tolist() == [2.0, 2.0, 1.0, 2.0, 2.0, 2.0]
    assert out.returns.tolist() == approx([0.1, 1.0, 10.0, 0.1, 0.1, 0.1])
    step_a = [0.1, 1.0, 0.1, 0.1, 0.1]  # rows 0, 1, 3, 4, 5 share state A
    s = out.step_advantages.tolist()
    assert [s[i] for i in (0, 1, 3, 4, 5)] == pytest.approx([normalized(v, step_a) for v in step_a], rel=1e-9)
    assert s[2] == 0.0  # B's step group has one row
    assert s[1] > 0 > s[0]  # leaving the loop is credited, staying is not
    assert out.stats["num_nodes"] == 3  # A, B, SUCCESS
    assert out.stats["num_unique_edges"] == 3  # A->A, A->B, B->SUCCESS
    assert out.stats["duplicate_edge_rate"] == pytest.approx(0.5)


def test_cycles_and_unreachable():
    records = traj(0, 0, ["A", "B", "C", "goal"], True) + traj(0, 1, ["A", "B", "A", "D"], False)
    out = run(records)
    # C 1, B 2, A 3 (the cycle A->B->A does not shorten anything), D unreachable -> 3 + 1
    assert out.d_state.tolist() == [3.0, 2.0, 1.0, 3.0, 2.0, 3.0]
    assert out.d_next.tolist() == [2.0, 1.0, 0.0, 2.0, 3.0, 4.0]
    assert out.returns.tolist() == approx([0.1, 1.0, 10.0, 0.1, 0.01, 0.001])
    assert out.stats["unreachable_state_share"] == pytest.approx(1 / 4)


def test_final_next_state_of_success_is_a_node_when_it_occurs_elsewhere():
    records = traj(0, 0, ["A", "B", "G"], True) + traj(0, 1, ["G", "A"], False)
    out = run(records)
    assert out.d_state.tolist() == [2.0, 1.0, 3.0]  # G -> A -> B -> SUCCESS
    assert out.d_next.tolist() == [1.0, 0.0, 2.0]
    assert out.stats["num_nodes"] == 4  # A, B, G, SUCCESS


def test_invalid_actions_penalised_in_return_and_score():
    records = traj(0, 0, ["A", "B"], False) + traj(0, 1, ["A", "B"], False, valid=[False])
    out = run(records)
    assert out.returns.tolist() == approx([1.0, 1.0 - 0.1])
    assert out.step_advantages.tolist() == pytest.approx([normalized(v, [1.0, 0.9]) for v in [1.0, 0.9]], rel=1e-9)
    assert out.step_advantages[0].item() == pytest.approx(0.05 / (0.1 / math.sqrt(2) + EPS), rel=1e-9)
    # cross_steps scores 0 and -0.1
    assert out.episode_advantages.tolist() == pytest.approx([normalized(v, [0.0, -0.1]) for v in [0.0, -0.1]],
                                                            rel=1e-9)
    # per_trajectory samples are the episode rewards 0, 0: zero variance -> exactly 0
    assert run(records, episode_stats="per_trajectory").episode_advantages.tolist() == [0.0, 0.0]
    # no penalty
    assert run(records, invalid_penalty=0.0).advantages.tolist() == [0.0, 0.0]


def test_single_trajectory_groups():
    records = traj("g1", 0, ["A", "B", "goal"], True) + traj("g2", 1, ["X", "goal"], True)
    out = run(records)
    assert out.returns.tolist() == approx([1.0, 10.0, 10.0])
    assert out.step_advantages.tolist() == [0.0, 0.0, 0.0]  # every step group has one row
    # cross_steps: g1's two equal scores -> 0; g2 has one sample: mean 0, std 1 -> 10 / (1 + eps)
    assert out.episode_advantages.tolist() == approx([0.0, 0.0, 10 / (1 + EPS)])
    per_traj = run(records, episode_stats="per_trajectory").episode_advantages.tolist()
    assert per_traj == approx([10 / (1 + EPS)] * 3)
    assert run(records, episode_stats="per_trajectory", normalize="mean").episode_advantages.tolist() == [10.0] * 3


def test_groups_do_not_share_graphs():
    records = traj(0, 0, ["A", "B", "goal"], True) + traj(1, 1, ["A", "B"], False)
    out = run(records)
    assert out.d_state.tolist() == [2.0, 1.0, 1.0]  # group 1's A is its own node, in a group without success
    assert out.returns.tolist() == approx([1.0, 10.0, 1.0])
    assert out.stats["num_nodes"] == 2 + 1 + 2  # group 0: A, B, SUCCESS; group 1: A, B
    assert out.stats["groups_without_success"] == 1
    assert out.stats["num_groups"] == 2
    assert len(set(out.step_group.tolist())) == 3


# ------------------------------------------------------------------------------------------ costs


COSTED = traj(0, 0, ["A", "B", "goal"], True, costs=[2.0, 1.5]) \
    + traj(0, 1, ["A", "C", "B", "E"], False, costs=[0.5, 0.5, 1.0])


def test_costs_use_weighted_shortest_paths():
    out = run(COSTED)
    # B 1.5, C 0.5 + 1.5 = 2, A min(2 + 1.5, 0.5 + 2) = 2.5, E unreachable -> 2.5 + 1
    assert out.d_state.tolist() == [2.5, 1.5, 2.5, 2.0, 1.5]
    assert out.d_next.tolist() == [1.5, 0.0, 2.0, 1.5, 3.5]
    assert out.returns.tolist() == approx([10 * 0.1 ** 1.5, 10.0, 10 * 0.1 ** 2, 10 * 0.1 ** 1.5, 10 * 0.1 ** 3.5])
    paper = run(COSTED, graph_return="paper").returns.tolist()
    assert paper == approx([10 * 0.1 ** 3.5, 10 * 0.1 ** 1.5, 10 * 0.1 ** 2.5, 10 * 0.1 ** 2.0, 10 * 0.1 ** 4.5])


def test_unit_costs_match_unweighted():
    unweighted = run(WORKED)
    with_costs = [dict(r, cost=1.0) for r in WORKED]
    weighted = run(with_costs)
    assert weighted.d_state.tolist() == unweighted.d_state.tolist()
    assert weighted.d_next.tolist() == unweighted.d_next.tolist()
    assert weighted.advantages.tolist() == unweighted.advantages.tolist()


# ------------------------------------------------------------------------------------------ GiGPO


def test_gigpo_discounted_returns_and_advantages():
    records = traj(0, 0, ["A", "B", "C", "goal"], True, rewards=[0.0, 0.0, 10.0]) \
        + traj(0, 1, ["A", "B", "D"], False, rewards=[0.0, 1.0], valid=[False, True])
    out = run(records, "gigpo", gamma=0.5)
    # T1: 10, 0 + 0.5 * 10 = 5, 0.5 * 5 = 2.5; T2: 1, 0.5 * 1 = 0.5, then - 0.1 on the invalid step
    assert out.returns.tolist() == approx([2.5, 5.0, 10.0, 0.4, 1.0])
    s = out.step_advantages.tolist()
    assert [s[0], s[3]] == pytest.approx([normalized(2.5, [2.5, 0.4]), normalized(0.4, [2.5, 0.4])], rel=1e-9)
    assert [s[1], s[4]] == pytest.approx([normalized(5.0, [5.0, 1.0]), normalized(1.0, [5.0, 1.0])], rel=1e-9)
    assert s[2] == 0.0
    scores = [10.0, 10.0, 10.0, -0.1, 0.0]
    assert out.episode_advantages.tolist() == pytest.approx([normalized(v, scores) for v in scores], rel=1e-9)
    assert out.advantages.tolist() == pytest.approx([a + b for a, b in zip(s, out.episode_advantages.tolist())],
                                                    rel=1e-6)
    assert out.d_state is None and out.d_next is None
    assert out.step_group is not None


def test_gigpo_default_gamma():
    records = traj(0, 0, ["A", "B", "C", "D"], False, rewards=[1.0, 1.0, 1.0])
    out = run(records, "gigpo")
    assert out.returns.tolist() == approx([1 + 0.95 + 0.95 ** 2, 1 + 0.95, 1.0])


# ------------------------------------------------------------------------------------------ GRPO / RLOO


BASELINE = traj(0, 0, ["A", "B", "g"], True) + traj(0, 1, ["A"] * 2, False, valid=[False]) \
    + traj(0, 2, ["A", "C", "D", "E"], False) + traj(1, 3, ["X", "g"], True)


def test_grpo_hand_case():
    out = run(BASELINE, "grpo")
    # group 0 rewards 10, 0, 0: mean 10/3, std 10/sqrt(3); group 1 has one trajectory: raw 10
    std = 10 / math.sqrt(3)
    win, lose = (20 / 3) / (std + EPS), (-10 / 3) / (std + EPS)
    assert out.episode_advantages.tolist() == pytest.approx([win, win, lose, lose, lose, lose, 10.0], rel=1e-9)
    assert out.step_advantages.tolist() == [0.0] * 7
    assert out.returns.tolist() == [10.0, 10.0, 0.0, 0.0, 0.0, 0.0, 10.0]  # no invalid penalty
    assert out.advantages.tolist() == pytest.approx(out.episode_advantages.tolist(), rel=1e-6)
    assert out.d_state is None and out.step_group is None
    mean_mode = run(BASELINE, "grpo", normalize="mean").episode_advantages.tolist()
    assert mean_mode == approx([20 / 3, 20 / 3] + [-10 / 3] * 4 + [10.0])


def test_grpo_equal_rewards_give_zero():
    records = traj(0, 0, ["A", "g"], True) + traj(0, 1, ["A", "B", "g"], True)
    assert run(records, "grpo").advantages.tolist() == [0.0, 0.0, 0.0]


def test_rloo_hand_case():
    records = BASELINE + traj(0, 4, ["A", "F"], False, episode_reward=4.0)
    out = run(records, "rloo")
    # group 0 rewards 10, 0, 0, 4: 10 - 4/3, 0 - 14/3, 0 - 14/3, 4 - 10/3; group 1 keeps 10
    expected = [26 / 3] * 2 + [-14 / 3] * 4 + [10.0] + [2 / 3]
    assert out.episode_advantages.tolist() == approx(expected)
    assert out.step_advantages.tolist() == [0.0] * 8


# ------------------------------------------------------------------------------------------ invariants


def test_row_order_does_not_matter():
    records = WORKED + traj("other", "U1", ["A", "Z", "goal"], True) + traj("other", "U2", ["Z", "A"], False)
    base = run(records)
    order = list(range(len(records)))
    random.Random(0).shuffle(order)
    shuffled = run([records[i] for i in order])
    for name in ("d_state", "d_next", "returns", "step_advantages", "episode_advantages", "advantages"):
        assert getattr(shuffled, name).tolist() == [getattr(base, name).tolist()[i] for i in order], name
    assert shuffled.stats == base.stats


def test_empty_batch():
    out = reference.compute(StepBatch.from_records([]), "graphgpo", GraphGPOConfig())
    assert out.advantages.shape == (0,) and out.d_state.shape == (0,)
    assert out.stats["num_steps"] == 0 and out.stats["duplicate_edge_rate"] == 0.0


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weighted", [False, True])
def test_distances_match_networkx(seed, weighted):
    """Seeded random groups with few states (so paths share nodes): distances equal networkx's."""
    nx = pytest.importorskip("networkx")
    rng = random.Random(seed)
    records = []
    for t in range(12):
        group, length = t % 3, rng.randint(1, 6)
        states = [rng.choice("ABCDEFG") for _ in range(length + 1)]
        costs = [rng.choice([0.5, 1.0, 2.0, 3.25]) for _ in range(length)] if weighted else None
        records += traj(group, t, states, rng.random() < 0.4, costs=costs)
    out = run(records)

    expected_state, expected_next = [], []
    for group in range(3):
        rows = [r for r in records if r["group"] == group]
        last = {r["traj"]: r["step"] for r in rows}
        reverse = nx.MultiDiGraph()
        for r in rows:
            target = "SUCCESS" if r["success"] and r["step"] == last[r["traj"]] else ("s", r["next_state"])
            reverse.add_edge(target, ("s", r["state"]), weight=r.get("cost", 1.0))
        if reverse.has_node("SUCCESS"):
            dist = nx.single_source_dijkstra_path_length(reverse, "SUCCESS")
            fill = max(dist.values()) + 1
        else:
            dist, fill = {}, 1.0
        for r in rows:
            expected_state.append(dist.get(("s", r["state"]), fill))
            is_success_edge = r["success"] and r["step"] == last[r["traj"]]
            expected_next.append(0.0 if is_success_edge else dist.get(("s", r["next_state"]), fill))
    # rows were generated group by group interleaved; compare in record order
    order = sorted(range(len(records)), key=lambda i: records[i]["group"])
    got_state = [out.d_state.tolist()[i] for i in order]
    got_next = [out.d_next.tolist()[i] for i in order]
    assert got_state == pytest.approx(expected_state, abs=1e-12)
    assert got_next == pytest.approx(expected_next, abs=1e-12)
