"""Cost of the choice policy's scoring vs the number of candidate commands (SmolLM2-135M-Instruct, CPU).

    python benchmarks/smollm2_choice_cost.py --threads 2 --counts 1 2 4 8 16 32 48

One ALFWorld prompt (the first step of a valid_unseen game, full template with the choice answer line) and
its admissible commands, repeated or cut to C candidates. For each C: the wall time of ``choice_scores``
with the prompt's KV cache shared across the candidates, and with one full (prompt + command) sequence
per candidate (``share_prompt=False``), without gradients; the median of ``--repeats`` runs, measured side
by side in one process (the machine is shared: compare the ratios). The prompt-only forward pass is the
floor: scoring C commands costs that plus C short candidate passes over the copied cache.

Writes ``--out/choice_cost.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from graphgpo.prompting import PromptContext, get_template  # noqa: E402
from graphgpo.trainer.choice import choice_scores  # noqa: E402
from graphgpo.trainer.config import load_config  # noqa: E402
from graphgpo.trainer.policy import load_policy, pack_sequences  # noqa: E402


def alfworld_first_step(data_dir: Path, game: int) -> tuple[str, str, list[str]]:
    """(observation, task, admissible commands) at the start of valid_unseen game ``game``."""
    from graphgpo import envs

    env = envs.make("alfworld", split="valid_unseen", data_dir=str(data_dir))
    try:
        observation, info = env.reset(seed=game)
    finally:
        env.close()
    return observation, info.get("task", ""), list(info["admissible_actions"])


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", nargs="+", type=int, default=[1, 2, 4, 8, 16, 32, 48])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("ALFWORLD_DATA", "~/.cache/alfworld")).expanduser())
    parser.add_argument("--game", type=int, default=0, help="valid_unseen game (sorted by path)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "smollm2")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    cfg = load_config(None, ["model_name_or_path=smollm2-135m", "use_chat_template=true", "device=cpu",
                             f"output_dir={tempfile.gettempdir()}/unused"])
    policy = load_policy(cfg)
    policy.model.eval()
    observation, task, commands = alfworld_first_step(args.data, args.game)
    template = get_template("alfworld", "full").for_choice()
    prompt = template.render(PromptContext(observation=observation, task=task, admissible_actions=commands))
    prompt_ids = policy.encode_prompt(prompt)
    command_ids = [policy.encode_choice(c) for c in commands]
    device = policy.device
    pad = policy.pad_token_id

    def prompt_only():
        inputs = pack_sequences([prompt_ids], [[]], pad, device)
        policy.model(input_ids=inputs["input_ids"][:, :-1], logits_to_keep=1, use_cache=True)

    rows = []
    with torch.no_grad():
        floor = median_time(prompt_only, args.repeats)
        for count in args.counts:
            cands = [command_ids[i % len(command_ids)] for i in range(count)]
            shared = median_time(lambda: choice_scores(policy.model, [prompt_ids], [cands], pad, device), args.repeats)
            full = median_time(lambda: choice_scores(policy.model, [prompt_ids], [cands], pad, device,
                                                     share_prompt=False), args.repeats)
            rows.append({"candidates": count, "shared_s": shared, "full_sequences_s": full,
                         "shared_over_prompt_only": shared / floor, "full_over_shared": full / shared,
                         "mean_command_tokens": sum(map(len, cands)) / count})
            print(f"C={count:3d}  shared {shared:.3f} s  full {full:.3f} s  full/shared {full / shared:.1f}", flush=True)
    report = {"prompt_tokens": len(prompt_ids), "admissible_commands": len(commands), "prompt_only_s": floor,
              "threads": args.threads, "repeats": args.repeats, "load_average": os.getloadavg(), "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choice_cost.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(f"\nALFWorld prompt of {len(prompt_ids)} tokens ({len(commands)} admissible commands), prompt-only forward "
          f"{floor:.3f} s, {args.threads} threads, load average {report['load_average'][0]:.1f}")
    print("| candidates | tokens per command | shared prompt cache (s) | x prompt-only | full sequences (s) | full / shared |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['candidates']} | {r['mean_command_tokens']:.1f} | {r['shared_s']:.3f} | {r['shared_over_prompt_only']:.2f} "
              f"| {r['full_sequences_s']:.3f} | {r['full_over_shared']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
