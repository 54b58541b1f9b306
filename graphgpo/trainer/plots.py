"""Learning curves from metrics.jsonl (matplotlib Figure objects: no display or backend switch needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from .runlog import read_metrics


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def plot_runs(run_dirs: Sequence[str | Path], output: str | Path, *, labels: Sequence[str] | None = None,
              smooth: int = 10) -> Path:
    """One chart: training success (moving average over ``smooth`` iterations, thin) and evaluation
    success (markers) per run, and each run's random-policy baseline as a dashed line."""
    import matplotlib
    from matplotlib.figure import Figure

    if smooth < 1:
        raise ValueError(f"smooth must be >= 1 (iterations per moving-average window), got {smooth}")
    if labels is not None and len(labels) != len(run_dirs):
        raise ValueError(f"labels: {len(labels)} labels for {len(run_dirs)} runs")
    fig = Figure(figsize=(7.5, 4.5))
    ax = fig.subplots()
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    baselines = set()
    for k, run in enumerate(run_dirs):
        run = Path(run)
        rows = read_metrics(run)
        if not rows:
            raise ValueError(f"{run}: no metrics.jsonl rows to plot" + ("" if run.is_dir() else " (no such directory)"))
        label = labels[k] if labels else run.name
        color = colors[k % len(colors)]
        its = [r["iteration"] for r in rows]
        train = _moving_average([r["success_rate"] for r in rows], smooth)
        ax.plot(its, train, color=color, alpha=0.6, lw=1.2, label=f"{label} train (sampled, avg {smooth})")
        evals = [(r["iteration"], r["eval_success_rate"]) for r in rows if "eval_success_rate" in r]
        if evals:
            ax.plot(*zip(*evals), color=color, marker="o", lw=2, label=f"{label} eval")
        base = _summary(run).get("random_policy_success_rate")
        if base is not None and round(base, 4) not in baselines:
            baselines.add(round(base, 4))
            ax.axhline(base, color="black", ls="--", lw=1, label=f"uniform-random policy ({base:.2f})")
    ax.set_xlabel("iteration")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=120)
    return output
