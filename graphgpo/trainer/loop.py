"""The training loop (GraphGPO paper, Algorithm 1, with PPO as in verl-agent):

    for iteration = 1 .. N:
        roll out G copies of each of B tasks in lockstep           -> per-step rows (prompt, response, logp)
        compute_advantages(rows, method) on the policy's device     -> one advantage per step
        PPO update in mini-batches (the step's advantage on every response token of that step)
        every eval_every iterations: evaluate on held-out tasks at eval_temperature
        log metrics; every save_every iterations: checkpoint

Reproducibility: every random choice of iteration i (task seeds, sampling seeds, mini-batch order) is drawn
from seeds derived from (config.seed, i), and model + optimizer are checkpointed, so a resumed run repeats
an uninterrupted one exactly. Evaluation tasks come from a fixed stream of odd seeds (training uses even
seeds), the same for every run and config seed, so runs are compared on the same rooms. Environments
with a finite task pool (TextWorld's ``game_pool_size``) train on tasks drawn from that pool and evaluate
every task of the evaluation environment's pool once (``eval_tasks`` caps how many).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint
from .config import TrainConfig, apply_mapping, load_yaml, parse_overrides
from .dynamic_sampling import SampledBatch, sample_informative
from .engine import GenerationEngine, SamplingParams, make_engine
from .policy import Policy, load_policy, resolve_device
from .runlog import RunLog, json_safe, read_metrics, session_record
from .update import NonFiniteError, StepSamples, ppo_update, sampling_temperature, score_responses

# Random-policy episodes: at least 4 per eval task and 1024 in all, so the baseline's standard error stays
# below ~0.015 (256 Sokoban rooms x 4; a 32-game TextWorld pool x 32: 4 x 32 episodes measured 0.06-0.28).
RANDOM_BASELINE_MIN_REPEATS = 4
RANDOM_BASELINE_MIN_EPISODES = 1024
EVAL_SEED_STREAM = "graphgpo-eval"


def derived_seed(*parts: Any) -> int:
    """A 63-bit seed from any parts; the same in every process (str seeding of random is sha512-based)."""
    return random.Random("-".join(map(str, parts))).randrange(2**63)


def train_task_seeds(cfg: TrainConfig, iteration: int, pool: int | None = None, round: int = 0) -> list[int]:
    """Task seeds of one iteration's rollout round (round > 0: dynamic sampling's extra rounds): even seeds,
    or tasks of a finite pool (without repeats within a round while the pool is large enough)."""
    parts = ("tasks", cfg.seed, iteration) + (("round", round) if round else ())
    rng = random.Random(derived_seed(*parts))
    if pool is not None:
        if cfg.tasks_per_batch <= pool:
            return rng.sample(range(pool), cfg.tasks_per_batch)
        return [rng.randrange(pool) for _ in range(cfg.tasks_per_batch)]
    return [2 * rng.randrange(2**30) for _ in range(cfg.tasks_per_batch)]


def eval_task_seeds(num_tasks: int, pool: int | None = None) -> list[int]:
    """Held-out task seeds: a fixed stream of odd seeds, or the first ``num_tasks`` tasks of a pool."""
    if pool is not None:
        return list(range(min(num_tasks, pool)))
    rng = random.Random(EVAL_SEED_STREAM)
    return [2 * rng.randrange(2**30) + 1 for _ in range(num_tasks)]


def random_policy_success(manager, template, seeds: list[int]) -> list[float]:
    """Success rate of a uniform-random policy on ``seeds``, one value per repeat (enough repeats for
    RANDOM_BASELINE_MIN_EPISODES episodes)."""
    from graphgpo.rollout import RandomPolicy, collect_rollouts

    repeats = max(RANDOM_BASELINE_MIN_REPEATS, -(-RANDOM_BASELINE_MIN_EPISODES // max(len(seeds), 1)))
    rates = []
    for repeat in range(repeats):
        policy = RandomPolicy.for_template(template, seed=derived_seed("random", repeat))
        rates.append(collect_rollouts(manager, policy, task_seeds=seeds, template=template).stats["success_rate"])
    return rates


class EngineSampler:
    """``policy(prompts) -> generations`` for collect_rollouts; each call gets its own seed."""

    def __init__(self, engine: GenerationEngine, params: SamplingParams, seed: int):
        self.engine, self.params = engine, params
        self.rng = random.Random(seed)

    def __call__(self, prompts: list[str]):
        return self.engine.generate(prompts, replace(self.params, seed=self.rng.randrange(2**63)))


class GracefulInterrupt:
    """First Ctrl-C: finish the current iteration, checkpoint, stop. Second Ctrl-C: stop at once (the
    last checkpoint on disk stays usable)."""

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> "GracefulInterrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nInterrupted: finishing this iteration and saving a checkpoint (Ctrl-C again to stop now).",
              flush=True)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.env}-{cfg.advantage.method}-seed{cfg.seed}-{stamp}"


def load_run_config(run_dir: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The resolved config a run saved (``RUN_DIR/config.yaml``), with optional dotted overrides."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory (no config.yaml)")
    cfg = TrainConfig()
    try:
        apply_mapping(cfg, load_yaml(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}" if not str(err).startswith(str(path)) else str(err)) from None
    if overrides:
        apply_mapping(cfg, parse_overrides(overrides), merge_dicts=True)
    cfg.output_dir = str(run_dir)
    return cfg.validate()


def _check_writable(path: Path) -> None:
    """ValueError unless ``path`` can be created: a directory is made and removed in its nearest existing
    ancestor (os.access says yes to root everywhere, /proc included)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".graphgpo-write-check-", dir=existing))
    except OSError:
        raise ValueError(f"output_dir {str(path)!r}: cannot write there ({existing} is not a writable "
                         f"directory)") from None


