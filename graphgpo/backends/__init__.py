"""Backend registry: which implementations of the estimators exist, which are usable here, and loading them.

Every backend is a module exposing ``compute(batch, method, config) -> AdvantageOutput``. Modules are
imported only when asked for, and optional packages (Triton, pylibcugraph) are detected once without
importing them, so ``import graphgpo`` stays light and a missing package fails only when its backend is used.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
from types import ModuleType

import torch

TRITON_BY_DEFAULT = False
"""Whether ``auto`` picks Triton for CUDA tensors (and ``StepBatch.from_tensors`` hashes token rows with the
Triton kernel). False until ``benchmarks/gpu_check.py`` has passed on a GPU and its table is in
benchmarks/RESULTS.md: the kernels have only run under Triton's CPU interpreter. Flip this one line then;
until then ``backend="triton"`` is opt-in."""

BACKENDS = ("reference", "torch", "triton", "cugraph")
"""All backend names, in order of preference for nothing in particular (``auto`` has its own rule)."""

_MODULES = {
    "reference": "graphgpo.backends.reference",
    "torch": "graphgpo.backends.torch_backend",
    "triton": "graphgpo.backends.triton_backend",
    "cugraph": "graphgpo.backends.cugraph_backend",
}

# Optional package each GPU backend needs, and the extra that installs it.
_REQUIREMENTS = {
    "triton": ("triton", "pip install 'graphgpo[gpu]'"),
    "cugraph": ("pylibcugraph", "pip install 'graphgpo[cugraph]'"),
}


@functools.cache
def _has_package(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@functools.cache
def _cuda_usable() -> bool:
    return torch.cuda.is_available()


def _is_cuda(device) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def unavailable_reason(name: str, device=None) -> str | None:
    """Why backend ``name`` cannot run here (on ``device``, if given); None when it can."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS + ('auto',)))}; got {name!r}")
    if name not in _REQUIREMENTS:
        return None
    package, install = _REQUIREMENTS[name]
    if not _has_package(package):
        return f"backend {name!r} needs the {package!r} package, which is not installed ({install})"
    # Under Triton's interpreter (tests only) the kernels also run on CPU tensors; read at call time because
    # the test setup sets it after this module may have been imported.
    interpreted = name == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
    if device is not None and not _is_cuda(device):
        if interpreted and torch.device(device).type == "cpu":
            return None
        return (f"backend {name!r} works on CUDA tensors; the batch is on {torch.device(device)} "
                "(use batch.to('cuda'))")
    if not _cuda_usable() and not interpreted:
        return f"backend {name!r} needs a CUDA device, and torch sees none"
    return None


def available_backends(device=None) -> list[str]:
    """Names of the backends usable here; with ``device``, those that can run on tensors on that device."""
    return [name for name in BACKENDS if unavailable_reason(name, device) is None]


def triton_by_default(device) -> bool:
    """Whether work on ``device`` goes to the Triton kernels without being asked (see ``TRITON_BY_DEFAULT``)."""
    return TRITON_BY_DEFAULT and _is_cuda(device) and unavailable_reason("triton", device) is None


def resolve_backend(name: str, device=None) -> str:
    """Turn ``"auto"`` into a concrete name and check that the backend can run on ``device``.

    ``auto``: the vectorised torch backend (CPU or CUDA); Triton for CUDA tensors once ``TRITON_BY_DEFAULT``
    is flipped (never the Triton interpreter). An explicit "triton" also runs CPU tensors when
    TRITON_INTERPRET=1. Raises ValueError for an unknown name and RuntimeError for a known backend that
    cannot run here.
    """
    if name == "auto":
        return "triton" if triton_by_default(device) else "torch"
    reason = unavailable_reason(name, device)
    if reason is not None:
        raise RuntimeError(reason)
    return name


def get_backend(name: str) -> ModuleType:
    """Import and return the module of backend ``name`` (a module with ``compute(batch, method, config)``)."""
    if name not in _MODULES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {name!r}")
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as error:
        if name in _REQUIREMENTS:
            package, install = _REQUIREMENTS[name]
            raise ImportError(f"backend {name!r} could not be loaded ({error}); it needs {package!r}: "
                              f"{install}") from error
        raise
