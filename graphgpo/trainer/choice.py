"""The choice policy (``action_mode="choose"``): the LM picks one admissible command by its own likelihood.

For a prompt s and the commands a_1 .. a_C the environment admits (Sokoban: the four moves), each encoded as
a whole response by ``Policy.encode_choice`` (command tokens + end-of-turn token)::

    score(a_k | s) = sum_t log p_LM(a_k,t | s, a_k,<t)        (the LM's raw next-token distribution)
    pi(a_k | s)    = softmax_k(score(a_k | s) / choice_temperature)

as in GLAM (Carta et al., ICML 2023). Small instruct models (SmolLM2-135M) rarely follow the free-text
answer format, so free generation gives every row "invalid" and no learning signal; scoring the commands
gives a valid action at every step. Rollouts sample from pi, evaluation takes the most likely command
(temperature 0). PPO uses log pi of the chosen command: one ratio per step, the k3 KL to the reference
model's pi over the same commands, the entropy of pi. Every action is one of the listed commands, so it is
always valid and the invalid-action penalty never fires.

Cost: the prompt runs through the model once; its KV cache is then copied to one row per command and the
commands (right-padded, so padding only ever follows real tokens) run on top of it. G rollouts of a task
revisit the same states, so identical (prompt, commands) rows are scored once.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Sequence

import torch

from .engine import Generation
from .loss import entropy_from_logits
from .policy import Policy, pack_sequences

CACHE_TOKENS_PER_PASS = 16384
"""Prompt-cache tokens copied per candidate pass (rows x prompt width), to bound memory without gradients
(SmolLM2-135M: 46 KB of keys/values per token, so ~0.75 GB)."""


@dataclass
class ChoiceGeneration(Generation):
    """A Generation whose response is one of the listed commands (``response_ids = choice_ids[choice]``;
    ``logprobs = [log pi(choice | prompt)]``)."""

    choice_ids: list[list[int]] = field(default_factory=list)
    """Token ids of every command that was scored, in the environment's order."""
    choice: int = 0
    """Index of the chosen command."""


def _select_cache(cache, rows: torch.Tensor, config):
    """A new DynamicCache holding rows ``rows`` of ``cache`` (differentiable copy; ``cache`` is untouched, so
    several candidate passes can start from the same prompt cache)."""
    from transformers import DynamicCache

    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(layer, "keys") for layer in layers):
        raise ValueError(f"the choice policy needs a key/value cache per layer; the model returned "
                         f"{type(cache).__name__}")
    return DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows]) for layer in layers], config=config)


def _returned_cache(output):
    """The KV cache a forward pass returned (``cache`` in transformers >= 5.24, ``past_key_values`` before)."""
    for name in ("cache", "past_key_values"):
        value = output.get(name) if hasattr(output, "get") else getattr(output, name, None)
        if value is not None:
            return value
    return None


