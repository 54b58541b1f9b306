"""The PPO update on per-step samples: mini-batches, gradient accumulation, gradient clipping.

A sample is one environment step: the prompt ids of that step, the response ids, the rollout policy's
log-probs of those tokens, and the step's advantage (the same scalar for every response token). With
``action_mode=choose`` the sample also carries every scored command, and its one log-prob is log pi of the
chosen command under the choice distribution (``graphgpo.trainer.choice``): one ratio per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .loss import policy_loss


class NonFiniteError(RuntimeError):
    """A NaN/inf in advantages, loss or gradients: the run stops without saving the bad state."""


@dataclass
class StepSamples:
    """Per-step training samples, aligned row by row."""

    prompt_ids: list[list[int]]
    response_ids: list[list[int]]
    old_logprobs: list[list[float]]
    advantages: torch.Tensor
    """float32 [rows], one advantage per step."""
    ref_logprobs: list[list[float]] | None = None
    choice_ids: list[list[list[int]]] | None = None
    """action_mode=choose: every scored command's token ids per row (``response_ids`` is the chosen one);
    the log-probs are then log pi(command | prompt) of the choice distribution, one per row."""
    choices: list[int] | None = None
    """action_mode=choose: index of the chosen command per row."""

    def __len__(self) -> int:
        return len(self.prompt_ids)

    @property
    def is_choice(self) -> bool:
        return self.choice_ids is not None

    def num_scored(self, rows: Sequence[int]) -> int:
        """Log-probs the loss averages over: response tokens, or one per row for choices."""
        return len(rows) if self.is_choice else sum(len(self.response_ids[r]) for r in rows)

    def logprobs(self, policy, rows: Sequence[int], temperature: float, *, with_entropy: bool = False,
                 model: torch.nn.Module | None = None):
        """``(logprobs [B, W], mask [B, W], entropy or None)`` of ``rows`` under ``model`` (default: the
        policy's): response tokens, or the chosen command under the choice distribution."""
        prompts = [self.prompt_ids[r] for r in rows]
        if self.is_choice:
            from .choice import choice_logprobs

            return choice_logprobs(policy, prompts, [self.choice_ids[r] for r in rows],
                                   [self.choices[r] for r in rows], temperature, with_entropy=with_entropy,
                                   model=model)
        return policy.response_logprobs(prompts, [self.response_ids[r] for r in rows], temperature,
                                        with_entropy=with_entropy, model=model)


def sampling_temperature(cfg, samples: StepSamples) -> float:
    """The temperature the rows were sampled at: the choice distribution's, or the tokens'."""
    return cfg.choice_temperature if samples.is_choice else cfg.temperature


def _padded(values: Sequence[Sequence[float]], rows: Sequence[int], width: int, device) -> torch.Tensor:
    out = torch.zeros((len(rows), width), dtype=torch.float32)
    for i, r in enumerate(rows):
        v = values[r]
        if len(v):
            out[i, :len(v)] = torch.as_tensor(v, dtype=torch.float32)[:width]
    return out.to(device)


@torch.no_grad()
def score_responses(policy, samples: StepSamples, temperature: float, micro_batch_size: int,
                    reference: bool = False) -> list[list[float]]:
    """Log-probs of every sample's response under the current (or reference) weights, no gradient."""
    out: list[list[float]] = []
    was_training = policy.model.training
    policy.model.eval()
    try:
        for start in range(0, len(samples), micro_batch_size):
            rows = range(start, min(start + micro_batch_size, len(samples)))
            if reference:
                with policy.reference() as ref_model:
                    logp, mask, _ = samples.logprobs(policy, rows, temperature, model=ref_model)
            else:
                logp, mask, _ = samples.logprobs(policy, rows, temperature)
            for i in range(len(rows)):
                out.append(logp[i, :int(mask[i].sum())].tolist())
    finally:
        policy.model.train(was_training)
    return out


def grouped_by_prompt(samples: StepSamples, rows: Sequence[int]) -> list[int]:
    """``rows`` with equal prompts next to each other (first-seen order), so that a micro-batch holds the
    G rollouts' repeats of a state together and scores the shared prompt once. The mini-batch's gradient is a
    sum over its rows, so the grouping changes no result beyond float rounding."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for r in rows:
        groups.setdefault(tuple(samples.prompt_ids[r]), []).append(r)
    return [r for group in groups.values() for r in group]


def ppo_update(policy, optimizer: torch.optim.Optimizer, samples: StepSamples, cfg,
               generator: torch.Generator, iteration: int) -> dict[str, float]:
    """``cfg.ppo_epochs`` passes over ``samples`` in shuffled mini-batches; returns mean statistics.

    Each mini-batch is one optimizer step; it is split into micro-batches whose losses are normalised by
    the mini-batch's total response tokens, so accumulation gives the mini-batch's token mean."""
    params = [p for p in policy.model.parameters() if p.requires_grad]
    # Entropy comes free where the whole action distribution is at hand (embedded model, choices).
    with_entropy = cfg.entropy_coef > 0 or policy.action_token_ids is not None or samples.is_choice
    temperature = sampling_temperature(cfg, samples)
    totals: dict[str, float] = {}
    steps = 0
    n = len(samples)
    policy.model.train()
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=generator).tolist()
        for mb_start in range(0, n, cfg.mini_batch_size):
            mini = order[mb_start:mb_start + cfg.mini_batch_size]
            if cfg.micro_batch_size < len(mini):
                mini = grouped_by_prompt(samples, mini)
            num_tokens = samples.num_scored(mini)
            if num_tokens == 0:
                continue
            optimizer.zero_grad(set_to_none=True)
            stats = {"loss": 0.0, "pg_loss": 0.0, "kl": 0.0, "entropy": 0.0, "clip_fraction": 0.0,
                     "approx_kl_old": 0.0}
            for mc_start in range(0, len(mini), cfg.micro_batch_size):
                rows = mini[mc_start:mc_start + cfg.micro_batch_size]
                logp, mask, entropy = samples.logprobs(policy, rows, temperature, with_entropy=with_entropy)
                width = mask.shape[1]
                old = _padded(samples.old_logprobs, rows, width, mask.device)
                ref = None
                if samples.ref_logprobs is not None:
                    ref = _padded(samples.ref_logprobs, rows, width, mask.device)
                adv = samples.advantages[rows].to(mask.device)
                out = policy_loss(logp, old, adv, mask, clip_ratio=cfg.clip_ratio, dual_clip=cfg.dual_clip,
                                  ref_logprobs=ref, kl_coef=cfg.kl_coef, entropy=entropy,
                                  entropy_coef=cfg.entropy_coef, num_tokens=num_tokens)
                if not torch.isfinite(out.loss):
                    raise NonFiniteError(f"iteration {iteration}: the PPO loss is {out.loss.item()} "
                                         f"(pg_loss {out.pg_loss.item()}, kl {out.kl.item()})")
                out.loss.backward()
                for key in stats:
                    stats[key] += float(getattr(out, key).detach())
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            if not torch.isfinite(grad_norm):
                raise NonFiniteError(f"iteration {iteration}: the gradient norm is {grad_norm.item()}")
            optimizer.step()
            stats["grad_norm"] = float(grad_norm)
            for key, value in stats.items():
                totals[key] = totals.get(key, 0.0) + value
            steps += 1
    optimizer.zero_grad(set_to_none=True)
    if not with_entropy:
        totals.pop("entropy", None)  # not computed: do not log a misleading 0
    if samples.ref_logprobs is None:
        totals.pop("kl", None)  # no reference model (kl_coef=0): likewise
    result = {k: v / max(steps, 1) for k, v in totals.items()}
    result["optimizer_steps"] = steps
    return result
