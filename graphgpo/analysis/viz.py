"""``graphgpo viz RUN_DIR --task N``: the state graph of one evaluation task of a run, drawn for each method.

The trainer does not keep its rollouts, so G fresh ones of the task are played (``run_rollouts``: the run's
latest checkpoint, or a uniform-random policy), every method's advantages are computed on them, and the
graph is written as PNG, SVG and an interactive HTML page, with the credit diagnostics of the group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from graphgpo.analysis.diagnostics import METHODS, CreditDiagnostics, compute_method_outputs, credit_diagnostics
from graphgpo.analysis.graph import GroupGraph, build_group_graph, state_labels

__all__ = ["TaskView", "visualize_task"]


@dataclass
class TaskView:
    graph: GroupGraph
    diagnostics: CreditDiagnostics
    success_rate: float
    policy_source: str
    paths: list[Path]


def visualize_task(run_dir: str | Path, task: int, *, out: str | Path | None = None,
                   methods: Sequence[str] = METHODS, policy: str = "auto", temperature: float | None = None,
                   group_size: int | None = None, seed: int = 0) -> TaskView:
    """Play ``group_size`` (default: the run's G) episodes of evaluation task ``task`` and write
    ``task<N>.png``, ``.svg``, ``.html`` and ``_diagnostics.json`` into ``out`` (default RUN_DIR/viz)."""
    from graphgpo.analysis.graph_html import write_html
    from graphgpo.analysis.graph_plot import plot_group_graph
    from graphgpo.analysis.run_rollouts import collect_run_rollouts

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"methods: {unknown[0]!r} is not one of {', '.join(METHODS)}")
    wanted = {"graphgpo", "grpo", *methods}  # distances and the diagnostics need graphgpo and grpo
    computed = [m for m in METHODS if m in wanted]
    runs = collect_run_rollouts(run_dir, [task], policy=policy, temperature=temperature, seed=seed,
                                group_size=group_size)
    batch = runs.result.batch
    outputs = compute_method_outputs(batch, computed, omega=runs.omega)
    cfg = runs.config
    source = "random policy" if runs.policy_source == "random policy" else Path(runs.policy_source.split()[-1]).name
    title = (f"{cfg.env} {cfg.advantage.method} seed {cfg.seed}, evaluation task {task} (env seed "
             f"{runs.task_seeds[0]}), {source}")
    graph = build_group_graph(batch, outputs, 0, labels=state_labels(runs.result.records), title=title)
    stem = (Path(out) if out is not None else Path(run_dir) / "viz") / f"task{task}"
    paths = plot_group_graph(graph, stem, methods=list(methods))
    paths.append(write_html(graph, stem.with_name(stem.name + ".html")))
    diagnostics = credit_diagnostics(batch, outputs)
    success = runs.result.stats["success_rate"]
    path = stem.with_name(stem.name + "_diagnostics.json")
    path.write_text(json.dumps({"run_dir": str(run_dir), "task": task, "env_seed": runs.task_seeds[0],
                                "policy": runs.policy_source, "omega": runs.omega, "success_rate": success,
                                **diagnostics.as_dict()}, indent=1, allow_nan=False))
    paths.append(path)
    return TaskView(graph, diagnostics, success, runs.policy_source, paths)
