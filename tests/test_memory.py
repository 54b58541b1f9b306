"""Cross-iteration graph memory: union distances against hand-computed values and networkx, bounds,
state round trips, and the trainer with memory on."""

import math
import os
import random
import signal

import networkx as nx
import pytest
import torch

from graphgpo import StepBatch, compute_advantages
from graphgpo.memory import GraphMemory

OUTPUT_TENSORS = ("advantages", "step_advantages", "episode_advantages", "returns", "d_state", "d_next", "step_group")


def trajectories(paths, group=0, first_traj=0):
    """Records of one group: paths = [(state sequence, success)], one trajectory each, all steps valid."""
    records = []
    for t, (path, success) in enumerate(paths):
        for i in range(len(path) - 1):
            records.append(dict(group=group, traj=first_traj + t, step=i, state=path[i], next_state=path[i + 1],
                                success=success, valid=True, episode_reward=10.0 if success else 0.0, reward=0.0))
    return records


def random_walk_records(rng, num_groups, group_size=4, num_states=7, horizon=6, success_rate=0.4,
                        invalid_rate=0.2):
    """Walks on a fixed deterministic transition table (state, action) -> next state, states "s0".."s6"."""
    table = {(s, a): (s * 3 + a * 5 + 1) % num_states for s in range(num_states) for a in range(3)}
    records, traj = [], 0
    for g in range(num_groups):
        start = rng.randrange(num_states)
        for _ in range(group_size):
            state, success, length = start, rng.random() < success_rate, rng.randint(1, horizon)
            valid = [rng.random() >= invalid_rate for _ in range(length)]
            for step in range(length):
                nxt = table[(state, rng.randrange(3))] if valid[step] else state
                records.append(dict(group=g, traj=traj, step=step, state=f"s{state}", next_state=f"s{nxt}",
                                    success=success, valid=valid[step], episode_reward=10.0 * success,
                                    reward=0.0))
                state = nxt
            traj += 1
    return records


def assert_same_output(a, b):
    for name in OUTPUT_TENSORS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name


# ---------------------------------------------------------------------------------------------- estimator
def test_failing_group_gets_the_distances_of_the_remembered_successful_path():
    memory = GraphMemory()
    # iteration 1, task "t": T1 A -> B -> goal; T2 A -> C -> D fails
    memory.add(StepBatch.from_records(trajectories([("ABG", True), ("ACD", False)])), task_keys=["t"])
    # iteration 2: both rollouts fail. T1 A -> C -> D; T2 A -> C -> B
    now = StepBatch.from_records(trajectories([("ACD", False), ("ACB", False)]))
    out = compute_advantages(now, "graphgpo", backend="reference", omega=0.1, memory=memory, task_keys=["t"])
    # Union: A->B, B->SUCCESS, A->C, C->D, C->B. d: SUCCESS 0, B 1, A 2, C 2; D unreachable: d_max + 1 = 3.
    assert out.d_state.tolist() == [2.0, 2.0, 2.0, 2.0]
    assert out.d_next.tolist() == [2.0, 3.0, 2.0, 1.0]
    assert out.returns.tolist() == pytest.approx([10 * 0.1**2, 10 * 0.1**3, 10 * 0.1**2, 10 * 0.1], abs=1e-15)
    # step group A: two equal returns -> 0; step group C: {0.01, 1}: mean 0.505, std (ddof 1) 0.495 * sqrt 2
    std = 0.495 * math.sqrt(2)
    expected_c = [(0.01 - 0.505) / (std + 1e-6), (1.0 - 0.505) / (std + 1e-6)]
    assert out.step_advantages.tolist() == pytest.approx([0.0, expected_c[0], 0.0, expected_c[1]], abs=1e-12)
    assert out.episode_advantages.tolist() == [0.0] * 4  # every rollout failed, every step valid
    assert out.stats["memory_success_groups"] == 1 and out.stats["memory_edges"] == 4
    # stats describe the graph the distances ran on (the union): its SUCCESS sink is reachable now
    assert out.stats["groups_without_success"] == 0
    # without memory the same group gets nothing
    plain = compute_advantages(now, "graphgpo", backend="reference", omega=0.1)
    assert plain.d_state.tolist() == [1.0] * 4 and plain.step_advantages.tolist() == [0.0] * 4


