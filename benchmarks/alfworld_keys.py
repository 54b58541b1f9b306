"""How ALFWorld's two state keys differ on real rollouts: the recipe's text key vs the exact facts key.

    nice -n 10 python benchmarks/alfworld_keys.py                  # 34 train games per task type (204), G=8, 20 steps

For each sampled game and each policy (uniform random over the admissible commands; the game's walkthrough
with noise: a random admissible command with probability --epsilon, else the next walkthrough command, or
the walkthrough's last "go to" when that command is not admissible here), G rollouts of up to --steps steps
from the game's start, as a rollout group in training. Every row (the state an action was taken in) gets
both keys (``info["state_keys"]``). Reported per policy and task type:

* share of rows in a step group (same key within the group) of size > 1, for each key;
* distinct states per group under each key;
* false merges: recipe-key classes that hold rows of more than one facts state (the text key joins
  different world states: wrong graph distances), their count and the share of rows in them;
* missed merges: facts states whose rows carry more than one recipe key (the text key splits one state);
* transition determinism, which decides whether a (state, command) -> outcome cache can be exact: the
  number of (facts state, command) pairs seen with two different outcomes (observation text, next facts
  state, admissible commands), and how often a transition repeats one seen earlier in its group (what such
  a cache, or one keyed on the command history since reset, could serve).

Also checks that ALFWorld's demangled names are one-to-one with the PDDL ids in every sampled game (the
facts key uses the names). Reads $ALFWORLD_DATA; writes --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter, defaultdict
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graphgpo.envs.alfworld import ALFWORLD_TASK_TYPES, alfworld_task_type, find_games  # noqa: E402

POLICIES = ("random", "noisy_walkthrough")
_ENV: list = []


class NoisyWalkthrough:
    """The game's walkthrough, a random admissible command with probability epsilon; back to the place
    of the next walkthrough command when that command is not admissible."""

    def __init__(self, walkthrough: list[str], epsilon: float, rng: random.Random):
        self.plan, self.epsilon, self.rng, self.next = list(walkthrough), epsilon, rng, 0

    def act(self, admissible: list[str]) -> str:
        if self.next < len(self.plan) and self.rng.random() >= self.epsilon:
            command = self.plan[self.next]
            if command in admissible:
                return command
            goto = next((c for c in reversed(self.plan[: self.next + 1]) if c.startswith("go to ")), None)
            if goto in admissible:
                return goto
        return self.rng.choice(admissible)

    def observe(self, command: str) -> None:
        if self.next < len(self.plan) and command == self.plan[self.next]:
            self.next += 1


class Uniform:
    def __init__(self, rng: random.Random):
        self.rng = rng

    def act(self, admissible: list[str]) -> str:
        return self.rng.choice(admissible)

    def observe(self, command: str) -> None:
        pass


def play_group(env, index: int, policy: str, group_size: int, steps: int, epsilon: float, seed: int) -> dict:
    """G rollouts of one game; per row both keys, per transition its outcome."""
    rows, transitions, wins = [], [], 0
    for traj in range(group_size):
        rng = random.Random(f"{seed}/{index}/{policy}/{traj}")
        obs, info = env.reset(seed=index)
        agent = Uniform(rng) if policy == "random" else NoisyWalkthrough(info["walkthrough"], epsilon, rng)
        history: tuple = ()
        for _ in range(steps):
            keys = info["state_keys"]
            command = agent.act(info["admissible_actions"])
            agent.observe(command)
            obs, _, terminated, _, info = env.step(command)
            history += (command,)
            rows.append((traj, keys["facts"], keys["recipe"]))
            transitions.append((keys["facts"], command, history,
                                (obs, info["state_keys"]["facts"], tuple(info["admissible_actions"]))))
            if terminated:
                wins += 1
                break
    return {"rows": rows, "transitions": transitions, "wins": wins}


def group_stats(rows: list, transitions: list) -> dict:
    facts_count = Counter(f for _, f, _ in rows)
    recipe_count = Counter(r for _, _, r in rows)
    facts_of_recipe, recipes_of_facts = defaultdict(set), defaultdict(set)
    for _, f, r in rows:
        facts_of_recipe[r].add(f)
        recipes_of_facts[f].add(r)
    false_classes = [r for r, fs in facts_of_recipe.items() if len(fs) > 1]
    missed_classes = [f for f, rs in recipes_of_facts.items() if len(rs) > 1]
    outcomes, seen_pairs, seen_histories = {}, set(), set()
    conflicts = Counter()
    pair_hits = history_hits = 0
    for facts, command, history, outcome in transitions:
        pair = (facts, command)
        if pair in outcomes:
            old = outcomes[pair]
            conflicts["obs"] += old[0] != outcome[0]
            conflicts["next_facts"] += old[1] != outcome[1]
            conflicts["admissible"] += old[2] != outcome[2]
        else:
            outcomes[pair] = outcome
        pair_hits += pair in seen_pairs
        history_hits += history in seen_histories
        seen_pairs.add(pair)
        seen_histories.add(history)
    false_set, missed_set = set(false_classes), set(missed_classes)
    return {
        "rows": len(rows),
        "shared_facts": sum(1 for _, f, _ in rows if facts_count[f] > 1),
        "shared_recipe": sum(1 for _, _, r in rows if recipe_count[r] > 1),
        "states_facts": len(facts_count), "states_recipe": len(recipe_count),
        "false_merge_classes": len(false_classes),
        "false_merge_rows": sum(1 for _, _, r in rows if r in false_set),
        "missed_merge_states": len(missed_classes),
        "missed_merge_rows": sum(1 for _, f, _ in rows if f in missed_set),
        "transitions": len(transitions), "pair_hits": pair_hits, "history_hits": history_hits,
        "conflict_pairs": len(outcomes), **{f"conflicts_{k}": v for k, v in conflicts.items()},
    }


def false_merge_example(rows: list) -> tuple | None:
    facts_of_recipe = defaultdict(set)
    for _, f, r in rows:
        facts_of_recipe[r].add(f)
    for r, fs in facts_of_recipe.items():
        if len(fs) > 1:
            return r[:5]
    return None


def run_game(job: tuple) -> list[dict]:
    index, args = job
    from graphgpo import envs

    if not _ENV:
        _ENV.append(envs.make("alfworld", split="train", data_dir=args["data_dir"]))
    env = _ENV[0]
    out = []
    for policy in POLICIES:
        started = time.perf_counter()
        group = play_group(env, index, policy, args["group_size"], args["steps"], args["epsilon"], args["seed"])
        stats = group_stats(group["rows"], group["transitions"])
        infos = env._env._entity_infos  # ALFWorld's demangled names must be one-to-one with the PDDL ids
        stats.update(index=index, policy=policy, task_type=alfworld_task_type(env.game_for_seed(index)),
                     wins=group["wins"], seconds=time.perf_counter() - started,
                     names_injective=len({i.name for i in infos.values()}) == len(infos),
                     false_merge_example=false_merge_example(group["rows"]))
        out.append(stats)
    return out


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:.1f}" if b else "-"


def report(results: list[dict], group_size: int) -> None:
    print("| policy | task type | games | success | rows | steps in groups > 1: facts / recipe (%) | "
          "states per group: facts / recipe | false merges: classes (rows %) | missed merges: states (rows %) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for policy in POLICIES:
        for task_type in (*ALFWORLD_TASK_TYPES, "all"):
            rs = [r for r in results if r["policy"] == policy and task_type in ("all", r["task_type"])]
            if not rs:
                continue
            s = {k: sum(r[k] for r in rs) for k in ("rows", "shared_facts", "shared_recipe", "states_facts",
                                                   "states_recipe", "false_merge_classes", "false_merge_rows",
                                                   "missed_merge_states", "missed_merge_rows", "wins")}
            print(f"| {policy} | {task_type} | {len(rs)} | {s['wins'] / (group_size * len(rs)):.2f} | {s['rows']} | "
                  f"{pct(s['shared_facts'], s['rows'])} / {pct(s['shared_recipe'], s['rows'])} | "
                  f"{s['states_facts'] / len(rs):.1f} / {s['states_recipe'] / len(rs):.1f} | "
                  f"{s['false_merge_classes']} ({pct(s['false_merge_rows'], s['rows'])}) | "
                  f"{s['missed_merge_states']} ({pct(s['missed_merge_rows'], s['rows'])}) |")
    print("\n| policy | transitions | (facts state, command) pairs | conflicting outcomes: obs / next facts / "
          "admissible | repeats a (state, command) seen earlier in the group (%) | repeats a command history (%) |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy in POLICIES:
        rs = [r for r in results if r["policy"] == policy]
        n = sum(r["transitions"] for r in rs)
        print(f"| {policy} | {n} | {sum(r['conflict_pairs'] for r in rs)} | "
              f"{sum(r.get('conflicts_obs', 0) for r in rs)} / {sum(r.get('conflicts_next_facts', 0) for r in rs)} / "
              f"{sum(r.get('conflicts_admissible', 0) for r in rs)} | {pct(sum(r['pair_hits'] for r in rs), n)} | "
              f"{pct(sum(r['history_hits'] for r in rs), n)} |")
    print(f"\ndemangled names one-to-one with PDDL ids: {sum(r['names_injective'] for r in results)} of "
          f"{len(results)} (game, policy) runs")
    examples = [(r["index"], r["false_merge_example"]) for r in results if r["false_merge_example"]]
    for index, example in examples[:5]:
        print(f"false merge example (game {index}): {example}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--per-type", type=int, default=34, help="train games per task type")
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epsilon", type=float, default=0.25)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop after the game that ends past this wall time and report the games played")
    parser.add_argument("--out", default="benchmarks/results/alfworld/keys.json")
    args = parser.parse_args(argv)
    from tqdm import tqdm

    files = find_games("train", args.data_dir)
    rng = random.Random(args.seed)
    by_type = defaultdict(list)
    for i, f in enumerate(files):
        by_type[alfworld_task_type(f)].append(i)
    samples = [rng.sample(by_type[t], args.per_type) for t in ALFWORLD_TASK_TYPES]
    indices = [i for row in zip(*samples) for i in row]  # round robin over task types: a cut run stays balanced
    options = {k: getattr(args, k) for k in ("data_dir", "group_size", "steps", "epsilon", "seed")}
    started = time.perf_counter()
    results = []
    with get_context("fork").Pool(args.workers) as pool:
        for out in tqdm(pool.imap(run_game, [(i, options) for i in indices]), total=len(indices), desc="games"):
            results.extend(out)
            if args.max_minutes and time.perf_counter() - started > 60 * args.max_minutes:
                break  # the pool's exit terminates the games in flight
    results.sort(key=lambda r: (r["policy"], r["index"]))
    wall = time.perf_counter() - started
    played = len(results) // len(POLICIES)
    cut = f" (stopped at --max-minutes {args.max_minutes}: {played} of {len(indices)} games)" if played < len(indices) else ""
    print(f"\n{played} games x {len(POLICIES)} policies x G={args.group_size} x <= {args.steps} steps in "
          f"{wall / 60:.1f} min, {args.workers} workers; load {os.getloadavg()}{cut}\n")
    report(results, args.group_size)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"command": " ".join(sys.argv), "options": options, "wall_s": wall,
                                          "games_sampled": len(indices), "load": os.getloadavg(),
                                          "results": results}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