def _cache_argument(model: torch.nn.Module) -> str:
    """The forward argument that takes a KV cache (``past_key_values`` is deprecated from transformers 5.24)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps forward(**kwargs)
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def choice_scores(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]],
                  choice_ids: Sequence[Sequence[Sequence[int]]], pad_id: int, device: torch.device, *,
                  share_prompt: bool = True) -> list[torch.Tensor]:
    """``scores[u][k]`` = sum of the log-probs of ``choice_ids[u][k]``'s tokens after ``prompt_ids[u]``, one
    float32 tensor per prompt (differentiable when called with gradients on).

    ``share_prompt``: run each prompt once and reuse its KV cache for all its candidates (falls back to
    full sequences when the model returns no cache, e.g. with gradient checkpointing in training);
    False: one forward pass per (prompt, candidate) sequence."""
    if len(prompt_ids) != len(choice_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(choice_ids)} candidate lists")
    for u, cands in enumerate(choice_ids):
        if not cands:
            raise ValueError(f"prompt {u}: no candidates to score")
        if any(len(c) == 0 for c in cands):
            raise ValueError(f"prompt {u}: a candidate has no tokens")
    owner = [u for u, cands in enumerate(choice_ids) for _ in cands]
    flat = [list(c) for cands in choice_ids for c in cands]
    total = None
    if share_prompt:
        total = _shared_prompt_scores(model, prompt_ids, flat, owner, pad_id, device)
    if total is None:
        total = _full_sequence_scores(model, [prompt_ids[u] for u in owner], flat, pad_id, device)
    return list(total.split([len(c) for c in choice_ids]))


def _shared_prompt_scores(model, prompt_ids, flat, owner, pad_id, device) -> torch.Tensor | None:
    inputs = pack_sequences(prompt_ids, [[] for _ in prompt_ids], pad_id, device)
    width = inputs["input_ids"].shape[1] - 1  # drop the empty response column
    attn = inputs["attention_mask"][:, :width]
    out = model(input_ids=inputs["input_ids"][:, :width], attention_mask=attn,
                position_ids=inputs["position_ids"][:, :width], use_cache=True, logits_to_keep=1)
    cache = _returned_cache(out)
    if cache is None and any(len(c) > 1 for c in flat):
        return None  # the model would not keep a cache (gradient checkpointing): full sequences instead
    owner_t = torch.as_tensor(owner, device=device)
    first = torch.log_softmax(out.logits[:, -1, :].float(), -1)  # [U, V]: predicts every candidate's token 0
    total = first[owner_t, torch.as_tensor([c[0] for c in flat], device=device)]
    longer = [n for n, c in enumerate(flat) if len(c) > 1]
    if not longer:
        return total
    prompt_len = attn.sum(-1)
    per_pass = max(1, CACHE_TOKENS_PER_PASS // max(width, 1))
    for start in range(0, len(longer), per_pass):
        chunk = longer[start:start + per_pass]
        rows = owner_t[chunk]
        cand = [flat[n] for n in chunk]
        span = max(len(c) for c in cand) - 1  # inputs: tokens 0..L-2; targets: tokens 1..L-1
        ids = torch.full((len(chunk), span), pad_id, dtype=torch.long)
        targets = torch.full((len(chunk), span), -1, dtype=torch.long)
        for i, c in enumerate(cand):
            ids[i, :len(c) - 1] = torch.as_tensor(c[:-1])
            targets[i, :len(c) - 1] = torch.as_tensor(c[1:])
        ids, targets = ids.to(device), targets.to(device)
        mask = torch.cat([attn[rows], (targets >= 0).long()], dim=1)
        positions = prompt_len[rows].unsqueeze(1) + torch.arange(span, device=device)
        cached = {_cache_argument(model): _select_cache(cache, rows, model.config)}
        logits = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                       **cached).logits.float()
        logp = torch.log_softmax(logits, -1).gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        total = total.index_add(0, torch.as_tensor(chunk, device=device), (logp * (targets >= 0)).sum(-1))
    return total


def _full_sequence_scores(model, prompts, flat, pad_id, device) -> torch.Tensor:
    inputs = pack_sequences(prompts, flat, pad_id, device)
    span = inputs["response_width"]
    logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   position_ids=inputs["position_ids"], logits_to_keep=span + 1, use_cache=False).logits
    logp = torch.log_softmax(logits[:, :span, :].float(), -1)  # column P-1+j predicts candidate token j
    targets = inputs["responses"]
    token_logp = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    return (token_logp * inputs["response_mask"]).sum(-1)


def _unique_rows(prompt_ids, choice_ids) -> tuple[list, list, list[int]]:
    """Distinct (prompt, candidates) rows and each row's index among them."""
    index: dict[tuple, int] = {}
    inverse = [index.setdefault((tuple(p), tuple(tuple(c) for c in cands)), len(index))
               for p, cands in zip(prompt_ids, choice_ids)]
    prompts = [list(key[0]) for key in index]
    cands = [[list(c) for c in key[1]] for key in index]
    return prompts, cands, inverse


