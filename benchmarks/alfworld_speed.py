"""ALFWorld env throughput: plain TextWorld vs the exact memoisation and transition cache, serial vs processes.

    nice -n 10 python benchmarks/alfworld_speed.py          # 2 train games x G=8 x 15 steps, 2 policies, 2 repeats

Each configuration runs in a fresh Python process (cold caches, as a new trainer), interleaved with the
others, repeated. In each run an ``EnvManager`` first plays one warm-up step on two other games (worker
start-up, imports, grammar rules shared by all games), then the timed part: reset of the measured games
(every copy) and lockstep steps with the random or noisy-walkthrough policy of benchmarks/alfworld_keys.py.
Reported: env steps per second (steps / wall time of reset + steps), the reset phase alone, and the
transition-cache hit rate. Wall times on a shared machine: compare ratios within one run (load printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CONFIGS = {
    "textworld, serial": ({"memoize": False, "transition_cache": 0}, "serial"),
    "memo, serial": ({"transition_cache": 0}, "serial"),
    "memo + cache, serial": ({}, "serial"),
    "memo, 2 processes": ({"transition_cache": 0}, "process"),
    "memo + cache, 2 processes": ({}, "process"),
}
POLICIES = ("random", "noisy_walkthrough")


def one_run(config: str, policy: str, games: list[int], warmup: list[int], group_size: int, steps: int,
            epsilon: float, data_dir: str | None) -> dict:
    from alfworld_keys import NoisyWalkthrough, Uniform

    from graphgpo.envs.vector import EnvManager

    options, executor = CONFIGS[config]
    options = {"split": "train", "data_dir": data_dir, **options}
    with EnvManager("alfworld", options, group_size=group_size, max_steps=steps, executor=executor,
                    num_workers=2 if executor == "process" else 0) as manager:
        first = manager.reset(warmup)
        manager.step({i: s.info["admissible_actions"][0] for i, s in enumerate(first)})
        started = time.perf_counter()
        current = manager.reset(games)
        reset_s = time.perf_counter() - started
        agents = [Uniform(random.Random(i)) if policy == "random" else
                  NoisyWalkthrough(s.info["walkthrough"], epsilon, random.Random(i)) for i, s in enumerate(current)]
        env_steps = 0
        while manager.active:
            actions = {i: agents[i].act(current[i].info["admissible_actions"]) for i in manager.active}
            for i, command in actions.items():
                agents[i].observe(command)
            for i, after in manager.step(actions).items():
                current[i] = after
            env_steps += len(actions)
        wall = time.perf_counter() - started
    hits = None
    if executor == "serial" and options.get("transition_cache", 1):
        from graphgpo.envs.alfworld import shared_cache

        cache = shared_cache(1)
        hits = cache.hits / max(cache.hits + cache.misses, 1)
    return {"config": config, "policy": policy, "env_steps": env_steps, "wall_s": wall, "reset_s": reset_s,
            "steps_per_s": env_steps / wall, "cache_hit_rate": hits, "load": os.getloadavg()[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--games", type=int, nargs="+", default=[1000, 2500], help="train game indices")
    parser.add_argument("--warmup", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--epsilon", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS))
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "POLICY"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default="benchmarks/results/alfworld/speed.json")
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(*args.one, args.games, args.warmup, args.group_size, args.steps, args.epsilon,
                                 args.data_dir)))
        return 0
    from tqdm import tqdm

    jobs = [(c, p) for _ in range(args.repeats) for p in POLICIES for c in args.configs]
    common = ["--games", *map(str, args.games), "--warmup", *map(str, args.warmup), "--group-size",
              str(args.group_size), "--steps", str(args.steps), "--epsilon", str(args.epsilon)]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    runs = []
    for config, policy in tqdm(jobs, desc="runs"):
        done = subprocess.run([sys.executable, __file__, *common, "--one", config, policy], check=True,
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"\n{len(args.games)} games x G={args.group_size} x <= {args.steps} steps, {args.repeats} repeats "
          f"(median); load {os.getloadavg()}")
    print("| policy | configuration | env steps | steps/s | reset phase s | wall s | speed-up vs the first row |"
          " cache hits |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for policy in POLICIES:
        base = None
        for config in args.configs:
            rs = [r for r in runs if r["config"] == config and r["policy"] == policy]
            rate = statistics.median(r["steps_per_s"] for r in rs)
            base = base or rate
            hits = rs[0]["cache_hit_rate"]
            print(f"| {policy} | {config} | {rs[0]['env_steps']} | {rate:.1f} | "
                  f"{statistics.median(r['reset_s'] for r in rs):.1f} | {statistics.median(r['wall_s'] for r in rs):.1f} | "
                  f"{rate / base:.2f} | {'-' if hits is None else f'{hits:.2f}'} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
