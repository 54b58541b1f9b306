"""Device check of the GPU paths: correctness of every backend against the CPU reference, host syncs, then
timings. One prepared script, a few minutes on one H100/H200; it installs nothing.

    python benchmarks/gpu_check.py --json gpu_check.json                  # on a GPU machine
    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --dry-run           # the script itself, on a CPU

1. Correctness (exit 1 with the list of failures; nothing is skipped silently):
   * the Triton hash kernel equals ``graphgpo.hashing.hash_token_rows`` bit for bit (int32 / int64 tokens,
     lengths, masks, strided rows), and the device collision check finds forced 64-bit collisions;
   * on random batches (with and without costs, every method and option mix, with and without the
     pipeline's GraphInputs hooks) torch-CUDA, triton and (if installed) cugraph equal the CPU backends:
     distances, step groups and stats exactly, advantages within 1e-6; the small ones against the
     plain-Python reference backend, the larger ones against torch on the CPU;
   * the CUDA caching allocator is filled with NaN first (an output element never written stays NaN);
     repeated triton runs give identical distances (no race) and advantages within 1e-9;
   * strided input columns, and a batch on cuda:1 while cuda:0 is current (with two GPUs);
2. Host syncs per backend on the paper-sized batch: counted by ``torch.cuda.set_sync_debug_mode`` next to
   the pipeline's own count (``graphgpo.backends.host_sync``).
3. Timings (``triton.testing.do_bench`` medians) at 6.4e3, 1e5, 1e6, 1e7 steps: compute only (batch on the
   GPU) per backend, and the end-to-end credit step from device tensors (token rows -> from_tensors with
   the collision check -> advantages). Targets: <= 1 ms at 6.4e3 steps, <= 100 ms at 1e7 (triton), triton
   >= 3x torch-CUDA at 1e6.

If every check passes, the last lines say so and give the one-line switch that makes ``auto`` pick Triton
(``graphgpo.backends.TRITON_BY_DEFAULT``); paste the table into benchmarks/RESULTS.md first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.synthetic import (METHOD_CASES, colliding_token_rows, groups_for_steps,  # noqa: E402
                                  make_synthetic_batch, synthetic_columns)
from graphgpo import backends as registry  # noqa: E402
from graphgpo.backends import host_sync, pipeline, reference, torch_backend  # noqa: E402
from graphgpo.batch import StepBatch  # noqa: E402
from graphgpo.config import make_config  # noqa: E402
from graphgpo.hashing import hash_token_rows  # noqa: E402

TOKEN_WIDTH = 32
# Lower bound of the bytes one step moves end to end: two int32 token rows + two int64 lengths, the
# int64/float64/bool input columns (group, traj, step, success, valid, episode_reward, reward) and the
# outputs (advantages f32; step/episode advantages, returns, d_state, d_next f64; step_group i64).
BYTES_PER_STEP = 2 * TOKEN_WIDTH * 4 + 2 * 8 + (5 * 8 + 2) + (4 + 5 * 8 + 8)

CASES = METHOD_CASES

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
        if name != "returns" and not torch.equal(a == 0, b == 0):
            fail(f"{tag}: {name}: exact zeros differ")
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
    rows = colliding_token_rows()[:4].to(DEVICE)  # four different rows, one key
    n = len(rows)
    z = torch.zeros(n, dtype=torch.int64, device=DEVICE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batch = StepBatch.from_tensors(z, torch.arange(n, device=DEVICE), z, rows, rows, z.bool(), ~z.bool(),
                                       z.double(), z.double())
    if len(batch.collisions) != 1 or not any("shared by different token rows" in str(w.message) for w in caught):
        fail(f"device collision check: expected 1 reported key, got {batch.collisions!r}")
    log("  hashing and collision check: checked")


def _random_inputs(batch, seed: int) -> pipeline.GraphInputs:
    """Merged graph keys, coarser step keys and a few remembered edges (the pipeline's hooks)."""
    g = torch.Generator().manual_seed(seed)
    k = 12
    keys = torch.cat([batch.state, batch.next_state])
    return pipeline.GraphInputs(
        state_key=torch.remainder(batch.state, 7), next_key=torch.remainder(batch.next_state, 7),
        step_key=torch.remainder(batch.state, 3),
        extra_group=torch.randint(0, batch.num_groups, (k,), generator=g),
        extra_src=torch.remainder(keys[torch.randint(0, len(keys), (k,), generator=g)], 7),
        extra_dst=torch.remainder(keys[torch.randint(0, len(keys), (k,), generator=g)], 7),
        extra_success=torch.rand(k, generator=g) < 0.3,
        extra_cost=(torch.rand(k, generator=g, dtype=torch.float64) + 0.5) if batch.cost is not None else None)


def _to_device(inputs: pipeline.GraphInputs) -> pipeline.GraphInputs:
    fields = {name: (getattr(inputs, name).to(DEVICE) if getattr(inputs, name) is not None else None)
              for name in pipeline.GraphInputs.__dataclass_fields__}
    return pipeline.GraphInputs(**fields)


def check_backends(gpu_backends: dict, dry_run: bool = False) -> None:
    shapes = [  # (groups, group size, horizon, states, with_cost, against the reference too)
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
        hooks = [None, _random_inputs(batch, seed)] if groups <= 16 else [None]
        for inputs in hooks:
            for method, options in CASES:
                config = make_config(method, **options)
                want = torch_backend.compute(batch, method, config, inputs)
                tag = f"{groups}x{size}x{horizon} cost={with_cost} hooks={inputs is not None} {method} {options}"
                if with_ref:
                    compare(f"torch-cpu vs reference {tag}", want, reference.compute(batch, method, config, inputs))
                for name, module in gpu_backends.items():
                    poison_allocator(1.0)
                    got = module.compute(batch_gpu, method, config, _to_device(inputs) if inputs else None)
                    compare(f"{name} {tag}", got, want)
        log(f"  backends on {batch.num_rows} steps (cost={with_cost}): checked")


def check_strides_and_devices(gpu_backends: dict) -> None:
    columns = synthetic_columns(16, 8, 50, 40, seed=31, success_rate=0.4)
    strided = {}
    for kind in (torch.float64, torch.int64, torch.bool):
        names = [k for k, v in columns.items() if v.dtype == kind]
        table = torch.stack([columns[k] for k in names], dim=1).to(DEVICE)
        strided.update({name: table[:, i] for i, name in enumerate(names)})
    plain = StepBatch.from_tensors(**columns)
    batch = StepBatch.from_tensors(**strided)
    config = make_config("graphgpo")
    want = torch_backend.compute(plain, "graphgpo", config)
    for name, module in gpu_backends.items():
        compare(f"{name} strided columns", module.compute(batch, "graphgpo", config), want)
    if DEVICE == "cuda" and torch.cuda.device_count() > 1:
        with torch.cuda.device(0):
            for name, module in gpu_backends.items():
                got = module.compute(plain.to("cuda:1"), "graphgpo", config)
                if got.advantages.device != torch.device("cuda:1"):
                    fail(f"{name} on cuda:1: outputs on {got.advantages.device}")
                compare(f"{name} on cuda:1 while cuda:0 is current", got, want)
    else:
        log("  one GPU: the cuda:1 check did not run")
    log("  strided columns / devices: checked")


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


def count_syncs(fn) -> tuple[int, int | None]:
    """(syncs the pipeline counts, syncs CUDA reports or None on the CPU) while ``fn`` runs once."""
    synchronize()
    with host_sync.count_syncs() as counted:
        if DEVICE != "cuda":
            fn()
            return len(counted), None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return len(counted), sum("synchroniz" in str(w.message).lower() for w in caught)


def sync_table(gpu_backends: dict) -> list[dict]:
    batch = make_synthetic_batch(16, 8, 50, 40, seed=2, success_rate=0.5).to(DEVICE)
    rows = []
    for name, module in gpu_backends.items():
        for method in ("graphgpo", "gigpo"):
            for stats in (True, False):
                config = make_config(method)
                module.compute(batch, method, config, stats=stats)  # warm-up (compilation, allocator)
                ours, cuda = count_syncs(lambda: module.compute(batch, method, config, stats=stats))
                rows.append({"backend": name, "method": method, "stats": stats, "counted": ours, "cuda": cuda})
                log(f"  syncs {name:<10} {method:<8} stats={stats!s:<5}: counted {ours}, CUDA reports {cuda}")
    return rows


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


@contextlib.contextmanager
def triton_as_default(on: bool):
    """from_tensors hashes token rows with the Triton kernel where Triton is the default (after the flip)."""
    saved = registry.TRITON_BY_DEFAULT
    registry.TRITON_BY_DEFAULT = on
    try:
        yield
    finally:
        registry.TRITON_BY_DEFAULT = saved


def end_to_end(backend: str, module, inputs: dict, config):
    def run():
        with triton_as_default(backend == "triton" and DEVICE == "cuda"):
            batch = StepBatch.from_tensors(**inputs, validate=False)  # collision check on (the default)
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


def timed(do_bench, run) -> float:
    start = time.perf_counter()
    run()
    synchronize()
    first = time.perf_counter() - start
    rep = 200 if first < 0.02 else 20  # keep the big sizes to a few repetitions
    return do_bench(run, warmup=max(1, rep // 4), rep=rep, return_mode="median")


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
        batch = StepBatch.from_tensors(**inputs, validate=False)
        n = batch.num_rows
        results = {}
        for name, module in gpu_backends.items():
            out = module.compute(batch, "graphgpo", config)
            if not torch.isfinite(out.advantages).all():
                fail(f"{name} at {n} steps: non-finite advantages")
            compute_ms = timed(do_bench, lambda: module.compute(batch, "graphgpo", config))
            e2e_ms = timed(do_bench, end_to_end(name, module, inputs, config))
            results[name] = compute_ms
            bandwidth = n * BYTES_PER_STEP / (e2e_ms * 1e-3)
            rows.append({"steps": n, "backend": name, "compute_ms": compute_ms, "end_to_end_ms": e2e_ms,
                         "bandwidth_tbs": bandwidth / 1e12, "share_of_copy_bw": bandwidth / peak})
            log(f"  {n:>10} steps  {name:<10} compute {compute_ms:10.3f} ms   end to end {e2e_ms:10.3f} ms")
        if "triton" in results and "torch-cuda" in results:
            rows.append({"steps": n, "backend": "speedup triton/torch-cuda",
                         "compute_ms": results["torch-cuda"] / results["triton"]})
        del inputs, batch
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    return rows, peak


def print_table(rows, peak) -> None:
    log("")
    log(f"| steps | backend | compute ms | end to end ms | min-traffic TB/s (e2e) | % of copy bw ({peak / 1e12:.2f} TB/s) |")
    log("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        if r["backend"].startswith("speedup"):
            log(f"| {r['steps']} | {r['backend']} | {r['compute_ms']:.2f}x | | | |")
        else:
            log(f"| {r['steps']} | {r['backend']} | {r['compute_ms']:.3f} | {r['end_to_end_ms']:.3f} | "
                f"{r['bandwidth_tbs']:.3f} | {100 * r['share_of_copy_bw']:.1f} |")
    by = {(r["steps"], r["backend"]): r for r in rows}
    log("")
    if DEVICE != "cuda":
        log("dry run: interpreter timings, the targets do not apply")
        return
    for (steps, backend), r in sorted(by.items()):
        if backend != "triton":
            continue
        if steps <= 10_000:
            log(f"target paper-size <= 1 ms: triton compute {r['compute_ms']:.3f} ms, end to end "
                f"{r['end_to_end_ms']:.3f} ms -> {'met' if r['end_to_end_ms'] <= 1 else 'NOT met'}")
        if steps >= 5_000_000:
            log(f"target 1e7 steps <= 100 ms: triton end to end {r['end_to_end_ms']:.1f} ms -> "
                f"{'met' if r['end_to_end_ms'] <= 100 else 'NOT met'}")
        if 500_000 <= steps < 5_000_000 and (steps, "torch-cuda") in by:
            ratio = by[(steps, "torch-cuda")]["compute_ms"] / r["compute_ms"]
            log(f"target triton >= 3x torch-cuda at 1e6: {ratio:.2f}x -> {'met' if ratio >= 3 else 'NOT met'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="GPU backends: correctness vs CPU, host syncs, timings")
    parser.add_argument("--sizes", default="6400,100000,1000000,10000000", help="comma-separated step counts")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--json", help="write the results (checks, syncs, timings) here")
    parser.add_argument("--dry-run", action="store_true",
                        help="exercise this script on the CPU under TRITON_INTERPRET=1 (tiny sizes, no real timing)")
    args = parser.parse_args(argv)

    global DEVICE
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.dry_run:
        if os.environ.get("TRITON_INTERPRET") != "1":
            log("FAILED: --dry-run needs TRITON_INTERPRET=1 in the environment")
            return 2
        DEVICE = "cpu"
        sizes = [1000, 2000]  # the script end to end; interpreter timings mean nothing
    elif not torch.cuda.is_available():
        log("FAILED: no CUDA device visible to torch; this script only makes sense on a GPU")
        return 2
    import triton

    started = time.perf_counter()
    torch.manual_seed(0)
    device_name = torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu (dry run, interpreter)"
    log(f"device: {device_name}  torch {torch.__version__}  triton {triton.__version__}")
    backends = {"torch-cuda": torch_backend, "triton": registry.get_backend("triton")}
    try:
        backends["cugraph"] = registry.get_backend("cugraph")
        backends["cugraph"]._load()
    except ImportError as exc:
        backends.pop("cugraph", None)
        log(f"  cugraph backend not timed or checked: {exc}")
    if DEVICE != "cuda":  # cugraph needs CUDA tensors
        backends.pop("cugraph", None)

    log("correctness:")
    poison_allocator()
    check_hashing()
    check_backends(backends, args.dry_run)
    check_strides_and_devices(backends)
    check_repeatability(backends["triton"], args.dry_run)
    log(f"correctness done in {time.perf_counter() - started:.0f} s; {len(FAILURES)} mismatches")
    log("host syncs (paper-sized batch):")
    syncs = sync_table(backends)

    rows, peak = [], float("nan")
    if not args.skip_timing:
        log("timing (compute: batch on the device; end to end: token rows -> from_tensors -> advantages):")
        rows, peak = time_backends(sizes, backends)
        print_table(rows, peak)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device_name, "torch": torch.__version__,
                                               "triton": triton.__version__, "copy_bw": peak, "syncs": syncs,
                                               "rows": rows, "failures": FAILURES}, indent=1))
    log(f"total {time.perf_counter() - started:.0f} s")
    if FAILURES:
        log("")
        log(f"FAILED: {len(FAILURES)} mismatches")
        for failure in FAILURES:
            log(f"  - {failure}")
        return 1
    log("ALL CHECKS PASSED")
    if DEVICE == "cuda":
        log("Record the table in benchmarks/RESULTS.md, then set TRITON_BY_DEFAULT = True in "
            "graphgpo/backends/__init__.py so that backend='auto' picks Triton for CUDA tensors.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
