"""The CPU credit step, side by side: reference vs torch backend, quiet vs contended, from records / from
columns / compute only, on the MDP batches of the credit-step comparison (benchmarks/synthetic.mdp_records).

    python benchmarks/core_scaling.py --json core_scaling.json            # the table of RESULTS.md (~5 min)
    python benchmarks/core_scaling.py --tasks 4 16 --repeats 3            # a quick look
    python benchmarks/core_scaling.py --linearity                         # from_records us/step, 1e3..1e6
    python benchmarks/core_scaling.py --hashing                           # stable 64-bit hash candidates
    python benchmarks/core_scaling.py --against /path/to/old/checkout    # before / after, alternating processes
    python benchmarks/core_scaling.py --against /path/to/old --same-process --repeats 15  # one process, CPU time
    python benchmarks/core_scaling.py --stages                            # CPU time per stage, one thread

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


def median_ms(fn, repeats: int, clock=time.perf_counter) -> float:
    """Median over ``repeats`` calls of ``fn``, in ms of ``clock`` (wall by default; time.process_time: CPU)."""
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append((clock() - start) * 1e3)
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
import torch
torch.set_num_threads(int(sys.argv[3]))
import graphgpo
assert graphgpo.__file__.startswith(sys.argv[1]), graphgpo.__file__
from graphgpo import StepBatch, compute_advantages
records = pickle.load(open(sys.argv[2], "rb"))
def medians(fn):
    wall, cpu = [], []
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - start) * 1e3)
        cpu.append((time.process_time() - start_cpu) * 1e3)
    return statistics.median(wall), statistics.median(cpu)
batch = StepBatch.from_records(records)
compute_advantages(batch, backend="torch", preset="alfworld")
out = {}
for name, fn in (("from_records", lambda: StepBatch.from_records(records)),
                 ("compute", lambda: compute_advantages(batch, backend="torch", preset="alfworld"))):
    out[name], out[name + " cpu"] = medians(fn)
print(json.dumps(out))
"""


def against(other: str, tasks: list[int], repeats: int, threads: int) -> list[dict]:
    """from_records and compute (torch) of this checkout and of ``other``, each in a fresh process on the same
    pickled records, alternating, quiet and with a busy neighbour; wall and process CPU time (``threads``:
    torch threads of the timing processes; the credit step itself may set its own)."""
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
                            out = subprocess.run([sys.executable, "-c", _TIME_ONE, root, path, str(threads)],
                                                 check=True, text=True, capture_output=True,
                                                 env=dict(os.environ, PYTHONPATH=root)).stdout
                            rows.append({"tasks": t, "contended": contended, "checkout": name, "rep": rep,
                                         "load": load(), **json.loads(out)})
                            print(f"  T={t} {'contended' if contended else 'quiet'} {name:5s}: {rows[-1]}", flush=True)
    return rows


def importable_copy(checkout: str, into: str, name: str = "graphgpo_base"):
    """The ``graphgpo`` package of ``checkout`` copied under ``into`` as ``name`` (its absolute imports
    renamed), imported, so two versions can run in one process."""
    import importlib
    import re
    import shutil

    target = os.path.join(into, name)
    shutil.copytree(os.path.join(checkout, "graphgpo"), target)
    for folder, _, files in os.walk(target):
        for file in (f for f in files if f.endswith(".py")):
            path = os.path.join(folder, file)
            with open(path) as f:
                text = f.read()
            with open(path, "w") as f:
                f.write(re.sub(r"\bgraphgpo(?=[. ]|$)", name, text, flags=re.M))
    sys.path.insert(0, into)
    return importlib.import_module(name)


def against_same_process(other: str, tasks: list[int], repeats: int) -> list[dict]:
    """from_records / from_columns / compute of ``other`` and of this checkout in one process, calls
    interleaved (ABBA), one torch thread, process CPU time: the per-call ratio's median is robust to load that
    changes between processes. Asserts that both give the same advantages."""
    import tempfile

    import graphgpo

    rows = []
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        old = importable_copy(os.path.abspath(other), tmp)
        versions = {"other": old, "this": graphgpo}
        try:
            for t in tasks:
                records = mdp_records(t, seed=t)
                columns = to_columns(records)
                batches = {k: m.StepBatch.from_records(records) for k, m in versions.items()}
                outs = {k: m.compute_advantages(batches[k], preset="alfworld", backend="torch")
                        for k, m in versions.items()}
                if not torch.allclose(outs["other"].advantages, outs["this"].advantages, atol=1e-6):
                    raise AssertionError(f"T={t}: the two checkouts give different advantages")
                same_keys = torch.equal(batches["other"].state, batches["this"].state)
                calls = {"from_records": lambda m, k: m.StepBatch.from_records(records),
                         "compute": lambda m, k: m.compute_advantages(batches[k], preset="alfworld", backend="torch")}
                if hasattr(old.StepBatch, "from_columns"):
                    calls["from_columns"] = lambda m, k: m.StepBatch.from_columns(columns)
                times = {(c, k): [] for c in calls for k in versions}
                for rep in range(repeats):
                    for c, fn in calls.items():
                        for k in (("other", "this") if rep % 2 == 0 else ("this", "other")):
                            start = time.process_time()
                            fn(versions[k], k)
                            times[(c, k)].append((time.process_time() - start) * 1e3)
                for c in calls:
                    before, after = times[(c, "other")], times[(c, "this")]
                    rows.append({"tasks": t, "steps": len(records), "call": c,
                                 "other_cpu_ms": statistics.median(before), "this_cpu_ms": statistics.median(after),
                                 "ratio": statistics.median(b / a for a, b in zip(before, after)),
                                 "same_keys": same_keys, "load": load()})
                    r = rows[-1]
                    print(f"  T={t} ({len(records)} steps) {c:13s} other {r['other_cpu_ms']:8.1f} -> this "
                          f"{r['this_cpu_ms']:8.1f} ms CPU (this / other {r['ratio']:.2f}; same keys {same_keys}; "
                          f"load {load()})", flush=True)
        finally:
            torch.set_num_threads(saved)
            sys.path.remove(tmp)
    return rows


