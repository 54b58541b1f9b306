"""``graphgpo`` command line: train, eval, plot.

    graphgpo train                                   # the embedded CPU default (tiny LM, 5x5 Sokoban)
    graphgpo train --config qwen2.5-1.5b-alfworld    # a preset from graphgpo/configs, or a YAML path
    graphgpo train advantage.method=grpo seed=1 num_iterations=100
    graphgpo train --resume runs/sokoban-graphgpo-seed0-...   [num_iterations=500]
    graphgpo eval RUN_DIR [--tasks 512] [--temperature 0.4]
    graphgpo plot RUN_DIR [RUN_DIR ...] [--output comparison.png]
    graphgpo viz RUN_DIR [--task N]                   # state graph of one task, edges coloured by advantage
    graphgpo diagnose RUN_DIR [RUN_DIR ...]           # per-step credit diagnostics of each method on fresh rollouts
    graphgpo presets
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphgpo", description="Train and evaluate LLM agents with GraphGPO.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a policy (no arguments: the embedded CPU default)",
                           description="Train a policy. Overrides are dotted config fields, e.g. "
                                       "advantage.omega=0.5 learning_rate=1e-3 (see graphgpo/trainer/config.py).")
    train.add_argument("--config", help="YAML config file or preset name (graphgpo presets lists them)")
    train.add_argument("--output-dir", help="run directory (default runs/<env>-<method>-seed<seed>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its latest checkpoint")
    train.add_argument("overrides", nargs="*", metavar="field=value", help="dotted config overrides")

    ev = sub.add_parser("eval", help="evaluate a run's latest (or given) checkpoint on held-out tasks")
    ev.add_argument("run_dir")
    ev.add_argument("--checkpoint", help="checkpoint directory (default: the latest)")
    ev.add_argument("--tasks", type=int, help="number of held-out tasks (default: the run's eval_tasks)")
    ev.add_argument("--temperature", type=float, help="sampling temperature (default: the run's; 0 = greedy)")
    ev.add_argument("--output", help="also write the result as JSON here")
    ev.add_argument("overrides", nargs="*", metavar="field=value", help="dotted config overrides (e.g. device=cpu)")

    plot = sub.add_parser("plot", help="compare runs' learning curves on one chart")
    plot.add_argument("run_dirs", nargs="+")
    plot.add_argument("--output", default="comparison.png")
    plot.add_argument("--labels", nargs="*", help="one label per run (default: directory names)")
    plot.add_argument("--smooth", type=int, default=10, help="moving-average window of training success")

    # Listed for --help; main() hands `viz` and `diagnose` their arguments untouched (they have their own parsers).
    sub.add_parser("viz", help="draw one task's state graph with each method's advantages (graphgpo viz -h)")
    sub.add_parser("diagnose", help="credit diagnostics of every method on a run's rollouts (graphgpo diagnose -h)")

    sub.add_parser("presets", help="list the bundled config presets")
    return parser


def _train(args) -> int:
    from graphgpo.trainer.config import load_config
    from graphgpo.trainer.loop import load_run_config, train

    overrides = list(args.overrides)
    if args.resume:
        if args.config or args.output_dir:
            raise ValueError("--resume continues RUN_DIR with its saved config: no --config/--output-dir; "
                             "pass changes as field=value overrides (e.g. num_iterations=500)")
        cfg = load_run_config(args.resume, overrides)
        summary = train(cfg, resume=True)
    else:
        if args.output_dir:
            overrides.append(f"output_dir={args.output_dir}")
        cfg = load_config(args.config, overrides)
        summary = train(cfg)
    _print_summary(summary, cfg)
    return 0 if summary["status"] in ("completed", "interrupted") else 1


def _print_summary(summary: dict, cfg) -> None:
    print(json.dumps(summary, indent=1))
    eval_rate, base = summary.get("eval_success_rate"), summary.get("random_policy_success_rate")
    if eval_rate is not None:
        line = f"eval success {eval_rate:.3f} on {summary['eval_tasks']} held-out tasks"
        if base is not None:
            line += f" (uniform-random policy on the same tasks: {base:.3f})"
        print(line)
    print(f"run directory: {cfg.output_dir}")


def _eval(args) -> int:
    from graphgpo.trainer.loop import evaluate_run

    result = evaluate_run(args.run_dir, checkpoint=args.checkpoint, num_tasks=args.tasks,
                          temperature=args.temperature, overrides=args.overrides)
    text = json.dumps(result, indent=1)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n", encoding="utf-8")
    return 0


def _plot(args) -> int:
    from graphgpo.trainer.plots import plot_runs

    if args.labels and len(args.labels) != len(args.run_dirs):
        raise ValueError(f"--labels: {len(args.labels)} labels for {len(args.run_dirs)} runs")
    print(plot_runs(args.run_dirs, args.output, labels=args.labels, smooth=args.smooth))
    return 0


def _presets(_args) -> int:
    from graphgpo.trainer.config import PRESET_DIR, available_presets

    for name in available_presets():
        print(f"{name}\t{PRESET_DIR / (name + '.yaml')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["viz"]:
        from graphgpo.analysis.graph_view import viz_main

        return viz_main(argv[1:])
    if argv[:1] == ["diagnose"]:
        from graphgpo.analysis.diagnostics import diagnose_main

        return diagnose_main(argv[1:])
    args = _parser().parse_args(argv)
    handler = {"train": _train, "eval": _eval, "plot": _plot, "presets": _presets}[args.command]
    try:
        return handler(args)
    except ValueError as err:  # bad config values, paths, arguments: one clear line, no traceback
        print(f"graphgpo {args.command}: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from graphgpo.trainer.update import NonFiniteError

        if isinstance(err, NonFiniteError):
            print(f"graphgpo {args.command}: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
