"""Dynamic sampling (the recipe's "+DS"): group filtering, batch assembly, and the trainer with it on."""

import os
import random
import signal

import pytest
import torch

from graphgpo.batch import StepBatch
from graphgpo.rollout import RolloutResult, episode_stats
from graphgpo.trainer.runlog import TIMING_KEYS
from graphgpo.trainer.dynamic_sampling import (group_size, informative_groups, sample_informative,
                                               select_groups)


def fake_rollout(outcomes, lengths=None, tag="r"):
    """A RolloutResult of len(outcomes) groups; outcomes[g] = per-episode success of group g's G copies.
    Rows carry readable states/prompts so their alignment can be checked after selection."""
    records, prompts, generations, actions, success, lengths_out, returns = [], [], [], [], [], [], []
    traj = 0
    for g, group in enumerate(outcomes):
        for e, won in enumerate(group):
            n = lengths[g][e] if lengths else 2
            for step in range(n):
                records.append({"group": g, "traj": traj, "step": step, "state": f"{tag}{g}.{e}.{step}",
                                "next_state": f"{tag}{g}.{e}.{step + 1}", "success": won, "valid": True,
                                "episode_reward": 10.0 if won else 0.0, "reward": 0.0})
                prompts.append(f"prompt {tag}{g}.{e}.{step}")
                generations.append(f"gen {tag}{g}.{e}.{step}")
                actions.append("up")
            success.append(won)
            lengths_out.append(n)
            returns.append(1.0 if won else 0.0)
            traj += 1
    return RolloutResult(records=records, batch=StepBatch.from_records(records), prompts=prompts,
                         generations=generations, actions=actions, success=success, returns=returns,
                         lengths=lengths_out, task_seeds=[100 + g for g in range(len(outcomes))],
                         task_types=["sokoban"] * len(success),
                         stats=episode_stats(records, success, lengths_out, returns))


def test_informative_groups_are_those_with_unequal_rewards():
    result = fake_rollout([[True, True, True], [False, True, False], [False, False, False], [True, False, True]])
    assert group_size(result) == 3
    assert informative_groups(result) == [1, 3]


def test_select_groups_renumbers_and_keeps_rows_aligned():
    a = fake_rollout([[True, False], [False, False]], lengths=[[1, 3], [2, 2]], tag="a")
    b = fake_rollout([[True, True], [False, True]], lengths=[[2, 1], [4, 1]], tag="b")
    picked = select_groups([(b, 1), (a, 0)])
    # b's group 1 (episodes 2, 3: 4 + 1 rows), then a's group 0 (episodes 0, 1: 1 + 3 rows)
    assert picked.task_seeds == [101, 100]
    assert picked.success == [False, True, True, False] and picked.lengths == [4, 1, 1, 3]
    expected_states = [f"b1.0.{s}" for s in range(4)] + ["b1.1.0", "a0.0.0"] + [f"a0.1.{s}" for s in range(3)]
    assert [r["state"] for r in picked.records] == expected_states
    assert picked.prompts == [f"prompt {s}" for s in expected_states]
    assert picked.generations == [f"gen {s}" for s in expected_states]
    assert [r["group"] for r in picked.records] == [0] * 5 + [1] * 4
    assert [r["traj"] for r in picked.records] == [0, 0, 0, 0, 1, 2, 3, 3, 3]
    assert picked.batch.num_groups == 2 and picked.batch.num_trajs == 4 and picked.batch.num_rows == 9
    assert picked.batch.group.tolist() == [0] * 5 + [1] * 4
    assert picked.stats["success_rate"] == 0.5 and picked.stats["mean_length"] == 9 / 4


def test_select_nothing_is_an_empty_result():
    empty = select_groups([])
    assert empty.records == [] and empty.batch.num_rows == 0 and empty.task_seeds == []


class Rounds:
    """roll_round for sample_informative: round r returns the r-th scripted rollout, and counts calls."""

    def __init__(self, outcomes_per_round):
        self.results = [fake_rollout(o, tag=f"r{i}_") for i, o in enumerate(outcomes_per_round)]
        self.calls = []

    def __call__(self, r):
        self.calls.append(r)
        return self.results[r]


ALL_FAIL, ALL_WIN, MIXED = [False] * 4, [True] * 4, [True, False, False, False]


