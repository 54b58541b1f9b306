"""The choice policy (action_mode=choose) on tiny random models: scores against direct per-candidate forward
passes, KV-cache sharing against full sequences, padding, the PPO step, and the trainer end to end."""

import math

import pytest
import torch

pytest.importorskip("transformers")

from graphgpo.trainer.choice import ChoiceSampler, choice_logprobs, choice_scores
from graphgpo.trainer.config import load_config
from graphgpo.trainer.policy import Policy, build_embedded_model, build_word_tokenizer
from graphgpo.trainer.update import StepSamples, ppo_update

WORDS = "# _ O X P ; go east west take key from table open door".split()


def tiny_llama(vocab_size: int, seed: int = 0) -> torch.nn.Module:
    """A 2-layer Llama with grouped-query attention (like SmolLM2) and sdpa attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128, pad_token_id=0)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return build_word_tokenizer(WORDS + ["up", "down", "left", "right"])


@pytest.fixture(params=["llama", "qwen2-embedded"], scope="module")
def model(request, tokenizer):
    if request.param == "llama":
        return tiny_llama(len(tokenizer))
    return build_embedded_model(len(tokenizer), hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                seed=1).eval()


def ids(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def direct_score(model, prompt, candidate) -> float:
    """Independent reference: one unpadded forward pass of prompt + candidate, summing the candidate's
    next-token log-probs by hand."""
    seq = torch.as_tensor([list(prompt) + list(candidate)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seq).logits[0].double(), -1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(candidate))


@pytest.fixture(scope="module")
def batch(tokenizer):
    """Prompts of different lengths (left padding) and candidates of 1, 2, 3 and 4 tokens."""
    prompts = [ids(tokenizer, "P _ ; O X"), ids(tokenizer, "# # _ ; _ P ; X O _ ; _ _ _ open door"), ids(tokenizer, "go")]
    cands = [
        [ids(tokenizer, w) for w in ("up", "down", "left", "right")],
        [ids(tokenizer, w) for w in ("go east", "take key from table", "open door", "west")],
        [ids(tokenizer, w) for w in ("take key", "east")],
    ]
    return prompts, cands


def test_scores_match_a_direct_forward_pass_per_candidate(model, batch):
    prompts, cands = batch
    with torch.no_grad():
        scores = choice_scores(model, prompts, cands, pad_id=0, device=torch.device("cpu"))
    for u, (p, cs) in enumerate(zip(prompts, cands)):
        assert scores[u].shape == (len(cs),)
        for k, c in enumerate(cs):
            assert float(scores[u][k]) == pytest.approx(direct_score(model, p, c), abs=1e-5)


def test_shared_prompt_cache_equals_full_sequences_values_and_gradients(model, batch):
    prompts, cands = batch
    results = []
    for share in (True, False):
        model.zero_grad()
        scores = choice_scores(model, prompts, cands, pad_id=0, device=torch.device("cpu"), share_prompt=share)
        loss = sum((torch.log_softmax(s, -1) * torch.arange(1.0, len(s) + 1)).sum() for s in scores)
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((torch.cat(scores).detach(), grads))
    (s_shared, g_shared), (s_full, g_full) = results
    assert torch.allclose(s_shared, s_full, atol=1e-5)
    assert torch.allclose(g_shared, g_full, atol=1e-5, rtol=1e-4)
    model.zero_grad()


def test_padding_never_leaks_into_a_score(model, batch, tokenizer):
    """A candidate's score does not depend on what else is in the batch (longer siblings, longer prompts)."""
    prompts, cands = batch
    with torch.no_grad():
        alone = choice_scores(model, [prompts[2]], [[cands[2][1]]], pad_id=0, device=torch.device("cpu"))[0]
        crowded = choice_scores(model, prompts, cands, pad_id=0, device=torch.device("cpu"))[2]
    assert float(alone[0]) == pytest.approx(float(crowded[1]), abs=1e-5)


