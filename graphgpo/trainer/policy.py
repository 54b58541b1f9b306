"""The policy: a causal LM, its tokenizer, and the one forward pass PPO needs.

Two kinds:
- any Hugging Face causal LM (local path or hub id) with its chat template; optional LoRA (peft); bf16 and
  gradient checkpointing on GPU;
- the embedded model: a tiny ``Qwen2ForCausalLM`` built from a config (random init) with a word-level
  tokenizer built locally (``tokenizers`` WordLevel inside ``PreTrainedTokenizerFast``), no downloads. It
  answers each step with one token restricted to the action words (``action_token_ids``).

``Policy.response_logprobs`` is the forward pass shared by the engine (old log-probs) and the PPO update:
prompts left-padded to a common width, responses right-padded after them, so every response starts in the
same column and only the response positions go through the LM head (``logits_to_keep``).
"""

from __future__ import annotations

import copy
import contextlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[ACT]")


@dataclass
class Policy:
    """A trainable causal LM with its tokenizer and prompt encoding."""

    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    action_token_ids: list[int] | None = None
    """When set, each step's response is exactly one token from this list (logits masked to it)."""
    use_chat_template: bool = False
    max_prompt_length: int = 4096
    is_peft: bool = False
    _reference: torch.nn.Module | None = field(default=None, repr=False)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_token_id(self) -> int | None:
        eos = getattr(self.tokenizer, "eos_token_id", None)
        return None if eos is None else int(eos)

    # ---------------------------------------------------------------- text <-> tokens
    def encode_prompt(self, text: str) -> list[int]:
        """Token ids of one prompt (as one user turn of the chat template when enabled). A prompt over
        ``max_prompt_length`` is cut from the left with a warning; the rollout avoids that by leaving out
        history first (``prompt_fits``)."""
        ids = self._prompt_ids(text)
        if len(ids) > self.max_prompt_length:
            warnings.warn(f"a prompt of {len(ids)} tokens was cut from the left to max_prompt_length="
                          f"{self.max_prompt_length} (raise it, or shorten the prompt)", stacklevel=2)
            ids = ids[-self.max_prompt_length:]
        return ids

    def prompt_fits(self, text: str) -> bool:
        """Whether ``text`` encodes to at most ``max_prompt_length`` tokens."""
        return len(self._prompt_ids(text)) <= self.max_prompt_length

    def _prompt_ids(self, text: str) -> list[int]:
        if self.use_chat_template:
            ids = self.tokenizer.apply_chat_template([{"role": "user", "content": text}],
                                                     add_generation_prompt=True, tokenize=True)
            if isinstance(ids, dict) or hasattr(ids, "input_ids"):  # BatchEncoding in newer transformers
                ids = ids["input_ids"]
            return list(ids)
        return list(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def encode_choice(self, action: str) -> list[int]:
        """Token ids of ``action`` as a whole response (what the choice policy scores after the prompt): the
        command, then the end-of-turn token where the tokenizer has one, so that a command is never scored
        as a prefix of a longer one ("go to cabinet 1" inside "go to cabinet 10"). The embedded model's
        word-level tokenizer gets the command's lower-case words (``compact_words``), as its prompts do."""
        if self.action_token_ids is not None:
            from graphgpo.prompting import compact_words

            text = " ".join(compact_words(action))
        else:
            text = action if self.use_chat_template else " " + action  # raw LM: a word after the prompt
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        if self.eos_token_id is not None:
            ids.append(self.eos_token_id)
        if not ids:
            raise ValueError(f"action {action!r} encodes to no tokens")
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ---------------------------------------------------------------- forward pass
    def response_logprobs(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                          temperature: float = 1.0, *, with_entropy: bool = False,
                          model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs of each response token under softmax(logits / temperature) (masked to the action tokens
        for the embedded model). Returns ``(logprobs [B, R], mask [B, R], entropy [B, R] or None)`` on the
        policy's device, float32. Gradients flow when called outside ``torch.no_grad``."""
        model = self.model if model is None else model
        if self.action_token_ids is not None and all(len(r) == 1 for r in response_ids):
            return self._action_logprobs(prompt_ids, response_ids, temperature, with_entropy, model)
        inputs = pack_sequences(prompt_ids, response_ids, self.pad_token_id, self.device)
        width = inputs["response_width"]
        out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                    position_ids=inputs["position_ids"], logits_to_keep=width + 1, use_cache=False)
        logits = out.logits[:, :width, :].float()  # column P-1+j predicts response token j
        targets = inputs["responses"]
        if self.action_token_ids is not None:
            allowed = torch.as_tensor(self.action_token_ids, device=logits.device)
            logits = logits.index_select(-1, allowed)
            targets = action_index(targets, allowed)
        if temperature > 0:
            logits = logits / temperature
        logp_all = torch.log_softmax(logits, dim=-1)
        logprobs = logp_all.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1)
        entropy = None
        if with_entropy:
            entropy = -(logp_all.exp() * logp_all).sum(-1)
        mask = inputs["response_mask"]
        return logprobs * mask, mask, entropy

    def _action_logprobs(self, prompt_ids, response_ids, temperature, with_entropy, model):
        """One action token per row: the distribution depends on the prompt alone, so the forward pass runs
        once per distinct prompt (G rollouts of a task revisit the same states) and rows gather from it.
        Exact: the gradient of a row flows through its prompt's shared logits."""
        logp_unique, inverse = self.action_distribution(prompt_ids, temperature, model)
        logp_all = logp_unique[inverse]  # [B, A]
        allowed = torch.as_tensor(self.action_token_ids, device=logp_all.device)
        targets = action_index(torch.as_tensor([r[0] for r in response_ids], device=logp_all.device), allowed)
        if (targets < 0).any():
            row = int((targets < 0).nonzero()[0])
            raise ValueError(f"row {row}: response token {response_ids[row][0]} is not an action token")
        logprobs = logp_all.gather(-1, targets.unsqueeze(-1))  # [B, 1]
        entropy = -(logp_all.exp() * logp_all).sum(-1, keepdim=True) if with_entropy else None
        return logprobs, torch.ones_like(logprobs), entropy

    def action_distribution(self, prompt_ids: Sequence[Sequence[int]], temperature: float = 1.0,
                            model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probs over the action tokens after each distinct prompt: ``(logp [U, A], inverse [B])`` with
        row b's distribution at ``logp[inverse[b]]``. Temperature 0 means 1 here (greedy picks the argmax)."""
        model = self.model if model is None else model
        index: dict[tuple[int, ...], int] = {}
        inverse = [index.setdefault(tuple(p), len(index)) for p in prompt_ids]
        unique = list(index)
        inputs = pack_sequences(unique, [[] for _ in unique], self.pad_token_id, self.device)
        width = inputs["input_ids"].shape[1] - 1  # drop the empty response column
        logits = model(input_ids=inputs["input_ids"][:, :width], attention_mask=inputs["attention_mask"][:, :width],
                       position_ids=inputs["position_ids"][:, :width], logits_to_keep=1,
                       use_cache=False).logits[:, -1, :].float()
        allowed = torch.as_tensor(self.action_token_ids, device=logits.device)
        logits = logits.index_select(-1, allowed)
        if temperature > 0:
            logits = logits / temperature
        return torch.log_softmax(logits, -1), torch.as_tensor(inverse, device=logits.device)

    # ---------------------------------------------------------------- reference model (KL)
    def enable_reference(self) -> None:
        """Keep the current weights as the frozen KL reference (LoRA: the base model, adapters disabled)."""
        if self.is_peft or self._reference is not None:
            return
        ref = copy.deepcopy(self.model)
        ref.eval()
        for p in ref.parameters():
            p.requires_grad_(False)
        self._reference = ref

    @contextlib.contextmanager
    def reference(self) -> Iterator[torch.nn.Module]:
        """Context yielding the reference model for a no-grad forward pass."""
        if self.is_peft:
            with self.model.disable_adapter():
                yield self.model
        else:
            if self._reference is None:
                raise RuntimeError("enable_reference() was not called")
            yield self._reference

    # ---------------------------------------------------------------- weights
    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint must hold: all weights, or only the LoRA adapters."""
        if self.is_peft:
            from peft import get_peft_model_state_dict

            return {k: v.detach().cpu().clone() for k, v in get_peft_model_state_dict(self.model).items()}
        return {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.is_peft:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, state)
        else:
            self.model.load_state_dict(state)

    def save_pretrained(self, directory: str | Path) -> None:
        """Hugging Face format (merged weights for LoRA are left to the user: adapters are saved as-is)."""
        self.model.save_pretrained(str(directory))
        self.tokenizer.save_pretrained(str(directory))


def pack_sequences(prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], pad_id: int,
                   device: torch.device) -> dict:
    """[left-padded prompt | right-padded response] rows with attention mask and position ids."""
    if len(prompt_ids) != len(response_ids):
        raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
    rows = len(prompt_ids)
    width_p = max(len(p) for p in prompt_ids)
    width_r = max(1, max(len(r) for r in response_ids))
    ids = torch.full((rows, width_p + width_r), pad_id, dtype=torch.long)
    attn = torch.zeros((rows, width_p + width_r), dtype=torch.long)
    responses = torch.full((rows, width_r), -1, dtype=torch.long)
    for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
        if len(p) == 0:
            raise ValueError(f"row {i}: empty prompt")
        ids[i, width_p - len(p):width_p] = torch.as_tensor(list(p), dtype=torch.long)
        attn[i, width_p - len(p):width_p] = 1
        if len(r):
            ids[i, width_p:width_p + len(r)] = torch.as_tensor(list(r), dtype=torch.long)
            attn[i, width_p:width_p + len(r)] = 1
            responses[i, :len(r)] = torch.as_tensor(list(r), dtype=torch.long)
    position_ids = (attn.cumsum(-1) - 1).clamp_min(0)
    return {
        "input_ids": ids.to(device),
        "attention_mask": attn.to(device),
        "position_ids": position_ids.to(device),
        "responses": responses.to(device),
        "response_mask": (responses >= 0).float().to(device),
        "response_width": width_r,
    }


def action_index(tokens: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Position of each token id in ``allowed`` (-1 for padding or a token outside it)."""
    match = tokens.unsqueeze(-1) == allowed
    return torch.where(match.any(-1), match.int().argmax(-1), torch.full_like(tokens, -1))


# ------------------------------------------------------------------------------------- embedded model
def build_word_tokenizer(words: Iterable[str]):
    """A word-level tokenizer over ``words`` (split on whitespace) plus [PAD], [UNK], [BOS], [ACT]; no
    downloads. Every prompt is ``[BOS] words [ACT]``: the action is predicted at the fixed [ACT] token, whose
    query is the same for every observation, instead of at whatever symbol the observation ends with."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {}
    for token in (*SPECIAL_TOKENS, *sorted(set(words) - set(SPECIAL_TOKENS))):
        vocab[token] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [ACT]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[ACT]", vocab["[ACT]"])])
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="[BOS]")
    # [ACT] is special too, so decoding with skip_special_tokens drops it (HF and vLLM alike).
    tok.add_special_tokens({"additional_special_tokens": ["[ACT]"]})
    tok.padding_side = "left"
    return tok


def build_embedded_model(vocab_size: int, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                         intermediate_size: int = 128, seed: int = 0, pad_token_id: int = 0,
                         max_positions: int = 1024) -> torch.nn.Module:
    """Tiny Qwen2ForCausalLM from a config (random init from ``seed``; eager attention)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
                         num_hidden_layers=num_layers, num_attention_heads=num_heads,
                         num_key_value_heads=num_heads, max_position_embeddings=max_positions,
                         tie_word_embeddings=True, pad_token_id=pad_token_id, bos_token_id=2, eos_token_id=None,
                         use_cache=False)
    config._attn_implementation = "eager"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config)
    return model


