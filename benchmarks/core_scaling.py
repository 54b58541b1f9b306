"""How the torch CPU backend scales with batch size, next to the reference backend.

    python benchmarks/core_scaling.py                       # 1e4, 1e5, 1e6, 1e7 steps
    python benchmarks/core_scaling.py --sizes 1e4 1e5 --repeats 5 --method gigpo

Prints one row per size: median wall time of ``compute_advantages`` on a prebuilt synthetic batch
(benchmarks/synthetic.py: 8 rollouts per group, horizons 1..50, 40 ring states per group), time per step
(flat ns/step = linear scaling), the reference backend where it finishes in reasonable time, and the
process's peak resident memory so far. The first row is the paper-sized batch, where torch and reference
are timed interleaved (min over many runs) so that a loaded machine affects both alike.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import torch
from tqdm import tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.synthetic import groups_for_steps, make_synthetic_batch  # noqa: E402
from graphgpo import compute_advantages  # noqa: E402


def timed(fn, clock=time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def paper_ratio(method: str, rounds: int, weighted: bool) -> tuple[int, dict]:
    """Steps, and per clock (wall, process CPU) the min over ``rounds`` interleaved runs of torch and
    reference on the paper batch. CPU time leaves out the time other processes hold the core."""
    batch = make_synthetic_batch(16, 8, 50, 40, seed=0, min_length=44, with_cost=weighted)
    best = {}
    for clock_name, clock in (("wall", time.perf_counter), ("cpu", time.process_time)):
        times = {"torch": [], "reference": []}
        for _ in range(rounds):
            for backend in times:
                times[backend].append(timed(lambda: compute_advantages(batch, method, backend=backend), clock))
        best[clock_name] = {backend: min(values) for backend, values in times.items()}
    return batch.num_rows, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6, 1e7], help="steps per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (median reported)")
    parser.add_argument("--reference-max", type=float, default=1e5, help="largest size the reference runs at")
    parser.add_argument("--method", default="graphgpo", choices=["graphgpo", "gigpo", "grpo", "rloo"])
    parser.add_argument("--weighted", action="store_true", help="random edge costs (Bellman-Ford frontier)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--paper-rounds", type=int, default=30, help="interleaved runs on the paper batch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), method {args.method}, "
          f"{'weighted' if args.weighted else 'unit'} costs")
    steps, best = paper_ratio(args.method, args.paper_rounds, args.weighted)
    for clock_name, t in best.items():
        print(f"paper batch ({steps} steps), {clock_name} time, min of {args.paper_rounds} interleaved runs: "
              f"torch {t['torch'] * 1e3:.2f} ms, reference {t['reference'] * 1e3:.1f} ms, "
              f"speedup {t['reference'] / t['torch']:.1f}x")

    header = f"{'steps':>10} {'torch ms':>10} {'ns/step':>8} {'reference ms':>13} {'speedup':>8} {'peak RSS GiB':>13}"
    rows = [header, "-" * len(header)]
    for size in tqdm(args.sizes, desc="sizes", file=sys.stderr):
        batch = make_synthetic_batch(groups_for_steps(size), 8, 50, 40, seed=1, with_cost=args.weighted)
        n = batch.num_rows
        if n <= 1e6:
            compute_advantages(batch, args.method, backend="torch")  # warm-up (allocator, lazy imports)
        runs = [timed(lambda: compute_advantages(batch, args.method, backend="torch"))
                for _ in range(args.repeats)]
        t_torch = statistics.median(runs)
        ref_text, speedup = "-", "-"
        if n <= args.reference_max * 1.05:
            t_ref = statistics.median(timed(lambda: compute_advantages(batch, args.method, backend="reference"))
                                      for _ in range(args.repeats))
            ref_text, speedup = f"{t_ref * 1e3:.1f}", f"{t_ref / t_torch:.1f}x"
        rows.append(f"{n:>10} {t_torch * 1e3:>10.1f} {t_torch / n * 1e9:>8.0f} {ref_text:>13} {speedup:>8} "
                    f"{peak_rss_gib():>13.2f}")
        del batch
    print("\n".join(rows))


if __name__ == "__main__":
    main()
