"""ALFWorld: state keys (pure functions, on recorded text) and the environment on the committed fixture of
12 real games (tests/data/alfworld: two per task type, MIT licence).

The environment tests need the `alfworld` package on purpose without importorskip: `make test` installs it
(extra `alfworld`), so a missing package is a failure, not a skip.
"""

import json
import random
from pathlib import Path

import pytest

import graphgpo.envs as envs
from graphgpo.envs.alfworld import ALFWORLD_TASK_TYPES, alfworld_task_type
from graphgpo.envs.alfworld_keys import AlfWorldTracker, alfworld_state_key, facts_state_key, track

FIXTURE = str(Path(__file__).parent / "data" / "alfworld")
SPLITS = ("train", "valid_unseen")


def fixture_games(split):
    return sorted(str(p) for p in Path(FIXTURE, "json_2.1.1", split).glob("*/*/game.tw-pddl"))


@pytest.fixture(scope="module")
def train_env():
    env = envs.make("alfworld", data_dir=FIXTURE, split="train")
    yield env
    env.close()


# ------------------------------------------------------------------------------- recipe key on recorded text
# Observations recorded from ALFWorld transcripts (format of the released game engine).
ALF_START = ("-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around "
             "you, you see a cabinet 1, a countertop 1, a fridge 1, a microwave 1, and a sinkbasin 1.\n\n"
             "Your task is to: put a hot apple in fridge.")
ADMISSIBLE = ["go to cabinet 1", "go to countertop 1", "go to fridge 1", "go to microwave 1", "inventory", "look"]


def run_tracker(steps):
    tracker = AlfWorldTracker()
    for action, obs in steps:
        tracker = track(tracker, action, obs)
    return tracker


def test_tracker_follows_location_items_and_states():
    tracker = run_tracker([
        ("go to countertop 1", "You arrive at loc 12. On the countertop 1, you see a apple 1, and a knife 1."),
        ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
        ("go to microwave 1", "You arrive at microwave 1. The microwave 1 is closed."),
        ("open microwave 1", "You open the microwave 1. The microwave 1 is open. In it, you see nothing."),
        ("heat apple 1 with microwave 1", "You heat the apple 1 using the microwave 1."),
        ("go to fridge 1", "You arrive at fridge 1. The fridge 1 is closed."),
        ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see a egg 2."),
        ("put apple 1 in/on fridge 1", "You put the apple 1 in/on the fridge 1."),
        ("close microwave 1", "Nothing happens."),
    ])
    assert tracker == AlfWorldTracker(
        location="fridge 1", held=None,
        item_states=(("apple 1", "hot"), ("fridge 1", "open"), ("microwave 1", "open")),
        moves=(("apple 1", "fridge 1"),))


def test_tracker_holding_and_lamp():
    tracker = run_tracker([
        ("go to desk 1", "You arrive at desk 1. On the desk 1, you see a desklamp 1, and a pen 2."),
        ("take pen 2 from desk 1", "You pick up the pen 2 from the desk 1."),
        ("use desklamp 1", "You turn on the desklamp 1."),
        ("close desk 1", "You close the desk 1."),
    ])
    assert (tracker.location, tracker.held) == ("desk 1", "pen 2")
    assert tracker.item_states == (("desk 1", "closed"), ("desklamp 1", "on"))


def test_tracker_sees_slicing_in_the_games_own_words():
    # the games' grammar answers "slice X with Y" with "You sliced the {co.name} with the {ko.name}."
    tracker = run_tracker([("slice potato 3 with knife 1", "You sliced the potato 3 with the knife 1.")])
    assert tracker.item_states == (("potato 3", "sliced"),)
    grammar = Path(fixture_games("train")[0]).read_text()
    assert "You sliced the {co.name} with the {ko.name}." in grammar