def stages(tasks: list[int], repeats: int) -> list[dict]:
    """Where the time goes: process CPU time (median of ``repeats``) of each host stage of ``from_records`` /
    ``from_columns`` and each stage of the torch pipeline, one thread, in this process."""
    from operator import itemgetter

    from graphgpo.backends import pipeline
    from graphgpo.backends import torch_backend as tb
    from graphgpo.backends import torch_graph as tg
    from graphgpo.batch import REQUIRED_FIELDS, _validate
    from graphgpo.columns import bool_column, dense_ids, float_column, int_column, next_state_column, state_column
    from graphgpo.config import make_config
    from graphgpo.hashing import KeyHasher, object_keys

    def cpu_ms(fn):
        return median_ms(fn, repeats, time.process_time)

    def state_keys(cols):
        hasher = KeyHasher()
        keys = state_column(hasher, cols["state"], "state")
        next_state_column(hasher, cols["next_state"], cols["state"], keys, "next_state")

    rows = []
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for t in tasks:
            records = mdp_records(t, seed=t)
            cols = {name: list(map(itemgetter(name), records)) for name in REQUIRED_FIELDS}
            columns = to_columns(records)
            batch = StepBatch.from_records(records)
            config = make_config("graphgpo", preset="alfworld")
            graph = pipeline.build_graph(batch, tg.node_ids)
            csr = tg.reverse_csr(graph)
            step_group, num_step_groups = pipeline.step_groups(graph, batch)
            dist, num_unique_edges = tg.graph_distances(graph)
            returns = tb.returns_from_distances(graph, dist, batch, config)[2]
            distinct = list(dict.fromkeys(cols["state"] + cols["next_state"]))
            timed = {
                "from_records": lambda: StepBatch.from_records(records),
                "  transpose (one list per field)": lambda: {n: list(map(itemgetter(n), records))
                                                             for n in REQUIRED_FIELDS},
                "  group + traj dense ids": lambda: (dense_ids(cols["group"], "g"), dense_ids(cols["traj"], "t")),
                "  step": lambda: int_column(cols["step"], "step"),
                "  state + next_state keys": lambda: state_keys(cols),
                f"    of which hashing the {len(distinct)} distinct states": lambda: object_keys(distinct),
                "  success + valid": lambda: (bool_column(cols["success"], "s"), bool_column(cols["valid"], "v")),
                "  reward + episode_reward": lambda: (float_column(cols["reward"], "r"),
                                                      float_column(cols["episode_reward"], "e")),
                "  validation": lambda: _validate(batch),
                "from_columns": lambda: StepBatch.from_columns(columns),
                "compute (torch)": lambda: tb.compute(batch, "graphgpo", config),
                "  node ids + graph": lambda: pipeline.build_graph(batch, tg.node_ids),
                "  step groups": lambda: pipeline.step_groups(graph, batch),
                "  reverse CSR": lambda: tg.reverse_csr(graph),
                f"  distances ({tg.distance_method(csr)}, {csr.num_unique_edges} edges)":
                    lambda: tg.shortest_distances(graph, csr),
                "  returns": lambda: tb.returns_from_distances(graph, dist, batch, config),
                "  advantages": lambda: tb.step_and_episode_advantages(batch, returns, step_group, num_step_groups,
                                                                       config),
                "  stats": lambda: pipeline.graph_stats(graph, dist, num_unique_edges, step_group, num_step_groups),
            }
            for stage, fn in timed.items():
                fn()
                rows.append({"tasks": t, "steps": len(records), "stage": stage, "cpu_ms": cpu_ms(fn), "load": load()})
                print(f"  T={t} ({len(records)} steps) {stage:48s} {rows[-1]['cpu_ms']:8.2f} ms CPU (load {load()})",
                      flush=True)
    finally:
        torch.set_num_threads(saved)
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
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="with --against: torch threads of the timing processes (default: torch's default)")
    parser.add_argument("--same-process", action="store_true",
                        help="with --against: both versions in this process, interleaved, CPU time (robust to load)")
    parser.add_argument("--stages", action="store_true", help="only the CPU time of each stage, one thread")
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()} "
          f"(the credit step runs on graphgpo.backends.cpu_threads.CPU_THREADS), load {load()}", flush=True)
    if args.against and args.same_process:
        rows = against_same_process(args.against, args.tasks, args.repeats)
    elif args.against:
        rows = against(args.against, args.tasks if args.tasks != [4, 16, 64, 256, 1024] else [16, 256], 2, args.threads)
    elif args.stages:
        rows = stages(args.tasks if args.tasks != [4, 16, 64, 256, 1024] else [16, 64, 256], args.repeats)
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
