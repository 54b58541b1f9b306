"""Device check for the GPU backends: correctness against the CPU, then end-to-end timings. One script.

    python benchmarks/gpu_check.py                       # < 5 min on an H100
    python benchmarks/gpu_check.py --sizes 6400,100000 --json $OUT/gpu_check.json

1. Correctness (exits 1 with a FAILED list on any mismatch; never skips silently):
   * the Triton hash kernel equals ``graphgpo.hashing.hash_token_rows`` bit for bit (int32/int64 tokens,
     lengths, masks);
   * on random batches (with and without costs, every method and option mix), the ``triton``, torch-CUDA
     and (if installed) ``cugraph`` backends equal the CPU torch backend: distances, step groups and stats
     exactly, advantages within 1e-6; small batches also against the plain-Python reference backend;
   * the CUDA caching allocator is poisoned with NaN first, so an output element a kernel forgot to write
     shows up as NaN / a mismatch; three repeated Triton runs must give identical distances (no race).
2. Timing: end-to-end "token rows -> advantages" with every input already on the GPU (hash state and
   next-state token rows, build the batch, compute GraphGPO advantages) for each backend at 6.4e3, 1e5,
   1e6 and 1e7 steps, ``triton.testing.do_bench`` medians; plus a lower bound of the bytes each step must
   move and the bandwidth that implies, against this card's measured device-copy bandwidth.
   Targets (issue 3): paper size <= 1 ms, 1e7 steps <= 100 ms, triton >= 3x torch-CUDA at 1e6.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import groups_for_steps, make_synthetic_batch, synthetic_columns  # noqa: E402
from graphgpo.backends import reference, torch_backend  # noqa: E402
from graphgpo.batch import StepBatch  # noqa: E402
from graphgpo.config import make_config  # noqa: E402
from graphgpo.hashing import hash_token_rows  # noqa: E402

TOKEN_WIDTH = 32
# Lower bound of the bytes one step moves end to end: two int32 token rows + two int64 lengths, the
# int64/float64/bool input columns (group, traj, step, success, valid, episode_reward, reward) and the
# outputs (advantages f32; step/episode advantages, returns, d_state, d_next f64; step_group i64).
BYTES_PER_STEP = 2 * TOKEN_WIDTH * 4 + 2 * 8 + (5 * 8 + 2) + (4 + 5 * 8 + 8)

CASES = [
    ("graphgpo", {}),
    ("graphgpo", {"graph_return": "paper", "episode_stats": "per_trajectory", "omega": 0.8}),
    ("graphgpo", {"graph_return": "progress", "normalize": "mean"}),
    ("gigpo", {}),
    ("gigpo", {"episode_stats": "per_trajectory"}),
    ("grpo", {}),
    ("rloo", {}),
]

FAILURES: list[str] = []
DEVICE = "cuda"  # "cpu" only for a dry run of this script under TRITON_INTERPRET=1 (--dry-run)


def log(message: str) -> None:
    print(message, flush=True)


def fail(message: str) -> None:
    FAILURES.append(message)
    log(f"  MISMATCH: {message}")


# ---------------------------------------------------------------------------------------------- checks


def poison_allocator(gib: float = 4.0) -> None:
    """Fill a large block with NaN and free it: the caching allocator hands it out again, so outputs a
    kernel never writes keep NaN (float) or garbage (int) and fail the comparisons below."""
    if DEVICE != "cuda":
        return
    free, _ = torch.cuda.mem_get_info()
    n = int(min(gib * 2**30, free * 0.5)) // 8
    block = torch.full((n,), float("nan"), dtype=torch.float64, device="cuda")
    del block


def compare(tag: str, got, want, atol: float = 1e-6) -> None:
    for name in ("advantages", "step_advantages", "episode_advantages", "returns"):
        a, b = getattr(got, name).double().cpu(), getattr(want, name).double().cpu()
        if a.shape != b.shape or not torch.isfinite(a).all():
            fail(f"{tag}: {name} has shape {tuple(a.shape)} / non-finite values")
            continue
        err = (a - b).abs().max().item() if a.numel() else 0.0
        if err > atol:
            fail(f"{tag}: {name} max |diff| = {err:.3g} > {atol}")
    for name in ("d_state", "d_next", "step_group"):
        a, b = getattr(got, name), getattr(want, name)
        if (a is None) != (b is None) or (a is not None and not torch.equal(a.cpu(), b.cpu())):
            fail(f"{tag}: {name} differs")
    if got.stats != want.stats:
        fail(f"{tag}: stats differ: {got.stats} vs {want.stats}")


def check_hashing() -> None:
    from graphgpo.kernels.hashing import hash_token_rows as kernel

    g = torch.Generator().manual_seed(0)
    for dtype in (torch.int32, torch.int64):
        tokens = torch.randint(-2**31, 2**31 - 1, (5000, 77), generator=g).to(dtype)
        lengths = torch.randint(0, 78, (5000,), generator=g)
        mask = torch.rand(5000, 77, generator=g) < 0.7
        t = tokens.to(DEVICE)
        for tag, got, want in (
            ("all", kernel(t), hash_token_rows(tokens)),
            ("lengths", kernel(t, lengths.to(DEVICE)), hash_token_rows(tokens, lengths)),
            ("mask", kernel(t, mask=mask.to(DEVICE)), hash_token_rows(tokens, mask=mask)),
            ("strided", kernel(t[::3, 5::2]), hash_token_rows(tokens[::3, 5::2])),
        ):
            if not torch.equal(got.cpu(), want):
                fail(f"hash kernel {dtype} {tag}: {(got.cpu() != want).sum().item()} keys differ")
    log("  hashing: checked")


def check_backends(gpu_backends: dict, dry_run: bool = False) -> None:
    shapes = [  # (groups, group size, horizon, states, with_cost, also vs reference)
        (4, 8, 12, 10, False, True),
        (4, 8, 12, 10, True, True),
        (16, 8, 50, 40, False, True),       # the paper's batch
        (16, 8, 50, 40, True, False),
        (400, 8, 50, 60, False, False),     # ~1e5 steps
        (64, 64, 150, 500, True, False),    # large groups, long horizons
    ]
    if dry_run:
        shapes = shapes[:2]
    for seed, (groups, size, horizon, states, with_cost, with_ref) in enumerate(shapes):
        batch = make_synthetic_batch(groups, size, horizon, states, seed=seed, with_cost=with_cost,
                                     success_rate=0.3 + 0.1 * (seed % 4))
        batch_gpu = batch.to(DEVICE)
        for method, options in CASES:
            config = make_config(method, **options)
            want = torch_backend.compute(batch, method, config)
            tag = f"{groups}x{size}x{horizon} cost={with_cost} {method} {options}"
            if with_ref:
                compare(f"torch-cpu vs reference {tag}", want, reference.compute(batch, method, config))
            for name, module in gpu_backends.items():
                poison_allocator(1.0)
                compare(f"{name} {tag}", module.compute(batch_gpu, method, config), want)
        log(f"  backends on {batch.num_rows} steps (cost={with_cost}): checked")


def check_repeatability(triton_module, dry_run: bool = False) -> None:
    batch = make_synthetic_batch(4 if dry_run else 400, 8, 50, 60, seed=99).to(DEVICE)
    config = make_config("graphgpo")
    runs = [triton_module.compute(batch, "graphgpo", config) for _ in range(3)]
    for run in runs[1:]:
        if not (torch.equal(run.d_state, runs[0].d_state) and torch.equal(run.d_next, runs[0].d_next)):
            fail("triton distances differ between repeated runs (race)")
        drift = (run.advantages - runs[0].advantages).abs().max().item()
        if drift > 1e-9:
            fail(f"triton advantages drift {drift:.3g} between repeated runs")
    log("  repeatability: checked")


# ---------------------------------------------------------------------------------------------- timing


def end_to_end_inputs(steps: int, seed: int = 0) -> dict:
    """Columns on the GPU with states as token rows (a bijection of the synthetic ring positions)."""
    cols = synthetic_columns(groups_for_steps(steps), 8, 50, 64, seed, device=DEVICE)
    spread_inverse = pow(0x9E3779B97F4A7C15, -1, 1 << 64)
    spread_inverse -= (1 << 64) if spread_inverse >= 1 << 63 else 0
    out = {}
    for name in ("state", "next_state"):
        position = cols.pop(name) * spread_inverse  # keys were position * SPREAD (mod 2**64)
        j = torch.arange(TOKEN_WIDTH, device=DEVICE)
        tokens = ((position[:, None] * 7919 + j[None, :] * 104729) % 50_000).to(torch.int32)
        tokens[:, 0] = position.to(torch.int32)
        out[name] = tokens
        out[name + "_lengths"] = TOKEN_WIDTH - (position % 5)
    out.update(cols)
    return out


def make_pipeline(backend: str, module, inputs: dict, config):
    if backend == "triton":
        from graphgpo.kernels.hashing import hash_token_rows as hasher
    else:
        hasher = hash_token_rows

    def run():
        state = hasher(inputs["state"], inputs["state_lengths"])
        next_state = hasher(inputs["next_state"], inputs["next_state_lengths"])
        # Columns are already dense and valid: build the batch without validation (no host sync).
        batch = StepBatch(group=inputs["group"], traj=inputs["traj"], step=inputs["step"], state=state,
                          next_state=next_state, success=inputs["success"], valid=inputs["valid"],
                          episode_reward=inputs["episode_reward"], reward=inputs["reward"])
        return module.compute(batch, "graphgpo", config)

    return run


def wall_clock_bench(fn, warmup=1, rep=1, return_mode="median"):
    """Stand-in for triton.testing.do_bench on the CPU dry run (milliseconds, median of 3)."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return sorted(times)[1]


