"""How many threads the CPU credit step runs on.

The credit step is hundreds of small tensor ops. With more than one intra-op thread, every op above
PyTorch's grain size opens an OpenMP parallel region, and on a machine where another process holds a core
(env workers, tokenisers, data loaders: the normal case in training) each region waits for a descheduled
thread: measured on 2 shared cores, 93k steps took 0.87-1.17 s instead of 26 ms, and ``from_tensors`` on
2k token rows 0.17-1.1 s instead of 0.05 s. One thread costs little on a quiet machine (the ops are
memory- and dispatch-bound; benchmarks/RESULTS.md), so the CPU paths run single-threaded by default.
"""

from __future__ import annotations

import contextlib

import torch

CPU_THREADS: int | None = 1
"""Intra-op threads of the CPU credit step (StepBatch construction and the tensor backends); None leaves
``torch.get_num_threads()`` as the caller set it."""


@contextlib.contextmanager
def cpu_threads(device):
    """Run the block with ``CPU_THREADS`` intra-op threads when ``device`` is the CPU, then restore."""
    wanted = CPU_THREADS
    if wanted is None or torch.device(device).type != "cpu" or torch.get_num_threads() == wanted:
        yield
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(saved)
