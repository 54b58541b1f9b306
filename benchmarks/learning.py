"""Learning-curve comparison of the advantage estimators: GRPO, GiGPO, GraphGPO and RLOO.

    python benchmarks/learning.py --tasks sokoban-easy --methods grpo graphgpo --seeds 0 1 2 --iterations 100
    python benchmarks/learning.py --report-only          # rebuild tables and plots from the runs on disk

Every run uses the trainer's Python API (``graphgpo.trainer.loop.train``) with the same config except
``advantage.method``: for one seed, every method starts from the same initial weights, sees the same task
seeds at every iteration (the trainer derives them from (seed, iteration)) and gets the same number of
iterations, rollouts and PPO epochs. Nothing is tuned per method.

The budget is stated up front: ``--iterations`` per run, tasks x methods x seeds runs. Runs go one at a
time (the machine is shared) into ``RUN_ROOT/<task>/<method>/seed<k>`` and are resumable: a finished run
is skipped, a run with a checkpoint resumes from it, and raising ``--iterations`` later extends the runs
already on disk (the trainer resumes from their last checkpoint), so partial budgets accumulate. An
extended run stretches its remaining learning-rate decay to the new budget (``lr_decay_iterations`` =
``--iterations``, stated explicitly because a resumed run otherwise keeps its decay length).

Outputs in ``--out`` (default benchmarks/results/learning): ``learning.md`` and ``learning.json`` (table per
task: final held-out success, area under the training success curve, iterations to reach 50% of the best
method's final success; mean ± std over seeds, plus the per-seed paired difference to GRPO) and one
``<task>.png`` per task (mean training-success curve with a ±1 std band over seeds, evaluation points).

Metrics (all from each run's metrics.jsonl, cut at ``--iterations``):
- final success: greedy success on the trainer's held-out evaluation rooms at the last iteration;
- final train success: sampled success (temperature 1) averaged over the last 10 iterations;
- AUC: mean sampled training success over iterations 1..N (area under the curve divided by N);
- iterations to 50% of best: first iteration where the moving average (window ``--smooth``) of the
  sampled success reaches half the best method's mean final train success on that task. Where the random
  policy already clears that bar (easy Sokoban: random ~0.28), the number says nothing, so the table also
  gives iterations to half the gain: the bar halfway between the random-policy rate and the best final.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

METHODS = ("grpo", "gigpo", "graphgpo", "rloo")

# The embedded tasks. "easy" is the trainer's embedded default (random-policy success ~0.28); "hard" is the
# 6x6 room with 10 reverse moves and 15 steps (random ~0.20; measured when the embedded default was chosen).
# "textworld": 32 generated easy games (2 rooms, 4 objects, 2-step quests), 10 steps per episode, played
# by the embedded model through TextWorld's compact numbered menu (goal + admissible commands, answer #k).
# Its in-training evaluation is on the 32 training games (can the method master them?); "heldout" names
# the overrides of a second evaluation after training, on 32 other games (does it generalise?).
# "eval_label" says which tasks the in-training evaluation plays.
# "graphgpo_chosen": GraphGPO's options for the goal check (GraphGPO at or above GiGPO, both above GRPO),
# chosen before the rerun from the first round of evidence (benchmarks/RESULTS.md): ω = 0.95 on Sokoban
# (easy, 3 seeds: 0.617 against 0.466 with the recipe's 0.8), the mean-only normalisation on TextWorld
# (3 seeds: 0.729 against 0.260 with the recipe's mean/std).
TASKS: dict[str, dict[str, Any]] = {
    "sokoban-easy": {"env": "sokoban", "max_steps": 12, "env_kwargs": {
        "generator": "simple", "interior": [5, 5], "reverse_moves": 6, "pull_prob": 0.8, "render": "compact"},
        "graphgpo_chosen": "advantage.omega=0.95"},
    "sokoban-hard": {"env": "sokoban", "max_steps": 15, "env_kwargs": {
        "generator": "simple", "interior": [6, 6], "reverse_moves": 10, "pull_prob": 0.8, "render": "compact"},
        "graphgpo_chosen": "advantage.omega=0.95"},
    "textworld": {"env": "textworld", "max_steps": 10, "prompt_style": "compact", "eval_label": "training games",
                  "env_kwargs": {"difficulty": "easy", "game_pool_size": 32},
                  "heldout": ["eval_env_kwargs.game_pool_offset=1000"],
                  "graphgpo_chosen": "advantage.options.normalize=mean"},
}
EVAL_LABEL = "held-out rooms"
# The random-policy baseline depends only on the task's evaluation tasks and prompt template, not on the
# method or seed: the first run of a task measures it (1024 episodes, minutes on TextWorld) and later runs
# of that task start with a copy.
BASELINE_FILE = "random_baseline.json"


@dataclass
class LearningConfig:
    """The comparison grid and its budget."""

    tasks: list[str] = field(default_factory=lambda: ["sokoban-easy", "sokoban-hard"])
    """Task names (keys of TASKS)."""
    methods: list[str] = field(default_factory=lambda: list(METHODS))
    """Advantage estimators compared (all with their default options; GraphGPO's ω = the Sokoban recipe's 0.8).
    A variant is ``method@override,override`` (e.g. ``graphgpo@advantage.omega=0.95``): trainer overrides for
    that method's runs only, kept in their own run directories and table rows."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Config seeds; each method runs every seed."""
    iterations: int = 100
    """Training iterations per run (16 tasks x 8 rollouts each)."""
    eval_every: int = 20
    """Held-out greedy evaluation every N iterations (and after the last)."""
    eval_tasks: int = 256
    """Held-out rooms per evaluation."""
    threads: int = 1
    """torch threads per run (the runs go one at a time)."""
    model: str = "embedded"
    """Policy: "embedded" (tiny random-init Qwen2) or a Hugging Face model path (needed for TextWorld)."""
    run_root: str = "runs/learning"
    """Where the run directories go."""
    out: str = "benchmarks/results/learning"
    """Where the table, JSON and plots go."""
    smooth: int = 10
    """Moving-average window of the training-success curves."""
    overrides: list[str] = field(default_factory=list)
    """Extra dotted trainer overrides applied to every run (same for all methods)."""
    earlier: list[str] = field(default_factory=list)
    """learning.json reports of an earlier round whose per-seed numbers fill the seeds that have no run here,
    for a (task, method) whose runs here reproduce that report exactly on every seed both have (at least one):
    same code path, deterministic runs. Their final success, train success, AUC and held-out success count;
    their iterations-to-bar do not (the bars differ), and they have no curves."""

    def validate(self) -> "LearningConfig":
        for task in self.tasks:
            if task not in TASKS:
                raise ValueError(f"tasks: unknown task {task!r}; known: {', '.join(TASKS)}")
        for spec in self.methods:
            method, _ = parse_method(spec)
            if method not in METHODS:
                raise ValueError(f"methods: unknown method {method!r} in {spec!r}; known: {', '.join(METHODS)}")
            if "/" in spec:
                raise ValueError(f"methods: {spec!r} must not contain '/' (it names a directory)")
        if self.iterations < 1:
            raise ValueError(f"iterations: must be >= 1, got {self.iterations}")
        if self.smooth < 1:
            raise ValueError(f"smooth: must be >= 1, got {self.smooth}")
        if not self.seeds:
            raise ValueError("seeds: give at least one seed")
        return self


