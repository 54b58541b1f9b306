"""Graph statistics and credit-step time on real ALFWorld rollout batches (the recipe's batch shape).

    nice -n 10 python benchmarks/alfworld_graphs.py            # 16 train games x G=8 x <= 50 steps, two policies

One batch per policy (uniform random over the admissible commands; the noisy walkthrough of
benchmarks/alfworld_keys.py), played through ``EnvManager`` (process executor, --workers processes).
Each batch is built twice, with the facts key and with the recipe's text key as the state, and reports
what GraphGPO's graph looks like: nodes, edges, duplicate-edge rate, step-group sizes, singleton share,
unreachable share, groups with a success; then the credit step's time (``compute_advantages``) with the
torch (CPU) and reference backends on the same batch, interleaved repeats, CPU time (process_time) so
that other processes on the shared machine do not count. Writes --out (JSON) and a step-group size plot.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alfworld_keys import NoisyWalkthrough, Uniform  # noqa: E402

from graphgpo.envs.alfworld import ALFWORLD_TASK_TYPES, alfworld_task_type, find_games  # noqa: E402

METHODS = ("graphgpo", "gigpo", "grpo", "rloo")


def play_batch(manager, task_seeds: list[int], policy: str, epsilon: float, seed: int) -> dict[str, list]:
    """Lockstep rollouts; one record per step for each key ("facts", "recipe")."""
    first = manager.reset(task_seeds)
    current = list(first)
    agents = []
    for i, step in enumerate(first):
        rng = random.Random(f"{seed}/{policy}/{i}")
        agents.append(Uniform(rng) if policy == "random" else
                      NoisyWalkthrough(step.info["walkthrough"], epsilon, rng))
    rows: dict[str, list] = {"facts": [], "recipe": []}
    per_traj: list[list[dict]] = [[] for _ in first]
    while manager.active:
        actions = {i: agents[i].act(current[i].info["admissible_actions"]) for i in manager.active}
        for i, command in actions.items():
            agents[i].observe(command)
        for i, after in manager.step(actions).items():
            before = current[i]
            per_traj[i].append({"before": before.info["state_keys"], "after": after.info["state_keys"],
                                "valid": bool(after.info["is_action_valid"]), "reward": float(after.reward)})
            current[i] = after
    for traj, steps in enumerate(per_traj):
        won = bool(current[traj].info["won"])
        for step, s in enumerate(steps):
            for key in rows:
                rows[key].append({"group": manager.group_of(traj), "traj": traj, "step": step,
                                  "state": s["before"][key], "next_state": s["after"][key], "valid": s["valid"],
                                  "reward": s["reward"], "success": won, "episode_reward": 10.0 if won else 0.0})
    return rows


def graph_stats(batch) -> dict:
    from graphgpo import compute_advantages

    out = compute_advantages(batch, method="graphgpo", backend="torch", preset="alfworld")
    sizes = Counter(out.step_group.tolist())
    rows = batch.num_rows
    groups_with_success = len({g for g, s in zip(batch.group.tolist(), batch.success.tolist()) if s})
    return {**{k: (float(v) if isinstance(v, float) else int(v)) for k, v in out.stats.items()},
            "step_groups": len(sizes), "mean_step_group_size": rows / len(sizes),
            "max_step_group_size": max(sizes.values()),
            "rows_in_step_groups_gt1": sum(n for n in sizes.values() if n > 1) / rows,
            "groups_with_success": groups_with_success / batch.num_groups,
            "size_histogram": dict(sorted(Counter(sizes.values()).items()))}


def time_credit(batch, repeats: int) -> dict:
    from graphgpo import compute_advantages

    out = {}
    for method in METHODS:
        times = defaultdict(list)
        for _ in range(repeats):  # interleaved: load changes hit both backends alike
            for backend in ("torch", "reference"):
                start = time.process_time()
                compute_advantages(batch, method=method, backend=backend,
                                   **({"preset": "alfworld"} if method == "graphgpo" else {}))
                times[backend].append(time.process_time() - start)
        out[method] = {b: {"min_ms": 1000 * min(t), "median_ms": 1000 * statistics.median(t)} for b, t in times.items()}
    return out


def plot(histograms: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histograms), figsize=(5 * len(histograms), 3.2), sharey=True)
    for ax, (policy, by_key) in zip(axes, histograms.items()):
        for key, hist in by_key.items():
            sizes = sorted(hist)
            rows = [s * hist[s] for s in sizes]
            total = sum(rows)
            ax.step(sizes, [sum(rows[: i + 1]) / total for i in range(len(sizes))], where="post", label=key)
        ax.set_xscale("log")
        ax.set_title(f"{policy}: rows in step groups of size <= x")
        ax.set_xlabel("step-group size")
        ax.legend()
    axes[0].set_ylabel("share of rows")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--games", type=int, default=16)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--epsilon", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed credit steps per backend and method")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/alfworld/graphs.json")
    args = parser.parse_args(argv)
    import torch
    from tqdm import tqdm

    from graphgpo.batch import StepBatch
    from graphgpo.envs.vector import EnvManager

    torch.set_num_threads(1)
    files = find_games("train", args.data_dir)
    by_type = defaultdict(list)
    for i, f in enumerate(files):
        by_type[alfworld_task_type(f)].append(i)
    rng = random.Random(args.seed)
    order = [rng.sample(by_type[t], len(by_type[t])) for t in ALFWORLD_TASK_TYPES]
    task_seeds = sorted([g for i in range(args.games) for g in [order[i % 6][i // 6]]])
    results, histograms = {"command": " ".join(sys.argv), "task_seeds": task_seeds}, {}
    options = {"split": "train", "data_dir": args.data_dir}
    for policy in tqdm(("random", "noisy_walkthrough"), desc="policies"):
        with EnvManager("alfworld", options, group_size=args.group_size, max_steps=args.steps,
                        executor="process", num_workers=args.workers) as manager:
            started = time.perf_counter()
            rows = play_batch(manager, task_seeds, policy, args.epsilon, args.seed)
            rollout_s = time.perf_counter() - started
        wins = {r["traj"]: r["success"] for r in rows["facts"]}
        results[policy] = {"rollout_s": rollout_s, "env_steps": len(rows["facts"]),
                           "success": sum(wins.values()) / len(wins)}
        histograms[policy] = {}
        for key, records in rows.items():
            batch = StepBatch.from_records(records)
            stats = graph_stats(batch)
            histograms[policy][key] = stats.pop("size_histogram")
            results[policy][key] = {"graph": stats, "credit_time": time_credit(batch, args.repeats)}
    results["load"] = os.getloadavg()

    print(f"\n{args.games} games x G={args.group_size} x <= {args.steps} steps; load {results['load']}")
    print("| policy | key | rows | success | nodes | edges (unique) | duplicate-edge rate | step groups | "
          "mean / max group size | rows in groups > 1 | singleton share | groups with a success |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for policy in ("random", "noisy_walkthrough"):
        for key in ("facts", "recipe"):
            g = results[policy][key]["graph"]
            print(f"| {policy} | {key} | {g['num_steps']} | {results[policy]['success']:.2f} | {g['num_nodes']} | {g['num_edges']} "
                  f"({g['num_unique_edges']}) | {g['duplicate_edge_rate']:.3f} | {g['step_groups']} | "
                  f"{g['mean_step_group_size']:.2f} / {g['max_step_group_size']} | {g['rows_in_step_groups_gt1']:.3f} | "
                  f"{g['singleton_step_group_share']:.3f} | {g['groups_with_success']:.3f} |")
    print("\ncredit step, CPU ms (min / median of interleaved repeats), facts key:")
    print("| policy | method | torch | reference | reference / torch |")
    print("|---|---|---:|---:|---:|")
    for policy in ("random", "noisy_walkthrough"):
        for method in METHODS:
            t = results[policy]["facts"]["credit_time"][method]
            print(f"| {policy} | {method} | {t['torch']['min_ms']:.1f} / {t['torch']['median_ms']:.1f} | "
                  f"{t['reference']['min_ms']:.1f} / {t['reference']['median_ms']:.1f} | "
                  f"{t['reference']['median_ms'] / t['torch']['median_ms']:.1f} |")
    for policy in ("random", "noisy_walkthrough"):
        print(f"{policy}: rollout {results[policy]['rollout_s']:.0f} s for {results[policy]['env_steps']} env steps")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**results, "histograms": histograms}, indent=1))
    plot(histograms, out.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
