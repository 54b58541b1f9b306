"""The ``vllm`` generation engine: a vLLM ``LLM`` colocated with the policy on the same device.

It keeps the contract of ``engine.GenerationEngine`` (see that module's docstring) and adds what a colocated
engine needs:

- **One process, shared device.** vLLM runs in the trainer's process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``),
  so weight sync passes tensors by reference: ``LLM.collective_rpc(fn)`` calls ``fn(worker)`` directly on the
  in-process worker, and ``fn`` hands the trainer's tensors to ``worker.model_runner.model.load_weights``,
  which copies them into vLLM's own (fused qkv / gate_up) layout. No file, no socket, no extra copy.
- **Memory.** ``gpu_memory_utilization`` is the share of the GPU vLLM may take (weights + KV cache).
  ``sleep()`` releases it for the PPO update (CUDA/ROCm: vLLM sleep mode; level 2 drops the weights too,
  since ``load_weights`` rewrites every one after the update). ``wake_up()`` maps the weights back;
  ``load_weights`` fills them, resets the prefix cache (its KV entries were computed by the old weights),
  then maps the KV cache back, so the KV cache never coexists with a half-updated model.
  On CPU vLLM has no sleep mode: both calls are no-ops there and the KV cache is a fixed size.
- **Sampling.** Prompts go in as token ids (``policy.encode_prompt``, so both engines condition on exactly
  the same ids). Each prompt gets its own seed derived from ``params.seed`` (one shared seed would give the
  G rollouts of a group, which share their first prompt, identical samples). Log-probs come from vLLM's
  ``processed_logprobs`` mode: log-softmax of the logits after the allowed-token mask and temperature, the
  contract's quantity. With ``top_p < 1`` vLLM renormalises over the nucleus, which the contract excludes,
  so in that case the log-probs are recomputed with the policy's own forward pass.
- **Embedded model.** The action-token restriction of the embedded model maps to vLLM's
  ``allowed_token_ids``; its weights and word-level tokenizer are saved to a temporary directory for vLLM
  to load (there is no hub id).

vllm is an optional extra: this module imports it only when an engine is built.
"""

from __future__ import annotations

import inspect
import os
import random
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from .engine import Generation, GenerationEngine, SamplingParams
from .policy import Policy

SEED_SPACE = 2**63
"""Per-prompt seeds are drawn from [0, 2^63): torch generators take any such value."""


@dataclass
class VLLMSettings:
    """How the colocated vLLM engine is built. ``from_config`` fills it from a ``TrainConfig``: the fields
    with a ``vllm_`` twin there (``vllm_gpu_memory_utilization``, ``vllm_sleep_level``, ...) take that
    value when the config has it, the rest keep these defaults."""

    gpu_memory_utilization: float = 0.4
    """Share of GPU memory vLLM may take for weights, activations and KV cache (CUDA). Must leave room
    for the trainer's weights, gradients and optimizer state while vLLM is awake."""
    sleep_level: int = 2
    """vLLM sleep level during the update: 1 = weights offloaded to host memory and restored on wake-up,
    2 = weights dropped (faster, no host copy; correct because load_weights rewrites all of them, which
    is checked). Only used where vLLM supports sleep mode (CUDA/ROCm)."""
    kv_cache_memory_bytes: int | None = None
    """Fixed KV-cache size in bytes; None = from gpu_memory_utilization on a GPU, 512 MiB on CPU (where
    gpu_memory_utilization would mean a share of host memory)."""
    enforce_eager: bool | None = None
    """Skip CUDA graphs / torch.compile; None = eager on CPU (compiling costs minutes there), graphs on GPU."""
    max_model_len: int | None = None
    """Longest prompt + response vLLM accepts; None = max_prompt_length + max_completion_length, capped
    by the model's max_position_embeddings."""
    stop: list[str] = field(default_factory=list)
    """Stop strings (e.g. ``["</action>"]``); the response keeps the stop string's tokens."""
    seed: int = 0
    """Seed of vLLM's own generators (used for calls without a per-call seed)."""

    @classmethod
    def from_config(cls, config: Any) -> "VLLMSettings":
        """Settings from a TrainConfig (duck-typed: fields it lacks keep the defaults)."""
        values: dict[str, Any] = {}
        for name in ("gpu_memory_utilization", "sleep_level", "kv_cache_memory_bytes", "enforce_eager",
                     "max_model_len"):
            if hasattr(config, f"vllm_{name}"):
                values[name] = getattr(config, f"vllm_{name}")
        if getattr(config, "stop_strings", None):
            values["stop"] = list(config.stop_strings)
        if hasattr(config, "seed"):
            values["seed"] = int(config.seed)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(f"vllm gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.sleep_level not in (1, 2):
            raise ValueError(f"vllm sleep_level must be 1 or 2, got {self.sleep_level}")
        if self.kv_cache_memory_bytes is not None and self.kv_cache_memory_bytes <= 0:
            raise ValueError(f"vllm kv_cache_memory_bytes must be positive, got {self.kv_cache_memory_bytes}")
        if self.max_model_len is not None and self.max_model_len <= 0:
            raise ValueError(f"vllm max_model_len must be positive, got {self.max_model_len}")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"stop strings must be non-empty strings, got {self.stop!r}")


