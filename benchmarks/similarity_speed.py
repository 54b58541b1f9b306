"""Speed of the similarity merge (graphgpo.similarity): the recipe's literal greedy pass against the exact
fast path, on synthetic ALFWorld-like text states. Prints one table; exits 1 if any clustering differs.

    python benchmarks/similarity_speed.py                       # 4 groups x 8 rollouts x <= 50 steps
    python benchmarks/similarity_speed.py --groups 16           # the paper's batch (16 x 8 x <= 50)

States: each group plays in a world of ``--rooms`` room descriptions (``--words`` words each, ~6 characters
a word); an observation is a room description with a few words changed and an inventory line, so some
observations are near duplicates (ratio 0.9-0.99) and many are not. Times are one run each, in seconds,
measured back to back in one process (report the machine's load next to them).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

VOCAB = [f"{a}{b}" for a in ("ta", "ble", "sh", "elf", "dra", "wer", "cab", "ine", "mug", "ap")
         for b in ("ple", "lo", "rk", "ven", "sin", "k", "ss", "ton", "dle", "r")]


def text_records(groups: int, rollouts: int, horizon: int, rooms: int, words: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records, traj = [], 0
    for g in range(groups):
        world = [[rng.choice(VOCAB) for _ in range(words)] for _ in range(rooms)]

        def observe(room: int) -> str:
            text = list(world[room])
            for _ in range(rng.choice((0, 0, 1, 2, 4))):
                text[rng.randrange(words)] = rng.choice(VOCAB)
            return "You are in room %d. " % room + " ".join(text) + ". You carry: " + rng.choice(VOCAB)

        for _ in range(rollouts):
            room = rng.randrange(rooms)
            state = observe(room)
            length = rng.randint(horizon // 2, horizon)
            success = rng.random() < 0.3
            for step in range(length):
                room = (room + rng.choice((-1, 0, 1, 2))) % rooms
                nxt = observe(room)
                records.append(dict(group=g, traj=traj, step=step, state=state, next_state=nxt, success=success,
                                    valid=True, episode_reward=10.0 * success, reward=0.0))
                state = nxt
            traj += 1
    return records


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main(argv=None) -> int:
    from graphgpo import StepBatch, similarity

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--rollouts", type=int, default=8)
    p.add_argument("--horizon", type=int, default=50)
    p.add_argument("--rooms", type=int, default=12)
    p.add_argument("--words", type=int, default=50)
    p.add_argument("--threshold", type=float, nargs="+", default=[0.95, 0.9])
    a = p.parse_args(argv)
    records = text_records(a.groups, a.rollouts, a.horizon, a.rooms, a.words)
    batch = StepBatch.from_records(records)
    distinct = len({(r["group"], s) for r in records for s in (r["state"], r["next_state"])})
    mean_len = sum(len(r["state"]) for r in records) / len(records)
    print(f"batch: {len(records)} rows, {a.groups} groups, {distinct} distinct (group, text) states, "
          f"mean state length {mean_len:.0f} characters")
    print("| threshold | pass | clusters | recipe loop (s) | fast, difflib bounds only (s) | fast, + rapidfuzz LCS bound "
          "(s) | speed-up | same clusters |")
    print("|---|---|---|---|---|---|---|---|")
    ok = True
    cdist = similarity._cdist
    for threshold in a.threshold:
        for name, fn in (("step groups", similarity.step_keys), ("graph nodes", similarity.node_keys)):
            literal, t_literal = timed(lambda: fn(batch, threshold, fast=False))
            similarity._cdist = None
            bounds_only, t_bounds = timed(lambda: fn(batch, threshold, fast=True))
            similarity._cdist = cdist
            fast, t_fast = timed(lambda: fn(batch, threshold, fast=True)) if cdist is not None else (None, float("nan"))
            same = literal == bounds_only and (fast is None or literal == fast)
            ok &= same
            keys = literal[0] + literal[1] if name == "graph nodes" else literal
            clusters = len({(g, k) for g, k in zip(batch.group.tolist() * (2 if name == "graph nodes" else 1), keys)})
            best = min(t for t in (t_bounds, t_fast) if t == t)
            print(f"| {threshold} | {name} | {clusters} | {t_literal:.2f} | {t_bounds:.2f} | {t_fast:.2f} "
                  f"| {t_literal / best:.1f}x | {'yes' if same else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