def test_without_dynamic_sampling_one_round_is_trained_whole():
    rounds = Rounds([[ALL_FAIL, MIXED, ALL_WIN]])
    sampled = sample_informative(rounds, tasks_per_batch=3, max_rounds=10, enable=False)
    assert rounds.calls == [0] and sampled.train is rounds.results[0]
    assert sampled.metrics() == {"rollout_rounds": 1, "groups_trained": 3, "groups_informative": 1,
                                 "episodes_rolled_out": 12, "success_rate_all_rounds": 5 / 12}


def test_rounds_until_enough_informative_groups_then_cut_to_the_batch_size():
    rounds = Rounds([[ALL_FAIL, MIXED, ALL_WIN], [MIXED, ALL_FAIL, ALL_FAIL], [MIXED, MIXED, MIXED], [MIXED] * 3])
    sampled = sample_informative(rounds, tasks_per_batch=3, max_rounds=10, enable=True)
    assert rounds.calls == [0, 1, 2]  # 1 + 1 + 3 informative groups: enough after round 2
    # kept: round 0 group 1, round 1 group 0, round 2 group 0 (the cut drops round 2's groups 1 and 2)
    assert [r["state"] for r in sampled.train.records][::8] == ["r0_1.0.0", "r1_0.0.0", "r2_0.0.0"]
    assert sampled.metrics()["rollout_rounds"] == 3
    assert sampled.metrics()["groups_trained"] == 3 and sampled.metrics()["groups_informative"] == 5
    assert sampled.metrics()["episodes_rolled_out"] == 36


def test_max_rounds_spent_trains_on_what_there_is():
    rounds = Rounds([[ALL_FAIL, MIXED], [ALL_WIN, ALL_FAIL], [MIXED, MIXED]])
    sampled = sample_informative(rounds, tasks_per_batch=2, max_rounds=2, enable=True)
    assert rounds.calls == [0, 1]
    assert sampled.metrics()["groups_trained"] == 1 and len(sampled.train.success) == 4
    none = sample_informative(Rounds([[ALL_FAIL], [ALL_WIN]]), tasks_per_batch=1, max_rounds=2, enable=True)
    assert none.train.records == [] and none.metrics()["rollout_rounds"] == 2


# ---------------------------------------------------------------------------------------------- trainer
pytest.importorskip("transformers")

from graphgpo.trainer.checkpoint import latest_checkpoint  # noqa: E402
from graphgpo.trainer.config import load_config  # noqa: E402
from graphgpo.trainer.loop import Trainer, derived_seed, train, train_task_seeds  # noqa: E402
from graphgpo.trainer.runlog import read_metrics  # noqa: E402

TINY = [
    "tasks_per_batch=3", "num_generations=4", "max_steps=4", "embedded_hidden_size=16", "embedded_num_heads=2",
    "embedded_intermediate_size=32", "mini_batch_size=16", "micro_batch_size=16", "eval_tasks=4", "eval_every=0",
    "save_every=1", "progress_bar=false", "env_kwargs.interior=[3,3]", "env_kwargs.reverse_moves=3",
    "save_final_model=false", "random_baseline=false", "tensorboard=false",
]
TIME_KEYS = TIMING_KEYS  # wall-clock metrics differ between identical runs


def tiny(tmp_path, name, *extra):
    return load_config(None, [*TINY, f"output_dir={tmp_path / name}", *extra])


def test_extra_rounds_draw_new_tasks_deterministically():
    cfg = load_config(None, ["tasks_per_batch=4"])
    round0 = train_task_seeds(cfg, 7, None, 0)
    # round 0 is the task draw of a run without dynamic sampling (even seeds from (seed, iteration))
    rng = random.Random(derived_seed("tasks", cfg.seed, 7))
    assert round0 == [2 * rng.randrange(2**30) for _ in range(4)]
    rounds = [train_task_seeds(cfg, 7, None, r) for r in range(4)]
    assert rounds == [train_task_seeds(cfg, 7, None, r) for r in range(4)]
    assert len({tuple(r) for r in rounds}) == 4
    pool_rounds = [train_task_seeds(cfg, 7, 32, r) for r in range(3)]
    assert all(len(set(r)) == 4 and all(0 <= s < 32 for s in r) for r in pool_rounds)
    assert len({tuple(r) for r in pool_rounds}) == 3