class Trainer:
    """Owns the policy, engine, environments and run directory of one training run."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, evaluate_only: bool = False,
                 checkpoint: str | Path | None = None):
        """``resume``: continue the run in cfg.output_dir from its latest intact checkpoint (only changes
        that keep the run's meaning are accepted, see TrainConfig.resume_changes). ``evaluate_only``: load a
        finished/partial run (``checkpoint`` or the latest) for evaluation; nothing in it is written.

        Everything is validated and built before the run directory is created, so a failed start leaves
        none behind."""
        cfg.validate()
        self.run_dir = Path(cfg.output_dir) if cfg.output_dir else default_run_dir(cfg)
        self.resume = resume or evaluate_only
        self.evaluate_only = evaluate_only
        # The config with every "None = decide for me" default spelt out: what runs and what config.yaml says.
        self.cfg = cfg = cfg.resolved(on_cuda=resolve_device(cfg.device).type == "cuda")
        cfg.output_dir = str(self.run_dir)
        self.config_changes: dict[str, tuple] = {}
        if not evaluate_only:
            self._check_run_dir()
        threads = cfg.num_threads or (1 if cfg.is_embedded else len(os.sched_getaffinity(0)))
        torch.set_num_threads(threads)
        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)

        from graphgpo.envs import task_pool_size
        from graphgpo.envs.vector import EnvManager
        from graphgpo.prompting import get_template

        self.template = get_template(cfg.env, cfg.prompt_style, history_length=cfg.history_length)
        if cfg.action_mode == "choose":
            self.template = self.template.for_choice()
        self.env_kwargs = dict(cfg.env_kwargs)
        self.eval_env_kwargs = {**self.env_kwargs, **cfg.eval_env_kwargs}
        self.train_pool = task_pool_size(cfg.env, **self.env_kwargs)
        self.eval_pool = task_pool_size(cfg.env, **self.eval_env_kwargs)
        self.manager = EnvManager(cfg.env, self.env_kwargs, group_size=cfg.num_generations,
                                  max_steps=cfg.max_steps, executor="serial")
        self.eval_manager = EnvManager(cfg.env, self.eval_env_kwargs, group_size=1, max_steps=cfg.max_steps,
                                       executor="serial")
        self.eval_seeds = eval_task_seeds(cfg.eval_tasks, self.eval_pool)
        self.policy = self._load_policy()
        if cfg.use_chat_template is None:
            cfg.use_chat_template = self.policy.use_chat_template
        self.engine = make_engine(self.policy, cfg)
        params = [p for p in self.policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        if cfg.kl_coef > 0:
            self.policy.enable_reference()
        self.memory = None
        if cfg.advantage.memory:
            from graphgpo.memory import GraphMemory

            self.memory = GraphMemory(cfg.advantage.memory_max_edges_per_task, cfg.advantage.memory_max_tasks)
        # State saved in every checkpoint and restored on resume besides policy, optimizer and RNG: name ->
        # object with state_dict()/load_state_dict(). Register before the restore below.
        self.checkpointed: dict[str, Any] = {}
        if self.memory is not None:
            self.checkpointed["graph_memory"] = self.memory
        self.iteration = 0
        if self.resume:
            self._restore(checkpoint)
        self.log = None
        if not evaluate_only:
            self._open_run_dir()
        self.random_baseline: float | None = None
        self._updating = False  # True from the update's start until the iteration is logged and counted

    # ------------------------------------------------------------------ setup
    def _check_run_dir(self) -> None:
        """Before anything is built: a new run needs a free, writable output_dir; a resumed run a run
        directory whose config may take this config's changes."""
        run = self.run_dir
        if self.resume:
            saved = load_run_config(run).resolved(on_cuda=resolve_device(self.cfg.device).type == "cuda")
            if self.cfg.use_chat_template is None:  # "auto" is decided by the tokenizer, the run's own
                self.cfg.use_chat_template = saved.use_chat_template
            self.config_changes = self.cfg.resume_changes(saved)
        elif (run / "metrics.jsonl").exists() or (run / "checkpoints").exists():
            raise ValueError(f"output_dir {str(run)!r} already holds a run: use --resume {run} or another "
                             f"--output-dir")
        else:
            _check_writable(run)

    def _restore(self, checkpoint: str | Path | None) -> None:
        """Load ``checkpoint``, or the newest intact checkpoint of the run (naming any damaged newer one)."""
        candidates = [Path(checkpoint)] if checkpoint is not None else list_checkpoints(self.run_dir)[::-1]
        if not candidates:
            purpose = "to evaluate" if self.evaluate_only else "to resume from"
            raise ValueError(f"{self.run_dir}: no checkpoint (checkpoints/iter_*) {purpose}")
        damaged = []
        for path in candidates:
            try:
                state = load_checkpoint(path, self.policy, None if self.evaluate_only else self.optimizer,
                                        restore_rng=not self.evaluate_only,
                                        extra=None if self.evaluate_only else self.checkpointed)
            except CheckpointError as err:
                if checkpoint is not None:
                    raise
                damaged.append(str(err))
                print(f"warning: damaged checkpoint: {err}; trying the one before it", file=sys.stderr, flush=True)
                continue
            self.iteration = int(state["iteration"])
            self.engine.load_weights(self.policy.model)
            if damaged:
                print(f"resuming from {path} (iteration {self.iteration}), the newest intact checkpoint",
                      file=sys.stderr, flush=True)
            return
        raise ValueError(f"{self.run_dir}: no intact checkpoint to resume from ({'; '.join(damaged)})")

    def _open_run_dir(self) -> None:
        """Create/update the run directory: config.yaml (resolved), the embedded tokenizer, one line of
        run_history.jsonl per session (config changes, package versions, git commit), metrics log."""
        run, cfg = self.run_dir, self.cfg
        if self.resume and self.iteration > cfg.num_iterations:
            raise ValueError(f"resume: the checkpoint is at iteration {self.iteration}, beyond "
                             f"num_iterations={cfg.num_iterations}")
        created = not run.exists()
        try:
            run.mkdir(parents=True, exist_ok=True)
            (run / "config.yaml").write_text(cfg.to_yaml(), encoding="utf-8")
            tokenizer_dir = run / "tokenizer"
            if cfg.is_embedded and not (self.resume and tokenizer_dir.is_dir()):
                self.policy.tokenizer.save_pretrained(str(tokenizer_dir))
            record = session_record("resume" if self.resume else "start", self.iteration, self.config_changes,
                                    device=str(self.policy.device), threads=torch.get_num_threads())
            with open(run / "run_history.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps(json_safe(record), default=str) + "\n")
            self.log = RunLog(run, resume_iteration=self.iteration if self.resume else None,
                              tensorboard=cfg.tensorboard, report_to=cfg.report_targets, config=cfg.to_dict())
        except OSError as err:
            if created:
                shutil.rmtree(run, ignore_errors=True)
            raise ValueError(f"output_dir {str(run)!r}: cannot write the run directory ({err.strerror or err})") \
                from None
        self._created_run_dir = created

    def _load_policy(self) -> Policy:
        cfg = self.cfg
        if not cfg.is_embedded:
            return load_policy(cfg)
        actions = list(self.template.fixed_vocabulary or ())
        if not actions:
            raise ValueError(f"the embedded model needs an environment with a fixed action set; {cfg.env!r} "
                             f"with prompt_style={cfg.prompt_style!r} has none")
        tokenizer_dir = self.run_dir / "tokenizer"
        if tokenizer_dir.is_dir() and self.resume:
            return load_policy(cfg, action_words=actions, tokenizer_dir=tokenizer_dir)
        return load_policy(cfg, vocabulary=self._observation_words(), action_words=actions)

    def _observation_words(self) -> list[str]:
        """Words the embedded tokenizer needs: what the environment says its prompts can show
        (``env.vocabulary(seeds)``: Sokoban's symbols, the words of TextWorld's games) plus the rendered
        first prompts of a sample of evaluation tasks."""
        from graphgpo import envs
        from graphgpo.prompting import PromptContext

        cfg = self.cfg
        sample = self.eval_seeds[:32] if self.eval_pool is not None else list(range(1, 64, 2))
        words: set[str] = set()
        sources = [(self.env_kwargs, self.train_pool)]
        if self.eval_env_kwargs != self.env_kwargs:  # e.g. a held-out pool; the same pool is read once
            sources.append((self.eval_env_kwargs, self.eval_pool))
        for kwargs, pool in sources:
            probe = envs.make(cfg.env, **kwargs)
            try:
                if hasattr(probe, "vocabulary"):
                    words.update(probe.vocabulary(range(pool) if pool is not None else sample))
            finally:
                probe.close()
        for step in self.eval_manager.reset(sample):
            ctx = PromptContext(observation=step.observation, task=step.info.get("task", ""),
                                admissible_actions=step.info.get("admissible_actions"))
            words.update(self.template.render(ctx).split())
        return sorted(words)

    # ------------------------------------------------------------------ phases
    def rollout(self, iteration: int) -> SampledBatch:
        """G x tasks episodes in lockstep with the current policy at the training temperature; with dynamic
        sampling (``filter_groups``), more rounds until the batch holds tasks_per_batch informative groups."""
        cfg = self.cfg
        return sample_informative(lambda round: self.rollout_round(iteration, round), cfg.tasks_per_batch,
                                  cfg.filter_groups.max_num_gen_batches, cfg.filter_groups.enable)

    def rollout_round(self, iteration: int, round: int):
        """One round of tasks_per_batch tasks; its tasks and sampling seed come from (seed, iteration, round)."""
        from graphgpo.rollout import collect_rollouts

        cfg = self.cfg
        temperature = cfg.choice_temperature if cfg.action_mode == "choose" else cfg.temperature
        seed_parts = ("sample", cfg.seed, iteration) + (("round", round) if round else ())
        sampler = self.sampler(temperature, derived_seed(*seed_parts), top_p=cfg.top_p)
        return collect_rollouts(self.manager, sampler,
                                task_seeds=train_task_seeds(cfg, iteration, self.train_pool, round),
                                template=self.template, device=str(self.policy.device),
                                prompt_fits=self.prompt_fits)

    def sampler(self, temperature: float, seed: int, top_p: float = 1.0):
        """The rollout policy: the engine's free generation, or the choice policy (action_mode=choose)."""
        cfg = self.cfg
        if cfg.action_mode == "choose":
            from .choice import ChoiceSampler

            return ChoiceSampler(self.policy, temperature, seed, batch_size=cfg.generation_batch_size)
        params = SamplingParams(temperature=temperature, top_p=top_p, max_new_tokens=cfg.max_completion_length)
        return EngineSampler(self.engine, params, seed)

    @property
    def prompt_fits(self):
        """Full prompts leave out history before they outgrow max_prompt_length (compact ones have none)."""
        return self.policy.prompt_fits if self.cfg.prompt_style == "full" else None

    def advantages(self, rollout, iteration: int):
        from graphgpo.api import compute_advantages

        cfg = self.cfg
        out = compute_advantages(rollout.batch, method=cfg.advantage.method, backend=cfg.advantage.backend,
                                 memory=self.memory, task_keys=rollout.task_seeds, **cfg.advantage_options())
        bad = ~torch.isfinite(out.advantages)
        if bad.any():
            raise NonFiniteError(f"iteration {iteration}: {int(bad.sum())} of {bad.numel()} advantages are "
                                 f"NaN/inf ({cfg.advantage.method}, backend {out.backend})")
        return out

    def samples(self, rollout, advantages: torch.Tensor) -> StepSamples:
        """Per-turn samples: the prompt of that step, its response tokens, the rollout log-probs."""
        gens = rollout.generations
        missing = [i for i, g in enumerate(gens) if not hasattr(g, "response_ids")]
        if missing:
            raise ValueError(f"row {missing[0]}: the generation carries no token ids (engine output expected)")
        choose = self.cfg.action_mode == "choose"
        return StepSamples(prompt_ids=[g.prompt_ids for g in gens], response_ids=[g.response_ids for g in gens],
                           old_logprobs=[g.logprobs for g in gens],
                           advantages=advantages.detach().float().cpu(),
                           choice_ids=[g.choice_ids for g in gens] if choose else None,
                           choices=[g.choice for g in gens] if choose else None)

    def update(self, samples: StepSamples, iteration: int) -> dict[str, float]:
        cfg = self.cfg
        recompute = cfg.recompute_old_logprobs
        if recompute is None:
            recompute = cfg.resolved_engine == "vllm"
        self.engine.sleep()
        temperature = sampling_temperature(cfg, samples)
        if recompute:
            samples.old_logprobs = score_responses(self.policy, samples, temperature, cfg.micro_batch_size)
        if cfg.kl_coef > 0:
            samples.ref_logprobs = score_responses(self.policy, samples, temperature, cfg.micro_batch_size,
                                                   reference=True)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate(iteration)
        generator = torch.Generator().manual_seed(derived_seed("minibatch", cfg.seed, iteration))
        stats = ppo_update(self.policy, self.optimizer, samples, cfg, generator, iteration)
        self.engine.wake_up()
        self.engine.load_weights(self.policy.model)
        return stats

    def learning_rate(self, iteration: int) -> float:
        return self.cfg.learning_rate_at(iteration)

    def evaluate(self, iteration: int, *, num_tasks: int | None = None, temperature: float | None = None) -> dict:
        """Held-out tasks, one episode each, at ``eval_temperature`` (0 = greedy)."""
        from graphgpo.rollout import collect_rollouts, success_by_task_type

        cfg = self.cfg
        temperature = cfg.eval_temperature if temperature is None else temperature
        seeds = self.eval_seeds if num_tasks is None else eval_task_seeds(num_tasks, self.eval_pool)
        sampler = self.sampler(temperature, derived_seed("eval", cfg.seed, iteration))
        result = collect_rollouts(self.eval_manager, sampler, task_seeds=seeds, template=self.template,
                                  prompt_fits=self.prompt_fits)
        return {"eval_success_rate": result.stats["success_rate"], "eval_mean_return": result.stats["mean_return"],
                "eval_mean_length": result.stats["mean_length"],
                "eval_valid_action_rate": 1.0 - result.stats["invalid_rate"],
                "eval_success_by_task_type": success_by_task_type(result)}

    def measure_random_baseline(self) -> float:
        """Success of a uniform-random policy (over the action words, or a menu's listed choices) on the eval
        tasks (cached in the run)."""
        path = self.run_dir / "random_baseline.json"
        if path.is_file():
            return json.loads(path.read_text())["random_policy_success_rate"]
        rates = random_policy_success(self.eval_manager, self.template, self.eval_seeds)
        rate = float(np.mean(rates))
        path.write_text(json.dumps({"random_policy_success_rate": rate, "repeats": rates,
                                    "eval_tasks": len(self.eval_seeds)}, indent=1))
        return rate

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict:
        cfg = self.cfg
        first = self.iteration
        print(f"run directory: {self.run_dir}" + (f"  (tensorboard --logdir {self.run_dir / 'tensorboard'})"
                                                  if cfg.tensorboard else ""), flush=True)
        try:
            if cfg.random_baseline:
                self.random_baseline = self.measure_random_baseline()
        except BaseException:
            self._remove_failed_start()
            raise
        bar = self._progress_bar()
        status = "completed"
        last_saved = self.iteration if self.resume else None
        started = time.perf_counter()
        try:
            with GracefulInterrupt() as interrupt:
                for iteration in range(self.iteration + 1, cfg.num_iterations + 1):
                    row = self.train_iteration(iteration)
                    self.log.log(row)
                    self.iteration = iteration
                    self._updating = False
                    if (cfg.save_every and iteration % cfg.save_every == 0) or iteration == cfg.num_iterations:
                        self.save()
                        last_saved = iteration
                    self._show(bar, row)
                    if interrupt.requested:
                        status = "interrupted"
                        break
        except KeyboardInterrupt:
            # A second Ctrl-C (or one outside the main thread). Before the update started, the weights are
            # still those of the last finished iteration and get saved below; during the update they are
            # half-updated, so the last checkpoint on disk stays the usable one.
            status = "interrupted"
            if self._updating:
                last_saved = -1
        except NonFiniteError as err:
            self.log.close()
            if self.iteration == 0:
                self._remove_failed_start()
                raise
            self.write_summary(f"stopped: {err}", time.perf_counter() - started)
            kept = latest_checkpoint(self.run_dir)
            raise NonFiniteError(f"{err}. Training stopped; the last good checkpoint is "
                                 f"{kept if kept is not None else '(none yet)'}.") from None
        except BaseException:
            if self.iteration == 0:  # nothing trained yet: a failed start leaves no run directory
                self.log.close()
                self._remove_failed_start()
            raise
        finally:
            if bar is not None:
                bar.close()
            self.log.close()
        if status == "interrupted" and last_saved != -1 and last_saved != self.iteration:
            self.save()
        summary = self.write_summary(status, time.perf_counter() - started)
        final_model = self.run_dir / "final_model"
        if status == "completed" and cfg.save_final_model and (self.iteration > first or not final_model.exists()):
            self.policy.save_pretrained(final_model)
        return summary

    def _remove_failed_start(self) -> None:
        """Delete the run directory this (fresh) start created, when it failed before its first iteration."""
        if not self.resume and getattr(self, "_created_run_dir", False) and self.iteration == 0:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def train_iteration(self, iteration: int) -> dict[str, Any]:
        """One iteration of the loop in the module docstring; returns its metrics row."""
        cfg = self.cfg
        t0 = time.perf_counter()
        sampled = self.rollout(iteration)
        rollout, first = sampled.train, sampled.rounds[0]
        t1 = time.perf_counter()
        # The success metrics are those of round 0: the iteration's own tasks, as in a run without DS.
        row: dict[str, Any] = {
            "iteration": iteration,
            "success_rate": first.stats["success_rate"],
            "mean_return": first.stats["mean_return"],
            "mean_length": first.stats["mean_length"],
            "valid_action_rate": 1.0 - first.stats["invalid_rate"],
            "num_steps": len(rollout.records),
            **sampled.metrics(),
        }
        tokens = 0  # prompt + response tokens trained on
        if rollout.records:
            adv = self.advantages(rollout, iteration)
            t2 = time.perf_counter()
            self._updating = True
            samples = self.samples(rollout, adv.advantages)
            tokens = sum(map(len, samples.prompt_ids)) + sum(map(len, samples.response_ids))
            stats = self.update(samples, iteration)
            stats["learning_rate"] = self.learning_rate(iteration)
            row.update({
                **stats,
                "advantage_mean": float(adv.advantages.float().mean()),
                "advantage_std": float(adv.advantages.float().std()) if adv.advantages.numel() > 1 else 0.0,
                "advantage_abs_max": float(adv.advantages.abs().max()),
            })
            for key in ("num_nodes", "duplicate_edge_rate", "singleton_step_group_share", "groups_without_success",
                        "memory_edges", "memory_success_groups"):
                if key in adv.stats:
                    row[f"graph_{key}"] = float(adv.stats[key])
        else:  # dynamic sampling found no informative group in max_num_gen_batches rounds
            t2 = time.perf_counter()
            self._updating = True
            row["update_skipped"] = 1
        if self.memory is not None:  # remember every round's graphs, also of the groups DS dropped
            for result in sampled.rounds:
                self.memory.add(result.batch, result.task_seeds)
            row["memory_tasks"] = len(self.memory)
        t3 = time.perf_counter()
        due = (cfg.eval_every and iteration % cfg.eval_every == 0) or iteration == cfg.num_iterations
        t4 = t3
        if due:
            row.update(self.evaluate(iteration))
            t4 = time.perf_counter()
        row.update({"time_rollout": t1 - t0, "time_advantage": t2 - t1, "time_update": t3 - t2,
                    "time_eval": t4 - t3, "time_iteration": t4 - t0,
                    "env_steps_per_s": sum(len(r.records) for r in sampled.rounds) / max(t1 - t0, 1e-9),
                    "tokens_per_s": tokens / max(t3 - t0, 1e-9)})
        return row

    def save(self) -> Path:
        return save_checkpoint(self.run_dir, self.iteration, self.policy, self.optimizer, extra=self.checkpointed,
                               keep=self.cfg.keep_checkpoints)

    # ------------------------------------------------------------------ reporting
    def write_summary(self, status: str, wall_time: float) -> dict:
        from .plots import plot_runs

        rows = read_metrics(self.run_dir)
        evals = [r for r in rows if "eval_success_rate" in r]
        last = rows[-10:]
        summary = {
            "status": status,
            "iterations": self.iteration,
            "eval_success_rate": evals[-1]["eval_success_rate"] if evals else None,
            "eval_iteration": evals[-1]["iteration"] if evals else None,
            "eval_success_by_task_type": evals[-1].get("eval_success_by_task_type") if evals else None,
            "best_eval_success_rate": max((r["eval_success_rate"] for r in evals), default=None),
            "random_policy_success_rate": self.random_baseline,
            "train_success_rate_last10": float(np.mean([r["success_rate"] for r in last])) if last else None,
            "eval_tasks": len(self.eval_seeds),
            "eval_temperature": self.cfg.eval_temperature,
            "seconds_per_iteration": float(np.mean([r["time_iteration"] for r in rows])) if rows else None,
            "train_time_s": float(sum(r["time_iteration"] for r in rows)),
            "wall_time_this_session_s": wall_time,
            "seed": self.cfg.seed,
            "method": self.cfg.advantage.method,
            "model": self.cfg.model_name_or_path,
            "env": self.cfg.env,
            "run_dir": str(self.run_dir),
        }
        (self.run_dir / "summary.json").write_text(json.dumps(json_safe(summary), indent=1), encoding="utf-8")
        if rows:
            plot_runs([self.run_dir], self.run_dir / "learning_curve.png")
        return summary

    def close(self) -> None:
        self.manager.close()
        self.eval_manager.close()
        close_engine = getattr(self.engine, "close", None)  # e.g. vLLM's temporary model directory
        if close_engine is not None:
            close_engine()
        if self.log is not None:
            self.log.close()

    def _progress_bar(self):
        if not self.cfg.progress_bar:
            return None
        from tqdm import tqdm

        return tqdm(total=self.cfg.num_iterations, initial=self.iteration, desc="train", dynamic_ncols=True)

    def _show(self, bar, row: dict) -> None:
        """The progress bar's postfix, or without a bar one printed line every log_every iterations."""
        text = (f"succ {row['success_rate']:.2f} ret {row['mean_return']:.2f} "
                f"valid {row['valid_action_rate']:.2f}")
        if "eval_success_rate" in row:
            text += f" eval {row['eval_success_rate']:.2f}"
        text += f" | roll {row['time_rollout']:.2f}s adv {row['time_advantage']:.2f}s upd {row['time_update']:.2f}s"
        if bar is not None:
            bar.set_postfix_str(text, refresh=False)
            bar.update(1)
            return
        every, it = self.cfg.log_every, row["iteration"]
        if every and (it % every == 0 or it == self.cfg.num_iterations or "eval_success_rate" in row):
            print(f"iteration {it}/{self.cfg.num_iterations}: {text}", flush=True)


def train(cfg: TrainConfig, *, resume: bool = False) -> dict:
    """Run (or resume, when ``resume``: cfg.output_dir is the run) training; returns the summary."""
    trainer = Trainer(cfg, resume=resume)
    try:
        return trainer.train()
    finally:
        trainer.close()


def evaluate_run(run_dir: str | Path, *, checkpoint: str | Path | None = None, num_tasks: int | None = None,
                 temperature: float | None = None, overrides: list[str] | None = None) -> dict:
    """Evaluate a run's checkpoint (default: the latest) on the held-out tasks; writes nothing."""
    if num_tasks is not None and (isinstance(num_tasks, bool) or num_tasks < 1):
        raise ValueError(f"tasks must be >= 1, got {num_tasks}")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a number >= 0 (0 = greedy), got {temperature}")
    cfg = load_run_config(run_dir, overrides)
    trainer = Trainer(cfg, evaluate_only=True, checkpoint=checkpoint)
    try:
        result = trainer.evaluate(trainer.iteration, num_tasks=num_tasks, temperature=temperature)
    finally:
        trainer.close()
    tasks = len(eval_task_seeds(num_tasks or cfg.eval_tasks, trainer.eval_pool))
    return {"iteration": trainer.iteration, "eval_tasks": tasks,
            "eval_temperature": cfg.eval_temperature if temperature is None else temperature, **result}
