"""Host syncs of the tensor pipeline, in one place so that they can be counted.

On CUDA, every read of a device value by the host (a size, a flag, a list) waits for all queued kernels
and rules out CUDA graphs. The tensor backends read back only through the functions below (plus the ops
that are documented to sync here: ``torch.unique`` sizes its output on the host), and each call notes one
sync. ``count_syncs()`` collects them, so a test on the CPU counts what the CUDA path would do, and
``benchmarks/gpu_check.py`` compares the count with ``torch.cuda.set_sync_debug_mode`` on a GPU.
"""

from __future__ import annotations

import contextlib

import torch

_logs: list[list[str]] = []


def note(where: str) -> None:
    """Record one host sync at ``where`` in every active ``count_syncs`` log."""
    for log in _logs:
        log.append(where)


@contextlib.contextmanager
def count_syncs():
    """Collect the names of the host syncs made inside the block: ``with count_syncs() as log: ...``."""
    log: list[str] = []
    _logs.append(log)
    try:
        yield log
    finally:
        _logs.remove(log)


def to_int(value: torch.Tensor, where: str) -> int:
    note(where)
    return int(value)


def to_list(value: torch.Tensor, where: str) -> list:
    note(where)
    return value.tolist()


def nonzero(mask: torch.Tensor, where: str) -> torch.Tensor:
    """Indices of the True entries of a 1-D mask (its length is read back)."""
    note(where)
    return torch.nonzero(mask).squeeze(1)


def compress(values: torch.Tensor, mask: torch.Tensor, where: str) -> torch.Tensor:
    """``values[mask]`` (its length is read back)."""
    note(where)
    return values[mask]


def unique(values: torch.Tensor, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(values, return_inverse=True)`` (its size is read back)."""
    note(where)
    return torch.unique(values, return_inverse=True)


def differ(a: torch.Tensor, b: torch.Tensor, where: str) -> bool:
    """Whether two tensors differ anywhere."""
    note(where)
    return not torch.equal(a, b)