# ---------------------------------------------------------------------------------------------- running
def parse_method(spec: str) -> tuple[str, list[str]]:
    """``"graphgpo@advantage.omega=0.95,ppo_epochs=1"``
    -> ``("graphgpo", ["advantage.omega=0.95", "ppo_epochs=1"])``."""
    name, _, rest = spec.partition("@")
    return name, [item for item in rest.split(",") if item]


def run_dir_for(cfg: LearningConfig, task: str, method: str, seed: int) -> Path:
    return Path(cfg.run_root) / task / method / f"seed{seed}"


def train_config(cfg: LearningConfig, task: str, method: str, seed: int):
    """The trainer config of one run: defaults + the task + the method; identical otherwise."""
    from graphgpo.trainer.config import TrainConfig, apply_mapping, parse_overrides

    spec = TASKS[task]
    base_method, method_overrides = parse_method(method)
    tc = TrainConfig()
    apply_mapping(tc, {
        "seed": seed, "env": spec["env"], "env_kwargs": dict(spec["env_kwargs"]), "max_steps": spec["max_steps"],
        "num_iterations": cfg.iterations, "lr_decay_iterations": cfg.iterations, "eval_every": cfg.eval_every,
        "eval_tasks": cfg.eval_tasks, "num_threads": cfg.threads, "model_name_or_path": cfg.model, "save_every": 10, "keep_checkpoints": 1,
        "tensorboard": False, "advantage": {"method": base_method},
        "output_dir": str(run_dir_for(cfg, task, method, seed)),
        **({"prompt_style": spec["prompt_style"]} if "prompt_style" in spec else {}),
    })
    if cfg.overrides:
        apply_mapping(tc, parse_overrides(cfg.overrides), merge_dicts=True)
    if method_overrides:
        apply_mapping(tc, parse_overrides(method_overrides), merge_dicts=True)
    return tc.validate()


def run_state(run_dir: Path, iterations: int) -> str:
    """"done" (finished at >= iterations), "resume" (has a checkpoint) or "fresh"."""
    from graphgpo.trainer.checkpoint import latest_checkpoint

    summary = run_dir / "summary.json"
    if summary.is_file():
        info = json.loads(summary.read_text())
        if info.get("status") == "completed" and int(info.get("iterations") or 0) >= iterations:
            return "done"
    return "resume" if latest_checkpoint(run_dir) is not None else "fresh"


TRAINING_ONLY_FIELDS = ("advantage.", "filter_groups.", "entropy_coef=", "kl_coef=", "learning_rate=",
                        "ppo_epochs=", "clip_ratio=")


def shares_baseline(cfg: LearningConfig, method: str) -> bool:
    """Whether the run's random baseline equals its task's shared one: no global overrides, and the method's
    overrides change only training (not the evaluation tasks, the prompts or the episode length)."""
    return not cfg.overrides and all(item.startswith(TRAINING_ONLY_FIELDS) for item in parse_method(method)[1])


