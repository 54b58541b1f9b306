"""The CPU credit step, side by side: reference vs torch backend, quiet vs contended, from records / from
columns / compute only, on the MDP batches of the credit-step comparison (benchmarks/synthetic.mdp_records).

    python benchmarks/core_scaling.py --json core_scaling.json            # the table of RESULTS.md (~5 min)
    python benchmarks/core_scaling.py --tasks 4 16 --repeats 3            # a quick look
    python benchmarks/core_scaling.py --linearity                         # from_records us/step, 1e3..1e6
    python benchmarks/core_scaling.py --hashing                           # stable 64-bit hash candidates
    python benchmarks/core_scaling.py --against /path/to/old/checkout    # before / after, alternating processes

Batches: T tasks x 8 rollouts, one random deterministic MDP per task (200 short string states, 4 actions,
10% invalid actions that stay put, a random goal; an episode ends at the goal or after 50 steps), uniform
random actions: T = 4, 16, 64, 256, 1024 give ~1.5k, 5.7k, 23k, 93k, 367k steps. GraphGPO, ALFWorld preset.

Modes: "records" = ``StepBatch.from_records`` + ``compute_advantages``; "columns" = ``StepBatch.from_columns``
(numpy ids / flags / rewards, lists of state strings) + ``compute_advantages``; "compute" = on a prebuilt
batch. "contended" runs the same with a busy-loop process pinned to the last CPU (what env workers,
tokenisers and data loaders do to a trainer). Medians of ``--repeats`` runs; the load average is printed next
to the numbers because this machine may be shared. The recipe's figures are the authors' GraphGPO recipe
measured on a quiet 2-core machine (issue text; its code is not part of this repository).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.synthetic import mdp_records  # noqa: E402
from graphgpo import StepBatch, compute_advantages  # noqa: E402

RECIPE_MS = {4: 77.0, 16: 520.0, 64: 7700.0, 256: 96600.0}
"""The recipe's credit step (ms) at T tasks, ALFWorld defaults, quiet 2-core machine (issue figures)."""


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


@contextlib.contextmanager
def busy_neighbour(enabled: bool):
    """A busy-loop process pinned to the last CPU while the block runs (nothing when not enabled)."""
    if not enabled:
        yield
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        os.sched_setaffinity(proc.pid, {max(os.sched_getaffinity(0))})
        time.sleep(0.3)  # let it start spinning
        yield
    finally:
        proc.kill()
        proc.wait()


