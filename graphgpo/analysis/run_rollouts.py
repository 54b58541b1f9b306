"""Fresh rollouts of a saved training run, for the graph view and the credit diagnostics.

The trainer does not store its rollouts (they are large and rebuilt every iteration), so the analysis
tools play new ones with what a run directory does store:

- ``config.yaml``: environment, template, G (``num_generations``), ``max_steps``, temperature, ω;
- the latest checkpoint (``checkpoints/iter_*``) and, for the embedded model, ``tokenizer/``: the policy.
  A run directory without a checkpoint (or ``policy="random"``) is played by a uniform-random policy over
  the environment's action words.

Tasks are the run's evaluation tasks (``graphgpo.trainer.loop.eval_task_seeds``): task N (0 <= N < the run's
eval_tasks, or its evaluation pool's size) is the N-th task the trainer evaluates on (held-out rooms for
Sokoban; for a finite pool such as the TextWorld benchmark's, game N of the evaluation pool), the same for
every run, so views of different runs show the same task.
Episodes are sampled at the run's training temperature (``--temperature`` to change it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["RunRollouts", "run_config", "evaluation_pool", "evaluation_task_count", "held_out_task_seeds",
           "collect_run_rollouts"]


@dataclass
class RunRollouts:
    """Rollouts of a run plus what produced them."""

    result: Any
    """graphgpo.rollout.RolloutResult (records, batch, actions, ...)."""
    config: Any
    """The run's TrainConfig."""
    policy_source: str
    """"checkpoint <path>" or "random policy"."""
    task_seeds: list[int]
    omega: float
    """GraphGPO's ω for this run's environment."""


def run_config(run_dir: str | Path):
    """The run's saved TrainConfig, on the CPU when this machine has no CUDA."""
    import torch

    from graphgpo.trainer.loop import load_run_config

    return load_run_config(run_dir, None if torch.cuda.is_available() else ["device=cpu"])


def evaluation_pool(cfg) -> int | None:
    """Size of the run's evaluation task pool (None: a new task per seed)."""
    from graphgpo.envs import task_pool_size

    return task_pool_size(cfg.env, **{**cfg.env_kwargs, **cfg.eval_env_kwargs})


def evaluation_task_count(num_tasks: int, pool: int | None = None) -> int:
    """How many evaluation tasks a run with ``eval_tasks=num_tasks`` has (``pool``: the size of the
    evaluation environment's finite task pool, where it has one)."""
    return min(num_tasks, pool) if pool is not None else num_tasks


def held_out_task_seeds(indices: Sequence[int], num_tasks: int, pool: int | None = None) -> list[int]:
    """Environment seeds of the run's evaluation tasks with the given indices (see evaluation_task_count)."""
    from graphgpo.trainer.loop import eval_task_seeds

    available = evaluation_task_count(num_tasks, pool)
    indices = list(indices)
    bad = [i for i in indices if not 0 <= i < available]
    if bad or not indices:
        raise ValueError(f"task {bad[0] if bad else '(none)'}: the run evaluates on tasks 0..{available - 1} "
                         f"(eval_tasks={num_tasks}" + (f", a pool of {pool}" if pool is not None else "") + ")")
    stream = eval_task_seeds(max(indices) + 1, pool)
    return [stream[i] for i in indices]


def _sampler(run_dir: Path, cfg, template, policy: str, temperature: float, seed: int):
    """(policy callable, description)."""
    from graphgpo.rollout import RandomPolicy
    from graphgpo.trainer.checkpoint import latest_checkpoint, load_checkpoint

    checkpoint = latest_checkpoint(run_dir) if policy != "random" else None
    if checkpoint is None:
        if policy == "checkpoint":
            raise ValueError(f"{run_dir}: no checkpoint (checkpoints/iter_*) to load the policy from")
        return RandomPolicy.for_template(template, seed=seed), "random policy"

    from graphgpo.trainer.engine import SamplingParams, make_engine
    from graphgpo.trainer.loop import EngineSampler
    from graphgpo.trainer.policy import load_policy

    if cfg.is_embedded:
        tokenizer_dir = run_dir / "tokenizer"
        if not tokenizer_dir.is_dir():
            raise ValueError(f"{run_dir}: the embedded model's tokenizer/ directory is missing")
        loaded = load_policy(cfg, action_words=list(template.fixed_vocabulary or ()), tokenizer_dir=tokenizer_dir)
    else:
        loaded = load_policy(cfg)
    load_checkpoint(checkpoint, loaded, None, restore_rng=False)
    engine = make_engine(loaded, cfg)
    params = SamplingParams(temperature=temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_completion_length)
    return EngineSampler(engine, params, seed), f"checkpoint {checkpoint}"


def collect_run_rollouts(run_dir: str | Path, task_indices: Sequence[int], *, policy: str = "auto",
                         temperature: float | None = None, seed: int = 0,
                         group_size: int | None = None) -> RunRollouts:
    """Play ``group_size`` (default: the run's G) episodes of each held-out task in ``task_indices``.

    ``policy``: "auto" (latest checkpoint, else random), "checkpoint" (error without one) or "random".
    """
    if policy not in ("auto", "checkpoint", "random"):
        raise ValueError(f"policy: expected 'auto', 'checkpoint' or 'random', got {policy!r}")
    import torch

    from graphgpo.envs.vector import EnvManager
    from graphgpo.prompting import get_template
    from graphgpo.rollout import collect_rollouts

    run_dir = Path(run_dir)
    if group_size is not None and group_size < 1:
        raise ValueError(f"group size must be >= 1, got {group_size}")
    if temperature is not None and not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    cfg = run_config(run_dir)
    template = get_template(cfg.env, cfg.prompt_style, history_length=cfg.history_length)
    eval_kwargs = {**cfg.env_kwargs, **cfg.eval_env_kwargs}
    seeds = held_out_task_seeds(task_indices, cfg.eval_tasks, evaluation_pool(cfg))
    sampler, source = _sampler(run_dir, cfg, template, policy,
                               cfg.temperature if temperature is None else temperature, seed)
    manager = EnvManager(cfg.env, eval_kwargs, group_size=group_size or cfg.num_generations,
                         max_steps=cfg.max_steps, executor="serial")
    try:
        with torch.no_grad():
            result = collect_rollouts(manager, sampler, task_seeds=seeds, template=template)
    finally:
        manager.close()
    return RunRollouts(result=result, config=cfg, policy_source=source, task_seeds=seeds, omega=cfg.resolved_omega)
