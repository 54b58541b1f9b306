"""Generation engines: the interface the trainer samples actions through, and the ``hf`` engine.

Interface (``GenerationEngine``), implemented by ``HFEngine`` here and by the vLLM engine in
``engine_vllm.py`` (class ``VLLMEngine``, constructed as ``VLLMEngine(policy, config)`` with the trainer's
``Policy`` and ``TrainConfig``):

- ``generate(prompts: list[str], params: SamplingParams) -> list[Generation]``: one Generation per prompt,
  in order. Each carries ``text`` (decoded response, special tokens skipped), ``prompt_ids`` (exactly the
  ids the policy was conditioned on: ``policy.encode_prompt(prompt)``, chat template included),
  ``response_ids`` (sampled tokens, including a final EOS if one was produced), ``logprobs`` (one float
  per response token: log-prob of that token under softmax(logits / temperature) of the generating
  weights, no top-p renormalisation; for temperature 0, under softmax(logits)), ``finish_reason``
  ("stop" or "length"). ``params.seed`` makes sampling reproducible where the engine can.
- ``sleep()``: release generation memory (KV cache, and weights where possible) before the PPO update.
- ``wake_up()``: re-acquire it after the update, before ``load_weights``.
- ``load_weights(weights)``: make generation use the trainer's current weights; ``weights`` is the trainer's
  ``torch.nn.Module`` (peft-wrapped or not) or a state dict ``{name: tensor}`` with Hugging Face names.
  Called once after every update (and after a resume).

The trainer calls them in this order each iteration: ``generate`` (many times, one call per env step) ->
``sleep`` -> update -> ``wake_up`` -> ``load_weights``.

``HFEngine`` runs the policy's own model (``transformers`` generate with left padding; for the embedded
model a single forward pass per step with the logits restricted to the action tokens), so ``sleep``,
``wake_up`` and ``load_weights`` have nothing to do.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch

from .policy import Policy, pack_sequences


@dataclass
class SamplingParams:
    """How to sample one batch of responses."""

    temperature: float = 1.0
    """Softmax temperature; 0 = greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    max_new_tokens: int = 1
    """Response tokens at most."""
    seed: int | None = None
    """Seed of this call's sampling (None: the engine's global random state)."""


@dataclass
class Generation:
    """One sampled response, aligned with its prompt (what ``collect_rollouts`` keeps per row)."""

    text: str
    prompt_ids: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str = "stop"