def test_memory_of_another_task_changes_nothing_and_groups_share_a_task():
    memory = GraphMemory()
    memory.add(StepBatch.from_records(trajectories([("ABG", True)])), task_keys=["t"])
    now = StepBatch.from_records(trajectories([("ACB", False), ("AB", False)], group=0)
                                 + trajectories([("ACB", False), ("AB", False)], group=1, first_traj=2))
    out = compute_advantages(now, "graphgpo", backend="reference", omega=0.5, memory=memory, task_keys=["u", "t"])
    assert out.d_state.tolist()[:3] == [1.0, 1.0, 1.0]  # group 0 plays task u: nothing remembered
    # group 1 plays t: rows A->C, C->B, A->B with A 2, C 2 (C -> B), B 1
    assert out.d_state.tolist()[3:] == [2.0, 2.0, 2.0] and out.d_next.tolist()[3:] == [2.0, 1.0, 1.0]
    both = compute_advantages(now, "graphgpo", backend="reference", memory=memory, task_keys=["t", "t"])
    assert both.d_state.tolist() == [2.0, 2.0, 2.0] * 2 and both.d_next.tolist() == [2.0, 1.0, 1.0] * 2


@pytest.mark.parametrize("seed", range(6))
def test_union_distances_equal_networkx_on_the_union_graph(seed):
    rng = random.Random(seed)
    memory = GraphMemory()
    tasks = ["a", "b", "c"]
    past = []
    for _ in range(3):
        records = random_walk_records(rng, num_groups=3)
        memory.add(StepBatch.from_records(records), task_keys=tasks)
        past.append(records)
    now_records = random_walk_records(rng, num_groups=3, success_rate=0.15)
    now = StepBatch.from_records(now_records)
    out = compute_advantages(now, "graphgpo", backend="reference", memory=memory, task_keys=tasks)
    for g, task in enumerate(tasks):
        graph = nx.MultiDiGraph()
        for records in past + [now_records]:
            rows = [r for r in records if r["group"] == g]
            last = {}
            for r in rows:
                last[r["traj"]] = max(last.get(r["traj"], -1), r["step"])
            for r in rows:
                end = "SUCCESS" if r["success"] and r["step"] == last[r["traj"]] else r["next_state"]
                graph.add_edge(r["state"], end)
        if "SUCCESS" in graph:
            reached = nx.single_source_shortest_path_length(graph.reverse(copy=True), "SUCCESS")
            d_max = max(reached.values())
            dist = {n: float(reached.get(n, d_max + 1)) for n in graph.nodes}
        else:
            dist = {n: 1.0 for n in graph.nodes}
        index = [i for i, r in enumerate(now_records) if r["group"] == g]
        last = {}
        for i in index:
            last[now_records[i]["traj"]] = max(last.get(now_records[i]["traj"], -1), now_records[i]["step"])
        for i in index:
            r = now_records[i]
            assert out.d_state[i].item() == dist[r["state"]]
            succ_edge = r["success"] and r["step"] == last[r["traj"]]
            assert out.d_next[i].item() == (0.0 if succ_edge else dist[r["next_state"]])


def test_empty_memory_is_bit_for_bit_the_memory_free_result():
    batch = StepBatch.from_records(random_walk_records(random.Random(3), num_groups=4))
    for options in ({}, {"graph_return": "progress"}, {"normalize": "mean", "omega": 0.3}):
        plain = compute_advantages(batch, "graphgpo", backend="reference", **options)
        with_memory = compute_advantages(batch, "graphgpo", backend="reference", memory=GraphMemory(), **options)
        assert_same_output(plain, with_memory)
        assert {k: v for k, v in with_memory.stats.items() if not k.startswith("memory_")} == plain.stats


@pytest.mark.parametrize("method", ["gigpo", "grpo", "rloo"])
def test_memory_never_changes_the_other_methods(method):
    rng = random.Random(5)
    memory = GraphMemory()
    memory.add(StepBatch.from_records(random_walk_records(rng, num_groups=3, success_rate=0.9)), [0, 1, 2])
    batch = StepBatch.from_records(random_walk_records(rng, num_groups=3, success_rate=0.1))
    for backend in ("reference", "torch"):
        plain = compute_advantages(batch, method, backend=backend)
        assert_same_output(plain, compute_advantages(batch, method, backend=backend, memory=memory,
                                                     task_keys=[0, 1, 2]))