# ------------------------------------------------------------------------------------- loading
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_policy(cfg, *, vocabulary: Iterable[str] = (), action_words: Sequence[str] = (),
                tokenizer_dir: str | Path | None = None) -> Policy:
    """Build the policy named by ``cfg.model_name_or_path`` (a TrainConfig) on ``cfg.device``.

    Embedded model: ``vocabulary`` (words of the observations) and ``action_words`` make the tokenizer
    unless ``tokenizer_dir`` holds a saved one (resume/eval must use the run's own vocabulary)."""
    device = resolve_device(cfg.device)
    on_cuda = device.type == "cuda"
    bf16 = on_cuda if cfg.bf16 is None else cfg.bf16
    dtype = torch.bfloat16 if bf16 else torch.float32
    if cfg.is_embedded:
        if tokenizer_dir is not None:
            from transformers import PreTrainedTokenizerFast

            tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tokenizer_dir))
            tokenizer.padding_side = "left"
        else:
            if not action_words:
                raise ValueError("the embedded model needs the environment's action words")
            tokenizer = build_word_tokenizer([*vocabulary, *action_words])
        action_ids = [tokenizer.convert_tokens_to_ids(w) for w in action_words] if action_words else []
        if not action_ids or tokenizer.unk_token_id in action_ids:
            raise ValueError(f"action words {list(action_words)} must be single tokens of the vocabulary")
        model = build_embedded_model(len(tokenizer), hidden_size=cfg.embedded_hidden_size,
                                     num_layers=cfg.embedded_num_layers, num_heads=cfg.embedded_num_heads,
                                     intermediate_size=cfg.embedded_intermediate_size, seed=cfg.seed,
                                     pad_token_id=tokenizer.pad_token_id)
        model.to(device=device, dtype=dtype)
        return Policy(model=model, tokenizer=tokenizer, device=device, action_token_ids=action_ids,
                      use_chat_template=False, max_prompt_length=cfg.max_prompt_length)

    from .model_source import load_pretrained, resolve_model_source

    model, tokenizer = load_pretrained(resolve_model_source(cfg.model_name_or_path, cfg.gguf_file), dtype=dtype,
                                       trust_remote_code=cfg.trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    checkpointing = on_cuda if cfg.gradient_checkpointing is None else cfg.gradient_checkpointing
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    is_peft = False
    if cfg.use_peft:
        from peft import LoraConfig, get_peft_model

        if checkpointing:
            model.enable_input_require_grads()
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=cfg.lora_target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)
        is_peft = True
    chat = cfg.use_chat_template
    if chat is None:
        chat = getattr(tokenizer, "chat_template", None) is not None
    return Policy(model=model, tokenizer=tokenizer, device=device, action_token_ids=None, use_chat_template=chat,
                  max_prompt_length=cfg.max_prompt_length, is_peft=is_peft)
