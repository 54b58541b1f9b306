"""TextWorld environment (generated offline games).

Games are generated once per test session into a temporary cache (a few seconds each: Inform 7).
"""

import pytest

import graphgpo.envs as envs

textworld = pytest.importorskip("textworld", reason="textworld is not installed (pip install textworld)")

GAME_OPTIONS = {"nb_rooms": 2, "nb_objects": 4, "quest_length": 2}
SEEDS = (1, 2)


@pytest.fixture(scope="session")
def tw_cache(tmp_path_factory):
    from graphgpo.envs.textworld_env import generate_game

    cache = tmp_path_factory.mktemp("textworld_games")
    for seed in SEEDS:
        generate_game(seed, cache_dir=str(cache), **GAME_OPTIONS)
    return str(cache)


@pytest.fixture
def env(tw_cache):
    environment = envs.make("textworld", cache_dir=tw_cache, **GAME_OPTIONS)
    yield environment
    environment.close()


def test_walkthrough_reaches_won(env):
    for seed in SEEDS:
        obs, info = env.reset(seed=seed)
        assert info["task"] and info["admissible_actions"] and not info["won"]
        assert "$$" not in obs  # banner removed
        walkthrough = list(info["walkthrough"])
        assert walkthrough
        total = 0.0
        for i, command in enumerate(walkthrough):
            assert command in info["admissible_actions"]
            obs, reward, terminated, truncated, info = env.step(command)
            total += reward
            assert info["is_action_valid"] and not truncated
            assert terminated == (i == len(walkthrough) - 1) == info["won"]
        assert total > 0


def test_state_key_distinguishes_states_with_identical_text(env):
    obs, info = env.reset(seed=SEEDS[0])
    text_here, _, _, _, here = env.step("inventory")
    assert here["state_key"] == info["state_key"]  # looking at the inventory changes nothing
    go = next(a for a in info["admissible_actions"] if a.startswith("go "))
    env.step(go)
    text_there, _, _, _, there = env.step("inventory")
    assert text_there == text_here  # same printed text ...
    assert there["state_key"] != here["state_key"]  # ... different world state


def test_reset_is_deterministic_per_seed_and_games_differ(env, tw_cache):
    first = env.reset(seed=SEEDS[0])
    other = envs.make("textworld", cache_dir=tw_cache, **GAME_OPTIONS)
    try:
        assert other.reset(seed=SEEDS[0]) == first
        assert other.reset(seed=SEEDS[1])[1]["state_key"] != first[1]["state_key"]
    finally:
        other.close()


def test_unknown_command_is_sent_through_and_marked_invalid(env):
    _, info = env.reset(seed=SEEDS[0])
    obs, reward, terminated, _, after = env.step("dance wildly")
    assert after["is_action_valid"] is False and reward == 0.0 and not terminated
    assert obs  # the game answered
    assert after["state_key"] == info["state_key"]


def test_config_errors(tw_cache):
    with pytest.raises(ValueError, match="difficulty"):
        envs.make("textworld", difficulty="nightmare")
    with pytest.raises(ValueError, match="nb_rooms"):
        envs.make("textworld", nb_rooms=0)


def test_textworld_rollout_batch_with_threads(tw_cache):
    from graphgpo import compute_advantages
    from graphgpo.envs.vector import EnvManager
    from graphgpo.rollout import RandomPolicy, collect_rollouts

    options = {"cache_dir": tw_cache, **GAME_OPTIONS}
    with EnvManager("textworld", options, group_size=3, max_steps=5, executor="thread", num_workers=3) as m:
        result = collect_rollouts(m, RandomPolicy(seed=3), task_seeds=list(SEEDS))
    with EnvManager("textworld", options, group_size=3, max_steps=5, executor="serial") as m:
        serial = collect_rollouts(m, RandomPolicy(seed=3), task_seeds=list(SEEDS))
    assert result.records == serial.records
    assert result.batch.num_groups == 2 and result.batch.num_trajs == 6
    assert all(r["valid"] for r in result.records)  # the random policy picks admissible commands
    out = compute_advantages(result.batch, method="graphgpo", preset="alfworld")
    assert out.advantages.shape == (result.batch.num_rows,)


def test_game_pool_reuses_games_and_offsets_give_other_games(tw_cache):
    pool = envs.make("textworld", cache_dir=tw_cache, game_pool_size=2, **GAME_OPTIONS)
    shifted = envs.make("textworld", cache_dir=tw_cache, game_pool_size=2, game_pool_offset=1, **GAME_OPTIONS)
    plain = envs.make("textworld", cache_dir=tw_cache, **GAME_OPTIONS)
    try:
        assert pool.task_pool_size == 2 and plain.task_pool_size is None
        assert envs.task_pool_size("textworld", game_pool_size=5) == 5
        assert pool.game_for_seed(3) == pool.game_for_seed(1) == plain.game_for_seed(1)
        assert shifted.game_for_seed(0) == plain.game_for_seed(1)  # offset 1 + 0 % 2
        assert shifted.game_for_seed(1) == plain.game_for_seed(2)
    finally:
        for e in (pool, shifted, plain):
            e.close()
    with pytest.raises(ValueError, match="game_pool_offset"):
        envs.make("textworld", game_pool_offset=-1)


def test_vocabulary_covers_every_compact_prompt_along_the_walkthrough(env):
    from graphgpo.prompting import PromptContext, get_template

    template = get_template("textworld", "compact")
    vocabulary = set(env.vocabulary(SEEDS)) | set(template.fixed_vocabulary) | {";"}
    for seed in SEEDS:
        _, info = env.reset(seed=seed)
        task, seen = info["task"], []
        for command in [*info["walkthrough"], None]:
            ctx = PromptContext(observation="", task=task, admissible_actions=info["admissible_actions"])
            seen.extend(template.render(ctx).split())
            if command is None or info["won"]:
                break
            _, _, _, _, info = env.step(command)
        assert set(seen) <= vocabulary, sorted(set(seen) - vocabulary)


def test_random_menu_policy_plays_valid_commands_only(tw_cache):
    from graphgpo.envs.vector import EnvManager
    from graphgpo.prompting import get_template
    from graphgpo.rollout import RandomPolicy, collect_rollouts

    template = get_template("textworld", "compact")
    options = {"cache_dir": tw_cache, **GAME_OPTIONS}
    with EnvManager("textworld", options, group_size=3, max_steps=6, executor="serial") as manager:
        result = collect_rollouts(manager, RandomPolicy.for_template(template, seed=2), task_seeds=list(SEEDS),
                                  template=template)
    assert all(r["valid"] for r in result.records)
    assert all(a in p.rpartition(" ; ")[2] for a, p in zip(result.actions, result.prompts))


def test_webshop_seam_explains_what_to_install():
    try:
        import web_agent_site  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="princeton-nlp/WebShop"):
            envs.make("webshop")


@pytest.mark.parametrize("field, value", [("game_pool_size", 2.5), ("game_pool_size", True), ("game_pool_size", "4"),
                                          ("game_pool_size", 0), ("nb_rooms", 1.5), ("game_pool_offset", -1)])
def test_counts_must_be_integers(field, value):
    from graphgpo.envs.textworld_env import TextWorldConfig

    with pytest.raises(ValueError, match=f"{field}: must be an integer"):
        TextWorldConfig(**{field: value})