def test_memory_results_do_not_depend_on_row_order():
    rng = random.Random(11)
    first = StepBatch.from_records(random_walk_records(rng, num_groups=3))
    now = StepBatch.from_records(random_walk_records(rng, num_groups=3, success_rate=0.2))
    perm = torch.randperm(first.num_rows, generator=torch.Generator().manual_seed(0))
    a, b = GraphMemory(max_edges_per_task=5), GraphMemory(max_edges_per_task=5)  # eviction inside one add
    a.add(first, [0, 1, 2])
    b.add(first.take(perm), [0, 1, 2])
    assert all(a.edges(t) == b.edges(t) for t in (0, 1, 2)) and a.num_edges == b.num_edges == 15
    perm_now = torch.randperm(now.num_rows, generator=torch.Generator().manual_seed(1))
    out = compute_advantages(now, "graphgpo", backend="reference", memory=a, task_keys=[0, 1, 2])
    shuffled = compute_advantages(now.take(perm_now), "graphgpo", backend="reference", memory=b, task_keys=[0, 1, 2])
    assert torch.equal(out.d_state[perm_now], shuffled.d_state)
    assert torch.allclose(out.advantages[perm_now], shuffled.advantages, atol=1e-6)


# ---------------------------------------------------------------------------------------------- bounds, state
def test_edges_per_task_keep_the_most_recently_seen():
    memory = GraphMemory(max_edges_per_task=3)
    memory.add(StepBatch.from_records(trajectories([("ABCD", False)])), ["t"])  # A->B, B->C, C->D
    memory.add(StepBatch.from_records(trajectories([("CDE", False)])), ["t"])   # C->D seen again, D->E new
    keys = StepBatch.from_records(trajectories([("ABCDE", False)])).state.tolist()  # keys of A, B, C, D
    key_a, key_b, key_c, key_d = keys
    remaining = {(s, t) for s, t, _ in memory.edges("t")}
    # 4 distinct edges, room for 3: the oldest (A->B and B->C, seen only in the first add) lose; of those
    # two the one with the smaller source key goes first
    dropped = min([(key_a, key_b), (key_b, key_c)])
    assert len(remaining) == 3 and dropped not in remaining and (key_c, key_d) in remaining
    assert {(key_a, key_b), (key_b, key_c)} - {dropped} <= remaining


def test_tasks_kept_least_recently_added_first_out():
    memory = GraphMemory(max_tasks=2)
    for task in ("x", "y", "z"):
        memory.add(StepBatch.from_records(trajectories([("AB", True)])), [task])
    assert len(memory) == 2 and "x" not in memory and "y" in memory and "z" in memory
    memory.add(StepBatch.from_records(trajectories([("AB", True)])), ["y"])  # y is now the most recent
    memory.add(StepBatch.from_records(trajectories([("AB", True)])), ["w"])
    assert "y" in memory and "w" in memory and "z" not in memory


def test_success_edges_and_cheapest_cost_are_remembered():
    records = trajectories([("ABG", True)])
    for r, cost in zip(records, (2.0, 3.0)):
        r["cost"] = cost
    memory = GraphMemory()
    memory.add(StepBatch.from_records(records), ["t"])
    cheaper = trajectories([("AB", False)])
    cheaper[0]["cost"] = 0.5
    memory.add(StepBatch.from_records(cheaper), ["t"])
    row = StepBatch.from_records(cheaper)
    key_a, key_b = row.state.item(), row.next_state.item()
    assert set(memory.edges("t")) == {(key_a, key_b, 0.5), (key_b, None, 3.0)}
    # the weighted union: d(B) = 3, d(A) = 0.5 + 3 on a group that walks A -> B and fails
    now = StepBatch.from_records([{**cheaper[0], "cost": 1.0}])
    out = compute_advantages(now, "graphgpo", backend="reference", memory=memory, task_keys=["t"])
    assert out.d_state.tolist() == [3.5] and out.d_next.tolist() == [3.0]


