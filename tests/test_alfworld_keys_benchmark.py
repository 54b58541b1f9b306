"""The key comparison's counting (benchmarks/alfworld_keys.py) on hand-made rows, and its noisy walkthrough."""

import random

from benchmarks.alfworld_keys import NoisyWalkthrough, group_stats


def test_group_stats_counts_false_and_missed_merges_by_hand():
    # (trajectory, facts key, recipe key): the text key joins facts B and C ("b") and splits facts A ("a", "a2")
    rows = [(0, "A", "a"), (0, "B", "b"), (1, "A", "a2"), (1, "C", "b"), (2, "D", "d")]
    outcome = ("obs 1", "B", ("x",))
    transitions = [("A", "go", ("go",), outcome),
                   ("A", "go", ("go",), outcome),                        # same pair, same history, same outcome
                   ("A", "go", ("look", "go"), ("obs 2", "B", ("x",)))]  # same pair, other text: a conflict
    s = group_stats(rows, transitions)
    assert (s["rows"], s["states_facts"], s["states_recipe"]) == (5, 4, 4)
    assert s["shared_facts"] == 2  # the two rows in facts state A
    assert s["shared_recipe"] == 2  # the two rows with recipe key "b"
    assert (s["false_merge_classes"], s["false_merge_rows"]) == (1, 2)
    assert (s["missed_merge_states"], s["missed_merge_rows"]) == (1, 2)
    assert (s["transitions"], s["pair_hits"], s["history_hits"], s["conflict_pairs"]) == (3, 2, 1, 1)
    assert (s["conflicts_obs"], s["conflicts_next_facts"], s["conflicts_admissible"]) == (1, 0, 0)


def test_noisy_walkthrough_follows_the_plan_and_returns_to_its_place():
    plan = ["go to desk 1", "take pen 1 from desk 1", "go to shelf 2", "put pen 1 in/on shelf 2"]
    agent = NoisyWalkthrough(plan, epsilon=0.0, rng=random.Random(0))
    assert agent.act(["go to desk 1", "look"]) == "go to desk 1"
    agent.observe("go to desk 1")
    agent.observe("look")  # an off-plan command does not advance the plan
    # the next command is not admissible here (the agent wandered off): go back to the last "go to" of the plan
    assert agent.act(["go to desk 1", "go to shelf 2", "look"]) == "go to desk 1"
    agent.observe("take pen 1 from desk 1")
    assert agent.act(["go to shelf 2", "look"]) == "go to shelf 2"
    always_random = NoisyWalkthrough(plan, epsilon=1.0, rng=random.Random(0))
    assert {always_random.act(["look", "inventory"]) for _ in range(50)} == {"look", "inventory"}
