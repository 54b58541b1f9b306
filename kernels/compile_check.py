"""Compile every Triton kernel variant for a CUDA architecture, without a GPU.

Triton's compiler (and the ptxas it ships) needs no driver, so CPU-only CI can still prove that the kernels
lower to PTX and a cubin for a real target - which the interpreter cannot: it runs the Python semantics and
never type-checks the GPU lowering (unsupported atomics, dtype mixes, loop bounds).

    python -m graphgpo.kernels.compile_check            # all variants, sm_90 (H100)
    python -m graphgpo.kernels.compile_check --arch 80 --quick

Must run without TRITON_INTERPRET=1 (``main`` removes it before the kernels are defined). ``variants()`` is
also read by tests/test_kernel_launches.py, which checks that it lists what the backends really launch.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time



def variants():
    """(name, kernel, signature, constexprs) for every kernel and the constexpr values the code launches."""
    from . import dedup, frontier, hashing, tail

    out = []
    hash_sig = {"tok_ptr": "*i32", "len_ptr": "*i64", "mask_ptr": "*u8", "out_ptr": "*i64", "rows": "i32",
                "width": "i32", "stride_r": "i32", "stride_c": "i32", "mstride_r": "i32", "mstride_c": "i32"}
    for mode in (0, 1, 2):
        for tok in ("*i32", "*i64"):
            out.append((f"hash mode={mode} tokens={tok}", hashing._hash_rows_kernel, {**hash_sig, "tok_ptr": tok},
                        {"MODE": mode, "BLOCK_R": 64, "BLOCK_C": 32}))
    for has_group in (False, True):
        out.append((f"dedup flag group={has_group}", dedup._flag_kernel,
                    {"key_ptr": "*i64", "group_ptr": "*i64", "flag_ptr": "*i64", "n": "i32"},
                    {"HAS_GROUP": has_group, "BLOCK": dedup.BLOCK}))
        out.append((f"dedup scatter group={has_group}", dedup._scatter_kernel,
                    {"key_ptr": "*i64", "group_ptr": "*i64", "perm_ptr": "*i64", "flag_ptr": "*i64",
                     "run_ptr": "*i64", "inv_ptr": "*i64", "ukey_ptr": "*i64", "ugroup_ptr": "*i64", "n": "i32"},
                    {"HAS_GROUP": has_group, "BLOCK": dedup.BLOCK}))
    out.append(("dedup hash-table insert", dedup._insert_kernel,
                {"key_ptr": "*i64", "group_ptr": "*i64", "table_ptr": "*i64", "rep_ptr": "*i64", "n": "i32",
                 "table_mask": "i64"},
                {"BLOCK": dedup.BLOCK}))
    for has_cost in (False, True):
        out.append((f"frontier expand cost={has_cost}", frontier._expand_kernel,
                    {"front_in_ptr": "*i32", "front_out_ptr": "*i32", "counts_ptr": "*i32", "rowptr_ptr": "*i64",
                     "esrc_ptr": "*i64", "ecost_ptr": "*fp64", "dbits_ptr": "*i64", "stamp_ptr": "*i32",
                     "level": "i32", "num_programs": "i32"},
                    {"HAS_COST": has_cost, "RING": frontier.RING, "BLOCK": frontier.GPU_BLOCK}))
    out.append(("tail dmax", tail._group_dmax_kernel,
                {"dist_ptr": "*fp64", "node_group_ptr": "*i64", "dmax_ptr": "*fp64", "num_nodes": "i32"},
                {"BLOCK": tail.GPU_BLOCK}))
    for mode, has_cost in itertools.product((0, 1, 2), (False, True)):
        out.append((f"tail graph returns mode={mode} cost={has_cost}", tail._graph_returns_kernel,
                    {"group_ptr": "*i64", "src_ptr": "*i64", "dst_ptr": "*i64", "valid_ptr": "*u8",
                     "cost_ptr": "*fp64", "dist_ptr": "*fp64", "dmax_ptr": "*fp64", "has_succ_ptr": "*u8",
                     "d_state_ptr": "*fp64", "d_next_ptr": "*fp64", "ret_ptr": "*fp64", "n": "i32",
                     "r_succ": "fp64", "log2_omega": "fp64", "penalty": "fp64"},
                    {"MODE": mode, "HAS_COST": has_cost, "BLOCK": tail.GPU_BLOCK}))
    for per_traj in (False, True):
        out.append((f"tail moments per_traj={per_traj}", tail._moments_pass,
                    {"group_ptr": "*i64", "seg_ptr": "*i64", "ret_ptr": "*fp64", "ep_reward_ptr": "*fp64",
                     "valid_ptr": "*u8", "step_ptr": "*i64", "s_cnt_ptr": "*i32", "s_sum_ptr": "*fp64",
                     "s_min_ptr": "*fp64", "s_max_ptr": "*fp64", "e_cnt_ptr": "*i32", "e_sum_ptr": "*fp64",
                     "e_min_ptr": "*fp64", "e_max_ptr": "*fp64", "n": "i32", "penalty": "fp64"},
                    {"PER_TRAJ": per_traj, "BLOCK": tail.GPU_BLOCK}))
    for per_traj in (False, True):
        out.append((f"tail deviation per_traj={per_traj}", tail._deviation_pass,
                    {"group_ptr": "*i64", "seg_ptr": "*i64", "ret_ptr": "*fp64", "ep_reward_ptr": "*fp64",
                     "valid_ptr": "*u8", "step_ptr": "*i64", "s_cnt_ptr": "*i32", "s_sum_ptr": "*fp64",
                     "s_ssq_ptr": "*fp64", "e_cnt_ptr": "*i32", "e_sum_ptr": "*fp64", "e_ssq_ptr": "*fp64",
                     "n": "i32", "penalty": "fp64"},
                    {"PER_TRAJ": per_traj, "BLOCK": tail.GPU_BLOCK}))
    for mean_only in (False, True):
        out.append((f"tail advantage mean_only={mean_only}", tail._advantage_pass,
                    {"group_ptr": "*i64", "seg_ptr": "*i64", "ret_ptr": "*fp64", "ep_reward_ptr": "*fp64",
                     "valid_ptr": "*u8", "s_cnt_ptr": "*i32", "s_sum_ptr": "*fp64", "s_min_ptr": "*fp64",
                     "s_max_ptr": "*fp64", "s_ssq_ptr": "*fp64", "e_cnt_ptr": "*i32", "e_sum_ptr": "*fp64",
                     "e_min_ptr": "*fp64", "e_max_ptr": "*fp64", "e_ssq_ptr": "*fp64", "step_adv_ptr": "*fp64",
                     "ep_adv_ptr": "*fp64", "adv_ptr": "*fp32", "n": "i32", "penalty": "fp64", "eps": "fp64",
                     "step_weight": "fp64", "episode_weight": "fp64"},
                    {"MEAN_ONLY": mean_only, "BLOCK": tail.GPU_BLOCK}))
    out.append(("tail discounted", tail._discounted_kernel,
                {"order_ptr": "*i64", "offset_ptr": "*i64", "length_ptr": "*i64", "reward_ptr": "*fp64",
                 "valid_ptr": "*u8", "out_ptr": "*fp64", "num_trajs": "i32", "gamma": "fp64", "penalty": "fp64"},
                {"BLOCK": tail.TRAJ_BLOCK}))
    return out


def compile_all(arch: int = 90, quick: bool = False, verbose: bool = True) -> list[str]:
    """Compile the variants to cubin for sm_<arch>; returns the names that failed (with the error)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    target = GPUTarget("cuda", arch, 32)
    failures = []
    seen = set()
    for name, kernel, signature, constexprs in variants():
        if quick and kernel in seen:
            continue
        seen.add(kernel)
        sig = dict(signature)
        for key in constexprs:
            sig[key] = "constexpr"
        start = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(fn=kernel, signature=sig, constexprs=constexprs), target=target)
            assert compiled.asm.get("cubin"), "no cubin produced"
            status = "ok"
        except Exception as exc:  # report every failing variant, not just the first
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            status = "FAILED"
        if verbose:
            print(f"{status:6s} sm_{arch} {name} ({time.perf_counter() - start:.1f} s)", flush=True)
    return failures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability as an int (90 = H100)")
    parser.add_argument("--quick", action="store_true", help="one variant per kernel")
    args = parser.parse_args(argv)
    os.environ.pop("TRITON_INTERPRET", None)  # before the kernel modules define their kernels
    failures = compile_all(args.arch, args.quick)
    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
