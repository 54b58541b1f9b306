"""PPO policy loss on response tokens: clipped ratio, optional dual clip, k3 KL, entropy bonus.

All per-token tensors have shape [rows, tokens]; ``mask`` marks real response tokens (1) and padding (0).
Advantages are one scalar per row (one environment step), broadcast to every response token of that step.
Aggregation is the token mean: the sum over real tokens divided by their count, so long responses weigh
more, as in verl's "token-mean". With gradient accumulation pass ``num_tokens`` = the real tokens of the
whole mini-batch, so that micro-batch losses add up to the mini-batch's token mean.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PolicyLoss:
    """The loss to backpropagate and its parts (detached floats are taken by the caller for logging)."""

    loss: torch.Tensor
    """pg_loss + kl_coef * kl - entropy_coef * entropy (scalar, differentiable)."""
    pg_loss: torch.Tensor
    """Token-mean clipped policy-gradient loss."""
    kl: torch.Tensor
    """Token-mean k3 KL estimate to the reference (0 when no reference)."""
    entropy: torch.Tensor
    """Token-mean entropy of the policy (0 when no entropies were given)."""
    clip_fraction: torch.Tensor
    """Share of real tokens where the clipped term was chosen (the gradient is zero there)."""
    approx_kl_old: torch.Tensor
    """Token-mean k3 KL between the rollout policy and the current one (drift monitor)."""


def masked_token_mean(values: torch.Tensor, mask: torch.Tensor, num_tokens: float | None = None) -> torch.Tensor:
    """Sum of ``values`` over real tokens / ``num_tokens`` (default: the real tokens in ``mask``)."""
    mask = mask.to(values.dtype)
    denom = mask.sum() if num_tokens is None else torch.as_tensor(float(num_tokens), dtype=values.dtype)
    return (values * mask).sum() / denom.clamp_min(1.0)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Low-variance, non-negative KL(pi || ref) estimate per token (Schulman's k3):
    exp(ref - logp) - (ref - logp) - 1. The log-ratio is clamped to [-20, 20] so that exp stays finite."""
    log_ratio = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


def clipped_pg_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    clip_ratio: float = 0.2, dual_clip: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token PPO loss ``max(-A r, -A clip(r, 1-eps, 1+eps))`` and a bool tensor "clipped term chosen".

    ``advantages`` is [rows] or [rows, tokens]. With ``dual_clip = c`` the loss of a token with A < 0 is
    additionally capped at ``-A * c`` (Ye et al. 2020), so a huge ratio cannot blow up a negative update.
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(-1)
    advantages = advantages.to(logprobs.dtype)
    # Clamp the log-ratio so exp cannot overflow on a wildly off-policy token; the clip makes its
    # gradient zero anyway in that range.
    ratio = torch.exp((logprobs - old_logprobs).clamp(-20.0, 20.0))
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_ratio, 1.0 + clip_ratio)
    loss = torch.maximum(unclipped, clipped)
    chosen_clipped = clipped > unclipped
    if dual_clip is not None:
        capped = torch.minimum(loss, -advantages * dual_clip)
        loss = torch.where(advantages < 0, capped, loss)
    return loss, chosen_clipped


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                mask: torch.Tensor, *, clip_ratio: float = 0.2, dual_clip: float | None = None,
                ref_logprobs: torch.Tensor | None = None, kl_coef: float = 0.0,
                entropy: torch.Tensor | None = None, entropy_coef: float = 0.0,
                num_tokens: float | None = None) -> PolicyLoss:
    """The PPO objective on one (micro-)batch of response tokens; see the module docstring."""
    pg_tokens, chosen_clipped = clipped_pg_loss(logprobs, old_logprobs, advantages, clip_ratio, dual_clip)
    pg_loss = masked_token_mean(pg_tokens, mask, num_tokens)
    zero = pg_loss.new_zeros(())
    kl = zero
    if ref_logprobs is not None:
        kl = masked_token_mean(k3_kl(logprobs, ref_logprobs), mask, num_tokens)
    ent = zero
    if entropy is not None:
        ent = masked_token_mean(entropy, mask, num_tokens)
    loss = pg_loss
    if ref_logprobs is not None and kl_coef:
        loss = loss + kl_coef * kl
    if entropy is not None and entropy_coef:
        loss = loss - entropy_coef * ent
    with torch.no_grad():
        clip_fraction = masked_token_mean(chosen_clipped.to(pg_tokens.dtype), mask, num_tokens)
        approx_kl_old = masked_token_mean(k3_kl(logprobs.detach(), old_logprobs), mask, num_tokens)
    return PolicyLoss(loss=loss, pg_loss=pg_loss, kl=kl, entropy=ent, clip_fraction=clip_fraction,
                      approx_kl_old=approx_kl_old)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension (float32 for stability); -inf logits allowed."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    p = logp.exp()
    # 0 * -inf would be NaN for masked-out tokens: they contribute nothing.
    return -(p * torch.where(p > 0, logp, torch.zeros_like(logp))).sum(-1)