def synchronize() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def copy_bandwidth(do_bench) -> float:
    x = torch.empty(2**28 if DEVICE == "cuda" else 2**20, dtype=torch.float32, device=DEVICE)
    y = torch.empty_like(x)
    ms = do_bench(lambda: y.copy_(x), warmup=10, rep=50, return_mode="median")
    return 2 * x.numel() * 4 / (ms * 1e-3)


def time_backends(sizes, gpu_backends: dict) -> tuple[list[dict], float]:
    if DEVICE == "cuda":
        from triton.testing import do_bench
    else:
        do_bench = wall_clock_bench

    peak = copy_bandwidth(do_bench)
    log(f"  measured device copy bandwidth: {peak / 1e12:.2f} TB/s")
    config = make_config("graphgpo", preset="alfworld")
    rows = []
    for steps in sizes:
        inputs = end_to_end_inputs(steps)
        n = inputs["group"].numel()
        results = {}
        for name, module in gpu_backends.items():
            run = make_pipeline(name, module, inputs, config)
            start = time.perf_counter()
            out = run()
            synchronize()
            if not torch.isfinite(out.advantages).all():
                fail(f"{name} at {n} steps: non-finite advantages")
            first = time.perf_counter() - start
            rep = 200 if first < 0.02 else 20  # keep the big sizes to a few repetitions
            ms = do_bench(run, warmup=max(1, int(rep / 4)), rep=rep, return_mode="median")
            results[name] = ms
            bandwidth = n * BYTES_PER_STEP / (ms * 1e-3)
            rows.append({"steps": n, "backend": name, "median_ms": ms, "bandwidth_tbs": bandwidth / 1e12,
                         "share_of_copy_bw": bandwidth / peak})
            log(f"  {n:>10} steps  {name:<10} {ms:10.3f} ms")
        if "triton" in results and "torch-cuda" in results:
            rows.append({"steps": n, "backend": "speedup triton/torch-cuda",
                         "median_ms": results["torch-cuda"] / results["triton"]})
        del inputs
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    return rows, peak