def choice_logprobs(policy: Policy, prompt_ids: Sequence[Sequence[int]], choice_ids: Sequence[Sequence[Sequence[int]]],
                    choices: Sequence[int], temperature: float = 1.0, *, with_entropy: bool = False,
                    model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """log pi(choices[b] | prompt b) under softmax(scores / temperature), shaped like
    ``Policy.response_logprobs``: ``(logprobs [B, 1], mask [B, 1], entropy of pi [B, 1] or None)``.
    Gradients flow when called outside ``torch.no_grad``; identical rows share one forward pass."""
    model = policy.model if model is None else model
    if not len(prompt_ids) == len(choice_ids) == len(choices):
        raise ValueError(f"{len(prompt_ids)} prompts, {len(choice_ids)} candidate lists, {len(choices)} choices")
    for b, (k, cands) in enumerate(zip(choices, choice_ids)):
        if not 0 <= k < len(cands):
            raise ValueError(f"row {b}: choice {k} is not one of its {len(cands)} candidates")
    prompts, cands, inverse = _unique_rows(prompt_ids, choice_ids)
    scores = choice_scores(model, prompts, cands, policy.pad_token_id, policy.device)
    logp_unique = [torch.log_softmax(s / temperature, -1) for s in scores]
    logp = torch.stack([logp_unique[u][k] for u, k in zip(inverse, choices)]).unsqueeze(-1)
    entropy = None
    if with_entropy:
        ent_unique = [entropy_from_logits(s / temperature) for s in scores]
        entropy = torch.stack([ent_unique[u] for u in inverse]).unsqueeze(-1)
    return logp, torch.ones_like(logp), entropy


class ChoiceSampler:
    """The rollout policy of ``action_mode="choose"``: ``sampler(prompts, choices)`` returns one
    ``ChoiceGeneration`` per prompt, its text the chosen command (``collect_rollouts`` calls samplers that
    have ``chooses_actions`` with the commands of each step).

    ``temperature`` 0 takes the most likely command (evaluation); otherwise samples from
    softmax(scores / temperature) with a generator seeded by ``seed``. ``batch_size`` distinct prompts are
    scored per forward pass (0 = all)."""

    chooses_actions = True

    def __init__(self, policy: Policy, temperature: float, seed: int, batch_size: int = 0):
        self.policy = policy
        self.temperature = float(temperature)
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(int(seed) % 2**63)

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str], choices: Sequence[Sequence[str]]) -> list[ChoiceGeneration]:
        if len(prompts) != len(choices):
            raise ValueError(f"{len(prompts)} prompts but {len(choices)} command lists")
        policy = self.policy
        prompt_ids = [policy.encode_prompt(p) for p in prompts]
        choice_ids = [[policy.encode_choice(a) for a in commands] for commands in choices]
        unique_prompts, unique_cands, inverse = _unique_rows(prompt_ids, choice_ids)
        size = self.batch_size or len(unique_prompts)
        was_training = policy.model.training
        policy.model.eval()
        try:
            scores = []
            for start in range(0, len(unique_prompts), size):
                scores += choice_scores(policy.model, unique_prompts[start:start + size],
                                        unique_cands[start:start + size], policy.pad_token_id, policy.device)
        finally:
            policy.model.train(was_training)
        greedy = self.temperature <= 0
        out = []
        for b, u in enumerate(inverse):
            logp = torch.log_softmax(scores[u].cpu() / (1.0 if greedy else self.temperature), -1)
            if greedy:
                k = int(logp.argmax())
            else:
                k = int(torch.multinomial(logp.exp(), 1, generator=self.generator))
            out.append(ChoiceGeneration(text=choices[b][k], prompt_ids=prompt_ids[b], response_ids=choice_ids[b][k],
                                        logprobs=[float(logp[k])], choice_ids=choice_ids[b], choice=k))
        return out