def to_columns(records: list[dict]) -> dict:
    """The columns a user who holds arrays would pass: numpy ids, flags and rewards, lists of state strings."""
    ids = {}
    group = np.array([ids.setdefault(r["group"], len(ids)) for r in records])
    trajs = {}
    traj = np.array([trajs.setdefault(r["traj"], len(trajs)) for r in records])
    return {"group": group, "traj": traj, "step": np.array([r["step"] for r in records]),
            "state": [r["state"] for r in records], "next_state": [r["next_state"] for r in records],
            "success": np.array([r["success"] for r in records]), "valid": np.array([r["valid"] for r in records]),
            "episode_reward": np.array([r["episode_reward"] for r in records]),
            "reward": np.array([r["reward"] for r in records])}


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure(tasks: int, repeats: int, contended: bool, reference_max_tasks: int) -> list[dict]:
    records = mdp_records(tasks, seed=tasks)
    columns = to_columns(records)
    batch = StepBatch.from_records(records)
    config = dict(method="graphgpo", preset="alfworld")
    rows = []
    backends = ["torch"] + (["reference"] if tasks <= reference_max_tasks else [])
    with busy_neighbour(contended):
        for backend in backends:
            reps = repeats if backend == "torch" else max(1, repeats // 3)
            compute_advantages(batch, backend=backend, **config)  # warm-up
            timings = {
                "records": median_ms(lambda: compute_advantages(StepBatch.from_records(records), backend=backend,
                                                                **config), reps),
                "columns": median_ms(lambda: compute_advantages(StepBatch.from_columns(columns), backend=backend,
                                                                **config), reps),
                "compute": median_ms(lambda: compute_advantages(batch, backend=backend, **config), reps),
            }
            if backend == "torch":
                timings["from_records only"] = median_ms(lambda: StepBatch.from_records(records), reps)
                timings["from_columns only"] = median_ms(lambda: StepBatch.from_columns(columns), reps)
            for mode, ms in timings.items():
                rows.append({"tasks": tasks, "steps": batch.num_rows, "backend": backend, "mode": mode,
                             "contended": contended, "ms": ms, "load": load()})
    return rows


def linearity(sizes: list[float], repeats: int) -> list[dict]:
    rows = []
    for steps in sizes:
        tasks = max(1, round(steps / 360))
        records = mdp_records(tasks, seed=1)
        ms = median_ms(lambda: StepBatch.from_records(records), repeats)
        rows.append({"steps": len(records), "ms": ms, "us_per_step": ms * 1e3 / len(records), "load": load()})
        print(f"  from_records {len(records):>9} steps: {ms:9.1f} ms, {ms * 1e3 / len(records):.3f} us/step "
              f"(load {load()})", flush=True)
        del records
    return rows


def hashing_candidates(repeats: int) -> list[dict]:
    """ns per distinct string (process CPU time, median) of stable 64-bit hashes of str: one hashlib call per
    object (what graphgpo used before) against the vectorised numpy hash graphgpo uses now."""
    import hashlib

    from graphgpo.hashing import object_keys

    def per_object(name, **kw):
        def run(strings):
            return [int.from_bytes(hashlib.new(name, s.encode(), **kw).digest()[:8], "little", signed=True)
                    for s in strings]
        return run

    candidates = {
        "blake2b (digest_size=8), one call per object": lambda strings: [int.from_bytes(hashlib.blake2b(
            s.encode(), digest_size=8, person=b"graphgpo-key").digest(), "little", signed=True) for s in strings],
        "md5, one call per object": per_object("md5"),
        "sha1, one call per object": per_object("sha1"),
        "numpy word hash, vectorised (graphgpo.hashing)": object_keys,
    }
    texts = {"short (e.g. 't12s34')": [f"t{k}s{k % 200}" for k in range(20_000)],
             "~200 characters": [f"-= Room {k} =- You are in room {k}. You see a cabinet {k % 7}, a countertop "
                                 f"{k % 5}, a drawer {k % 3} and a fridge. On the countertop you see a mug "
                                 f"{k % 4}. Your task is to: put a clean mug in the coffeemachine." for k in range(20_000)]}
    rows = []
    for label, strings in texts.items():
        for name, fn in candidates.items():
            fn(strings[:100])
            times = []
            for _ in range(repeats):
                start = time.process_time()
                fn(strings)
                times.append(time.process_time() - start)
            ns = statistics.median(times) / len(strings) * 1e9
            rows.append({"strings": label, "hash": name, "ns_per_string": ns, "load": load()})
            print(f"  {label:24s} {name:48s} {ns:8.0f} ns/string (CPU time; load {load()})", flush=True)
    return rows


_TIME_ONE = """
import json, pickle, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import graphgpo
assert graphgpo.__file__.startswith(sys.argv[1]), graphgpo.__file__
from graphgpo import StepBatch, compute_advantages
records = pickle.load(open(sys.argv[2], "rb"))
def median_ms(fn):
    times = []
    for _ in range(5):
        start = time.perf_counter(); fn(); times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
batch = StepBatch.from_records(records)
compute_advantages(batch, backend="torch", preset="alfworld")
print(json.dumps({"from_records": median_ms(lambda: StepBatch.from_records(records)),
                  "compute": median_ms(lambda: compute_advantages(batch, backend="torch", preset="alfworld"))}))
"""


def against(other: str, tasks: list[int], repeats: int) -> list[dict]:
    """from_records and compute (torch) of this checkout and of ``other``, each in a fresh process on the same
    pickled records, alternating, quiet and with a busy neighbour."""
    import pickle
    import tempfile

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t in tasks:
            path = os.path.join(tmp, f"records{t}.pkl")
            with open(path, "wb") as f:
                pickle.dump(mdp_records(t, seed=t), f)
            for contended in (False, True):
                with busy_neighbour(contended):
                    for rep in range(repeats):
                        for name, root in (("other", os.path.abspath(other)), ("this", here)):
                            out = subprocess.run([sys.executable, "-c", _TIME_ONE, root, path], check=True, text=True,
                                                 capture_output=True, env=dict(os.environ, PYTHONPATH=root)).stdout
                            rows.append({"tasks": t, "contended": contended, "checkout": name, "rep": rep,
                                         "load": load(), **json.loads(out)})
                            print(f"  T={t} {'contended' if contended else 'quiet'} {name:5s}: {rows[-1]}", flush=True)
    return rows


def print_table(rows: list[dict]) -> None:
    by = {(r["tasks"], r["backend"], r["mode"], r["contended"]): r for r in rows}
    tasks = sorted({r["tasks"] for r in rows})
    print("\n| steps | mode | reference ms quiet / contended | torch ms quiet / contended | torch contended / quiet "
          "| recipe ms | recipe / torch |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for t in tasks:
        steps = by[(t, "torch", "compute", False)]["steps"]
        for mode in ("records", "columns", "compute", "from_records only", "from_columns only"):
            torch_q, torch_c = (by.get((t, "torch", mode, c), {}).get("ms") for c in (False, True))
            ref_q, ref_c = (by.get((t, "reference", mode, c), {}).get("ms") for c in (False, True))

            def show(x):
                return "-" if x is None else f"{x:.1f}"
            ratio = f"{torch_c / torch_q:.2f}" if torch_q and torch_c else "-"
            recipe = RECIPE_MS.get(t) if mode == "records" else None
            speedup = f"{recipe / torch_q:.0f}x" if recipe and torch_q else "-"
            print(f"| {steps} | {mode} | {show(ref_q)} / {show(ref_c)} | {show(torch_q)} / {show(torch_c)} | {ratio} "
                  f"| {show(recipe)} | {speedup} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, nargs="+", default=[4, 16, 64, 256, 1024])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per cell (median; reference: a third)")
    parser.add_argument("--reference-max-tasks", type=int, default=1024, help="largest T the reference runs at")
    parser.add_argument("--linearity", action="store_true", help="only from_records' time per step at 1e3..1e6")
    parser.add_argument("--hashing", action="store_true", help="only the stable-hash candidates")
    parser.add_argument("--against", metavar="CHECKOUT", help="before / after against another checkout of graphgpo")
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} "
          f"(the credit step runs on graphgpo.backends.cpu_threads.CPU_THREADS), load {load()}", flush=True)
    if args.against:
        rows = against(args.against, args.tasks if args.tasks != [4, 16, 64, 256, 1024] else [16, 256], 2)
    elif args.hashing:
        rows = hashing_candidates(args.repeats)
    elif args.linearity:
        rows = linearity([1e3, 1e4, 1e5, 1e6], args.repeats)
    else:
        rows = []
        for tasks in args.tasks:
            for contended in (False, True):
                rows += measure(tasks, args.repeats, contended, args.reference_max_tasks)
                last = [r for r in rows if r["tasks"] == tasks and r["contended"] == contended]
                print(f"  T={tasks} ({last[0]['steps']} steps) {'contended' if contended else 'quiet'}: "
                      + ", ".join(f"{r['backend']} {r['mode']} {r['ms']:.1f} ms" for r in last)
                      + f" (load {load()})", flush=True)
        print_table(rows)
    print(f"load average at the end: {load()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"load_end": load(), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
