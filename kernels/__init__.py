"""Triton kernels for graph credit assignment (installed as ``graphgpo.kernels``).

Triton is optional: it is detected once here (``HAS_TRITON``) and the kernels fail only when used.
Kernels run on CUDA tensors, or on CPU tensors under the Triton interpreter (``TRITON_INTERPRET=1``, set
before this package is imported), which is how CPU-only CI checks them. The interpreter has no driver, so
nothing here uses ``@triton.autotune``: block sizes are plain arguments.

Modules, in pipeline order:

* ``hashing``  - token rows -> 64-bit state keys (bit-exact with ``graphgpo.hashing.hash_token_rows``).
* ``dedup``    - dense node ids for (group, key), unique (src, dst) edges, reverse CSR.
* ``frontier`` - multi-source reverse BFS / Bellman-Ford from every group's SUCCESS sink.
* ``tail``     - d_max, graph returns, penalties, segment statistics and the advantages.
"""

from __future__ import annotations

import contextlib
import os

try:  # detected once; a missing or broken Triton fails only when a kernel is used
    import triton  # noqa: F401
    import triton.language  # noqa: F401

    HAS_TRITON = True
    TRITON_IMPORT_ERROR: str | None = None
except Exception as exc:  # ImportError, or a Triton build that cannot load its backend
    HAS_TRITON = False
    TRITON_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
"""True when Triton runs its CPU interpreter (read at import: Triton reads it when kernels are defined)."""

TEST_BLOCK: int | None = None
"""Tests set a small block size (elements per program) so that even small batches run on several programs
per grid and the atomics of different programs interleave under the interpreter; None = the sizes below."""


def require_triton() -> None:
    """Raise ImportError with the reason when Triton is unusable."""
    if not HAS_TRITON:
        raise ImportError(f"graphgpo.kernels needs triton (pip install 'graphgpo[gpu]'): {TRITON_IMPORT_ERROR}")


def check_device(*tensors) -> None:
    """Kernels launch on CUDA tensors, or on CPU tensors only under the interpreter."""
    require_triton()
    for t in tensors:
        if t is None:
            continue
        if t.device.type == "cuda":
            continue
        if t.device.type == "cpu" and INTERPRET:
            continue
        raise ValueError(
            f"graphgpo.kernels runs on CUDA tensors (or CPU tensors with TRITON_INTERPRET=1 set before "
            f"import); got a tensor on {t.device}"
        )


def launch(kernel, grid, *args, **constexprs) -> None:
    """``kernel[grid](*args, **constexprs)`` on the device of its tensors, whatever the current device is.

    The kernels index 1-D columns with unit strides, so a non-contiguous 1-D tensor argument is a bug of the
    caller and raises (2-D token rows are read through explicit stride arguments).
    """
    import torch

    device = None
    for i, arg in enumerate(args):
        if isinstance(arg, torch.Tensor):
            device = device or arg.device
            if arg.dim() == 1 and not arg.is_contiguous():
                raise ValueError(f"{getattr(kernel, '__name__', kernel)}: argument {i} is a strided 1-D tensor "
                                 f"(stride {arg.stride()}); "
                                 "the kernels read columns with unit stride")
    with device_guard(device):
        kernel[grid](*args, **constexprs)


def device_guard(device):
    """Make ``device`` current for a launch: Triton launches on the current CUDA device, not the tensors'."""
    import torch

    if device is not None and device.type == "cuda":
        return torch.cuda.device(device)
    return contextlib.nullcontext()
