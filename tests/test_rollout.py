"""Vectorised manager and the rollout engine (Sokoban; TextWorld rollouts are in test_envs_textworld)."""

from dataclasses import dataclass

import pytest
import torch

import graphgpo.envs as envs
from graphgpo import compute_advantages
from graphgpo.envs.vector import EnvManager
from graphgpo.prompting import get_template
from graphgpo.rollout import RandomPolicy, TextGeneration, collect_rollouts

SIMPLE = {"generator": "simple", "render": "compact"}
MOVES = ["up", "down", "left", "right"]


def compact_rollout(executor="serial", tasks=range(4), group_size=4, max_steps=12, seed=0, **kw):
    with EnvManager("sokoban", SIMPLE, group_size=group_size, max_steps=max_steps, executor=executor,
                    **kw) as manager:
        return collect_rollouts(manager, RandomPolicy(MOVES, seed=seed, style="bare"), task_seeds=list(tasks))


# --------------------------------------------------------------------------------------------- manager
def test_manager_groups_copies_and_stops_finished_envs():
    manager = EnvManager("sokoban", {"level": "######\n#@$ .#\n######"}, group_size=3, max_steps=4,
                         executor="serial")
    first = manager.reset([7, 8])
    assert manager.num_envs == 6 and [manager.group_of(i) for i in range(6)] == [0, 0, 0, 1, 1, 1]
    assert len({s.info["state_key"] for s in first}) == 1
    # env 0 solves in two moves; env 1 dawdles until the step limit; the rest walk into the wall.
    manager.step({0: "right", 1: "left", 2: "up"})
    out = manager.step({0: "right", 1: "left"})
    assert out[0].terminated and out[0].info["won"] and not out[0].truncated
    assert 0 not in manager.active and 2 in manager.active
    with pytest.raises(ValueError, match="environment 0 has finished"):
        manager.step({0: "left"})
    manager.step({1: "left"})
    last = manager.step({1: "left"})
    assert last[1].truncated and not last[1].terminated and 1 not in manager.active
    assert manager.steps[:3] == [2, 4, 1]
    with pytest.raises(ValueError, match="out of range"):
        manager.step({6: "up"})
    manager.close()


def test_manager_copies_share_the_task_seed():
    with EnvManager("sokoban", SIMPLE, group_size=2, max_steps=5, executor="serial") as manager:
        first = manager.reset([1, 2, 3])
    keys = [s.info["state_key"] for s in first]
    assert keys[0] == keys[1] and keys[2] == keys[3] and keys[4] == keys[5]
    solo = envs.make("sokoban", **SIMPLE)
    assert [solo.reset(seed=s)[1]["state_key"] for s in (1, 2, 3)] == keys[::2]


def test_vector_config_errors():
    with pytest.raises(ValueError, match="executor"):
        EnvManager("sokoban", executor="gpu")
    with pytest.raises(ValueError, match="group_size"):
        EnvManager("sokoban", group_size=0)
    with pytest.raises(ValueError, match="task_seeds"):
        EnvManager("sokoban").reset([])


