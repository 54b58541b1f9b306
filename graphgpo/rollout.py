"""Multi-turn rollout engine: prompts in, StepBatch rows out.

    from graphgpo.envs.vector import EnvManager
    from graphgpo.rollout import collect_rollouts, RandomPolicy

    manager = EnvManager("sokoban", {"generator": "simple", "render": "compact"}, group_size=8, max_steps=12)
    result = collect_rollouts(manager, policy, task_seeds=range(16), template=get_template("sokoban", "compact"))
    advantages = compute_advantages(result.batch, method="graphgpo", preset="sokoban")

``policy(prompts: list[str]) -> list[Generation]``: one generation per prompt, in order. A generation is
any object with a ``.text`` attribute (``TextGeneration`` is the minimal one); everything else it
carries (token ids, log-probs) is kept untouched and returned aligned with the rows.

Each turn the engine renders a prompt for every active environment (template + last K observations
and actions), calls the policy once on all of them, projects each text to an action
(``PromptTemplate.project``), steps the environments, and writes one row per step. When every episode
has ended (solved, or truncated at the manager's ``max_steps``) it fills the per-episode fields and
builds the ``StepBatch``.

Rows come trajectory-major (all steps of trajectory 0, then 1, ...); trajectory i is environment i,
group g holds the G copies of task ``task_seeds[g]``. Row fields:
``state``/``next_state`` = ``info["state_key"]`` before/after the step (the environment's str/tuple
identity; ``StepBatch.from_records`` hashes it with ``stable_key`` and reports 64-bit collisions); ``valid`` = the
projection was valid and the environment accepted the action; ``success`` = the episode's final
``info["won"]``; ``episode_reward`` = ``success_reward`` (10, the recipes' value) on success else 0;
``reward`` = the environment's own step reward.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from .prompting import Projection, PromptContext, PromptTemplate, get_template

__all__ = ["TextGeneration", "RandomPolicy", "RolloutResult", "collect_rollouts"]


@dataclass
class TextGeneration:
    """The minimal generation: just text."""

    text: str


@dataclass
class RolloutResult:
    """Rows of one rollout phase and the per-episode summary."""

    records: list[dict]
    """One mapping per row with the StepBatch fields (group, traj, step, state, next_state, success,
    valid, episode_reward, reward)."""
    batch: Any
    """graphgpo.batch.StepBatch built from ``records``."""
    prompts: list[str]
    generations: list[Any]
    """The policy's objects, aligned with rows."""
    actions: list[str]
    """Action text sent to the environment for each row ("" = not executed)."""
    success: list[bool]
    """Per episode (= trajectory id order)."""
    returns: list[float]
    """Per episode: sum of the environment's step rewards."""
    lengths: list[int]
    """Per episode: number of steps."""
    task_seeds: list[int]
    """Per group: the seed its G copies were reset with."""
    task_types: list[str] = field(default_factory=list)
    """Per episode: the environment's ``task_type`` from reset's info (ALFWorld's six types), else its name."""
    stats: dict[str, float] = field(default_factory=dict)
    """success_rate, mean_length, invalid_rate, mean_return."""


def _default_template(manager) -> PromptTemplate:
    style = "compact" if manager.env_options.get("render") == "compact" else "full"
    return get_template(manager.env_name, style)


def collect_rollouts(manager, policy: Callable[[list[str]], Sequence[Any]], *,
                     task_seeds: Iterable[int] | None = None, num_tasks: int | None = None, seed: int = 0,
                     template: PromptTemplate | None = None, success_reward: float = 10.0,
                     device: str = "cpu", progress: bool = False,
                     prompt_fits: Callable[[str], bool] | None = None) -> RolloutResult:
    """Play one batch of episodes with ``policy`` and return the rows.

    Tasks: ``task_seeds`` (one group per seed), or ``num_tasks`` seeds drawn from ``seed``.
    ``template`` defaults to the environment's template (compact when the env renders compactly).
    ``prompt_fits``: length check of a prompt; overlong prompts leave out their oldest history turns.
    A policy with ``chooses_actions`` (the choice policy) is called as ``policy(prompts, commands)`` with
    each prompt's commands (``template.choices``) and answers one of them: always valid.
    """
    if task_seeds is None:
        if num_tasks is None or num_tasks < 1:
            raise ValueError("collect_rollouts: give task_seeds or num_tasks >= 1")
        rng = random.Random(seed)
        task_seeds = [rng.randrange(2**31) for _ in range(num_tasks)]
    task_seeds = [int(s) for s in task_seeds]
    template = template or _default_template(manager)

    first = manager.reset(task_seeds)
    n = len(first)
    current = list(first)  # latest EnvStep per environment
    task = [s.info.get("task", "") for s in first]
    task_types = [str(s.info.get("task_type", manager.env_name)) for s in first]
    history: list[list[tuple[str, str]]] = [[] for _ in range(n)]
    rows: list[list[dict]] = [[] for _ in range(n)]  # per trajectory, filled in step order
    won = [bool(s.info.get("won", False)) for s in first]

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=manager.config.max_steps, desc="rollout", leave=False)
    chooses = getattr(policy, "chooses_actions", False)
    while manager.active:
        active = manager.active
        prompts = []
        for i in active:
            s = current[i]
            ctx = PromptContext(observation=s.observation, step=len(rows[i]), task=task[i], history=history[i],
                                admissible_actions=s.info.get("admissible_actions"))
            prompts.append(template.render(ctx, prompt_fits))
        if chooses:
            commands = [template.choices(current[i].info.get("admissible_actions")) for i in active]
            generations = list(policy(prompts, commands))
        else:
            generations = list(policy(prompts))
        if len(generations) != len(prompts):
            raise ValueError(f"policy returned {len(generations)} generations for {len(prompts)} prompts")
        actions, projections = {}, {}
        for turn, (i, gen) in enumerate(zip(active, generations)):
            if chooses:
                if gen.text not in commands[turn]:
                    raise ValueError(f"environment {i}: the choice policy answered {gen.text!r}, not a listed command")
                proj = Projection(gen.text, True)
            else:
                proj = template.project(gen.text, current[i].info.get("admissible_actions"))
            projections[i] = proj
            actions[i] = template.action_to_execute(proj)
        results = manager.step(actions)
        for i, prompt, gen in zip(active, prompts, generations):
            before, after = current[i], results[i]
            rows[i].append({
                "state": before.info["state_key"],
                "next_state": after.info["state_key"],
                "valid": bool(projections[i].valid and after.info.get("is_action_valid", True)),
                "reward": float(after.reward),
                "_prompt": prompt, "_generation": gen, "_action": actions[i],
            })
            history[i].append((before.observation, projections[i].action or gen.text.strip()[:80]))
            current[i] = after
            won[i] = bool(after.info.get("won", False))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()

    records, prompts_out, gens_out, actions_out = [], [], [], []
    returns, lengths = [], []
    for traj, traj_rows in enumerate(rows):
        episode_reward = success_reward if won[traj] else 0.0
        for step, row in enumerate(traj_rows):
            prompts_out.append(row.pop("_prompt"))
            gens_out.append(row.pop("_generation"))
            actions_out.append(row.pop("_action"))
            records.append({"group": manager.group_of(traj), "traj": traj, "step": step, **row,
                            "success": won[traj], "episode_reward": episode_reward})
        returns.append(sum(r["reward"] for r in traj_rows))
        lengths.append(len(traj_rows))

    from .batch import StepBatch  # imported late: the batch module pulls in torch

    batch = StepBatch.from_records(records, device=device)
    return RolloutResult(records=records, batch=batch, prompts=prompts_out, generations=gens_out,
                         actions=actions_out, success=list(won), returns=returns, lengths=lengths,
                         task_seeds=task_seeds, task_types=task_types,
                         stats=episode_stats(records, won, lengths, returns))