def run_one(cfg: LearningConfig, task: str, method: str, seed: int) -> str:
    """Train one (task, method, seed) up to cfg.iterations; returns what it did."""
    from graphgpo.trainer.loop import train

    run_dir = run_dir_for(cfg, task, method, seed)
    state = run_state(run_dir, cfg.iterations)
    if state == "done":
        what = "skipped (done)"
    else:
        tc = train_config(cfg, task, method, seed)
        if state == "fresh" and run_dir.exists():
            shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
        shared_baseline = Path(cfg.run_root) / task / f"random_baseline_eval{cfg.eval_tasks}.json"
        share = shares_baseline(cfg, method)
        if share and state == "fresh" and shared_baseline.is_file():
            run_dir.mkdir(parents=True)
            shutil.copyfile(shared_baseline, run_dir / BASELINE_FILE)
        train(tc, resume=state == "resume")
        if share and not shared_baseline.is_file() and (run_dir / BASELINE_FILE).is_file():
            shutil.copyfile(run_dir / BASELINE_FILE, shared_baseline)
        what = "resumed" if state == "resume" else "trained"
    if TASKS[task].get("heldout") and heldout_success(run_dir, cfg.iterations) is None:
        evaluate_heldout(run_dir, task)
        what += " + held-out eval"
    return what


