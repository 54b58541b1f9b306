"""Cost of the verl adapter (graphgpo.integrations.verl) on recipe-sized batches, CPU.

Prints one table row per batch shape: reading the DataProto into a StepBatch (hashing the string states),
``compute_advantages`` alone on those steps, and the whole estimator call through verl's registry (both, plus
the broadcast to [rows, response_length] tokens). Needs verl (scripts/verl_test_env.sh):

    .venv-verl/bin/python scripts/verl_adapter_bench.py [--repeats 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from verl import DataProto
from verl.trainer.ppo.core_algos import get_adv_estimator_fn

import graphgpo
import graphgpo.integrations.verl as gv

# (name, tasks per batch, rollouts per task, max steps): recipe settings from SPEC.md.
SHAPES = [("sokoban", 32, 8, 15), ("webshop", 16, 8, 15), ("alfworld", 16, 8, 50)]
RESPONSE_LENGTH = 256
STATES_PER_TASK = 40  # distinct observations a task's rollouts wander through
OBS_CHARS = 400       # length of one text observation


def make_batch(tasks: int, rollouts: int, max_steps: int, rng: np.random.Generator) -> DataProto:
    """verl-agent style rows: random walks over a small per-task state set, ~1/3 of trajectories succeed."""
    rows = {k: [] for k in ("uid", "traj_uid", "step", "anchor_obs", "next_obs", "is_action_valid",
                            "episode_rewards", "rewards")}
    for t in range(tasks):
        states = [f"task {t} state {s} " + "x" * OBS_CHARS for s in range(STATES_PER_TASK)]
        for r in range(rollouts):
            length = int(rng.integers(1, max_steps + 1))
            won = rng.random() < 1 / 3
            path = rng.integers(0, STATES_PER_TASK, size=length + 1)
            for s in range(length):
                rows["uid"].append(f"task-{t}")
                rows["traj_uid"].append(f"task-{t}-traj-{r}")
                rows["step"].append(s)
                rows["anchor_obs"].append(states[path[s]])
                rows["next_obs"].append("success" if won and s == length - 1 else states[path[s + 1]])
                rows["is_action_valid"].append(bool(rng.random() > 0.05))
                rows["episode_rewards"].append(10.0 if won else 0.0)
                rows["rewards"].append(10.0 if won and s == length - 1 else 0.0)
    n = len(rows["uid"])
    lengths = torch.from_numpy(rng.integers(16, RESPONSE_LENGTH + 1, size=n))
    mask = (torch.arange(RESPONSE_LENGTH)[None, :] < lengths[:, None]).to(torch.int64)
    non_tensors = {k: np.array(v, dtype=object) for k, v in rows.items()}
    non_tensors["step"] = np.array(rows["step"], dtype=np.int64)
    non_tensors["is_action_valid"] = np.array(rows["is_action_valid"], dtype=bool)
    return DataProto.from_dict(tensors={"response_mask": mask,
                                        "token_level_rewards": torch.zeros(n, RESPONSE_LENGTH)},
                               non_tensors=non_tensors)


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, repeats {args.repeats} (median)")
    print(f"{'shape':<10}{'rows':>7}{'read batch (ms)':>17}{'compute_advantages (ms)':>25}"
          f"{'whole estimator call (ms)':>27}")
    for name, tasks, rollouts, max_steps in SHAPES:
        data = make_batch(tasks, rollouts, max_steps, rng)
        fn = get_adv_estimator_fn(f"graphgpo_{name}")
        config = {"graphgpo": {"backend": "torch"}}
        mask, rewards = data.batch["response_mask"], data.batch["token_level_rewards"]

        def read():
            return gv.step_batch_from_verl("graphgpo", mask, data.non_tensor_batch, data.batch, rewards)

        steps = read()

        def core():
            graphgpo.compute_advantages(steps, method="graphgpo", backend="torch", preset=name)

        def call():
            fn(token_level_rewards=rewards, response_mask=mask, config=config,
               non_tensor_batch=data.non_tensor_batch, batch=data.batch)

        times = [median_seconds(f, args.repeats) * 1e3 for f in (read, core, call)]
        print(f"{name:<10}{len(data):>7}{times[0]:>17.1f}{times[1]:>25.1f}{times[2]:>27.1f}")

if __name__ == "__main__":
    main()