# --------------------------------------------------------------------------------------------- rollout
def test_random_rollout_gives_a_valid_batch_and_graphgpo_advantages():
    result = compact_rollout(tasks=range(6), group_size=4, max_steps=12)
    batch = result.batch
    assert batch.num_rows == len(result.records) == len(result.prompts) == len(result.generations)
    assert batch.num_groups == 6 and batch.num_trajs == 24
    assert len(result.success) == len(result.lengths) == len(result.returns) == 24
    assert sum(result.lengths) == batch.num_rows
    # Rows are trajectory-major with steps 0..L-1.
    expected = [(t, s) for t, length in enumerate(result.lengths) for s in range(length)]
    assert [(r["traj"], r["step"]) for r in result.records] == expected
    for traj, (won, length) in enumerate(zip(result.success, result.lengths)):
        rows = [r for r in result.records if r["traj"] == traj]
        assert all(r["group"] == traj // 4 for r in rows)
        assert all(r["episode_reward"] == (10.0 if won else 0.0) and r["success"] == won for r in rows)
        assert won or length == 12  # failures run to the step limit
        assert result.returns[traj] == pytest.approx(sum(r["reward"] for r in rows))
    # The G copies of a task start from one state.
    starts = {}
    for r in result.records:
        if r["step"] == 0:
            starts.setdefault(r["group"], set()).add(r["state"])
    assert all(len(s) == 1 for s in starts.values())
    assert 0 < sum(result.success) < 24
    out = compute_advantages(batch, method="graphgpo", preset="sokoban")
    assert out.advantages.shape == (batch.num_rows,) and torch.isfinite(out.advantages).all()
    assert out.stats["num_groups"] == 6
    # Winning last steps point at SUCCESS: graph return r_succ there (SPEC: R = r_succ * omega^0).
    last_win = [i for i, r in enumerate(result.records)
                if r["success"] and r["step"] == result.lengths[r["traj"]] - 1]
    assert torch.allclose(out.returns[last_win], torch.full((len(last_win),), 10.0, dtype=torch.float64))


def test_rows_replay_exactly_in_a_fresh_environment():
    result = compact_rollout(tasks=[3, 4], group_size=3, max_steps=8, seed=5)
    env = envs.make("sokoban", **SIMPLE)
    for traj in range(6):
        rows = [i for i, r in enumerate(result.records) if r["traj"] == traj]
        _, info = env.reset(seed=result.task_seeds[traj // 3])
        for i in rows:
            rec = result.records[i]
            assert rec["state"] == info["state_key"]
            _, reward, terminated, _, info = env.step(result.actions[i])
            assert rec["next_state"] == info["state_key"] and rec["reward"] == pytest.approx(reward)
        assert terminated == result.success[traj]


@dataclass
class TaggedGeneration:
    text: str
    prompt: str
    token_ids: list


def test_generations_stay_aligned_and_invalid_moves_are_not_executed():
    calls = []

    def policy(prompts):
        calls.append(len(prompts))
        # Every other call answers garbage: invalid, not executed.
        garbage = len(calls) % 2 == 0
        return [TaggedGeneration("dance" if garbage else "up", p, [len(calls)]) for p in prompts]

    with EnvManager("sokoban", SIMPLE, group_size=2, max_steps=4, executor="serial") as manager:
        result = collect_rollouts(manager, policy, task_seeds=[0, 1])
    assert all(g.prompt == p for g, p in zip(result.generations, result.prompts))
    for rec, gen, action in zip(result.records, result.generations, result.actions):
        if gen.text == "dance":
            assert not rec["valid"] and action == "" and rec["state"] == rec["next_state"]
            assert rec["reward"] == pytest.approx(-0.1)
        else:
            assert rec["valid"] and action == "up"
    assert result.stats["invalid_rate"] == pytest.approx(
        sum(not r["valid"] for r in result.records) / len(result.records))


def test_full_template_prompts_carry_history():
    with EnvManager("sokoban", {"generator": "simple"}, group_size=1, max_steps=3, executor="serial") as manager:
        result = collect_rollouts(manager, RandomPolicy(seed=1), task_seeds=[9], template=get_template("sokoban"))
    if result.lengths[0] >= 3:
        assert "[Action 1]" in result.prompts[2] and "[Action 2]" in result.prompts[2]
    assert "This is the first step." in result.prompts[0]
    assert all(r["valid"] for r in result.records)


def test_policy_must_answer_every_prompt():
    with EnvManager("sokoban", SIMPLE, group_size=2, max_steps=3, executor="serial") as manager:
        with pytest.raises(ValueError, match="1 generations for 2 prompts"):
            collect_rollouts(manager, lambda prompts: [TextGeneration("up")], task_seeds=[0])


def test_num_tasks_draws_seeds_reproducibly():
    with EnvManager("sokoban", SIMPLE, group_size=1, max_steps=2, executor="serial") as manager:
        a = collect_rollouts(manager, RandomPolicy(MOVES, style="bare"), num_tasks=3, seed=4)
        b = collect_rollouts(manager, RandomPolicy(MOVES, style="bare"), num_tasks=3, seed=4)
    assert a.task_seeds == b.task_seeds and len(set(a.task_seeds)) == 3
    assert a.records == b.records


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_executors_give_the_serial_result(executor):
    serial = compact_rollout("serial", tasks=[1, 2], group_size=2, max_steps=6)
    other = compact_rollout(executor, tasks=[1, 2], group_size=2, max_steps=6,
                           num_workers=2 if executor == "thread" else 1)  # one process: spawn imports torch
    assert other.records == serial.records


def test_success_by_task_type():
    from graphgpo.rollout import success_by_task_type

    result = compact_rollout(tasks=range(4), group_size=2, max_steps=6)
    assert result.task_types == ["sokoban"] * 8  # Sokoban has one task type: the env's name
    assert success_by_task_type(result) == {"sokoban": sum(result.success) / 8}
    result.task_types = ["a", "b"] * 4
    result.success = [True, False, True, True, False, False, True, False]
    assert success_by_task_type(result) == {"a": 3 / 4, "b": 1 / 4}
