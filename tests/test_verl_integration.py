"""graphgpo's estimators inside verl: registration, DataProto reading, verl's shapes, row-order independence.

Runs only where verl is importable (the venv of scripts/verl_test_env.sh); skipped elsewhere.
Expected values come from the SPEC.md worked example computed by hand, or from graphgpo.compute_advantages
on the same steps built independently with StepBatch.from_records.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

verl = pytest.importorskip("verl", reason="verl is not installed (build its venv: scripts/verl_test_env.sh)")

from verl import DataProto  # noqa: E402
from verl.trainer.ppo.core_algos import get_adv_estimator_fn  # noqa: E402

import graphgpo  # noqa: E402
from graphgpo.integrations import verl as gv  # noqa: E402

RESPONSE_LENGTH = 6

# One row per environment step. Group g1 is SPEC.md's worked example (T1: A->B->success, T2: A->C->D,
# T3: A->C->B->C); group g2 never succeeds and has one invalid action.
STEPS = [
    # group, traj, step, state, next_state, valid, episode_reward, reward
    ("g1", "t1", 0, "A", "B", True, 10.0, 0.0),
    ("g1", "t1", 1, "B", "success", True, 10.0, 10.0),
    ("g1", "t2", 0, "A", "C", True, 0.0, 0.0),
    ("g1", "t2", 1, "C", "D", True, 0.0, 0.0),
    ("g1", "t3", 0, "A", "C", True, 0.0, 0.0),
    ("g1", "t3", 1, "C", "B", True, 0.0, 0.0),
    ("g1", "t3", 2, "B", "C", True, 0.0, 0.0),
    ("g2", "t4", 0, "X", "Y", True, 0.0, 0.0),
    ("g2", "t4", 1, "Y", "Y", False, 0.0, 0.0),
    ("g2", "t5", 0, "X", "X", True, 0.0, 1.0),
    ("g2", "t5", 1, "X", "Y", True, 0.0, 0.0),
]

# Graph returns with omega = 0.1, r_succ = 10 (SPEC.md worked example for g1; g2 has no success, so d = 1
# everywhere and R = 10 * 0.1 = 1, minus the 0.1 invalid penalty on t4's second step).
HAND_GRAPH_RETURNS = [1.0, 10.0, 0.1, 0.01, 0.1, 1.0, 0.1, 1.0, 0.9, 1.0, 1.0]


def records():
    return [dict(group=g, traj=t, step=s, state=x, next_state=y, success=(t == "t1"), valid=v, episode_reward=e,
                 reward=r) for g, t, s, x, y, v, e, r in STEPS]


def response_mask(n=len(STEPS)):
    lengths = torch.tensor([(3 * i) % RESPONSE_LENGTH + 1 for i in range(n)])
    return (torch.arange(RESPONSE_LENGTH)[None, :] < lengths[:, None]).to(torch.int64)


def make_dataproto(encoding="str", with_step=True, drop=()):
    """A verl-agent style DataProto of STEPS, states encoded as ``encoding``."""
    n = len(STEPS)
    cols = list(zip(*STEPS))
    obj = lambda xs: np.array(list(xs), dtype=object)  # noqa: E731 - verl-agent stores object arrays
    mask = response_mask()
    token_rewards = torch.zeros(n, RESPONSE_LENGTH)
    last = mask.sum(-1) - 1
    token_rewards[torch.arange(n), last] = torch.tensor(cols[6], dtype=torch.float32)
    tensors = {"response_mask": mask, "token_level_rewards": token_rewards,
               "responses": torch.ones(n, RESPONSE_LENGTH, dtype=torch.int64)}
    non_tensors = {"uid": obj(cols[0]), "traj_uid": obj(cols[1]), "is_action_valid": np.array(cols[5]),
                   "episode_rewards": np.array(cols[6], dtype=np.float32), "rewards": obj(cols[7])}
    if with_step:
        non_tensors["step"] = np.array(cols[2], dtype=np.int64)
    codes = {name: i for i, name in enumerate(sorted(set(cols[3]) | set(cols[4])))}
    if encoding == "str":
        non_tensors["anchor_obs"], non_tensors["next_obs"] = obj(cols[3]), obj(cols[4])
    elif encoding == "array":  # e.g. a grid observation per row: a 2-D uint8 array each
        grid = lambda s: np.full((2, 3), codes[s], dtype=np.uint8)  # noqa: E731
        non_tensors["anchor_obs"] = obj(grid(s) for s in cols[3])
        non_tensors["next_obs"] = obj(grid(s) for s in cols[4])
    elif encoding == "int64_tensor":  # pre-hashed keys, kept as tensors in data.batch
        tensors["anchor_obs"] = torch.tensor([codes[s] * 7919 - 2**62 for s in cols[3]], dtype=torch.int64)
        tensors["next_obs"] = torch.tensor([codes[s] * 7919 - 2**62 for s in cols[4]], dtype=torch.int64)
    elif encoding == "token_rows":  # tokenised observations: [rows, width] int64 in data.batch
        tensors["anchor_obs"] = torch.tensor([[codes[s], 5, 9] for s in cols[3]], dtype=torch.int64)
        tensors["next_obs"] = torch.tensor([[codes[s], 5, 9] for s in cols[4]], dtype=torch.int64)
    else:
        raise AssertionError(encoding)
    for key in drop:
        non_tensors.pop(key, None)
        tensors.pop(key, None)
    return DataProto.from_dict(tensors=tensors, non_tensors=non_tensors)


def call_registered(name, data, config=None):
    fn = get_adv_estimator_fn(name)
    return fn(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
              index=data.non_tensor_batch.get("uid"), config=config, non_tensor_batch=data.non_tensor_batch,
              batch=data.batch)


def expected_tokens(method="graphgpo", **options):
    out = graphgpo.compute_advantages(graphgpo.StepBatch.from_records(records()), method=method,
                                      backend="reference", **options)
    mask = response_mask().to(torch.float32)
    return out.advantages.to(torch.float32)[:, None] * mask, out.returns.to(torch.float32)[:, None] * mask


# -------------------------------------------------------------------------------------------------

def test_every_estimator_is_in_verls_registry():
    for name in ("graphgpo", "gigpo", "graphgpo_alfworld", "graphgpo_webshop", "graphgpo_sokoban"):
        assert get_adv_estimator_fn(name) is gv._ESTIMATOR_FNS[name]


def test_graphgpo_matches_compute_advantages_and_hand_returns():
    data = make_dataproto()
    advantages, returns = call_registered("graphgpo", data)
    assert advantages.shape == returns.shape == (len(STEPS), RESPONSE_LENGTH)
    want_adv, want_ret = expected_tokens()
    torch.testing.assert_close(advantages, want_adv, atol=1e-6, rtol=0)
    mask = response_mask().to(torch.float32)
    torch.testing.assert_close(returns, torch.tensor(HAND_GRAPH_RETURNS)[:, None] * mask, atol=1e-6, rtol=0)
    # Padding tokens get exactly zero.
    assert torch.all(advantages[mask == 0] == 0)
    # SPEC worked example: T1's first step (the only one from A that reaches B) gets the positive advantage,
    # by the hand-computed step-group statistics of {1, 0.1, 0.1} plus the episode part.
    step_part = (1.0 - 0.4) / (np.sqrt(0.27) + 1e-6)
    scores = np.array([10, 10, 0, 0, 0, 0, 0], dtype=np.float64)
    episode_part = (10 - scores.mean()) / (scores.std(ddof=1) + 1e-6)
    assert advantages[0, 0].item() == pytest.approx(step_part + episode_part, abs=1e-5)


@pytest.mark.parametrize("encoding", ["array", "int64_tensor", "token_rows"])
def test_state_encodings_give_the_same_result(encoding):
    want, _ = call_registered("graphgpo", make_dataproto("str"))
    got, _ = call_registered("graphgpo", make_dataproto(encoding))
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)


def test_row_permutation_permutes_the_output():
    data = make_dataproto()
    base_adv, base_ret = call_registered("graphgpo_sokoban", data)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(STEPS)))
    shuffled = data.select_idxs(perm)  # what verl's batch balancing does to the rows
    adv, ret = call_registered("graphgpo_sokoban", shuffled)
    torch.testing.assert_close(adv, base_adv[perm], atol=1e-6, rtol=0)
    torch.testing.assert_close(ret, base_ret[perm], atol=1e-6, rtol=0)


def test_presets_and_config_options():
    adv, ret = call_registered("graphgpo_sokoban", make_dataproto())
    want_adv, want_ret = expected_tokens(preset="sokoban")
    torch.testing.assert_close(adv, want_adv, atol=1e-6, rtol=0)
    # omega = 0.8: T1's first step reaches B (d = 1): 10 * 0.8.
    assert ret[0, 0].item() == pytest.approx(8.0)
    config = {"graphgpo": {"omega": 0.5, "step_weight": 2.0, "backend": "torch"}}
    adv, _ = call_registered("graphgpo", make_dataproto(), config=config)
    want_adv, _ = expected_tokens(omega=0.5, step_weight=2.0)
    torch.testing.assert_close(adv, want_adv, atol=1e-6, rtol=0)


def test_gigpo_matches_compute_advantages_and_discounts_rewards():
    data = make_dataproto()
    adv, ret = call_registered("gigpo", data)
    want_adv, _ = expected_tokens("gigpo")
    torch.testing.assert_close(adv, want_adv, atol=1e-6, rtol=0)
    # t1 earns 10 at its second step: returns 0.95 * 10 and 10; t5 earns 1 at its first step: 1 and 0.
    assert ret[0, 0].item() == pytest.approx(9.5)
    assert ret[1, 0].item() == pytest.approx(10.0)
    assert ret[9, 0].item() == pytest.approx(1.0)
    # gigpo needs no next_obs.
    adv2, _ = call_registered("gigpo", make_dataproto(drop=("next_obs",)))
    torch.testing.assert_close(adv2, adv, atol=0, rtol=0)


def test_explicit_success_column_wins_over_episode_reward():
    data = make_dataproto()
    data.non_tensor_batch["success"] = np.zeros(len(STEPS), dtype=bool)  # nobody succeeded after all
    adv, ret = call_registered("graphgpo", data)
    rec = records()
    for r in rec:
        r["success"] = False
    out = graphgpo.compute_advantages(graphgpo.StepBatch.from_records(rec), backend="reference")
    torch.testing.assert_close(adv[:, 0], out.advantages.to(torch.float32), atol=1e-6, rtol=0)


@pytest.mark.parametrize("key", ["uid", "traj_uid", "anchor_obs", "next_obs", "is_action_valid", "rewards"])
def test_missing_key_is_named(key):
    data = make_dataproto(drop=(key,))
    name = "gigpo" if key == "rewards" else "graphgpo"
    fn = get_adv_estimator_fn(name)
    with pytest.raises(ValueError, match=repr(key)):
        fn(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
           non_tensor_batch=data.non_tensor_batch, batch=data.batch)


def test_missing_step_explains_how_to_add_it_and_add_step_index_works():
    data = make_dataproto(with_step=False)
    with pytest.raises(ValueError, match="'step'.*add_step_index"):
        call_registered("graphgpo", data)
    gv.add_step_index(data)  # rows are still in time order here, as after a rollout
    np.testing.assert_array_equal(data.non_tensor_batch["step"], [s[2] for s in STEPS])
    perm = torch.from_numpy(np.random.default_rng(1).permutation(len(STEPS)))
    adv, _ = call_registered("graphgpo", data.select_idxs(perm))
    want, _ = expected_tokens()
    torch.testing.assert_close(adv, want[perm], atol=1e-6, rtol=0)
    # Opting in to row order works on an unshuffled batch.
    adv, _ = call_registered("graphgpo", make_dataproto(with_step=False),
                             config={"graphgpo": {"step_from_row_order": True}})
    torch.testing.assert_close(adv, want, atol=1e-6, rtol=0)


def test_bad_value_names_row_and_key():
    data = make_dataproto()
    data.non_tensor_batch["is_action_valid"] = np.array([True] * 3 + ["yes"] + [True] * 7, dtype=object)
    with pytest.raises(ValueError, match=r"row 3: key 'is_action_valid'"):
        call_registered("graphgpo", data)


def test_stock_call_without_metadata_says_what_to_do():
    fn = get_adv_estimator_fn("graphgpo")
    data = make_dataproto()
    with pytest.raises(ValueError, match="install_trainer_hook"):
        fn(token_level_rewards=data.batch["token_level_rewards"], response_mask=data.batch["response_mask"],
           index=data.non_tensor_batch["uid"], config=None)


def test_verls_own_compute_advantage_with_the_hook():
    ray_trainer = pytest.importorskip("verl.trainer.ppo.ray_trainer")
    from omegaconf import OmegaConf

    gv.install_trainer_hook()
    assert gv.install_trainer_hook() is False  # idempotent
    config = OmegaConf.create({"adv_estimator": "graphgpo_sokoban", "gamma": 1.0, "lam": 1.0,
                               "graphgpo": {"backend": "reference"}})
    data = make_dataproto()
    data.batch.pop("response_mask")  # verl derives it from responses + attention_mask
    data.batch["attention_mask"] = torch.cat([torch.ones(len(STEPS), 4, dtype=torch.int64), response_mask()], 1)
    out = ray_trainer.compute_advantage(data, adv_estimator="graphgpo_sokoban", gamma=1.0, lam=1.0,
                                        num_repeat=1, config=config)
    want_adv, want_ret = expected_tokens(preset="sokoban")
    torch.testing.assert_close(out.batch["advantages"], want_adv, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.batch["returns"], want_ret, atol=1e-6, rtol=0)
    assert out.meta_info["graphgpo_stats"]["num_steps"] == len(STEPS)
    # Other estimators still reach verl's own code.
    grpo = ray_trainer.compute_advantage(make_dataproto(), adv_estimator="grpo", config=config)
    assert grpo.batch["advantages"].shape == (len(STEPS), RESPONSE_LENGTH)


def test_verl_loads_the_module_as_an_external_module():
    code = ("import verl\n"
            "from verl.trainer.ppo import core_algos, ray_trainer\n"
            "fn = core_algos.get_adv_estimator_fn('graphgpo_webshop')\n"
            "assert fn.__name__ == 'compute_graphgpo_webshop_advantage'\n"
            "assert getattr(ray_trainer.compute_advantage, '_graphgpo_estimator', None) == 'hook'\n"
            "print('ok')\n")
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES="graphgpo.integrations.verl", GRAPHGPO_VERL_TRAINER_HOOK="1")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_example_config_composes_and_its_options_are_valid():
    """examples/verl/graphgpo_sokoban.yaml on top of verl's own trainer config, checked by verl's validator."""
    hydra = pytest.importorskip("hydra")
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    folder = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "verl")
    with hydra.initialize_config_dir(config_dir=os.path.abspath(folder), version_base=None):
        cfg = hydra.compose(config_name="graphgpo_sokoban",
                            overrides=["actor_rollout_ref.model.path=/models/policy", "trainer.nnodes=2"])
    assert cfg.algorithm.adv_estimator == "graphgpo_sokoban" and cfg.trainer.use_v1 is False
    assert not need_critic(cfg)
    validate_config(config=cfg, use_reference_policy=need_reference_policy(cfg), use_critic=need_critic(cfg))
    adapter, method_options = gv._split_options(cfg.algorithm)
    assert adapter.backend == "auto" and adapter.state_key == "anchor_obs"
    config = graphgpo.make_config("graphgpo", preset="sokoban", **method_options)
    assert config.omega == 0.8 and config.r_succ == 10.0
    # The estimator runs with exactly this config on a hand-made batch.
    adv, _ = call_registered("graphgpo_sokoban", make_dataproto(), config=cfg.algorithm)
    want, _ = expected_tokens(preset="sokoban")
    torch.testing.assert_close(adv, want, atol=1e-6, rtol=0)