def evaluate_heldout(run_dir: Path, task: str) -> dict[str, Any]:
    """Greedy success of the run's last checkpoint on the task's second evaluation set (``heldout``
    overrides), written to ``RUN_DIR/heldout_eval.json``."""
    from graphgpo.trainer.loop import evaluate_run

    result = evaluate_run(run_dir, overrides=list(TASKS[task]["heldout"]))
    result = {"overrides": TASKS[task]["heldout"], **result}
    (run_dir / "heldout_eval.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
    return result


def heldout_success(run_dir: Path, iterations: int) -> float | None:
    """The run's held-out success at ``iterations`` (None when not evaluated there)."""
    path = run_dir / "heldout_eval.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return float(result["eval_success_rate"]) if result.get("iteration") == iterations else None


def run_grid(cfg: LearningConfig) -> None:
    """All runs, seed-major (every task and method gets seed 0 before any gets seed 1), so that a budget cut
    short still leaves a balanced comparison."""
    from tqdm import tqdm

    grid = [(t, m, s) for s in cfg.seeds for t in cfg.tasks for m in cfg.methods]
    print(f"budget: {len(grid)} runs x {cfg.iterations} iterations (tasks {cfg.tasks}, methods {cfg.methods}, "
          f"seeds {cfg.seeds}), one run at a time, {cfg.threads} torch thread(s)", flush=True)
    bar = tqdm(grid, desc="runs", dynamic_ncols=True)
    for task, method, seed in bar:
        bar.set_postfix_str(f"{task} {method} seed{seed}")
        started = time.perf_counter()
        what = run_one(cfg, task, method, seed)
        bar.write(f"{task} {method} seed{seed}: {what} in {time.perf_counter() - started:.0f}s")


# ---------------------------------------------------------------------------------------------- analysis
def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    v = np.asarray(values, dtype=float)
    csum = np.concatenate([[0.0], np.cumsum(v)])
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (csum[idx] - csum[lo]) / (idx - lo)


def first_reaching(curve: np.ndarray, threshold: float) -> int | None:
    """1-based iteration where ``curve`` first reaches ``threshold``; None if never."""
    hits = np.nonzero(curve >= threshold)[0]
    return int(hits[0]) + 1 if hits.size else None


@dataclass
class RunCurve:
    """One run's curves, cut at the budget."""

    seed: int
    train: np.ndarray
    """Sampled training success per iteration 1..N."""
    evals: list[tuple[int, float]]
    """(iteration, greedy success on the evaluation tasks)."""
    random_baseline: float | None
    heldout: float | None = None
    """Greedy success on the task's second (held-out) evaluation set after the last iteration."""
    sampling: dict[str, float] = field(default_factory=dict)
    """Per-iteration means of the rollout-cost and graph metrics (RUN_METRICS; a metric missing from some row,
    as in runs that predate it, is left out)."""


SAMPLING_METRICS = {"episodes_rolled_out": "episodes_per_iteration", "rollout_rounds": "rounds_per_iteration",
                    "groups_trained": "groups_trained_per_iteration",
                    "groups_informative": "groups_informative_per_iteration"}
"""metrics.jsonl column -> summary key: what dynamic sampling costs (rounds and episodes) and keeps (groups
trained on, of tasks_per_batch; informative groups found over all rounds)."""
MEMORY_METRICS = {"graph_groups_without_success": "groups_without_success_per_iteration",
                  "graph_memory_success_groups": "groups_given_success_by_memory_per_iteration",
                  "graph_memory_edges": "memory_edges_per_iteration",
                  "advantage_std": "advantage_std_per_iteration"}
"""metrics.jsonl column -> summary key (the trainer's graph statistics, logged for every method): groups
trained on whose own rollouts all failed (zero GraphGPO step credit without memory), how many of them graph
memory joined to a remembered success, the remembered edges it added to the iteration's graphs, and the
spread of the advantages the update saw (what memory does to the size of the step signal)."""
RUN_METRICS = {**SAMPLING_METRICS, **MEMORY_METRICS}


def load_run(run_dir: Path, seed: int, iterations: int) -> RunCurve | None:
    """The run's curve if it has all ``iterations`` rows, else None (unfinished runs are left out)."""
    from graphgpo.trainer.runlog import read_metrics

    rows = [r for r in read_metrics(run_dir) if r["iteration"] <= iterations]
    if len(rows) < iterations or [r["iteration"] for r in rows] != list(range(1, iterations + 1)):
        return None
    evals = [(r["iteration"], float(r["eval_success_rate"])) for r in rows if "eval_success_rate" in r]
    baseline_file = run_dir / "random_baseline.json"
    baseline = json.loads(baseline_file.read_text())["random_policy_success_rate"] if baseline_file.is_file() else None
    sampling = {name: float(np.mean([r[column] for r in rows])) for column, name in RUN_METRICS.items()
                if all(column in r for r in rows)}
    return RunCurve(seed, np.array([float(r["success_rate"]) for r in rows]), evals, baseline,
                    heldout_success(run_dir, iterations), sampling)


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    v = [x for x in values if x is not None and not math.isnan(x)]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


def summarise_task(cfg: LearningConfig, task: str) -> dict[str, Any]:
    """Per-method metrics of one task (only runs that reached the budget count)."""
    curves: dict[str, list[RunCurve]] = {}
    for method in cfg.methods:
        found = [load_run(run_dir_for(cfg, task, method, s), s, cfg.iterations) for s in cfg.seeds]
        curves[method] = [c for c in found if c is not None]
    last = min(10, cfg.iterations)
    final_train = {m: [float(c.train[-last:].mean()) for c in cs] for m, cs in curves.items()}
    finished = {m: v for m, v in final_train.items() if v}
    best = max((float(np.mean(v)) for v in finished.values()), default=None)
    baselines = [c.random_baseline for cs in curves.values() for c in cs if c.random_baseline is not None]
    random_rate = float(np.mean(baselines)) if baselines else None
    half_best = 0.5 * best if best is not None else None
    half_gain = (random_rate + 0.5 * (best - random_rate)) if best is not None and random_rate is not None else None

    methods: dict[str, Any] = {}
    earlier = load_earlier(cfg.earlier)
    for method, cs in curves.items():
        per_seed = []
        for c in cs:
            smooth = moving_average(c.train, cfg.smooth)
            final_eval = c.evals[-1][1] if c.evals and c.evals[-1][0] == cfg.iterations else None
            per_seed.append({
                "seed": c.seed, "final_eval_success": final_eval, "final_train_success": float(c.train[-last:].mean()),
                "heldout_success": c.heldout,
                "auc": float(c.train.mean()),
                "iters_to_half_best": first_reaching(smooth, half_best) if half_best is not None else None,
                "iters_to_half_gain": first_reaching(smooth, half_gain) if half_gain is not None else None,
                **{name: c.sampling.get(name) for name in RUN_METRICS.values()},
            })
        added = reproduced_earlier_seeds(per_seed, earlier.get((task, method), {}), cfg.seeds)
        own = per_seed
        per_seed = sorted(per_seed + added, key=lambda p: p["seed"])
        methods[method] = {
            "seeds": [p["seed"] for p in per_seed], "earlier_seeds": [p["seed"] for p in added],
            "per_seed": per_seed,
            **{key: _mean_std([p.get(key) for p in per_seed])
               for key in ("final_eval_success", "final_train_success", "auc", "heldout_success",
                           *RUN_METRICS.values())},
            # a run that never reaches the bar counts as the budget + 1 in the mean (a lower bound on its time)
            **{key: {**_mean_std([p[key] if p[key] is not None else cfg.iterations + 1 for p in own]),
                     "never": sum(p[key] is None for p in own)}
               for key in ("iters_to_half_best", "iters_to_half_gain")},
        }
    # Paired differences to GRPO and to GiGPO with the same dynamic-sampling setting: same seed = same initial
    # weights and the same tasks at every iteration (round 0 of DS; its extra rounds differ with the policy).
    for method, info in methods.items():
        for base_name in ("grpo", "gigpo"):
            other = comparator(method, base_name)
            if other == method or other not in methods:
                continue
            for key in ("final_eval_success", "auc", "heldout_success"):
                info[f"{key}_minus_{base_name}"] = paired_difference(info, methods[other], key)
    return {"task": task, "iterations": cfg.iterations, "random_policy_success": random_rate,
            "eval_label": TASKS[task].get("eval_label", EVAL_LABEL),
            "heldout": bool(TASKS[task].get("heldout")),
            "best_final_train_success": best, "half_best_threshold": half_best, "half_gain_threshold": half_gain,
            "methods": methods, "curves": {m: [c.train.tolist() for c in cs] for m, cs in curves.items()},
            "evals": {m: [c.evals for c in cs] for m, cs in curves.items()}}


def paired_difference(info: dict[str, Any], base: dict[str, Any], key: str) -> dict[str, float | None]:
    """Mean ± std over the seeds both variants ran of (this variant's ``key`` − the base's), and on how many of
    those seeds the difference is positive (``above``)."""
    theirs = {p["seed"]: p.get(key) for p in base["per_seed"]}
    diffs = [p[key] - theirs[p["seed"]] for p in info["per_seed"]
             if p.get(key) is not None and theirs.get(p["seed"]) is not None]
    return {**_mean_std(diffs), "above": sum(d > 0 for d in diffs)}


def _fmt_paired(stat: dict | None) -> str:
    """A paired difference with the seeds on which it is positive: ``0.010 ± 0.100 (3/5 > 0)``."""
    text = _fmt(stat)
    return f"{text} ({stat['above']}/{stat['n']} > 0)" if text != "–" and "above" in stat else text


EARLIER_KEYS = ("final_eval_success", "final_train_success", "auc", "heldout_success")
"""What a seed of an earlier report contributes (the iterations-to-bar depend on that report's bars)."""


def load_earlier(paths: Sequence[str]) -> dict[tuple[str, str], dict[int, dict[str, Any]]]:
    """(task, method) -> seed -> that seed's row, from earlier learning.json reports (the first report that
    has a seed wins)."""
    found: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for path in paths:
        try:
            tasks = json.loads(Path(path).read_text(encoding="utf-8"))["tasks"]
        except (OSError, ValueError, KeyError) as err:
            raise ValueError(f"earlier: {path} is not a learning.json report ({err})") from None
        for t in tasks:
            for method, info in t["methods"].items():
                for row in info["per_seed"]:
                    found.setdefault((t["task"], method), {}).setdefault(int(row["seed"]), row)
    return found


def reproduced_earlier_seeds(own: list[dict[str, Any]], earlier: dict[int, dict[str, Any]],
                             seeds: Sequence[int]) -> list[dict[str, Any]]:
    """The earlier report's rows for the seeds in ``seeds`` that have no run here, provided that the runs here
    reproduce that report exactly (final, train and AUC, to 1e-12) on every seed both have, and on at least
    one; otherwise none. The rows are marked ``"earlier": True``."""
    overlap = [p for p in own if p["seed"] in earlier]
    if not overlap:
        return []
    for p in overlap:
        other = earlier[p["seed"]]
        for key in ("final_eval_success", "final_train_success", "auc"):
            if p[key] is None or other.get(key) is None or abs(p[key] - other[key]) > 1e-12:
                return []
    have = {p["seed"] for p in own}
    return [{"seed": seed, **{key: earlier[seed].get(key) for key in EARLIER_KEYS}, "earlier": True}
            for seed in seeds if seed in earlier and seed not in have]


DS = "filter_groups.enable=true"
LABELS = {DS: "+DS", "advantage.memory=true": "+memory", "advantage.backend=reference": None,
          "advantage.options.normalize=mean": "normalize=mean"}
"""How variant overrides read in tables and legends (None: left out; the reference backend gives the same
advantages within 1e-6; the rerun's trainer snapshot had graph memory only on it)."""


def uses_ds(spec: str) -> bool:
    return DS in parse_method(spec)[1]


def comparator(spec: str, base: str) -> str:
    """The run ``spec`` is compared with: ``base`` at the same dynamic-sampling setting."""
    return f"{base}@{DS}" if uses_ds(spec) else base


def variant_label(spec: str) -> str:
    """``graphgpo@advantage.omega=0.95,filter_groups.enable=true`` -> ``graphgpo ω=0.95 +DS``."""
    name, overrides = parse_method(spec)
    parts = []
    for item in overrides:
        label = LABELS.get(item, item)
        if item.startswith("advantage.omega="):
            label = "ω=" + item.split("=", 1)[1]
        if label:
            parts.append(label)
    ordered = [p for p in parts if not p.startswith("+")] + [p for p in parts if p.startswith("+")]
    return " ".join([name, *ordered])


def _fmt(stat: dict | None, digits: int = 3) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def _fmt_iters(stat: dict, budget: int) -> str:
    if stat.get("mean") is None:
        return "–"
    text = f"{stat['mean']:.0f} ± {stat['std']:.0f}"
    return text + (f" ({stat['never']} never: counted {budget + 1})" if stat["never"] else "")


def own_runs(m: dict[str, Any]) -> int:
    """The runs of a variant that ran here (its seeds less those taken from an earlier report)."""
    return len(m["seeds"]) - len(m.get("earlier_seeds") or [])


def _seeds_cell(m: dict[str, Any]) -> str:
    earlier = m.get("earlier_seeds") or []
    return f"{len(m['seeds'])} ({len(earlier)} earlier)" if earlier else str(len(m["seeds"]))


def markdown_table(summary: dict[str, Any]) -> str:
    budget = summary["iterations"]
    rnd = summary["random_policy_success"]
    label = summary.get("eval_label", EVAL_LABEL)
    heldout = summary.get("heldout", False)
    lines = [f"### {summary['task']} ({budget} iterations per run)", ""]
    if rnd is not None:
        lines.append(f"Random policy on the {label}: {rnd:.3f}. Bars: 50% of best = "
                     f"{summary['half_best_threshold']:.3f}, half the gain = {summary['half_gain_threshold']:.3f}.")
        lines.append("")
    header = (["method", "seeds", f"final success on the {label} (greedy)"]
              + (["held-out games after training (greedy)"] if heldout else [])
              + ["final train success (last 10)", "AUC (train)", "iters to 50% of best", "iters to half the gain",
                 "Δ final vs GRPO (paired)", "Δ final vs GiGPO (paired)",
                 "Δ AUC vs GRPO (paired)", "Δ AUC vs GiGPO (paired)"])
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|---" * len(header) + "|")
    for method, m in summary["methods"].items():
        cells = ([variant_label(method), _seeds_cell(m), _fmt(m["final_eval_success"])]
                 + ([_fmt(m["heldout_success"])] if heldout else [])
                 + [_fmt(m["final_train_success"]), _fmt(m["auc"]), _fmt_iters(m["iters_to_half_best"], budget),
                    _fmt_iters(m["iters_to_half_gain"], budget),
                    _fmt(m.get("final_eval_success_minus_grpo")), _fmt(m.get("final_eval_success_minus_gigpo")),
                    _fmt(m.get("auc_minus_grpo")), _fmt(m.get("auc_minus_gigpo"))])
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Δ columns: paired by seed against GRPO / GiGPO with the same dynamic-sampling setting "
                 "(a +DS row against GRPO +DS / GiGPO +DS).")
    for extra in (sampling_table(summary), memory_table(summary)):
        if extra:
            lines += ["", extra]
    return "\n".join(lines)


