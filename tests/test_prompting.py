"""Prompt templates and the text -> action projection."""

import pytest

from graphgpo.prompting import PromptContext, Projection, compact_words, get_template, project_action

MOVES = ["up", "down", "left", "right"]


# ------------------------------------------------------------------------------------------ projection
@pytest.mark.parametrize("text, expected", [
    ("<think>box is left</think><action>left</action>", Projection("left", True, "")),
    ("<think>x</think>\n<action>  Left \n</action>", Projection("left", True, "")),
    ("<THINK>x</THINK><ACTION>up</ACTION>", Projection("up", True, "")),
    # The last action block counts.
    ("<think>x</think><action>up</action> no wait <action>down</action>", Projection("down", True, "")),
    ("<think>x</think><action></action>", Projection("", False, "empty_action")),
    # Extra words around exactly one admissible move inside the answer block.
    ("<think>x</think><action>move left</action>", Projection("left", True, "")),
    ("<think>x</think><action>I choose 'up'.</action>", Projection("up", True, "")),
    ("<think>x</think><action>left right</action>", Projection("left right", False, "not_in_vocabulary")),
    ("<think>x</think><action>上</action>", Projection("上", False, "not_in_vocabulary")),
    ("<action>left</action>", Projection("left", False, "missing_think_tag")),
    # No action tags, but the answer outside <think> is exactly one move (quotes, a label allowed).
    ("<think>x</think> left", Projection("left", True, "")),
    ("<think>x</think>\nAction: 'Up'.", Projection("up", True, "")),
    ("left", Projection("left", False, "missing_think_tag")),
    ("<think>x</think> I would go left", Projection("<think>x</think> i would go left", False, "missing_action_tag")),
    ("<think>x</think><action>left", Projection("<think>x</think><action>left", False, "missing_action_tag")),
    ("", Projection("", False, "missing_action_tag")),
])
def test_tag_projection(text, expected):
    assert project_action(text, MOVES) == expected


def test_missing_think_can_be_allowed():
    assert project_action("<action>up</action>", MOVES, require_think=False) == Projection("up", True, "")


def test_free_vocabulary_accepts_any_nonempty_action():
    assert project_action("<think>t</think><action>Open the  Box</action>", None) == Projection("open the box", True)


def test_admissible_commands_are_returned_as_spelled():
    vocab = ["take Non-Euclidean key", "go south"]
    proj = project_action("<think>t</think><action>take non-euclidean KEY</action>", vocab)
    assert proj == Projection("take Non-Euclidean key", True, "")


@pytest.mark.parametrize("text, expected", [
    ("up", Projection("up", True, "")),
    (" Right\n", Projection("right", True, "")),
    ("up down", Projection("up down", False, "not_in_vocabulary")),
    ("<action>up</action>", Projection("up", True, "")),
    ("up.", Projection("up", True, "")),
    ("", Projection("", False, "empty_action")),
])
def test_bare_projection(text, expected):
    assert project_action(text, MOVES, mode="bare") == expected


def test_bad_mode():
    with pytest.raises(ValueError, match="mode"):
        project_action("up", MOVES, mode="json")


# ------------------------------------------------------------------------------------------- templates
def test_sokoban_invalid_move_is_not_executed_and_text_tasks_pass_through():
    sok = get_template("sokoban")
    bad = sok.project("<think>t</think><action>jump</action>", ["up"])
    assert not bad.valid and sok.action_to_execute(bad) == ""
    good = sok.project("<think>t</think><action>UP</action>", None)
    assert good.valid and sok.action_to_execute(good) == "up"
    tw = get_template("textworld")
    bad = tw.project("<think>t</think><action>dance</action>", ["go north"])
    assert not bad.valid and tw.action_to_execute(bad) == "dance"


def test_full_template_shows_task_history_observation_and_actions():
    template = get_template("textworld")
    ctx = PromptContext(observation="You are in a kitchen.", step=3, task="Eat the apple.",
                        history=[("obs A", "look"), ("obs B", "go east"), ("obs C", "open fridge")],
                        admissible_actions=["eat apple", "go west"])
    prompt = template.render(ctx)
    assert "Your task: Eat the apple." in prompt
    assert "obs A" not in prompt  # only the last K = 2 steps
    assert "[Observation 2]\nobs B\n[Action 2] go east" in prompt
    assert "[Observation 3]\nobs C\n[Action 3] open fridge" in prompt
    assert "taken 3 step(s)" in prompt and "step 4" in prompt
    assert prompt.index("obs C") < prompt.index("You are in a kitchen.")
    assert "'eat apple', 'go west'" in prompt
    assert "<think>" in prompt and "<action>" in prompt


def test_history_length_override_and_first_step():
    template = get_template("textworld", history_length=1)
    ctx = PromptContext(observation="now", step=2, history=[("o1", "a1"), ("o2", "a2")])
    prompt = template.render(ctx)
    assert "o2" in prompt and "o1" not in prompt
    assert "This is the first step." in template.render(PromptContext(observation="start"))


def test_sokoban_template_lists_the_moves_even_without_admissible_actions():
    prompt = get_template("sokoban").render(PromptContext(observation="#P_#"))
    assert "'up', 'down', 'left', 'right'" in prompt


def test_compact_template_is_the_observation_only():
    template = get_template("sokoban", "compact")
    ctx = PromptContext(observation="P X O ; _ _ _", step=5, task="push", history=[("a", "up")])
    assert template.render(ctx) == "P X O ; _ _ _"
    assert template.project("left", None) == Projection("left", True, "")


def test_unknown_template_and_bad_override():
    with pytest.raises(ValueError, match="no prompt template for env 'chess'"):
        get_template("chess")
    with pytest.raises(ValueError, match="history_length"):
        get_template("sokoban", history_length=-1)