def test_recipe_key_separates_identical_text():
    arrive = "You arrive at loc 3. The fridge 1 is closed."
    empty_handed = run_tracker([("go to fridge 1", arrive)])
    holding = run_tracker([
        ("go to countertop 1", "You arrive at loc 12. On the countertop 1, you see a apple 1."),
        ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
        ("go to fridge 1", arrive),
    ])
    key_a = alfworld_state_key(arrive, empty_handed, ADMISSIBLE)
    key_b = alfworld_state_key(arrive, holding, ADMISSIBLE)
    assert key_a != key_b and key_a[0] == key_b[0]
    # Command order does not matter; the same history gives the same key.
    assert alfworld_state_key(arrive, empty_handed, ADMISSIBLE[::-1]) == key_a
    assert alfworld_state_key(" " + arrive + "\n", run_tracker([("go to fridge 1", arrive)]), ADMISSIBLE) == key_a
    assert alfworld_state_key(ALF_START, AlfWorldTracker(), ADMISSIBLE)[1:3] == ("middle of room", "")


def test_task_type_from_game_path():
    path = "/data/json_2.1.1/valid_seen/pick_clean_then_place_in_recep-Mug-None-CoffeeMachine-10/trial_T2019/game.tw-pddl"
    assert alfworld_task_type(path) == "pick_clean_then_place_in_recep"
    assert alfworld_task_type("x/pick_two_obj_and_place-Book-None-Shelf-3/t/game.tw-pddl") == "pick_two_obj_and_place"
    with pytest.raises(ValueError, match="no ALFWorld task type"):
        alfworld_task_type("x/somewhere/game.tw-pddl")


# ------------------------------------------------------------------------------- facts key
def test_facts_key_ignores_fact_order_and_sees_every_fact():
    from textworld.logic import Proposition, Variable

    def fact(name, *args):
        return Proposition(name, [Variable(a, t) for a, t in args])

    facts = [fact("atlocation", ("agent1", "agent"), ("loc 3", "location")),
             fact("inreceptacle", ("apple 1", "object"), ("fridge 1", "receptacle")),
             fact("opened", ("fridge 1", "receptacle")),
             fact("ishot", ("apple 1", "object"))]
    key = facts_state_key(facts)
    assert isinstance(key, str) and len(key) == 32
    for seed in range(5):
        shuffled = list(facts)
        random.Random(seed).shuffle(shuffled)
        assert facts_state_key(shuffled) == key
        assert facts_state_key(tuple(reversed(shuffled))) == key
    assert facts_state_key(facts[:-1]) != key  # one fact fewer
    moved = facts[:1] + [fact("inreceptacle", ("apple 1", "object"), ("sinkbasin 1", "receptacle"))] + facts[2:]
    assert facts_state_key(moved) != key  # one argument changed
    # History is not state: negative facts TextWorld keeps after a move, the write-only "checked" flag.
    history = [fact("not_atlocation", ("agent1", "agent"), ("loc 8", "location")), fact("checked", ("loc 3", "location"))]
    assert facts_state_key(facts + history) == key


def test_checked_is_written_but_never_read_in_the_fixture_games():
    import re

    for path in fixture_games("train") + fixture_games("valid_unseen"):
        game = json.loads(Path(path).read_text())
        domain = "\n".join(line.split(";")[0] for line in game["pddl_domain"].splitlines())
        actions = domain.split("(:action")[1:]
        assert len(actions) > 10
        writes = 0
        for action in actions:
            precondition, _, effect = action.partition(":effect")
            assert not re.search(r"\(checked\b", precondition, re.IGNORECASE), path
            writes += bool(re.search(r"\(checked\b", effect))
        assert writes >= 4  # look, inventory, examine, open, help write it
        goal = game["pddl_problem"].partition(":goal")[2]
        assert goal and "checked" not in goal.lower() and "checked" not in game["grammar"].lower()


def test_facts_key_of_a_real_state_is_order_free(train_env):
    train_env.reset(seed=0)
    facts = train_env.facts()
    assert len(facts) > 50
    random.Random(0).shuffle(facts)
    assert facts_state_key(facts) == train_env.state_keys["facts"]


# ------------------------------------------------------------------------------- data and errors
def test_splits_load_sorted_with_one_game_per_task_type():
    for split in SPLITS:
        env = envs.make("alfworld", data_dir=FIXTURE, split=split)
        try:
            assert env.game_files == fixture_games(split) and env.task_pool_size == 6
            assert sorted(alfworld_task_type(f) for f in env.game_files) == sorted(ALFWORLD_TASK_TYPES)
        finally:
            env.close()
    assert envs.task_pool_size("alfworld", data_dir=FIXTURE, split="valid_unseen") == 6
    only = envs.make("alfworld", data_dir=FIXTURE, task_types=["look_at_obj_in_light", "pick_two_obj_and_place"])
    assert [alfworld_task_type(f) for f in only.game_files] == ["look_at_obj_in_light", "pick_two_obj_and_place"]
    chosen = fixture_games("valid_unseen")[::-1][:2]
    assert envs.make("alfworld", game_files=chosen).game_files == chosen  # in the order given