def test_bad_max_num_gen_batches_names_the_field():
    with pytest.raises(ValueError, match=r"filter_groups\.max_num_gen_batches"):
        load_config(None, ["filter_groups.enable=true", "filter_groups.max_num_gen_batches=0"])


def test_trainer_trains_only_on_informative_groups(tmp_path, monkeypatch):
    seen = []
    real = Trainer.advantages

    def spy(self, rollout, iteration):
        seen.append(rollout)
        return real(self, rollout, iteration)

    monkeypatch.setattr(Trainer, "advantages", spy)
    train(tiny(tmp_path, "ds", "num_iterations=3", "filter_groups.enable=true",
               "filter_groups.max_num_gen_batches=4"))
    rows = read_metrics(tmp_path / "ds")
    assert len(seen) == 3
    for row, rollout in zip(rows, seen):
        assert informative_groups(rollout) == list(range(len(rollout.task_seeds)))  # every kept group informative
        assert row["groups_trained"] == len(rollout.task_seeds) == min(3, row["groups_informative"])
        assert row["num_steps"] == len(rollout.records)
        assert row["episodes_rolled_out"] == 12 * row["rollout_rounds"] and 1 <= row["rollout_rounds"] <= 4
        assert row["groups_trained"] == 3 or row["rollout_rounds"] == 4
    assert any(r["rollout_rounds"] > 1 for r in rows)  # the tiny rooms give all-equal groups


def test_round_zero_is_the_run_without_dynamic_sampling(tmp_path):
    """The first iteration's round 0 is played before any update: same tasks, same episodes."""
    plain = train(tiny(tmp_path, "plain", "num_iterations=1"))
    ds = train(tiny(tmp_path, "ds", "num_iterations=1", "filter_groups.enable=true"))
    assert plain["iterations"] == ds["iterations"] == 1
    a, b = read_metrics(tmp_path / "plain")[0], read_metrics(tmp_path / "ds")[0]
    for key in ("success_rate", "mean_return", "mean_length", "valid_action_rate", "groups_informative"):
        if key == "groups_informative" and b["rollout_rounds"] > 1:
            assert b[key] >= a[key]
        else:
            assert a[key] == b[key], key
    assert a["rollout_rounds"] == 1 and a["groups_trained"] == 3


def test_no_informative_group_skips_the_update(tmp_path, monkeypatch):
    monkeypatch.setattr("graphgpo.trainer.dynamic_sampling.informative_groups", lambda result: [])
    cfg = tiny(tmp_path, "none", "num_iterations=2", "filter_groups.enable=true",
               "filter_groups.max_num_gen_batches=2")
    trainer = Trainer(cfg)
    try:
        before = {k: v.clone() for k, v in trainer.policy.trainable_state_dict().items()}
        trainer.train()
        after = trainer.policy.trainable_state_dict()
    finally:
        trainer.close()
    assert all(torch.equal(before[k], after[k]) for k in before)
    rows = read_metrics(tmp_path / "none")
    assert [r["update_skipped"] for r in rows] == [1, 1]
    assert all(r["groups_trained"] == 0 and r["rollout_rounds"] == 2 and r["num_steps"] == 0 for r in rows)


def test_resume_with_dynamic_sampling_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    ds = ["num_iterations=4", "filter_groups.enable=true", "filter_groups.max_num_gen_batches=3"]
    train(tiny(tmp_path, "full", *ds))
    real = Trainer.train_iteration

    def interrupted(self, iteration):  # Ctrl-C during iteration 2: it finishes, saves, and the run stops
        if iteration == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, iteration)

    monkeypatch.setattr(Trainer, "train_iteration", interrupted)
    assert train(tiny(tmp_path, "part", *ds, "save_every=0"))["iterations"] == 2
    monkeypatch.setattr(Trainer, "train_iteration", real)
    train(load_config(tmp_path / "part" / "config.yaml", [f"output_dir={tmp_path / 'part'}"]), resume=True)
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "part")
    assert [r["iteration"] for r in b] == [1, 2, 3, 4]
    assert any(r["rollout_rounds"] > 1 for r in a[2:])
    for ra, rb in zip(a, b):
        for key in set(ra) - TIME_KEYS:
            assert rb[key] == ra[key], key
    wa = torch.load(latest_checkpoint(tmp_path / "full") / "policy.pt")
    wb = torch.load(latest_checkpoint(tmp_path / "part") / "policy.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
