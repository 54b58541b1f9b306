"""Zero-shot SmolLM2-135M-Instruct on the smollm2-135m-* presets, before any training: generate vs choose.

    python benchmarks/smollm2_zero_shot.py --preset smollm2-135m-sokoban --tasks 16 --threads 2
    python benchmarks/smollm2_zero_shot.py --preset smollm2-135m-textworld --tasks 16 --modes choose
    python benchmarks/smollm2_zero_shot.py --preset smollm2-135m-alfworld --tasks 12 --spread

The model is loaded once. For each action mode (``generate``: free text through the template's projection;
``choose``: the admissible command with the highest / a sampled likelihood) and each decoding (greedy =
temperature 0, sampled = the preset's training temperature), one episode is played on each of the
trainer's evaluation tasks (the same held-out rooms / games as ``graphgpo train`` evaluates on). Reported:
success, valid-action rate, why invalid answers were invalid, mean response length in tokens, mean prompt
length, and seconds per turn (one batched policy call for all active episodes) and per environment step.

Writes ``--out/zero_shot_<preset>.json`` (numbers and sample responses) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphgpo.envs import task_pool_size  # noqa: E402
from graphgpo.envs.vector import EnvManager  # noqa: E402
from graphgpo.prompting import get_template  # noqa: E402
from graphgpo.rollout import RandomPolicy, collect_rollouts  # noqa: E402
from graphgpo.trainer.choice import ChoiceSampler  # noqa: E402
from graphgpo.trainer.config import load_config  # noqa: E402
from graphgpo.trainer.engine import HFEngine, SamplingParams  # noqa: E402
from graphgpo.trainer.loop import EngineSampler, derived_seed, eval_task_seeds  # noqa: E402
from graphgpo.trainer.policy import load_policy  # noqa: E402


class TimedSampler:
    """Wraps a rollout policy: wall time and batch size of every call, and the texts it answered."""

    def __init__(self, sampler):
        self.sampler = sampler
        self.chooses_actions = getattr(sampler, "chooses_actions", False)
        self.calls: list[tuple[float, int]] = []

    def __call__(self, prompts, *commands):
        start = time.perf_counter()
        out = self.sampler(prompts, *commands)
        self.calls.append((time.perf_counter() - start, len(prompts)))
        return out


def play(policy, cfg, template, seeds, mode: str, temperature: float, seed: int,
         max_steps: int) -> dict[str, Any]:
    manager = EnvManager(cfg.env, cfg.env_kwargs, group_size=1, max_steps=max_steps, executor="serial")
    if mode == "choose":
        sampler = ChoiceSampler(policy, temperature, seed, batch_size=cfg.generation_batch_size)
    else:
        params = SamplingParams(temperature=temperature, top_p=1.0, max_new_tokens=cfg.max_completion_length)
        sampler = EngineSampler(HFEngine(policy, cfg.generation_batch_size), params, seed)
    timed = TimedSampler(sampler)
    fits = policy.prompt_fits if cfg.prompt_style == "full" else None
    try:
        result = collect_rollouts(manager, timed, task_seeds=seeds, template=template, prompt_fits=fits)
    finally:
        manager.close()
    gens = result.generations
    reasons = Counter()
    if mode == "generate":
        for text in (g.text for g in gens):
            reasons[template.project(text, None).reason or "tags ok"] += 1
    times = [t for t, _ in timed.calls]
    steps = sum(n for _, n in timed.calls)
    return {
        "mode": mode, "temperature": temperature, "episodes": len(result.success), "max_steps": max_steps,
        "success_rate": result.stats["success_rate"], "valid_action_rate": 1.0 - result.stats["invalid_rate"],
        "mean_episode_length": result.stats["mean_length"],
        "mean_response_tokens": float(np.mean([len(g.response_ids) for g in gens])),
        "mean_prompt_tokens": float(np.mean([len(g.prompt_ids) for g in gens])),
        "mean_commands": float(np.mean([len(g.choice_ids) for g in gens])) if mode == "choose" else None,
        "seconds_per_turn": float(np.mean(times)), "prompts_per_turn": steps / len(times),
        "seconds_per_step": float(sum(times) / steps), "env_steps": steps,
        "format": dict(reasons),
        "samples": [{"prompt_tail": p[-300:], "response": g.text, "action": a}
                    for p, g, a in list(zip(result.prompts, gens, result.actions))[:6]],
    }


def write_report(args, cfg, seeds, load_s, rows) -> tuple[Path, dict]:
    report = {"preset": args.preset, "overrides": args.set, "tasks": len(seeds), "task_seeds": seeds,
              "max_steps": cfg.max_steps, "threads": args.threads, "load_seconds": load_s,
              "load_average": os.getloadavg(), "model": cfg.model_name_or_path, "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"zero_shot_{args.preset}{'_' + args.tag if args.tag else ''}.json"
    path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return path, report


def random_row(cfg, template, seeds) -> dict[str, Any]:
    """The uniform-random policy over the same commands (the trainer's random baseline), 4 repeats."""
    manager = EnvManager(cfg.env, cfg.env_kwargs, group_size=1, max_steps=cfg.max_steps, executor="serial")
    try:
        rates = [collect_rollouts(manager, RandomPolicy.for_template(template, seed=derived_seed("random", r)),
                                  task_seeds=seeds, template=template).stats["success_rate"] for r in range(4)]
    finally:
        manager.close()
    return {"mode": "random", "decoding": "uniform", "success_rate": float(np.mean(rates)), "repeats": rates,
            "valid_action_rate": 1.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", required=True)
    parser.add_argument("--tasks", type=int, default=16, help="evaluation tasks (episodes per row)")
    parser.add_argument("--modes", nargs="+", default=["generate", "choose"], choices=["generate", "choose"])
    parser.add_argument("--decodings", nargs="+", default=["greedy", "sampled"], choices=["greedy", "sampled"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--generate-tasks", type=int, default=None,
                        help="fewer episodes for the (slow: up to max_completion_length tokens) generate rows: "
                             "the first N of the tasks")
    parser.add_argument("--generate-steps", type=int, default=None,
                        help="shorter episodes for the generate rows (default: the preset's max_steps)")
    parser.add_argument("--spread", action="store_true",
                        help="evenly spaced tasks over a finite pool (its games are sorted, e.g. by task type) "
                             "instead of the trainer's first --tasks ones")
    parser.add_argument("--set", nargs="*", default=[], help="config overrides, e.g. max_steps=10")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "smollm2")
    parser.add_argument("--tag", default="", help="suffix of the output file (several runs of one preset)")
    parser.add_argument("--no-random", action="store_true", help="skip the uniform-random row")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    cfg = load_config(args.preset, [f"output_dir={tempfile.gettempdir()}/unused", *args.set])
    load_start = time.perf_counter()
    policy = load_policy(cfg)
    load_s = time.perf_counter() - load_start
    pool = task_pool_size(cfg.env, **{**cfg.env_kwargs, **cfg.eval_env_kwargs})
    if args.spread and pool is not None and pool > args.tasks:
        seeds = [i * pool // args.tasks for i in range(args.tasks)]  # e.g. all six ALFWorld task types
    else:
        seeds = eval_task_seeds(args.tasks, pool)
    cfg.env_kwargs = {**cfg.env_kwargs, **cfg.eval_env_kwargs}
    base = get_template(cfg.env, cfg.prompt_style, history_length=cfg.history_length)
    rows = [] if args.no_random else [random_row(cfg, base.for_choice(), seeds)]
    for mode in args.modes:
        template = base.for_choice() if mode == "choose" else base
        for decoding in args.decodings:
            temperature = 0.0 if decoding == "greedy" else (cfg.choice_temperature if mode == "choose"
                                                            else cfg.temperature)
            mode_seeds, steps = seeds, cfg.max_steps
            if mode == "generate":
                mode_seeds = seeds[:args.generate_tasks or len(seeds)]
                steps = args.generate_steps or cfg.max_steps
            row = play(policy, cfg, template, mode_seeds, mode, temperature,
                       derived_seed("zero-shot", mode, decoding), steps)
            row["decoding"] = decoding
            rows.append(row)
            write_report(args, cfg, seeds, load_s, rows)  # after every row: a long run keeps what it measured
            print(f"{mode:8s} {decoding:7s} success {row['success_rate']:.3f} valid {row['valid_action_rate']:.3f} "
                  f"resp {row['mean_response_tokens']:.1f} tok  {row['seconds_per_turn']:.2f} s/turn "
                  f"({row['prompts_per_turn']:.1f} prompts)  format {row['format']}", flush=True)
    path, report = write_report(args, cfg, seeds, load_s, rows)
    print(f"\n{args.preset}: {len(seeds)} tasks x {cfg.max_steps} steps (generate rows: "
          f"{args.generate_tasks or len(seeds)} x {args.generate_steps or cfg.max_steps}), {args.threads} threads, "
          f"load average {report['load_average'][0]:.1f}")
    print("| mode | decoding | episodes x steps | success | valid actions | response tokens | prompt tokens | s / turn (prompts) | s / step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["mode"] == "random":
            print(f"| uniform random | - | {len(seeds)} x {cfg.max_steps} | {r['success_rate']:.3f} | 1.000 | - | - | - | - |")
            continue
        print(f"| {r['mode']} | {r['decoding']} | {r['episodes']} x {r['max_steps']} | {r['success_rate']:.3f} | {r['valid_action_rate']:.3f} | "
              f"{r['mean_response_tokens']:.1f} | {r['mean_prompt_tokens']:.0f} | {r['seconds_per_turn']:.2f} "
              f"({r['prompts_per_turn']:.1f}) | {r['seconds_per_step']:.2f} |")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
