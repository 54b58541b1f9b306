"""``graphgpo`` command line: train, eval, plot, viz, diagnose, presets.

Every bad input (config value, path, argument) ends in one line on stderr naming what is wrong, exit
status 2; a missing optional package names the extra that installs it. Heavy modules load only inside
the command that needs them, so ``graphgpo --help`` and ``graphgpo presets`` stay fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

EXAMPLES = """\
examples:
  graphgpo train                                  the embedded CPU default (tiny LM, 5x5 Sokoban, GraphGPO)
  graphgpo train advantage.method=grpo seed=1     dotted overrides of the config (graphgpo/trainer/config.py)
  graphgpo train --config embedded-textworld      a preset (graphgpo presets lists them) or a YAML file
  graphgpo train filter_groups.enable=true        dynamic sampling (the recipe's +DS); graph memory:
      advantage.memory=true, similarity merge: advantage.options.similarity=0.95
  graphgpo train --resume runs/RUN num_iterations=500
  graphgpo eval runs/RUN --tasks 512
  graphgpo plot runs/A runs/B --output cmp.png
  graphgpo viz runs/RUN --task 3 --policy random
  graphgpo diagnose runs/RUN
"""

# Optional packages and the extra of pyproject.toml that installs each.
EXTRA_OF_MODULE = {
    "transformers": "train", "tokenizers": "train", "peft": "train", "tensorboard": "train",
    "textworld": "envs", "wandb": "wandb", "vllm": "vllm", "verl": "verl", "triton": "gpu", "cupy": "gpu",
    "pylibcugraph": "cugraph", "alfworld": "alfworld", "rapidfuzz": "similarity", "gguf": "smollm2",
    "accelerate": "smollm2",
}


def missing_package_message(err: ImportError) -> str:
    """One line: which package is missing and which extra installs it."""
    name = (err.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(name)
    if extra is None:
        return str(err)
    return (f"this needs the {name!r} package of the {extra!r} extra: pip install -e '.[{extra}]' in a clone "
            f"(pip install 'graphgpo[{extra}]' otherwise)")


# ------------------------------------------------------------------------------------------ argument types
def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    return parse


def _temperature(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0 (0 = greedy), got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    from graphgpo.analysis.diagnostics import LEGEND, METHODS

    parser = argparse.ArgumentParser(prog="graphgpo", description="Train and evaluate LLM agents with GraphGPO "
                                     "(graph-based credit assignment), GiGPO, GRPO or RLOO.",
                                     epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a policy (no arguments: the embedded CPU default)",
                           description="Train a policy with PPO and the chosen advantage estimator. Without "
                           "arguments: the embedded CPU default. Overrides are dotted config fields, e.g. "
                           "advantage.omega=0.5 learning_rate=1e-3 (fields: graphgpo/trainer/config.py). The run "
                           "directory gets config.yaml, metrics.jsonl, TensorBoard events, checkpoints, "
                           "summary.json and learning_curve.png.")
    train.add_argument("--config", help="YAML config file or preset name (graphgpo presets lists them)")
    train.add_argument("--output-dir", help="run directory (default runs/<env>-<method>-seed<seed>-<time>)")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest intact checkpoint; "
                       "overrides may change only how it runs or logs (e.g. num_iterations=500, eval_every=10)")
    train.add_argument("overrides", nargs="*", metavar="field=value", help="dotted config overrides")

    ev = sub.add_parser("eval", help="evaluate a run's checkpoint on its held-out tasks",
                        description="Evaluate a run's latest (or given) checkpoint on the run's held-out "
                        "evaluation tasks, one episode each, and print success rate, return, length and valid-"
                        "action rate as JSON. Nothing in the run directory is written.")
    ev.add_argument("run_dir")
    ev.add_argument("--checkpoint", help="checkpoint directory (default: the newest intact one)")
    ev.add_argument("--tasks", type=_int_at_least(1), help="number of held-out tasks (default: the run's eval_tasks)")
    ev.add_argument("--temperature", type=_temperature, help="sampling temperature (default: the run's "
                    "eval_temperature; 0 = greedy)")
    ev.add_argument("--output", help="also write the result as JSON here")
    ev.add_argument("overrides", nargs="*", metavar="field=value", help="dotted config overrides (e.g. device=cpu)")

    plot = sub.add_parser("plot", help="compare runs' learning curves on one chart",
                          description="Draw the training success (moving average) and evaluation success of "
                          "one or more runs on one chart, with each run's uniform-random baseline.")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("--output", help="image file (default: RUN_DIR/learning_curve.png for one run, "
                      "comparison.png in the runs' common parent directory for several)")
    plot.add_argument("--labels", nargs="*", help="one label per run (default: directory names)")
    plot.add_argument("--smooth", type=_int_at_least(1), default=10,
                      help="moving-average window of training success, in iterations (default 10)")

    viz = sub.add_parser("viz", help="draw one task's state graph, edges coloured by each method's advantage",
                         description="Play G fresh rollouts of one evaluation task of a run (its latest "
                         "checkpoint, or a uniform-random policy) and draw their state graph: nodes are states, "
                         "x is the graph distance to SUCCESS, each edge is coloured by the mean advantage each "
                         "method gives the steps along it (blue credited, red blamed). Writes task<N>.png, .svg, "
                         ".html (interactive) and _diagnostics.json. Pick a task the policy does not always "
                         "solve in one step, or use --policy random, to see the methods disagree.")
    viz.add_argument("run_dir")
    viz.add_argument("--task", type=_int_at_least(0), default=0,
                     help="index of the run's evaluation task, 0 <= N < its eval_tasks (default 0)")
    viz.add_argument("--out", default=None, help="output directory (default RUN_DIR/viz)")
    viz.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS),
                     help="panels to draw (default: all)")
    viz.add_argument("--policy", default="auto", choices=["auto", "checkpoint", "random"],
                     help="auto: the latest checkpoint, or a random policy when there is none")
    viz.add_argument("--temperature", type=_temperature, default=None,
                     help="sampling temperature (default: the run's training temperature)")
    viz.add_argument("--group-size", type=_int_at_least(1), default=None, help="rollouts of the task (default: G)")
    viz.add_argument("--seed", type=int, default=0, help="sampling seed")

    diagnose = sub.add_parser("diagnose", help="credit diagnostics of every method on fresh rollouts of runs",
                              description="Play G fresh rollouts of each of a run's first evaluation tasks "
                              "(latest checkpoint, or a random policy), compute every method's advantages on "
                              "them and count, summed over the runs, where GraphGPO's step credit differs "
                              "from trajectory-level credit (GRPO).",
                              epilog=LEGEND, formatter_class=argparse.RawDescriptionHelpFormatter)
    diagnose.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    diagnose.add_argument("--tasks", type=_int_at_least(1), default=32,
                          help="evaluation tasks 0..N-1, G rollouts each (default 32)")
    diagnose.add_argument("--policy", default="auto", choices=["auto", "checkpoint", "random"])
    diagnose.add_argument("--temperature", type=_temperature, default=None,
                          help="sampling temperature (default: the run's training temperature)")
    diagnose.add_argument("--seed", type=int, default=0, help="sampling seed")
    diagnose.add_argument("--json", default=None, help="also write the summed and per-run diagnostics here")

    sub.add_parser("presets", help="list the bundled config presets and what each needs",
                   description="List the config presets in graphgpo/configs (graphgpo train --config NAME) with "
                   "what each needs: CPU or GPU, data, downloads.")
    return parser


# ------------------------------------------------------------------------------------------ commands
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
    print(json.dumps(summary, indent=1))
    eval_rate, base = summary.get("eval_success_rate"), summary.get("random_policy_success_rate")
    if eval_rate is not None:
        line = f"eval success {eval_rate:.3f} on {summary['eval_tasks']} held-out tasks"
        if base is not None:
            line += f" (uniform-random policy on the same tasks: {base:.3f})"
        print(line)
    print(f"run directory: {summary['run_dir']}")
    return 0 if summary["status"] in ("completed", "interrupted") else 1


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

    output = args.output
    if output is None:
        runs = [Path(r) for r in args.run_dirs]
        output = (runs[0] / "learning_curve.png" if len(runs) == 1
                  else Path(os.path.commonpath([r.resolve() for r in runs])) / "comparison.png")
    print(f"wrote {plot_runs(args.run_dirs, output, labels=args.labels, smooth=args.smooth)}")
    return 0


def _viz(args) -> int:
    from graphgpo.analysis.viz import visualize_task

    view = visualize_task(args.run_dir, args.task, out=args.out, methods=args.methods, policy=args.policy,
                          temperature=args.temperature, group_size=args.group_size, seed=args.seed)
    graph = view.graph
    print(f"{graph.title}: success {view.success_rate:.2f} over {graph.num_trajectories} rollouts; "
          f"policy: {view.policy_source}")
    if graph.num_successes == 0:
        print("No rollout of this task succeeded: every node has distance 1 and the graph has no SUCCESS sink; "
              "try another --task or --policy random.")
    elif graph.num_successes == graph.num_trajectories and len(graph.nodes) <= 3:
        print("Every rollout solved the task the same short way: the methods agree here; try another --task "
              "or --policy random.")
    print(view.diagnostics.table())
    for path in view.paths:
        print(f"wrote {path}")
    return 0


def _diagnose(args) -> int:
    from graphgpo.analysis.diagnostics import LEGEND, diagnose_runs

    total, per_run = diagnose_runs(args.run_dirs, args.tasks, policy=args.policy, temperature=args.temperature,
                                   seed=args.seed, progress=lambda line: print(line, flush=True))
    print(total.table())
    print()
    print(LEGEND)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"total": total.as_dict(), "runs": per_run, "tasks": args.tasks,
                                               "policy": args.policy}, indent=1, allow_nan=False))
        print(f"wrote {args.json}")
    return 0


def _presets(_args) -> int:
    from graphgpo.trainer.config import PRESET_DIR, available_presets, load_yaml

    rows = []
    for name in available_presets():
        values = load_yaml(PRESET_DIR / f"{name}.yaml")
        rows.append((name, preset_needs(values)))
    width = max(len(name) for name, _ in rows)
    for name, needs in rows:
        print(f"{name:<{width}}  {needs}")
    print(f"\n(graphgpo train --config NAME; the files are in {PRESET_DIR})")
    return 0


def preset_needs(values: dict) -> str:
    """What a preset needs to run: CPU or GPU, data, downloads."""
    model = values.get("model_name_or_path", "embedded")
    needs = ["GPU (device: cuda)" if str(values.get("device", "auto")).startswith("cuda") else "CPU"]
    if values.get("use_vllm"):
        needs.append("vllm extra")
    env = values.get("env", "sokoban")
    needs.append({"alfworld": "ALFWorld games ($ALFWORLD_DATA or ~/.cache/alfworld; alfworld-download)",
                  "webshop": "WebShop data and server (not bundled)",
                  "textworld": "textworld (envs extra; games generated locally)"}.get(env, "no data"))
    if model == "embedded":
        needs.append("no download")
    else:
        from graphgpo.trainer.model_source import SHORT_NAMES

        needs.append(f"the {SHORT_NAMES[model][0]} package ({SHORT_NAMES[model][2]})" if model in SHORT_NAMES
                     else f"downloads {model}")
    return f"{env:<9}  " + ", ".join(needs)


COMMANDS = {"train": _train, "eval": _eval, "plot": _plot, "viz": _viz, "diagnose": _diagnose, "presets": _presets}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ImportError as err:
        print(f"graphgpo {args.command}: error: {missing_package_message(err)}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:  # bad config values, paths, arguments: one clear line, no traceback
        text = f"{err.strerror}: {err.filename}" if isinstance(err, OSError) and err.filename else str(err)
        print(f"graphgpo {args.command}: error: {text}", file=sys.stderr)
        return 2
    except RuntimeError as err:
        from graphgpo.trainer.update import NonFiniteError

        if isinstance(err, NonFiniteError):
            print(f"graphgpo {args.command}: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
