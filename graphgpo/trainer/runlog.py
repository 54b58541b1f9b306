"""Per-iteration metrics: metrics.jsonl (one JSON object per iteration), TensorBoard events, optionally
Weights & Biases (``report_to=wandb``).

metrics.jsonl keeps flat names (``success_rate``, ``eval_success_rate``, ``time_rollout`` ...); TensorBoard
and W&B get them grouped as TRL/verl users know them: ``train/…``, ``eval/…``, ``time/…`` (durations and
throughput) and ``adv/…`` (advantage and graph statistics). A line torn by a kill mid-write can only be the
last one (it lies past the last checkpoint): readers skip it; any other bad line is an error naming the
file and line.
"""

from __future__ import annotations

import json
import math
import os
import platform
import secrets
import subprocess
import sys
import warnings
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import yaml

THROUGHPUT_KEYS = ("env_steps_per_s", "tokens_per_s")
TIMING_KEYS = frozenset({"time_rollout", "time_advantage", "time_update", "time_eval", "time_iteration",
                         *THROUGHPUT_KEYS})
"""Metrics that depend on wall-clock time (they differ between otherwise identical runs)."""


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of RUN_DIR/metrics.jsonl in file order ([] when missing); a torn last line is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except ValueError as err:
            if not any(rest.strip() for rest in lines[number:]):
                warnings.warn(f"{path}:{number}: skipping a torn last line (the run was killed while writing it)")
                break
            raise ValueError(f"{path}:{number}: not a metrics row ({err})") from None
        rows.append(row)
    return rows


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats replaced by None (strict JSON has no NaN), recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def metric_tag(key: str) -> str:
    """metrics.jsonl name -> grouped logger tag."""
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    if key.startswith("time_"):
        return "time/" + key[len("time_"):]
    if key in THROUGHPUT_KEYS:
        return "time/" + key
    if key.startswith("advantage_"):
        return "adv/" + key[len("advantage_"):]
    if key.startswith("graph_"):
        return "adv/" + key
    return "train/" + key


def scalar_metrics(row: dict[str, Any]) -> Iterator[tuple[str, float]]:
    """(tag, value) of every finite number in a row; dict values (success per task type) become
    ``tag/key``."""
    for key, value in row.items():
        if key == "iteration":
            continue
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                yield metric_tag(key) + (f"/{sub}" if sub is not None else ""), float(v)


class RunLog:
    """Appends metrics rows; on resume first drops rows past the checkpoint's iteration. Event files and
    the W&B run are opened at the first row, so a session that trains nothing leaves none behind."""

    def __init__(self, run_dir: Path, *, resume_iteration: int | None = None, tensorboard: bool = True,
                 report_to: list[str] = (), config: dict[str, Any] | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "metrics.jsonl"
        self.resume_iteration = resume_iteration
        self.config = config or {}
        if resume_iteration is not None:
            kept = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= resume_iteration]
            with open(self.path, "w", encoding="utf-8") as handle:
                for row in kept:
                    handle.write(json.dumps(row) + "\n")
        elif self.path.exists():
            self.path.unlink()
        self.tensorboard = tensorboard
        self.report_to = list(report_to)
        self.writer = None
        self.wandb_run = None
        self._opened = False

    def _open(self) -> None:
        self._opened = True
        config = yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True).rstrip("\n")
        text = "    " + config.replace("\n", "\n    ")  # a markdown code block: TensorBoard renders text as markdown
        if self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is in the train extra
                warnings.warn("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
            else:
                purge = None if self.resume_iteration is None else self.resume_iteration + 1
                self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=purge)
                self.writer.add_text("config", text, global_step=self.resume_iteration or 0)
        if "wandb" in self.report_to:
            self.wandb_run = _start_wandb(self.run_dir, self.config, resuming=self.resume_iteration is not None)

    def log(self, row: dict[str, Any]) -> None:
        row = json_safe(row)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, allow_nan=False) + "\n")
        if not self._opened:
            self._open()
        step = int(row["iteration"])
        scalars = dict(scalar_metrics(row))
        if self.writer is not None:
            for tag, value in scalars.items():
                self.writer.add_scalar(tag, value, step)
            self.writer.flush()
        if self.wandb_run is not None:
            self.wandb_run.log(scalars, step=step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


def _start_wandb(run_dir: Path, config: dict[str, Any], *, resuming: bool):
    """A W&B run as TRL starts one: project from WANDB_PROJECT (default "graphgpo"), name = the run
    directory's name, the config attached; WANDB_MODE=offline works without an account. The run id is
    kept in run_dir/wandb_run_id, so a resumed run continues the same W&B run."""
    try:
        import wandb
    except ImportError:
        raise ImportError("report_to=wandb needs the wandb package: pip install wandb") from None
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if resuming and id_file.is_file() else secrets.token_hex(4)
    id_file.write_text(run_id + "\n")
    return wandb.init(project=os.environ.get("WANDB_PROJECT", "graphgpo"), name=run_dir.name, id=run_id,
                      resume="allow", dir=str(run_dir), config=config)


# Packages whose versions a run records (those installed).
RECORDED_PACKAGES = ("graphgpo", "torch", "numpy", "transformers", "tokenizers", "peft", "vllm", "triton",
                     "pylibcugraph", "textworld", "alfworld", "tensorboard", "wandb")


def session_record(event: str, iteration: int, changes: dict[str, tuple], **details: Any) -> dict[str, Any]:
    """One line of run_history.jsonl: when and how a session (start or resume) began: the iteration it
    starts from, config changes against the saved config.yaml ({field: [old, new]}), the command line, the
    Python and package versions and the git commit of the code (with a flag for uncommitted changes)."""
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"event": event, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "iteration": iteration, "config_changes": {k: list(v) for k, v in changes.items()},
            "command": sys.argv, "python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, **git_commit(), **details}


def git_commit(path: Path = Path(__file__).resolve().parent) -> dict[str, Any]:
    """{"git_commit": sha, "git_dirty": bool} of the repository holding this code ({} when it is not in one,
    e.g. a wheel install)."""
    try:
        sha = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": sha, "git_dirty": bool(dirty)}