def prompt_seeds(seed: int | None, count: int) -> list[int | None]:
    """One seed per prompt, all derived from the call's seed (None: unseeded, vLLM's global generator)."""
    if seed is None:
        return [None] * count
    rng = random.Random(int(seed))
    return [rng.randrange(SEED_SPACE) for _ in range(count)]


def hf_named_weights(weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    """(Hugging Face name, tensor) pairs of the weights generation should use, without copies.

    A peft (LoRA) model yields its base model's names with each adapted weight replaced by
    ``base + Σ delta`` of the active adapters, computed on the fly: merging into the module and unmerging
    afterwards would round the frozen base weights a little in every sync (bf16)."""
    if isinstance(weights, Mapping):
        for name, tensor in weights.items():
            yield name, tensor.detach()
        return
    if not isinstance(weights, torch.nn.Module):
        raise ValueError(f"weights must be a torch.nn.Module or a mapping name -> tensor, got {type(weights)!r}")
    if not hasattr(weights, "get_base_model") or not hasattr(weights, "peft_config"):
        for name, tensor in weights.state_dict().items():
            yield name, tensor.detach()
        return
    yield from _peft_merged_weights(weights)


def _peft_merged_weights(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    base = model.get_base_model()
    lora_layers = {name: module for name, module in base.named_modules()
                   if hasattr(module, "base_layer") and hasattr(module, "get_delta_weight")}
    with torch.no_grad():
        for name, tensor in base.state_dict().items():
            if ".lora_" in name or ".original_module." in name:
                continue
            if ".base_layer." in name:
                owner_name = name.split(".base_layer.", 1)[0]
                clean = name.replace(".base_layer.", ".", 1)
                owner = lora_layers.get(owner_name)
                if owner is not None and clean.endswith(".weight") and not getattr(owner, "merged", False):
                    merged = tensor.detach()
                    for adapter in owner.active_adapters:
                        if adapter in owner.lora_A:
                            merged = merged + owner.get_delta_weight(adapter).to(merged.dtype)
                    yield clean, merged
                    continue
                yield clean, tensor.detach()
                continue
            yield name.replace(".modules_to_save.default.", ".", 1), tensor.detach()


def _load_into_worker(worker: Any, weights: list[tuple[str, torch.Tensor]]) -> None:
    """Runs inside vLLM's worker (via collective_rpc, in-process: the tensors are the trainer's own).

    ``reload_weights(weights_iterator=...)`` (recent vLLM) restores the checkpoint layout, loads, then
    re-applies the kernel post-processing of the first load (CPU GEMM repacking, quantisation), which a
    bare ``model.load_weights`` collides with there. Versions without it take the bare call, which was
    how in-place weight updates worked before."""
    # The worker's method forwards *args/**kwargs to the model runner's, whose signature tells the version.
    runner_reload = getattr(worker.model_runner, "reload_weights", None)
    if (hasattr(worker, "reload_weights") and runner_reload is not None
            and "weights_iterator" in inspect.signature(runner_reload).parameters):
        worker.reload_weights(weights_iterator=iter(weights), is_checkpoint_format=True)
    else:
        worker.model_runner.model.load_weights(weights)


class VLLMEngine(GenerationEngine):
    """Colocated vLLM engine; construct as ``VLLMEngine(policy, config)`` (see the module docstring)."""

    def __init__(self, policy: Policy, config: Any, settings: VLLMSettings | None = None):
        # In-process engine core: collective_rpc then calls our function on the worker directly, so the
        # weight sync hands over tensors by reference. Set before vllm reads its environment.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        import vllm
        from vllm.platforms import current_platform

        self.policy = policy
        self.settings = settings if settings is not None else VLLMSettings.from_config(config)
        self.settings.validate()
        self._vllm = vllm
        self._sleep_capable = bool(current_platform.is_sleep_mode_available())
        self._asleep: set[str] = set()
        self._temp_dir: str | None = None
        self._required_names = _required_weight_names(policy.model)

        s = self.settings
        on_cpu = bool(current_platform.is_cpu())
        if on_cpu:
            _check_cpu_head_size(policy.model)
        model_dir = self._model_dir(config)
        kv_bytes = s.kv_cache_memory_bytes
        if kv_bytes is None and on_cpu and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            kv_bytes = 512 * 2**20
        enforce_eager = on_cpu if s.enforce_eager is None else s.enforce_eager
        dtype = next(policy.model.parameters()).dtype
        kwargs: dict[str, Any] = dict(
            model=model_dir, tokenizer=model_dir, dtype=_dtype_name(dtype), seed=s.seed,
            gpu_memory_utilization=s.gpu_memory_utilization, enforce_eager=enforce_eager,
            max_model_len=self._max_model_len(config), logprobs_mode="processed_logprobs",
            enable_sleep_mode=self._sleep_capable,
            trust_remote_code=bool(getattr(config, "trust_remote_code", False)))
        if kv_bytes is not None:
            kwargs["kv_cache_memory_bytes"] = int(kv_bytes)
        # In-process vLLM reseeds the global RNGs and (on CPU) replaces torch.set_num_threads; the trainer's
        # random streams and thread control must not change by building an engine.
        py_state, np_state = random.getstate(), np.random.get_state()
        set_num_threads = torch.set_num_threads
        cuda_devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
        try:
            with torch.random.fork_rng(devices=cuda_devices):
                self.llm = vllm.LLM(**kwargs)
        except Exception:
            self._remove_temp_dir()
            raise
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)
            torch.set_num_threads = set_num_threads

    # ------------------------------------------------------------------ construction helpers
    def _model_dir(self, config: Any) -> str:
        """A directory or hub id vLLM can load: the model's own source, or for the embedded model (which has
        none) a saved copy of its weights and word-level tokenizer. A LoRA policy loads its base model: the
        adapters start at zero, and every later load_weights sends the merged weights. A GGUF source (e.g.
        smollm2-135m) is saved too: vLLM gets the de-quantised weights the trainer trains, not the packed file."""
        name = str(getattr(config, "model_name_or_path", ""))
        if name and name != "embedded" and not _is_gguf_source(config):
            return name
        if getattr(self.policy, "is_peft", False):
            raise ValueError("engine=vllm with LoRA needs a Hugging Face base model (folder or hub id), not "
                             f"{name!r}: save the de-quantised model with save_pretrained and point to that folder")
        self._temp_dir = tempfile.mkdtemp(prefix="graphgpo-vllm-")
        self.policy.model.save_pretrained(self._temp_dir)
        self.policy.tokenizer.save_pretrained(self._temp_dir)
        return self._temp_dir

    def _max_model_len(self, config: Any) -> int:
        if self.settings.max_model_len:
            return int(self.settings.max_model_len)
        wanted = int(getattr(config, "max_prompt_length", 4096)) + int(getattr(config, "max_completion_length", 1))
        limit = getattr(getattr(self.policy.model, "config", None), "max_position_embeddings", None)
        return min(wanted, int(limit)) if limit else wanted

    # ------------------------------------------------------------------ the engine contract
    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[Generation]:
        if not prompts:
            return []
        self._wake(("weights", "kv_cache"))
        prompt_ids = [self.policy.encode_prompt(p) for p in prompts]
        for row, ids in enumerate(prompt_ids):
            if not ids:
                raise ValueError(f"prompt {row}: encodes to no tokens")
        vllm = self._vllm
        sampling = [self._sampling_params(params, seed) for seed in prompt_seeds(params.seed, len(prompts))]
        requests = [vllm.TokensPrompt(prompt_token_ids=list(ids)) for ids in prompt_ids]
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        generations = [self._to_generation(row, ids, out) for row, (ids, out) in enumerate(zip(prompt_ids, outputs))]
        if params.temperature > 0 and params.top_p < 1.0:
            self._recompute_logprobs(generations, params.temperature)
        return generations

    def sleep(self) -> None:
        """Release vLLM's device memory for the update (no-op where vLLM has no sleep mode, e.g. CPU)."""
        if not self._sleep_capable or self._asleep:
            return
        self.llm.sleep(level=self.settings.sleep_level)
        self._asleep = {"weights", "kv_cache"}

    def wake_up(self) -> None:
        """Map the weights back (the KV cache follows in load_weights, or at the next generate)."""
        self._wake(("weights",))

    def load_weights(self, weights: torch.nn.Module | Mapping[str, torch.Tensor]) -> None:
        """Copy the trainer's current weights into vLLM (see ``hf_named_weights`` for accepted inputs)."""
        named = list(hf_named_weights(weights))
        missing = sorted(self._required_names - {name for name, _ in named})
        if missing:
            # vLLM would keep its old values for these (or garbage after a level-2 sleep).
            raise ValueError(f"load_weights is missing {len(missing)} of the policy's weights "
                             f"(first: {missing[:5]})")
        self._wake(("weights",))
        with torch.no_grad():
            self.llm.collective_rpc(_load_into_worker, args=(named,))
        # Cached prefixes hold keys/values computed by the previous weights.
        self.llm.reset_prefix_cache()
        self._wake(("kv_cache",))

    def close(self) -> None:
        """Drop the engine and its temporary model copy."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            engine_core = getattr(llm.llm_engine, "engine_core", None)
            if engine_core is not None and hasattr(engine_core, "shutdown"):
                engine_core.shutdown()
            self.llm = None
        self._remove_temp_dir()

    # ------------------------------------------------------------------ internals
    def _wake(self, tags: Iterable[str]) -> None:
        tags = [t for t in tags if t in self._asleep]
        if not tags:
            return
        self.llm.wake_up(tags=tags)
        self._asleep.difference_update(tags)

    def _sampling_params(self, params: SamplingParams, seed: int | None):
        greedy = params.temperature <= 0
        stop = list(self.settings.stop)
        allowed = self.policy.action_token_ids
        return self._vllm.SamplingParams(
            n=1, temperature=0.0 if greedy else float(params.temperature),
            top_p=1.0 if greedy else float(params.top_p), max_tokens=int(params.max_new_tokens),
            seed=seed, logprobs=0, stop=stop or None, include_stop_str_in_output=True,
            detokenize=bool(stop), skip_special_tokens=True,
            allowed_token_ids=list(allowed) if allowed is not None else None)

    def _to_generation(self, row: int, prompt_ids: list[int], output: Any) -> Generation:
        completion = output.outputs[0]
        response = [int(t) for t in completion.token_ids]
        per_token = completion.logprobs
        if per_token is None or len(per_token) != len(response):
            raise RuntimeError(f"prompt {row}: vLLM returned {0 if per_token is None else len(per_token)} "
                               f"log-probs for {len(response)} tokens")
        logprobs = [float(per_token[j][tok].logprob) for j, tok in enumerate(response)]
        reason = completion.finish_reason
        if reason not in ("stop", "length"):
            raise RuntimeError(f"prompt {row}: vLLM finished with {reason!r}")
        return Generation(text=self.policy.decode(response), prompt_ids=list(prompt_ids), response_ids=response,
                          logprobs=logprobs, finish_reason=reason)

    @torch.no_grad()
    def _recompute_logprobs(self, generations: list[Generation], temperature: float) -> None:
        """Log-probs under softmax(logits / T) without nucleus renormalisation, by the policy's forward."""
        rows = [i for i, g in enumerate(generations) if g.response_ids]
        if not rows:
            return
        model = self.policy.model
        was_training = model.training
        model.eval()  # no dropout: the log-probs of the weights as they are
        try:
            logp, _, _ = self.policy.response_logprobs([generations[i].prompt_ids for i in rows],
                                                       [generations[i].response_ids for i in rows], temperature)
        finally:
            model.train(was_training)
        for k, i in enumerate(rows):
            generations[i].logprobs = logp[k, :len(generations[i].response_ids)].tolist()

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None


def _required_weight_names(model: torch.nn.Module) -> set[str]:
    """Names every load_weights must carry: the policy's weights, less second names of one tensor (tied
    embeddings: vLLM reads lm_head from embed_tokens)."""
    seen: set[tuple[int, tuple[int, ...]]] = set()
    names = set()
    for name, tensor in hf_named_weights(model):
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key not in seen:
            names.add(name)
        seen.add(key)
    return names


def _check_cpu_head_size(model: torch.nn.Module) -> None:
    """vLLM's CPU attention kernels exist for a few head sizes only (not 16, the embedded default's); say so
    before a minute of engine start-up ends in a kernel error."""
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend
    except ImportError:  # another vllm layout: let vllm report it
        return
    config = getattr(model, "config", None)
    heads = getattr(config, "num_attention_heads", None)
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    supported = CPUAttentionBackend.get_supported_head_sizes()
    if head_dim is not None and head_dim not in supported:
        raise ValueError(f"model head_dim={head_dim}: vLLM's CPU attention supports head sizes {supported}; "
                         "use engine=hf or a model with a supported head size")


def _dtype_name(dtype: torch.dtype) -> str:
    names = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}
    if dtype not in names:
        raise ValueError(f"vllm engine: unsupported policy dtype {dtype}")
    return names[dtype]


def _is_gguf_source(config: Any) -> bool:
    from .model_source import resolve_model_source

    name = str(getattr(config, "model_name_or_path", ""))
    return resolve_model_source(name, getattr(config, "gguf_file", None)).is_gguf
