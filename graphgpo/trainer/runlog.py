"""Per-iteration metrics: metrics.jsonl (one JSON object per iteration) and TensorBoard events."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of RUN_DIR/metrics.jsonl in file order ([] when missing)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


class RunLog:
    """Appends metrics rows; on resume first drops rows past the checkpoint's iteration."""

    def __init__(self, run_dir: Path, *, resume_iteration: int | None = None, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_iteration is not None:
            kept = [r for r in read_metrics(run_dir) if r.get("iteration", 0) <= resume_iteration]
            with open(self.path, "w", encoding="utf-8") as handle:
                for row in kept:
                    handle.write(json.dumps(row) + "\n")
        elif self.path.exists():
            self.path.unlink()
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is an optional extra
                warnings.warn("tensorboard is not installed: no TensorBoard events (pip install tensorboard)")
            else:
                purge = None if resume_iteration is None else resume_iteration + 1
                self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge)

    def log(self, row: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        if self.writer is not None:
            step = int(row["iteration"])
            for key, value in row.items():
                if key != "iteration" and isinstance(value, (int, float)) and not isinstance(value, bool) \
                        and math.isfinite(value):
                    self.writer.add_scalar(key.replace(".", "/"), value, step)
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
