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


def supports(device) -> bool:
    """Whether kernels can run on tensors of ``device`` in this process."""
    import torch

    device = torch.device(device)
    return HAS_TRITON and (device.type == "cuda" or (device.type == "cpu" and INTERPRET))