def episode_stats(records: Sequence[dict], success: Sequence[bool], lengths: Sequence[int],
                  returns: Sequence[float]) -> dict[str, float]:
    """RolloutResult.stats: success_rate, mean_length, mean_return (per episode), invalid_rate (per row)."""
    episodes, rows = max(len(success), 1), max(len(records), 1)
    return {
        "success_rate": sum(success) / episodes,
        "mean_length": sum(lengths) / episodes,
        "mean_return": sum(returns) / episodes,
        "invalid_rate": sum(1 for r in records if not r["valid"]) / rows,
    }


def success_by_task_type(result: RolloutResult) -> dict[str, float]:
    """Success rate per task type, in sorted type order."""
    outcomes: dict[str, list[bool]] = {}
    for task_type, won in zip(result.task_types, result.success):
        outcomes.setdefault(task_type, []).append(won)
    return {t: sum(v) / len(v) for t, v in sorted(outcomes.items())}


_ADMISSIBLE_RE = re.compile(r"Your admissible actions are: (.*)\.\s*$", re.MULTILINE)


class RandomPolicy:
    """Uniform-random baseline policy.

    Picks uniformly from ``actions``: a fixed list, a function ``prompt -> list`` (e.g. a numbered
    template's ``listed_choices``), or None for the admissible actions listed in the prompt (the full
    templates print them). ``style="tags"`` answers ``<think>random</think><action>a</action>``;
    ``style="bare"`` answers the action word alone (for compact templates). ``RandomPolicy.for_template``
    builds the fair baseline of a template: uniform over what that template lets the model answer.
    """

    def __init__(self, actions: Sequence[str] | Callable[[str], Sequence[str]] | None = None, *, seed: int = 0,
                 style: str = "tags"):
        if style not in ("tags", "bare"):
            raise ValueError(f"style: expected 'tags' or 'bare', got {style!r}")
        self.actions = actions if (actions is None or callable(actions)) else list(actions)
        self.style = style
        self.rng = random.Random(seed)

    @classmethod
    def for_template(cls, template: PromptTemplate, *, seed: int = 0) -> "RandomPolicy":
        """Uniform over the template's fixed moves, over a numbered menu's listed choices, or over the
        admissible actions a full template lists."""
        style = "bare" if template.parse_mode == "bare" else "tags"
        if template.numbered_actions:
            return cls(template.listed_choices, seed=seed, style=style)
        return cls(template.fixed_vocabulary, seed=seed, style=style)

    def _choices(self, prompt: str) -> Sequence[str]:
        if callable(self.actions):
            choices = self.actions(prompt)
            if not choices:
                raise ValueError(f"RandomPolicy: the prompt lists no choices: {prompt[:120]!r}")
            return choices
        if self.actions is not None:
            return self.actions
        match = _ADMISSIBLE_RE.search(prompt)
        if not match:
            raise ValueError("RandomPolicy: no action list given and none found in the prompt")
        return re.findall(r"'([^']*)'", match.group(1))

    def __call__(self, prompts: list[str]) -> list[TextGeneration]:
        out = []
        for prompt in prompts:
            action = self.rng.choice(self._choices(prompt))
            text = action if self.style == "bare" else f"<think>random choice</think><action>{action}</action>"
            out.append(TextGeneration(text))
        return out
