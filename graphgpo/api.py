"""``compute_advantages``: the one public entry point to the estimators."""

from __future__ import annotations

from typing import Any, Hashable, Sequence

from graphgpo.backends import get_backend, resolve_backend
from graphgpo.batch import StepBatch
from graphgpo.config import make_config
from graphgpo.memory import GraphMemory, check_task_keys
from graphgpo.output import AdvantageOutput
from graphgpo.similarity import similarity_inputs


def compute_advantages(batch: StepBatch, method: str = "graphgpo", backend: str = "auto", config: Any = None,
                       memory: GraphMemory | None = None, task_keys: Sequence[Hashable] | None = None, *,
                       stats: bool = True, **options: Any) -> AdvantageOutput:
    """Per-step advantages of ``method`` for every row of ``batch``.

    Args:
        batch: a ``StepBatch`` (rows = environment steps).
        method: "graphgpo" | "gigpo" | "grpo" | "rloo".
        backend: "auto" | "reference" | "torch" | "triton" | "cugraph". "auto" picks the vectorised torch
            backend (CPU or CUDA); Triton only once ``graphgpo.backends.TRITON_BY_DEFAULT`` is flipped after a
            passing GPU check.
        config: a config instance of the method (``GraphGPOConfig`` ...); ``options`` override its fields.
        memory: a ``graphgpo.memory.GraphMemory`` (GraphGPO only; read, not updated): distances on the union
            of each group's graph and the remembered graph of its task. Valid only for deterministic
            environments. Ignored by GiGPO, GRPO and RLOO. Every backend takes it (extra edges of the
            pipeline's ``GraphInputs``).
        task_keys: with ``memory``, the task of each dense group (stable across iterations, e.g. task
            seeds); default: the batch's group labels.
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
    if memory is not None and not isinstance(memory, GraphMemory):
        raise TypeError(f"memory must be a graphgpo.memory.GraphMemory, got {type(memory).__name__}")
    threshold = getattr(resolved, "similarity", None)
    use_memory = memory is not None and method == "graphgpo"
    if use_memory and threshold is not None:
        raise ValueError("memory and similarity cannot be combined: remembered edges use exact state keys")
    if batch.num_rows == 0:
        return AdvantageOutput.empty(method, name, batch.device)
    if not use_memory:
        # The reference backend runs the recipe's literal similarity loop (the oracle); the others the exact
        # fast path (the same clusters).
        if threshold is None:
            return get_backend(name).compute(batch, method, resolved, stats=stats)
        inputs = similarity_inputs(batch, method, threshold, fast=name != "reference")
        return get_backend(name).compute(batch, method, resolved, inputs, stats=stats)
    keys = check_task_keys(batch, batch.group_labels if task_keys is None else task_keys)
    extra = memory.extra_edges(keys, batch.device)
    batch = extra.costed(batch)
    out = get_backend(name).compute(batch, method, resolved, extra.graph_inputs(batch), stats=stats)
    if stats:
        out.stats.update(extra.stats(batch))
    return out
