"""How much step credit graph memory gives groups whose rollouts all fail, on real TextWorld rollouts.

    python benchmarks/memory_credit.py --iterations 6          # the learning benchmark's 32 TextWorld games

A uniform-random policy (over the listed commands of the numbered menu) plays ``--tasks`` games of the
32-game pool x 8 rollouts per iteration, 10 steps each, as the learning benchmark's TextWorld task does.
Every iteration, GraphGPO's advantages (ω 0.8, recipe defaults otherwise) are computed once without memory
and once with the memory of all earlier iterations, and the batch is then remembered. The table shows, per
iteration: groups without a success of their own, how many of them reach SUCCESS through remembered edges,
and the share of their rows that get a non-zero step advantage (without memory such a row gets a
non-zero step advantage only from the invalid-action penalty). The policy does not learn, so the numbers
isolate what the memory adds.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path


def main(argv=None) -> int:
    from graphgpo import compute_advantages
    from graphgpo.envs.vector import EnvManager
    from graphgpo.memory import GraphMemory
    from graphgpo.prompting import get_template
    from graphgpo.rollout import RandomPolicy, collect_rollouts

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=6)
    p.add_argument("--tasks", type=int, default=16, help="games per iteration (drawn from the pool of 32)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    template = get_template("textworld", "compact")
    manager = EnvManager("textworld", {"difficulty": "easy", "game_pool_size": 32}, group_size=8, max_steps=10)
    memory = GraphMemory()
    rng = random.Random(a.seed)
    print("| iteration | groups without own success | of them reaching SUCCESS via memory | their rows with "
          "step advantage != 0: without memory / with memory | remembered tasks / edges |")
    print("|---|---|---|---|---|")
    try:
        for it in range(1, a.iterations + 1):
            tasks = rng.sample(range(32), a.tasks)
            policy = RandomPolicy.for_template(template, seed=rng.randrange(2**31))
            batch = collect_rollouts(manager, policy, task_seeds=tasks, template=template).batch
            plain = compute_advantages(batch, "graphgpo", omega=0.8)
            with_memory = compute_advantages(batch, "graphgpo", omega=0.8, memory=memory, task_keys=tasks)
            group_success = [False] * batch.num_groups
            for g, s in zip(batch.group.tolist(), batch.success.tolist()):
                group_success[g] |= s
            rows = [i for i, g in enumerate(batch.group.tolist()) if not group_success[g]]
            nonzero = lambda out: sum(1 for i in rows if out.step_advantages[i] != 0)  # noqa: E731
            print(f"| {it} | {group_success.count(False)} | {with_memory.stats['memory_success_groups']} "
                  f"| {nonzero(plain)} / {nonzero(with_memory)} of {len(rows)} | {len(memory)} / {memory.num_edges} |")
            memory.add(batch, tasks)
    finally:
        manager.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    raise SystemExit(main())