def test_data_dir_defaults_to_the_environment_variable(monkeypatch):
    monkeypatch.setenv("ALFWORLD_DATA", FIXTURE)
    assert envs.make("alfworld", split="valid_unseen").game_files == fixture_games("valid_unseen")


def test_data_errors_name_the_path_and_the_fix(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*alfworld-download"):
        envs.make("alfworld", data_dir=str(missing))
    (tmp_path / "json_2.1.1" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"train.*holds no games.*alfworld-download"):
        envs.make("alfworld", data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="valid_seen.*does not exist"):
        envs.make("alfworld", data_dir=str(tmp_path), split="valid_seen")
    with pytest.raises(ValueError, match="split"):
        envs.make("alfworld", data_dir=FIXTURE, split="test")
    with pytest.raises(ValueError, match="task_types.*pick_heat"):
        envs.make("alfworld", data_dir=FIXTURE, task_types=["cook_dinner"])
    with pytest.raises(ValueError, match="state_key"):
        envs.make("alfworld", data_dir=FIXTURE, state_key="text")
    with pytest.raises(FileNotFoundError, match="ghost.tw-pddl"):
        envs.make("alfworld", game_files=[str(tmp_path / "ghost.tw-pddl")])


@pytest.mark.parametrize("damage", ["truncate", "drop_problem"])
def test_malformed_game_file_is_named_at_reset(tmp_path, damage):
    source = Path(fixture_games("train")[0])
    folder = tmp_path / "json_2.1.1" / "train" / source.parent.parent.name / source.parent.name
    folder.mkdir(parents=True)
    text = source.read_text()
    if damage == "truncate":
        text = text[: len(text) // 2]
    else:
        data = json.loads(text)
        del data["pddl_problem"]
        text = json.dumps(data)
    (folder / "game.tw-pddl").write_text(text)
    env = envs.make("alfworld", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"game.tw-pddl.*(not valid JSON|missing \['pddl_problem'\])"):
        env.reset(seed=0)


def test_missing_package_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "alfworld.agents.environment.alfred_tw_env", None)
    with pytest.raises(ImportError, match="pip install alfworld"):
        envs.make("alfworld", data_dir=FIXTURE)


# ------------------------------------------------------------------------------- playing
@pytest.mark.parametrize("split", SPLITS)
def test_every_walkthrough_wins_exactly_at_its_last_step(split):
    env = envs.make("alfworld", data_dir=FIXTURE, split=split)
    try:
        for seed, path in enumerate(env.game_files):
            obs, info = env.reset(seed=seed)
            assert info["gamefile"] == path and info["task_type"] == alfworld_task_type(path)
            assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
            assert info["task"] and obs.rstrip().endswith(info["task"]) and not info["won"]
            walkthrough = json.loads(Path(path).read_text())["walkthrough"]
            assert info["walkthrough"] == walkthrough and len(walkthrough) >= 3
            for i, command in enumerate(walkthrough):
                assert command in info["admissible_actions"], (path, i, command)
                obs, reward, terminated, truncated, info = env.step(command)
                last = i == len(walkthrough) - 1
                assert info["is_action_valid"] and not truncated and obs != "Nothing happens."
                assert terminated == info["won"] == last, (path, i)
                assert reward == (1.0 if last else 0.0)
            with pytest.raises(RuntimeError, match="episode is over"):
                env.step("look")
    finally:
        env.close()


def test_invalid_commands_get_nothing_happens_and_change_nothing(train_env):
    _, start = train_env.reset(seed=1)
    assert "help" not in start["admissible_actions"] and "look" in start["admissible_actions"]
    command = start["walkthrough"][0]
    for bad in ("dance wildly", command.upper(), "", "take the moon from the sky", "help"):
        obs, reward, terminated, _, info = train_env.step(bad)
        assert (reward, terminated, info["is_action_valid"]) == (0.0, False, False), bad
        assert info["state_keys"]["facts"] == start["state_keys"]["facts"]
        # "help" is a real ALFWorld command (it lists the verbs) that the recipe keeps off the action list
        assert obs == "Nothing happens." if bad != "help" else obs.startswith("Available commands:")
    obs, _, _, _, info = train_env.step(command)
    assert info["is_action_valid"] and obs.startswith("You arrive at")


def test_reset_is_deterministic_and_a_seed_names_a_game(train_env):
    def play(env, seed):
        obs, info = env.reset(seed=seed)
        out = [(obs, info["admissible_actions"], info["state_keys"]["facts"])]
        rng = random.Random(0)
        for _ in range(4):
            obs, _, _, _, info = env.step(rng.choice(info["admissible_actions"]))
            out.append((obs, info["admissible_actions"], info["state_keys"]["facts"]))
        return out

    first = play(train_env, 2)
    play(train_env, 3)  # another game in between
    assert play(train_env, 2) == first
    other = envs.make("alfworld", data_dir=FIXTURE, split="train", transition_cache=0)  # the engine itself
    try:
        assert play(other, 2 + other.task_pool_size) == first  # seed k + pool size: the same game
    finally:
        other.close()
    assert train_env.game_for_seed(4) == fixture_games("train")[4]
    with pytest.raises(ValueError, match="seed"):
        train_env.reset(seed=-1)


def test_facts_key_does_not_depend_on_the_path(train_env):
    _, info = train_env.reset(seed=0)
    first, second = [a for a in info["admissible_actions"] if a.startswith("go to ")][:2]
    _, _, _, _, direct = train_env.step(first)
    train_env.step(second)
    _, _, _, _, back = train_env.step(first)
    assert back["state_keys"]["facts"] == direct["state_keys"]["facts"]
    assert back["state_keys"] == direct["state_keys"]  # the recipe key agrees here


def test_look_changes_the_recipe_key_but_not_the_world(train_env):
    _, info = train_env.reset(seed=0)
    _, _, _, _, there = train_env.step(info["walkthrough"][0])
    _, _, _, _, looked = train_env.step("look")
    assert looked["state_keys"]["facts"] == there["state_keys"]["facts"]
    assert looked["state_keys"]["recipe"] != there["state_keys"]["recipe"]  # other text, same state
    assert looked["state_key"] == looked["state_keys"]["facts"]  # the default key


def test_memoised_engine_is_identical_to_textworld_own():
    from graphgpo.envs import alfworld_memo

    env = envs.make("alfworld", data_dir=FIXTURE, split="train", transition_cache=0)

    def play(seed):
        obs, info = env.reset(seed=seed)
        out = [(obs, info["admissible_actions"], info["state_keys"])]
        rng = random.Random(7)
        for _ in range(5):
            obs, _, _, _, info = env.step(rng.choice(info["admissible_actions"] + ["jump"]))
            out.append((obs, info["admissible_actions"], info["state_keys"]))
        return out

    assert alfworld_memo.installed()  # memoize=True is the default
    memoised = play(5)
    alfworld_memo.uninstall()
    try:
        env.close()  # reload the game through TextWorld's own translation and parsers
        plain = play(5)
    finally:
        alfworld_memo.install()
        env.close()
    assert plain == memoised


def test_transition_cache_is_exact_and_serves_repeated_histories():
    from graphgpo.envs.alfworld import shared_cache

    cached = envs.make("alfworld", data_dir=FIXTURE, split="valid_unseen")
    plain = envs.make("alfworld", data_dir=FIXTURE, split="valid_unseen", transition_cache=0)
    copy = envs.make("alfworld", data_dir=FIXTURE, split="valid_unseen")  # a group's other copy, same process
    cache = shared_cache(1)
    try:
        rng = random.Random(3)
        _, info = plain.reset(seed=4)
        script = []  # one random episode, then variants that share its prefix and diverge
        for _ in range(6):
            command = rng.choice(info["admissible_actions"] + ["jump"])
            script.append(command)
            _, _, done, _, info = plain.step(command)
            if done:
                break
        # the copy fills the cache, then diverges after two commands; the other env only hits (its engine is
        # loaded and replayed only when facts() asks for it)
        hits_before = cache.hits
        for env, commands in ((copy, script), (copy, script[:2] + ["look"] + script[2:]), (cached, script)):
            expected, got = [plain.reset(seed=4)], [env.reset(seed=4)]
            for command in commands:
                expected.append(plain.step(command))
                got.append(env.step(command))
            assert got == expected
            # after hits the engine itself is brought there: its facts are the uncached engine's
            assert sorted(map(str, env.facts())) == sorted(map(str, plain.facts()))
        assert cache.hits - hits_before >= len(script) + 3  # the repeated episode never touched the engine
    finally:
        for env in (cached, plain, copy):
            env.close()
    with pytest.raises(ValueError, match="transition_cache needs memoize"):
        envs.make("alfworld", data_dir=FIXTURE, memoize=False)


# ------------------------------------------------------------------------------- rollouts and prompts
def test_random_rollout_batch_gives_advantages_for_every_method():
    from graphgpo import compute_advantages
    from graphgpo.config import METHODS
    from graphgpo.envs.vector import EnvManager
    from graphgpo.prompting import get_template
    from graphgpo.rollout import RandomPolicy, collect_rollouts

    template = get_template("alfworld", "full")
    options = {"data_dir": FIXTURE, "split": "valid_unseen"}
    with EnvManager("alfworld", options, group_size=2, max_steps=6, executor="serial") as manager:
        result = collect_rollouts(manager, RandomPolicy(seed=4), task_seeds=[0, 5], template=template)
    batch = result.batch
    assert batch.num_groups == 2 and batch.num_trajs == 4 and batch.num_rows == sum(result.lengths)
    assert all(r["valid"] for r in result.records)  # the random policy picks listed admissible commands
    assert sorted(set(result.task_types)) == ["look_at_obj_in_light", "pick_two_obj_and_place"]
    starts = {r["state"] for r in result.records if r["step"] == 0}
    assert len(starts) == 2  # the copies of a task start in one state; the two games differ
    assert all("Your admissible actions are:" in p and "'help'" not in p for p in result.prompts)
    assert set(METHODS) >= {"graphgpo", "gigpo", "grpo", "rloo"}
    for method in METHODS:
        out = compute_advantages(batch, method=method, **({"preset": "alfworld"} if method == "graphgpo" else {}))
        assert out.advantages.shape == (batch.num_rows,), method
        assert bool(out.advantages.isfinite().all()), method


def test_full_prompt_follows_the_recipe(train_env):
    from graphgpo.prompting import PromptContext, get_template

    template = get_template("alfworld", "full")
    obs, info = train_env.reset(seed=0)
    walkthrough, history = info["walkthrough"], []
    for command in walkthrough[:2]:
        history.append((obs, command))
        obs, _, _, _, info = train_env.step(command)
    prompt = template.render(PromptContext(observation=obs, step=2, task=info["task"], history=history,
                                           admissible_actions=info["admissible_actions"]))
    assert prompt.startswith("You are an expert agent operating in the ALFRED Embodied Environment.")
    assert info["task"] in prompt and obs in prompt
    assert all(f"[Action {i + 1}] {c}" in prompt for i, (_, c) in enumerate(history))  # K = 2 steps back
    assert all(f"'{a}'" in prompt for a in info["admissible_actions"])
    assert "<think>" in prompt and "<action>" in prompt
    next_command = walkthrough[2]
    answer = f"<think>go on</think><action>{next_command.upper()}</action>"
    projection = template.project(answer, info["admissible_actions"])
    assert projection.valid and projection.action == next_command


def test_presets_train_on_train_and_evaluate_on_valid_unseen():
    from graphgpo.trainer.config import load_config

    for name in ("qwen2.5-1.5b-alfworld", "qwen2.5-7b-alfworld"):
        cfg = load_config(name, ["device=cpu"])  # the presets ask for CUDA; the env part is what is checked
        assert cfg.env == "alfworld" and cfg.env_kwargs.get("split") == "train"
        assert cfg.eval_env_kwargs.get("split") == "valid_unseen" and cfg.eval_tasks >= 134
        assert envs.task_pool_size("alfworld", **cfg.eval_env_kwargs, data_dir=FIXTURE) == 6

