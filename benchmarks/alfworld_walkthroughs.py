"""Every sampled ALFWorld game: its split loads, and its walkthrough wins exactly at the last step.

    nice -n 10 python benchmarks/alfworld_walkthroughs.py                     # valid_seen + valid_unseen + 400 train
    nice -n 10 python benchmarks/alfworld_walkthroughs.py --train 0           # every game of all three splits
    python benchmarks/alfworld_walkthroughs.py --train 24 --valid 6           # a quick data-wide check (.ci/run)

Reads the data from $ALFWORLD_DATA (else ~/.cache/alfworld). For each game: reset, play the game file's
walkthrough through ``graphgpo.envs.make("alfworld", ...)``, and check that each command is admissible,
that the game is not won before the last command and is won (reward 1, terminated) at it. Prints per split
and task type: games, wins, failures (listed by path), median reset and step times; writes everything to
``--out`` (JSON). ``--workers`` processes (at most 2 on the shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graphgpo.envs.alfworld import (ALFWORLD_SPLITS, ALFWORLD_TASK_TYPES, DATA_VERSION,  # noqa: E402
                                    alfworld_task_type, find_games)

_ENVS: dict = {}


def _env_for(split: str, data_dir: str | None):
    from graphgpo import envs

    if split not in _ENVS:
        _ENVS[split] = envs.make("alfworld", split=split, data_dir=data_dir)
    return _ENVS[split]


def check_game(job: tuple[str, int, str | None]) -> dict:
    """Play one game's walkthrough; report whether it wins exactly at its last command."""
    split, index, data_dir = job
    env = _env_for(split, data_dir)
    path = env.game_for_seed(index)
    out = {"split": split, "index": index, "gamefile": path[path.index(DATA_VERSION):],
           "task_type": alfworld_task_type(path)}
    started = time.perf_counter()
    _, info = env.reset(seed=index)
    out["reset_s"] = time.perf_counter() - started
    walkthrough, problem = info["walkthrough"], ""
    step_times = []
    for i, command in enumerate(walkthrough):
        if command not in info["admissible_actions"]:
            problem = problem or f"step {i}: {command!r} not admissible"
        started = time.perf_counter()
        _, reward, terminated, _, info = env.step(command)
        step_times.append(time.perf_counter() - started)
        last = i == len(walkthrough) - 1
        if info["won"] != last or terminated != last or reward != (1.0 if last else 0.0):
            problem = problem or f"step {i} of {len(walkthrough)}: won={info['won']} reward={reward}"
            if terminated:
                break
    out.update(ok=not problem and bool(walkthrough), problem=problem or ("" if walkthrough else "no walkthrough"),
               steps=len(walkthrough), step_s=statistics.median(step_times) if step_times else None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding json_2.1.1/ (default $ALFWORLD_DATA)")
    parser.add_argument("--train", type=int, default=400,
                        help="train games to check, stratified by task type (0 = all 3553)")
    parser.add_argument("--valid", type=int, default=0,
                        help="games of each valid split to check, stratified by task type (0 = all)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/alfworld/walkthroughs.json")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    jobs, loaded = [], {}
    for split in ALFWORLD_SPLITS:
        files = find_games(split, args.data_dir)
        loaded[split] = {t: sum(alfworld_task_type(f) == t for f in files) for t in ALFWORLD_TASK_TYPES}
        indices = list(range(len(files)))
        wanted = args.train if split == "train" else args.valid
        if wanted:
            by_type = defaultdict(list)
            for i in indices:
                by_type[alfworld_task_type(files[i])].append(i)
            rng = random.Random(args.seed)
            share = min(wanted / len(files), 1.0)
            indices = sorted(i for group in by_type.values() for i in rng.sample(group, round(share * len(group))))
        jobs += [(split, i, args.data_dir) for i in indices]
    print("games per split and task type:", json.dumps(loaded))
    started = time.perf_counter()
    results = []
    with get_context("fork").Pool(args.workers) as pool:
        for result in tqdm(pool.imap_unordered(check_game, jobs, chunksize=4), total=len(jobs), desc="walkthroughs"):
            results.append(result)
    wall = time.perf_counter() - started
    results.sort(key=lambda r: (r["split"], r["index"]))

    print(f"\n{len(results)} games in {wall / 60:.1f} min with {args.workers} workers; load {os.getloadavg()}")
    print("| split | task type | games | walkthrough wins at its last step | median reset s | median step ms |")
    print("|---|---|---:|---:|---:|---:|")
    for split in ALFWORLD_SPLITS:
        for task_type in (*ALFWORLD_TASK_TYPES, "all"):
            rows = [r for r in results if r["split"] == split and task_type in ("all", r["task_type"])]
            if not rows:
                continue
            steps = [r["step_s"] for r in rows if r["step_s"] is not None]
            print(f"| {split} | {task_type} | {len(rows)} | {sum(r['ok'] for r in rows)} | "
                  f"{statistics.median(r['reset_s'] for r in rows):.2f} | {1000 * statistics.median(steps):.0f} |")
    failures = [r for r in results if not r["ok"]]
    print(f"\nfailures: {len(failures)}")
    for r in failures:
        print(f"  {r['gamefile']}: {r['problem']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "games_per_split": loaded,
                                          "wall_s": wall, "workers": args.workers, "results": results}, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