def make_policy(model, tokenizer, action_token_ids=None):
    return Policy(model=model, tokenizer=tokenizer, device=torch.device("cpu"), action_token_ids=action_token_ids)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_choice_distribution_sums_to_one_and_is_the_softmax_of_direct_scores(model, batch, tokenizer, temperature):
    prompts, cands = batch
    policy = make_policy(model, tokenizer)
    for u, (p, cs) in enumerate(zip(prompts, cands)):
        with torch.no_grad():
            logp, mask, entropy = choice_logprobs(policy, [p] * len(cs), [cs] * len(cs), list(range(len(cs))),
                                                  temperature, with_entropy=True)
        probs = logp.squeeze(-1).exp()
        assert mask.tolist() == [[1.0]] * len(cs)
        assert float(probs.sum()) == pytest.approx(1.0, abs=1e-6)
        direct = torch.tensor([direct_score(model, p, c) for c in cs]) / temperature
        expected = torch.softmax(direct, -1)
        assert probs.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
        want_entropy = float(-(expected * expected.log()).sum())
        assert entropy.squeeze(-1).tolist() == pytest.approx([want_entropy] * len(cs), abs=1e-5)


def test_bad_choice_index_names_the_row(model, batch, tokenizer):
    prompts, cands = batch
    with pytest.raises(ValueError, match="row 1: choice 4"):
        choice_logprobs(make_policy(model, tokenizer), prompts[:2], cands[:2], [0, 4])


