"""``compute_advantages``: the one public entry point to the estimators."""

from __future__ import annotations

from typing import Any

from graphgpo.backends import get_backend, resolve_backend
from graphgpo.batch import StepBatch
from graphgpo.config import make_config
from graphgpo.output import AdvantageOutput


def compute_advantages(batch: StepBatch, method: str = "graphgpo", backend: str = "auto", config: Any = None, *,
                       stats: bool = True, **options: Any) -> AdvantageOutput:
    """Per-step advantages of ``method`` for every row of ``batch``.

    Args:
        batch: a ``StepBatch`` (rows = environment steps).
        method: "graphgpo" | "gigpo" | "grpo" | "rloo".
        backend: "auto" | "reference" | "torch" | "triton" | "cugraph". "auto" picks the vectorised torch
            backend (CPU or CUDA); Triton only once ``graphgpo.backends.TRITON_BY_DEFAULT`` is flipped after a
            passing GPU check.
        config: a config instance of the method (``GraphGPOConfig`` ...); ``options`` override its fields.
        stats: compute ``AdvantageOutput.stats`` (graph diagnostics). False skips them: one host sync less on
            CUDA, and no graph at all for GRPO / RLOO.
        **options: fields of the method's config (e.g. ``omega=0.2``), or ``preset="webshop"``.

    Returns:
        ``AdvantageOutput`` in the batch's row order, on the batch's device.
    """
    if not isinstance(batch, StepBatch):
        raise TypeError(f"batch must be a graphgpo.StepBatch (see StepBatch.from_records), got {type(batch).__name__}")
    preset = options.pop("preset", None)
    resolved = make_config(method, preset=preset, config=config, **options)
    name = resolve_backend(backend, batch.device)
    if batch.num_rows == 0:
        return AdvantageOutput.empty(method, name, batch.device)
    return get_backend(name).compute(batch, method, resolved, stats=stats)