def print_table(rows, peak) -> None:
    log("")
    log(f"| steps | backend | median ms | min-traffic TB/s | % of copy bw ({peak / 1e12:.2f} TB/s) |")
    log("|---:|---|---:|---:|---:|")
    for r in rows:
        if r["backend"].startswith("speedup"):
            log(f"| {r['steps']} | {r['backend']} | {r['median_ms']:.2f}x | | |")
        else:
            log(f"| {r['steps']} | {r['backend']} | {r['median_ms']:.3f} | {r['bandwidth_tbs']:.3f} | "
                f"{100 * r['share_of_copy_bw']:.1f} |")
    by = {(r["steps"], r["backend"]): r["median_ms"] for r in rows}
    log("")
    for (steps, backend), ms in sorted(by.items()):
        if backend != "triton":
            continue
        if steps <= 10_000:
            log(f"target paper-size <= 1 ms: triton {ms:.3f} ms -> {'met' if ms <= 1 else 'NOT met'}")
        if steps >= 5_000_000:
            log(f"target 1e7 steps <= 100 ms: triton {ms:.1f} ms -> {'met' if ms <= 100 else 'NOT met'}")
        if 500_000 <= steps < 5_000_000 and (steps, "torch-cuda") in by:
            ratio = by[(steps, "torch-cuda")] / ms
            log(f"target triton >= 3x torch-cuda at 1e6: {ratio:.2f}x -> {'met' if ratio >= 3 else 'NOT met'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="GPU backends: correctness vs CPU, then end-to-end timings")
    parser.add_argument("--sizes", default="6400,100000,1000000,10000000", help="comma-separated step counts")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", help="write the timing rows and failures here")
    parser.add_argument("--dry-run", action="store_true",
                        help="exercise this script on the CPU under TRITON_INTERPRET=1 (tiny sizes, no real timing)")
    args = parser.parse_args(argv)

    global DEVICE
    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":
            log("FAILED: --dry-run needs TRITON_INTERPRET=1 in the environment")
            return 2
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        log("FAILED: no CUDA device visible to torch; this script only makes sense on a GPU")
        return 2
    import triton

    from graphgpo.backends import get_backend

    started = time.perf_counter()
    torch.manual_seed(0)
    device_name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run, interpreter)"
    log(f"device: {device_name}  torch {torch.__version__}  triton {triton.__version__}")
    backends = {"torch-cuda": torch_backend, "triton": get_backend("triton")}
    try:
        backends["cugraph"] = get_backend("cugraph")
        backends["cugraph"]._load()
    except ImportError as exc:
        backends.pop("cugraph", None)
        log(f"  cugraph backend not timed or checked: {exc}")

    log("correctness:")
    poison_allocator()
    check_hashing()
    check_backends(backends, args.dry_run)
    check_repeatability(backends["triton"], args.dry_run)
    log(f"correctness done in {time.perf_counter() - started:.0f} s; {len(FAILURES)} mismatches")

    rows, peak = [], float("nan")
    if not args.skip_timing:
        log("timing (end to end: token rows -> advantages, inputs on the GPU):")
        rows, peak = time_backends([int(s) for s in args.sizes.split(",")], backends)
        print_table(rows, peak)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "copy_bw": peak,
                                               "rows": rows, "failures": FAILURES}, indent=1))
    log(f"total {time.perf_counter() - started:.0f} s")
    if FAILURES:
        log("")
        log(f"FAILED: {len(FAILURES)} mismatches")
        for failure in FAILURES:
            log(f"  - {failure}")
        return 1
    log("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