def test_state_dict_round_trip_through_torch_save(tmp_path):
    rng = random.Random(2)
    memory = GraphMemory(max_edges_per_task=6, max_tasks=2)
    for i in range(3):
        memory.add(StepBatch.from_records(random_walk_records(rng, num_groups=2)), [(i, "a"), i + 1])
    torch.save({"m": memory.state_dict()}, tmp_path / "m.pt")
    restored = GraphMemory()
    restored.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=False)["m"])
    assert restored.state_dict() == memory.state_dict()
    nxt = StepBatch.from_records(random_walk_records(rng, num_groups=2))
    memory.add(nxt, [3, (2, "a")])
    restored.add(nxt, [3, (2, "a")])
    assert restored.state_dict() == memory.state_dict() and len(restored) == 2


def test_bad_memory_arguments_are_clear_errors():
    batch = StepBatch.from_records(trajectories([("AB", True)]))
    with pytest.raises(ValueError, match="task_keys has 2 entries, the batch has 1 groups"):
        compute_advantages(batch, "graphgpo", backend="reference", memory=GraphMemory(), task_keys=[1, 2])
    with pytest.raises(ValueError, match=r"task_keys\[0\] must be hashable"):
        GraphMemory().add(batch, [[1]])
    with pytest.raises(TypeError, match="GraphMemory"):
        compute_advantages(batch, "graphgpo", memory={"edges": []})
    with pytest.raises(ValueError, match="max_tasks"):
        GraphMemory(max_tasks=0)


# ---------------------------------------------------------------------------------------------- trainer
pytest.importorskip("transformers")

from graphgpo.trainer.checkpoint import latest_checkpoint  # noqa: E402
from graphgpo.trainer.config import load_config  # noqa: E402
from graphgpo.trainer.loop import Trainer, train  # noqa: E402
from graphgpo.trainer.runlog import TIMING_KEYS, read_metrics  # noqa: E402

TINY = [
    "tasks_per_batch=2", "num_generations=4", "max_steps=4", "embedded_hidden_size=16", "embedded_num_heads=2",
    "embedded_intermediate_size=32", "mini_batch_size=16", "micro_batch_size=16", "eval_tasks=4", "eval_every=0",
    "save_every=1", "progress_bar=false", "env_kwargs.interior=[3,3]", "env_kwargs.reverse_moves=3",
    "save_final_model=false", "random_baseline=false", "tensorboard=false", "advantage.memory=true",
    "advantage.backend=reference", "num_iterations=4",
]


def small_pool(cfg, iteration, pool=None, round=0):
    """Sokoban has no finite pool: the trainer plays 2 of 3 fixed rooms each iteration."""
    return random.Random(f"{cfg.seed}-{iteration}-{round}").sample([10, 12, 14], cfg.tasks_per_batch)


def test_trainer_memory_resume_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr("graphgpo.trainer.loop.train_task_seeds", small_pool)
    train(load_config(None, [*TINY, f"output_dir={tmp_path / 'full'}"]))
    rows = read_metrics(tmp_path / "full")
    assert rows[-1]["memory_tasks"] == 3 and rows[-1]["graph_memory_edges"] > 0
    state = torch.load(latest_checkpoint(tmp_path / "full") / "state.pt", weights_only=False)
    assert len(state["extra"]["graph_memory"]["tasks"]) == 3

    real = Trainer.train_iteration

    def interrupted(self, iteration):
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, iteration)

    monkeypatch.setattr(Trainer, "train_iteration", interrupted)
    assert train(load_config(None, [*TINY, f"output_dir={tmp_path / 'part'}", "save_every=0"]))["iterations"] == 2
    monkeypatch.setattr(Trainer, "train_iteration", real)
    train(load_config(tmp_path / "part" / "config.yaml", [f"output_dir={tmp_path / 'part'}"]), resume=True)
    resumed = read_metrics(tmp_path / "part")
    for a, b in zip(rows, resumed):
        for key in set(a) - TIMING_KEYS:
            assert a[key] == b[key], key


def test_memory_with_another_method_is_a_config_error():
    with pytest.raises(ValueError, match="advantage.memory is a GraphGPO option"):
        load_config(None, ["advantage.memory=true", "advantage.method=gigpo"])