class GenerationEngine(abc.ABC):
    """See the module docstring for the contract every engine keeps."""

    @abc.abstractmethod
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        """One Generation per prompt, in order."""

    def sleep(self) -> None:
        """Free generation memory before the update (no-op by default)."""

    def wake_up(self) -> None:
        """Re-acquire generation memory after the update (no-op by default)."""

    def load_weights(self, weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Use the trainer's current weights (no-op for engines that share the trainer's model)."""


class HFEngine(GenerationEngine):
    """Batched generation with the policy's own transformers model (CPU or GPU)."""

    def __init__(self, policy: Policy, batch_size: int = 0):
        self.policy = policy
        self.batch_size = batch_size

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        if not prompts:
            return []
        prompt_ids = [self.policy.encode_prompt(p) for p in prompts]
        generator = None  # the one-token path samples with it; generate() seeds the global RNG instead
        if params.seed is not None:
            generator = torch.Generator(device=self.policy.device).manual_seed(int(params.seed))
        size = self.batch_size or len(prompts)
        was_training = self.policy.model.training
        self.policy.model.eval()
        try:
            out: list[Generation] = []
            for start in range(0, len(prompts), size):
                chunk = prompt_ids[start:start + size]
                if self.policy.action_token_ids is not None:
                    out.extend(self._one_action_token(chunk, params, generator))
                else:
                    out.extend(self._hf_generate(chunk, params))
            return out
        finally:
            self.policy.model.train(was_training)

    def _one_action_token(self, prompt_ids: list[list[int]], params: SamplingParams,
                          generator: torch.Generator | None) -> list[Generation]:
        """Embedded model: one forward pass, logits restricted to the action tokens, one sample per row."""
        policy = self.policy
        logp_unique, inverse = policy.action_distribution(prompt_ids, 1.0)
        logits = logp_unique[inverse]  # log-softmax at T=1 = logits up to a per-row constant
        allowed = torch.as_tensor(policy.action_token_ids, device=logits.device)
        choice, logp = sample_from_logits(logits, params, generator)
        tokens = allowed[choice].tolist()
        logp = logp.tolist()
        return [Generation(text=policy.tokenizer.convert_ids_to_tokens(t), prompt_ids=p, response_ids=[t],
                           logprobs=[lp], finish_reason="stop")
                for p, t, lp in zip(prompt_ids, tokens, logp)]

    def _hf_generate(self, prompt_ids: list[list[int]], params: SamplingParams) -> list[Generation]:
        """Any causal LM: transformers generate with left padding; log-probs from the raw logits."""
        policy = self.policy
        inputs = pack_sequences(prompt_ids, [[] for _ in prompt_ids], policy.pad_token_id, policy.device)
        width = inputs["input_ids"].shape[1] - 1
        greedy = params.temperature <= 0
        kwargs: dict[str, Any] = dict(max_new_tokens=params.max_new_tokens, do_sample=not greedy,
                                      return_dict_in_generate=True, output_logits=True,
                                      pad_token_id=policy.pad_token_id, use_cache=True)
        if not greedy:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        if params.seed is not None:
            # generate() samples from the global RNG; seed it for this call only.
            devices = [policy.device] if policy.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(int(params.seed))
                result = policy.model.generate(input_ids=inputs["input_ids"][:, :width],
                                               attention_mask=inputs["attention_mask"][:, :width], **kwargs)
        else:
            result = policy.model.generate(input_ids=inputs["input_ids"][:, :width],
                                           attention_mask=inputs["attention_mask"][:, :width], **kwargs)
        new_tokens = result.sequences[:, width:]
        raw = torch.stack(result.logits, dim=1).float()  # [B, T, V] before any warper
        if not greedy:
            raw = raw / params.temperature
        token_logp = torch.log_softmax(raw, -1).gather(-1, new_tokens.unsqueeze(-1)).squeeze(-1)
        eos = policy.eos_token_id
        stop_ids = set(_as_list(getattr(policy.model.generation_config, "eos_token_id", None)))
        if eos is not None:
            stop_ids.add(eos)
        out = []
        for row, p in enumerate(prompt_ids):
            ids = new_tokens[row].tolist()
            end, reason = len(ids), "length"
            for j, t in enumerate(ids):
                if t in stop_ids:
                    end, reason = j + 1, "stop"
                    break
            ids = ids[:end]
            out.append(Generation(text=policy.decode(ids), prompt_ids=p, response_ids=ids,
                                  logprobs=token_logp[row, :end].tolist(), finish_reason=reason))
        return out


def sample_from_logits(logits: torch.Tensor, params: SamplingParams,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices sampled from softmax(logits / T) (top-p filtered) or argmax for T = 0, and their log-probs
    under the temperature-scaled distribution."""
    if params.temperature <= 0:
        choice = logits.argmax(-1)
        logp = torch.log_softmax(logits, -1)
    else:
        scaled = logits / params.temperature
        logp = torch.log_softmax(scaled, -1)
        probs = logp.exp()
        if params.top_p < 1.0:
            sorted_p, order = probs.sort(-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < params.top_p
            filtered = torch.zeros_like(probs).scatter(-1, order, sorted_p * keep)
            probs = filtered
        choice = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    return choice, logp.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value]
    return [int(value)]


def make_engine(policy: Policy, config) -> GenerationEngine:
    """The engine named by ``config`` (a TrainConfig): hf, or vllm (optional extra)."""
    name = config.resolved_engine
    if name == "hf":
        return HFEngine(policy, batch_size=config.generation_batch_size)
    if name == "vllm":
        try:
            from .engine_vllm import VLLMEngine
        except ImportError as err:
            raise ImportError(f"engine=vllm needs the vllm extra (pip install 'graphgpo[vllm]'): {err}") from err
        return VLLMEngine(policy, config)
    raise ValueError(f"engine must be 'hf' or 'vllm', got {name!r}")
