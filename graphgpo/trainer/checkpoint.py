"""Checkpoints: policy weights, optimizer, RNG states and the iteration, one directory each.

Layout: ``RUN_DIR/checkpoints/iter_000050/{policy.pt, optimizer.pt, state.pt}``. A checkpoint is written
into a temporary directory and renamed into place, so an interrupted save never leaves a half checkpoint
that ``latest_checkpoint`` would pick.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

_NAME = re.compile(r"^iter_(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, iteration: int, policy, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any] | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``iteration`` and delete all but the ``keep`` newest."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp_iter_{iteration:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(policy.trainable_state_dict(), tmp / "policy.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"iteration": iteration, "rng": rng_state(), "extra": extra or {}}, tmp / "state.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and (p / "state.pt").is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def load_checkpoint(path: Path, policy, optimizer: torch.optim.Optimizer | None = None,
                    restore_rng: bool = True) -> dict[str, Any]:
    """Load weights (and optimizer, RNG states) from checkpoint directory ``path``; returns its state."""
    path = Path(path)
    if not (path / "state.pt").is_file():
        raise ValueError(f"{path} is not a checkpoint directory (no state.pt)")
    policy.load_trainable_state_dict(torch.load(path / "policy.pt", map_location=policy.device, weights_only=True))
    if optimizer is not None:
        optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location=policy.device, weights_only=True))
    state = torch.load(path / "state.pt", weights_only=False)
    if restore_rng:
        set_rng_state(state["rng"])
    return state