def test_ppo_step_raises_the_probability_of_a_positively_advantaged_choice(batch, tokenizer):
    model = tiny_llama(len(tokenizer), seed=2)
    policy = make_policy(model, tokenizer)
    prompts, cands = batch
    rows_p = [prompts[0], prompts[0], prompts[1]]
    rows_c = [cands[0], cands[0], cands[1]]
    chosen = [2, 0, 1]
    advantages = torch.tensor([1.0, -1.0, 1.0])
    with torch.no_grad():
        before, _, _ = choice_logprobs(policy, rows_p, rows_c, chosen)
    samples = StepSamples(prompt_ids=rows_p, response_ids=[c[k] for c, k in zip(rows_c, chosen)],
                          old_logprobs=[[float(v)] for v in before.squeeze(-1)], advantages=advantages,
                          choice_ids=rows_c, choices=chosen)
    cfg = load_config(None, ["ppo_epochs=1", "mini_batch_size=8", "micro_batch_size=2", "learning_rate=1e-2",
                             "choice_temperature=1.0"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    stats = ppo_update(policy, optimizer, samples, cfg, torch.Generator().manual_seed(0), iteration=1)
    assert stats["optimizer_steps"] == 1
    assert stats["clip_fraction"] == 0.0 and stats["approx_kl_old"] == pytest.approx(0.0, abs=1e-6)
    assert stats["entropy"] > 0  # the choice distribution's entropy is always logged
    with torch.no_grad():
        after, _, _ = choice_logprobs(policy, rows_p, rows_c, chosen)
    change = (after - before).squeeze(-1)
    assert change[0] > 0 and change[2] > 0  # positive advantage: more likely
    assert change[1] < 0  # negative advantage: less likely


def test_sampler_logprobs_give_ratio_one_and_greedy_takes_the_best(tokenizer):
    model = tiny_llama(len(tokenizer), seed=3)
    policy = make_policy(model, tokenizer)
    prompts = ["P _ ; O X", "P _ ; O X", "# _ ; X P"]
    commands = [["up", "down", "left", "right"], ["up", "down", "left", "right"], ["go east", "take key from table"]]
    gens = ChoiceSampler(policy, temperature=0.7, seed=5)(prompts, commands)
    assert all(g.text == commands[b][g.choice] for b, g in enumerate(gens))
    assert [g.response_ids for g in gens] == [g.choice_ids[g.choice] for g in gens]
    assert [g.prompt_ids for g in gens] == [policy.encode_prompt(p) for p in prompts]
    with torch.no_grad():
        logp, _, _ = choice_logprobs(policy, [g.prompt_ids for g in gens], [g.choice_ids for g in gens],
                                     [g.choice for g in gens], 0.7)
    assert logp.squeeze(-1).tolist() == pytest.approx([g.logprobs[0] for g in gens], abs=1e-5)
    again = ChoiceSampler(policy, temperature=0.7, seed=5)(prompts, commands)
    assert [g.choice for g in again] == [g.choice for g in gens]
    greedy = ChoiceSampler(policy, temperature=0.0, seed=0)(prompts, commands)
    for b, g in enumerate(greedy):
        direct = [direct_score(model, g.prompt_ids, c) for c in g.choice_ids]
        assert g.choice == max(range(len(direct)), key=direct.__getitem__)


def test_embedded_choice_over_moves_equals_its_action_token_distribution(tokenizer):
    """The embedded model's one-token moves: choosing among the four moves is the same distribution as the
    generate mode's softmax restricted to the action tokens."""
    model = build_embedded_model(len(tokenizer), hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32,
                                 seed=4)
    moves = ["up", "down", "left", "right"]
    policy = make_policy(model, tokenizer, [tokenizer.convert_tokens_to_ids(m) for m in moves])
    prompt_ids = [policy.encode_prompt("P _ ; O X")]
    with torch.no_grad():
        logp_tokens, _ = policy.action_distribution(prompt_ids)
        logp_choice, _, _ = choice_logprobs(policy, prompt_ids * 4, [[policy.encode_choice(m) for m in moves]] * 4,
                                            [0, 1, 2, 3])
    assert logp_choice.squeeze(-1).tolist() == pytest.approx(logp_tokens[0].tolist(), abs=1e-5)


TINY = ["tasks_per_batch=2", "num_generations=3", "max_steps=3", "embedded_hidden_size=16", "embedded_num_heads=2",
        "embedded_intermediate_size=32", "mini_batch_size=8", "micro_batch_size=4", "eval_tasks=4", "eval_every=1",
        "progress_bar=false", "env_kwargs.interior=[3,3]", "env_kwargs.reverse_moves=3", "action_mode=choose",
        "kl_coef=0.01", "num_iterations=2"]


def test_trainer_in_choice_mode_end_to_end(tmp_path):
    from graphgpo.trainer.loop import train
    from graphgpo.trainer.runlog import read_metrics

    summary = train(load_config(None, [*TINY, f"output_dir={tmp_path / 'run'}"]))
    assert summary["status"] == "completed" and summary["iterations"] == 2
    rows = read_metrics(tmp_path / "run")
    for row in rows:
        assert row["valid_action_rate"] == 1.0 and row["eval_valid_action_rate"] == 1.0  # valid by construction
        for key in ("loss", "kl", "entropy", "clip_fraction", "grad_norm"):
            assert math.isfinite(row[key]), key
        assert row["kl"] >= 0 and 0 < row["entropy"] <= math.log(4) + 1e-6
    assert (tmp_path / "run" / "final_model" / "config.json").is_file()


def test_choice_mode_needs_the_hf_engine_and_a_known_mode():
    with pytest.raises(ValueError, match="action_mode=choose .* engine=hf"):
        load_config(None, ["action_mode=choose", "use_vllm=true"])
    with pytest.raises(ValueError, match="action_mode must be one of"):
        load_config(None, ["action_mode=pick"])


def test_rollout_rejects_an_answer_outside_the_listed_commands():
    from graphgpo.envs.vector import EnvManager
    from graphgpo.prompting import get_template
    from graphgpo.rollout import TextGeneration, collect_rollouts

    class Cheater:
        chooses_actions = True

        def __call__(self, prompts, commands):
            return [TextGeneration("jump") for _ in prompts]

    manager = EnvManager("sokoban", {"generator": "simple", "interior": [3, 3], "render": "compact"}, group_size=1,
                         max_steps=2)
    with pytest.raises(ValueError, match="'jump', not a listed command"):
        collect_rollouts(manager, Cheater(), task_seeds=[0], template=get_template("sokoban", "compact"))


def test_prompt_over_max_prompt_length_is_cut_with_a_warning(tokenizer):
    policy = make_policy(tiny_llama(len(tokenizer)), tokenizer)
    policy.max_prompt_length = 4
    assert policy.prompt_fits("P _") and not policy.prompt_fits("P _ ; O X")
    with pytest.warns(UserWarning, match="a prompt of 7 tokens was cut from the left to max_prompt_length=4"):
        ids = policy.encode_prompt("P _ ; O X")
    assert ids == tokenizer("P _ ; O X")["input_ids"][-4:]