# ------------------------------------------------------------------------------- numbered menus
MENU = ["drop mug", "go east", "take the cloak from formless safe"]


def test_compact_words_lower_case_without_punctuation():
    assert compact_words("First, take the Key's box! Then -- go EAST.") == [
        "first", "take", "the", "key's", "box", "then", "go", "east"]


def test_numbered_menu_renders_task_and_choices_and_projects_back():
    template = get_template("textworld", "compact")
    ctx = PromptContext(observation="long room prose", task="Take the cloak. Then, go east!", admissible_actions=MENU)
    prompt = template.render(ctx)
    assert prompt == "take the cloak then go east ; #1 drop mug #2 go east #3 take the cloak from formless safe"
    assert "prose" not in prompt
    assert template.listed_choices(prompt) == ["#1", "#2", "#3"]
    assert template.project("#2", MENU) == Projection("go east", True, "")
    assert template.project(" #3 ", MENU) == Projection(MENU[2], True, "")


def test_numbered_menu_out_of_range_and_unknown_answers_are_invalid_noops():
    template = get_template("textworld", "compact", max_choices=4)
    assert template.fixed_vocabulary == ("#1", "#2", "#3", "#4")
    out_of_range = template.project("#4", MENU)
    assert out_of_range == Projection("#4", False, "choice_out_of_range")
    assert template.action_to_execute(out_of_range) == ""  # not sent to the game
    assert template.project("go east", MENU).reason == "not_in_vocabulary"
    assert template.project("#9", MENU).reason == "not_in_vocabulary"


def test_numbered_menu_longer_than_the_choice_tokens_is_an_error_naming_the_step():
    template = get_template("textworld", "compact", max_choices=2)
    with pytest.raises(ValueError, match=r"step 4: 3 admissible actions .* at most 2"):
        template.render(PromptContext(observation="", step=4, admissible_actions=MENU))
    with pytest.raises(ValueError, match="max_choices: template 'sokoban' has no numbered menu"):
        get_template("sokoban", max_choices=3)
    with pytest.raises(ValueError, match="max_choices: must be >= 1"):
        get_template("textworld", "compact", max_choices=0)


# ------------------------------------------------------------------ real answers of SmolLM2-135M-Instruct
# Recorded from `benchmarks/smollm2_zero_shot.py` (recipe templates, chat template, 64 new tokens): the
# model echoes the prompt's step line or rambles, and never writes the tags.
SMOLLM2_SOKOBAN_GREEDY = ("You are at step 2 and your current observation is:\nSymbols: # wall, _ floor, O target, "
                          "X box, √ box on target, P you (the player), S you on a target.\n#######\n#_____#\n")
SMOLLM2_SOKOBAN_SAMPLED = "The take the turning left to pull <ENDARPUBARECTIONAL SERIAL_2> to the right."
SMOLLM2_TEXTWORLD_SAMPLED = ("You've just begun. Stopping yourself to examine something without any instructions.\n\n"
                             "The series of three steps is 'examine banana', 'examine bowl', and 'examine shelf'.")


@pytest.mark.parametrize("text, vocabulary", [
    (SMOLLM2_SOKOBAN_GREEDY, MOVES),
    (SMOLLM2_SOKOBAN_SAMPLED, MOVES),  # two moves named, no answer: not guessed
    (SMOLLM2_TEXTWORLD_SAMPLED, ["examine banana", "examine bowl", "examine shelf", "take banana"]),
])
def test_real_smollm2_answers_without_an_answer_are_invalid(text, vocabulary):
    projection = project_action(text, vocabulary)
    assert not projection.valid and projection.reason == "missing_action_tag"
    assert get_template("textworld").action_to_execute(projection) == projection.action  # passed through


def test_admissible_commands_inside_answers_are_matched_as_whole_commands():
    vocab = ["go to cabinet 1", "go to cabinet 10", "take apple 1 from countertop 2", "take apple 1"]
    assert project_action("<think>t</think><action>I will go to cabinet 10.</action>", vocab).action == "go to cabinet 10"
    assert project_action("<think>t</think><action>go to cabinet 1</action>", vocab).action == "go to cabinet 1"
    # the longer command wins over the one it contains
    assert project_action("<think>t</think><action>take apple 1 from countertop 2</action>",
                          vocab).action == "take apple 1 from countertop 2"
    both = project_action("<think>t</think><action>go to cabinet 1 or go to cabinet 10</action>", vocab)
    assert not both.valid and both.reason == "not_in_vocabulary"


def test_an_overlong_prompt_leaves_out_its_oldest_history_with_a_warning():
    template = get_template("textworld")
    observation = "You are in a kitchen. There is a fridge here and an apple on the table."
    ctx = PromptContext(observation=observation, step=3, task="Eat the apple.",
                        history=[("obs A", "look"), ("obs B " * 40, "go east"), ("obs C", "open fridge")],
                        admissible_actions=["eat apple", "go west"])
    full = template.render(ctx)
    assert template.render(ctx, lambda text: True) == full
    with pytest.warns(UserWarning, match="left out its 1 oldest history turn"):
        shorter = template.render(ctx, lambda text: len(text) < len(full) - 100)
    assert "obs B" not in shorter and "[Observation 3]\nobs C\n[Action 3] open fridge" in shorter
    assert f"your current observation is:\n{observation}\n" in shorter  # never cut mid-observation
    with pytest.warns(UserWarning, match="over the length limit even without history"):
        bare = template.render(ctx, lambda text: False)
    assert "obs C" not in bare and observation in bare and "Your task: Eat the apple." in bare
