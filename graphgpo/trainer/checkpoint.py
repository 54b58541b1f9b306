"""Checkpoints: policy weights, optimizer, RNG states, the iteration and any extra named state.

Layout: ``RUN_DIR/checkpoints/iter_000050/{policy.pt, optimizer.pt, state.pt, manifest.json}``.
A checkpoint is written into a temporary directory, its manifest (every file with its size) last, and the
directory is then renamed into place: an interrupted save never leaves a checkpoint that looks complete.
``verify_checkpoint`` compares the files with the manifest, and ``load_checkpoint`` names the checkpoint and
file it cannot read, so a resume can fall back to an older intact checkpoint (``Trainer``).

Extra state: ``save_checkpoint(..., extra={"graph_memory": obj})`` saves ``obj.state_dict()`` in state.pt
(``state["extra"]["graph_memory"]``); ``load_checkpoint(..., extra={"graph_memory": obj})`` restores it with
``obj.load_state_dict``. Any object with that pair of methods works (its state goes through torch.save).
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

MANIFEST = "manifest.json"
FORMAT_VERSION = 2
_NAME = re.compile(r"^iter_(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is incomplete or cannot be read (the message names it and the file)."""


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
                    extra: Mapping[str, Any] | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``iteration`` (with ``extra`` named state) and delete all but the ``keep`` newest."""
    extra = dict(extra or {})
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"iter_{iteration:06d}"
    tmp = root / f".tmp_iter_{iteration:06d}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(policy.trainable_state_dict(), tmp / "policy.pt")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"iteration": iteration, "rng": rng_state(), "extra": {n: obj.state_dict() for n, obj in extra.items()}},
               tmp / "state.pt")
    files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT_VERSION, "iteration": iteration, "files": files,
                                            "extra": sorted(extra)}, indent=1), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint directories (a manifest, or state.pt for checkpoints of format 1), oldest first. They may
    still be damaged afterwards: ``verify_checkpoint`` / ``load_checkpoint`` tell."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _NAME.match(p.name)) and ((p / MANIFEST).is_file() or (p / "state.pt").is_file())]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def verify_checkpoint(path: Path) -> None:
    """CheckpointError unless every file of the manifest is there with its recorded size."""
    path = Path(path)
    manifest = path / MANIFEST
    if not manifest.is_file():
        if (path / "state.pt").is_file():  # format 1 (no manifest): completeness came from the rename alone
            return
        raise CheckpointError(f"{path} is not a checkpoint directory (no {MANIFEST})")
    try:
        files = json.loads(manifest.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, OSError) as err:
        raise CheckpointError(f"{manifest}: unreadable manifest ({err})") from None
    for name, size in files.items():
        file = path / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing (listed in the manifest)")
        if file.stat().st_size != size:
            raise CheckpointError(f"{file}: {file.stat().st_size} bytes, the manifest says {size} (truncated or "
                                  f"overwritten)")


def _load(file: Path, **kwargs) -> Any:
    try:
        return torch.load(file, **kwargs)
    except Exception as err:  # torch.load raises EOFError, RuntimeError, UnpicklingError ... on damage
        raise CheckpointError(f"{file}: cannot be read ({type(err).__name__}: {err})") from None


def load_checkpoint(path: Path, policy, optimizer: torch.optim.Optimizer | None = None, restore_rng: bool = True,
                    extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Load weights (and optimizer, RNG states, ``extra`` objects' state) from checkpoint directory
    ``path``; returns its state dict. CheckpointError naming the file when it is incomplete or unreadable;
    everything is read before anything is applied, so a damaged checkpoint changes nothing."""
    path = Path(path)
    verify_checkpoint(path)
    state = _load(path / "state.pt", weights_only=False)
    weights = _load(path / "policy.pt", map_location=policy.device, weights_only=True)
    optim = _load(path / "optimizer.pt", map_location=policy.device, weights_only=True) if optimizer else None
    saved_extra = state.get("extra") or {}
    missing = sorted(set(extra or {}) - set(saved_extra))
    if missing:
        raise CheckpointError(f"{path}: has no saved state {missing[0]!r} (it holds: "
                              f"{', '.join(sorted(saved_extra)) or 'none'})")
    policy.load_trainable_state_dict(weights)
    if optimizer is not None:
        optimizer.load_state_dict(optim)
    for name, obj in (extra or {}).items():
        obj.load_state_dict(saved_extra[name])
    if restore_rng:
        set_rng_state(state["rng"])
    return state