def sampling_table(summary: dict[str, Any]) -> str:
    """What each variant's rollouts cost per iteration (means over iterations, then mean ± std over seeds):
    rounds, groups trained on, informative groups found, episodes. Empty when no run logged them."""
    rows = [(method, m) for method, m in summary["methods"].items()
            if any((m.get(k) or {}).get("mean") is not None for k in SAMPLING_METRICS.values())]
    if not rows:
        return ""
    lines = ["Rollout cost per iteration (dynamic sampling plays extra rounds until it has enough groups whose "
             "rollouts differ in reward):", "",
             "| method | seeds | rollout rounds | groups trained on | informative groups found (all rounds) "
             "| episodes rolled out |", "|---|---|---|---|---|---|"]
    for method, m in rows:
        cells = [_fmt(m.get(k), 2 if k == "rounds_per_iteration" else 1) for k in SAMPLING_METRICS.values()]
        runs = own_runs(m)
        lines.append(f"| {variant_label(method)} | {runs} | {cells[1]} | {cells[2]} | {cells[3]} "
                     f"| {cells[0]} |")
    return "\n".join(lines)


def memory_table(summary: dict[str, Any]) -> str:
    """Per iteration (mean over iterations, then mean ± std over runs): the trained groups whose own
    rollouts all failed, and for the graph-memory variants how many of them got a remembered path to the
    goal, how many remembered edges joined the graphs, and the advantages' spread. Empty when no memory run
    logged them."""
    if not any((m.get("groups_given_success_by_memory_per_iteration") or {}).get("mean") is not None
               for m in summary["methods"].values()):
        return ""
    lines = ["Groups without a success of their own, per iteration (graph memory gives them the distances of "
             "remembered paths to the goal):", "",
             "| method | runs | groups whose rollouts all failed | of them given a success by memory "
             "| remembered edges joined | advantage std |", "|---|---|---|---|---|---|"]
    for method, m in summary["methods"].items():
        if (m.get("groups_without_success_per_iteration") or {}).get("mean") is None:
            continue
        runs = own_runs(m)
        cells = [_fmt(m.get(k), 2 if k == "advantage_std_per_iteration" else 1) for k in MEMORY_METRICS.values()]
        lines.append(f"| {variant_label(method)} | {runs} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


OPTIONS = {"+DS": (DS,), "+memory": ("advantage.memory=true", "advantage.backend=reference")}
"""The switches whose effect option_table measures, and the overrides that go with each (memory ran on the
reference backend: the trainer snapshot of the rerun had memory only there)."""


def without_option(spec: str, option: str) -> str | None:
    """``spec`` with ``option``'s overrides removed, or None when ``spec`` does not use the option."""
    name, overrides = parse_method(spec)
    switch = OPTIONS[option][0]
    if switch not in overrides:
        return None
    rest = [o for o in overrides if o not in OPTIONS[option]]
    return f"{name}@{','.join(rest)}" if rest else name


def option_table(summary: dict[str, Any]) -> str:
    """What each option adds: every variant that uses +DS or +memory against the same variant without it,
    paired by seed (final greedy success, AUC, held-out success). Empty when no pair ran."""
    methods = summary["methods"]
    heldout = summary.get("heldout", False)
    keys = ["final_eval_success", "auc"] + (["heldout_success"] if heldout else [])
    rows = []
    for spec, info in methods.items():
        for option in OPTIONS:
            base = without_option(spec, option)
            if base is None or base not in methods:
                continue
            seeds = {p["seed"] for p in info["per_seed"]} & {p["seed"] for p in methods[base]["per_seed"]}
            if not seeds:
                continue
            diffs = [paired_difference(info, methods[base], key) for key in keys]
            without, with_ = ([p[keys[0]] for p in m["per_seed"] if p["seed"] in seeds] for m in (methods[base], info))
            rows.append(f"| {option} | {variant_label(base)} | {len(seeds)} | {_fmt(_mean_std(without))} → "
                        f"{_fmt(_mean_std(with_))} | " + " | ".join(_fmt_paired(d) for d in diffs) + " |")
    if not rows:
        return ""
    header = (["option", "added to", "paired seeds", "final success on those seeds (without → with)",
               "Δ final (paired)", "Δ AUC (paired)"] + (["Δ held-out (paired)"] if heldout else []))
    return "\n".join(["What each option adds (paired by seed against the same variant without it):", "",
                      "| " + " | ".join(header) + " |", "|---" * len(header) + "|", *rows])


def goal_table(summary: dict[str, Any], chosen: str) -> str:
    """The goal check of one task: GraphGPO with its chosen options at or above GiGPO, both above GRPO, on
    final greedy success (means and per-seed paired differences), without and with dynamic sampling."""
    methods = summary["methods"]
    rows = ["| dynamic sampling | seeds (GraphGPO / GiGPO / GRPO) | GraphGPO (chosen) | GiGPO | GRPO "
            "| GraphGPO − GiGPO (paired) | GraphGPO − GRPO (paired) | GiGPO − GRPO (paired) | goal holds |",
            "|---|---|---|---|---|---|---|---|---|"]
    for ds in (False, True):
        suffix = f",{DS}" if chosen and ds else (f"@{DS}" if ds else "")
        ours = (f"graphgpo@{chosen}" if chosen else "graphgpo") + suffix
        gigpo, grpo = comparator(ours, "gigpo"), comparator(ours, "grpo")
        if not all(m in methods and methods[m]["seeds"] for m in (ours, gigpo, grpo)):
            continue
        key = "final_eval_success"
        d_gigpo, d_grpo = methods[ours].get(f"{key}_minus_gigpo"), methods[ours].get(f"{key}_minus_grpo")
        d_base = methods[gigpo].get(f"{key}_minus_grpo")
        means = [d.get("mean") if d else None for d in (d_gigpo, d_grpo, d_base)]
        holds = None if None in means else (means[0] >= 0 and means[1] > 0 and means[2] > 0)
        seeds = " / ".join(_seeds_cell(methods[m]) for m in (ours, gigpo, grpo))
        rows.append(f"| {'on' if ds else 'off'} ({variant_label(ours)}) | {seeds} | {_fmt(methods[ours][key])} "
                    f"| {_fmt(methods[gigpo][key])} | {_fmt(methods[grpo][key])} | {_fmt_paired(d_gigpo)} "
                    f"| {_fmt_paired(d_grpo)} | {_fmt_paired(d_base)} "
                    f"| {'–' if holds is None else ('yes' if holds else 'no')} |")
    return "\n".join(rows) if len(rows) > 2 else ""


COLORS = {"grpo": "#1f77b4", "gigpo": "#2ca02c", "graphgpo": "#d62728", "rloo": "#9467bd"}


def _line_style(spec: str) -> str:
    overrides = [o for o in parse_method(spec)[1] if o not in (DS, "advantage.backend=reference")]
    if "advantage.memory=true" in overrides:
        return ":"
    return "--" if overrides else "-"


def plot_task(summary: dict[str, Any], path: Path, smooth: int) -> Path:
    """Mean training-success curve (moving average) per method with a ±1 std band over seeds, and the
    evaluation means at the last iteration as markers; runs without dynamic sampling on the left, with it
    on the right (when there are any); the random policy as a grey dashed line. Colour = method, line
    style = its options (solid: recipe defaults, dashed: other options, dotted: graph memory)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [[m for m in summary["curves"] if summary["curves"][m] and uses_ds(m) == ds] for ds in (False, True)]
    panels = [p for p in panels if p]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(7.5 * max(len(panels), 1), 4.8), squeeze=False)
    for ax, methods in zip(axes[0], panels):
        for method in methods:
            runs = summary["curves"][method]
            smoothed = np.stack([moving_average(r, smooth) for r in runs])
            its = np.arange(1, smoothed.shape[1] + 1)
            mean, std = smoothed.mean(0), smoothed.std(0)
            line, = ax.plot(its, mean, color=COLORS.get(parse_method(method)[0]), ls=_line_style(method), lw=2,
                            label=f"{variant_label(method)} (n={len(runs)})")
            color = line.get_color()
            ax.fill_between(its, mean - std, mean + std, color=color, alpha=0.12, lw=0)
            finals = [run[-1][1] for run in summary["evals"][method] if run]
            if finals:
                ax.errorbar([its[-1] + 2], [np.mean(finals)], yerr=[np.std(finals)], color=color, marker="o",
                            capsize=3, lw=1)
        if summary["random_policy_success"] is not None:
            ax.axhline(summary["random_policy_success"], color="gray", ls="--", lw=1,
                       label=f"random policy ({summary['random_policy_success']:.2f})")
        ds = uses_ds(methods[0])
        ax.set_title(f"{summary['task']}{', dynamic sampling' if ds else ''}: train success (moving average "
                     f"{smooth}), mean ± std over runs; dot: final greedy eval", fontsize=8)
        ax.set_xlabel("iteration (16 tasks x 8 rollouts; + extra rounds with dynamic sampling)")
        ax.set_ylabel("success rate")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(cfg: LearningConfig) -> dict[str, Any]:
    """learning.md, learning.json and <task>.png from the runs on disk. Tasks of earlier reports in the same
    ``--out`` that this call does not cover are kept (with the command that produced them)."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    command = ("python benchmarks/learning.py " + " ".join(sys.argv[1:])).strip()
    summaries = [{**summarise_task(cfg, task), "command": command, "config": asdict(cfg)} for task in cfg.tasks]
    for s in summaries:
        if any(s["curves"].values()):
            plot_task(s, out / f"{s['task']}.png", cfg.smooth)
    fresh = [{k: v for k, v in s.items() if k not in ("curves", "evals")} for s in summaries]
    kept = []
    previous = out / "learning.json"
    if previous.is_file():
        covered = set(cfg.tasks)
        kept = [t for t in json.loads(previous.read_text()).get("tasks", [])
                if t["task"] not in covered and "command" in t]
    tasks = sorted(kept + fresh, key=lambda t: list(TASKS).index(t["task"]) if t["task"] in TASKS else len(TASKS))
    sections = []
    for t in tasks:
        goal = goal_table(t, TASKS.get(t["task"], {}).get("graphgpo_chosen", ""))
        goal = (f"\n\nGoal check (final greedy success; GraphGPO with its chosen options "
                f"`{TASKS[t['task']]['graphgpo_chosen']}`):\n\n{goal}") if goal else ""
        options = option_table(t)
        options = f"\n\n{options}" if options else ""
        sections.append(f"{markdown_table(t)}{goal}{options}\n\nCommand: `{t['command']}`")
    header = ("# Learning comparison\n\nMean ± std over seeds (runs that reached the budget). Same seed = same "
              "initial weights and the same tasks at every iteration for every method.\n")
    if cfg.earlier:
        header += (f"\nSeeds counted as 'earlier' come from {', '.join(cfg.earlier)}: used only for a variant whose "
                   "runs here reproduce that report exactly on every seed both have; they add final success, "
                   "AUC and held-out success, not iterations-to-bar, curves or rollout costs.\n")
    (out / "learning.md").write_text(header + "\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    report = {"tasks": tasks}
    previous.write_text(json.dumps(report, indent=1), encoding="utf-8")
    for section in sections:
        print(section + "\n")
    return report


# ---------------------------------------------------------------------------------------------- archive
ARCHIVE_FILES = ("summary.json", "config.yaml", BASELINE_FILE, "heldout_eval.json")
"""Small files of a run directory copied verbatim into the archive (no checkpoints, no model weights)."""
ARCHIVE_METRICS = ("iteration", "success_rate", "mean_return", "mean_length", "valid_action_rate", "entropy",
                   "clip_fraction", "learning_rate", "memory_tasks", "update_skipped", "success_rate_all_rounds",
                   "time_iteration", *RUN_METRICS)
"""The metrics.jsonl columns an archived run keeps (plus every ``eval_*`` column): what the report reads
and what the discussion of the runs uses (entropy, groups without success, memory)."""
EXACT_METRICS = ("success_rate", "success_rate_all_rounds")
"""Kept unrounded (the report's curves); the other floats are rounded to 5 significant digits."""


def _compact_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in row.items():
        if key not in ARCHIVE_METRICS and not key.startswith("eval_"):
            continue
        if isinstance(value, float) and key not in EXACT_METRICS and not key.startswith("eval_") and math.isfinite(value):
            value = float(f"{value:.5g}")
        out[key] = value
    return out


def archive_runs(cfg: LearningConfig, dest: str | Path) -> list[Path]:
    """Compact copies of the grid's finished runs (those that reached ``cfg.iterations``) under
    ``DEST/<task>/<method>/seed<k>``: the small files of ARCHIVE_FILES and metrics.jsonl cut to ARCHIVE_METRICS.
    ``--report-only --run-root DEST`` rebuilds the same tables from them; copied into a run root, the runs
    count as done (their summary.json says so), so a later session extends the grid without rerunning them."""
    from graphgpo.trainer.runlog import read_metrics

    dest = Path(dest)
    copied = []
    for task in cfg.tasks:
        shared = Path(cfg.run_root) / task / f"random_baseline_eval{cfg.eval_tasks}.json"
        if shared.is_file():
            (dest / task).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(shared, dest / task / shared.name)
        for method in cfg.methods:
            for seed in cfg.seeds:
                run = run_dir_for(cfg, task, method, seed)
                if load_run(run, seed, cfg.iterations) is None:
                    continue
                target = dest / task / method / f"seed{seed}"
                target.mkdir(parents=True, exist_ok=True)
                for name in ARCHIVE_FILES:
                    if (run / name).is_file():
                        shutil.copyfile(run / name, target / name)
                rows = [_compact_row(r) for r in read_metrics(run) if r["iteration"] <= cfg.iterations]
                (target / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
                copied.append(target)
    return copied


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None) -> tuple[LearningConfig, bool, str | None]:
    d = LearningConfig()
    p = argparse.ArgumentParser(prog="graphgpo compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=d.tasks, choices=list(TASKS))
    p.add_argument("--methods", nargs="+", default=d.methods,
                   help=f"{', '.join(METHODS)}, or a variant method@override,... (e.g. graphgpo@advantage.omega=0.95)")
    p.add_argument("--seeds", nargs="+", type=int, default=d.seeds)
    p.add_argument("--iterations", type=int, default=d.iterations, help="training iterations per run (the budget)")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--eval-tasks", type=int, default=d.eval_tasks)
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--model", default=d.model)
    p.add_argument("--run-root", default=d.run_root)
    p.add_argument("--out", default=d.out)
    p.add_argument("--smooth", type=int, default=d.smooth)
    p.add_argument("--report-only", action="store_true", help="only rebuild the table and plots from disk")
    p.add_argument("--earlier", nargs="+", default=[], metavar="JSON",
                   help="learning.json reports of an earlier round: their seeds fill those without a run here, "
                        "for the variants whose runs here reproduce them exactly")
    p.add_argument("--archive", metavar="DIR", help="also write compact copies of the finished runs to DIR "
                   "(small files and the report's metrics; no checkpoints or weights)")
    p.add_argument("overrides", nargs="*", help="dotted trainer overrides for every run (e.g. ppo_epochs=2)")
    a = p.parse_args(argv)
    cfg = LearningConfig(tasks=a.tasks, methods=a.methods, seeds=a.seeds, iterations=a.iterations,
                         eval_every=a.eval_every, eval_tasks=a.eval_tasks, threads=a.threads, model=a.model,
                         run_root=a.run_root, out=a.out, smooth=a.smooth, overrides=a.overrides, earlier=a.earlier)
    return cfg.validate(), a.report_only, a.archive


def compare_main(argv: Sequence[str] | None = None) -> int:
    """``graphgpo compare``: train the grid (resumable), then write the table and plots."""
    cfg, report_only, archive = parse_args(argv)
    if not report_only:
        run_grid(cfg)
    write_report(cfg)
    if archive:
        print(f"archived {len(archive_runs(cfg, archive))} finished runs to {archive}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(compare_main())
