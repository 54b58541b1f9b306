"""Per-step credit diagnostics: where GraphGPO's advantages disagree with trajectory-level credit.

The GraphGPO paper motivates the method with two kinds of steps that trajectory-level credit (GRPO)
gets wrong:

1. *Good steps in failed trajectories*: a step that moves closer to the goal (``d(next) < d(state)`` in
   GraphGPO's state graph) inside a trajectory that failed. GRPO gives every step of a failed trajectory
   the same negative advantage; GraphGPO can give it a positive one. We count the steps of failed
   trajectories that make progress **and** get ``A > 0`` under GraphGPO **and** ``A < 0`` under GRPO.
2. *Non-progress steps in successful trajectories*: loops and no-ops (``next_state == state``, or
   ``d(next) >= d(state)``). GRPO rewards them like every other step of a success; we report their share
   and the mean advantage each method gives them (and, for contrast, the mean it gives progress steps).

    outputs = compute_method_outputs(batch, omega=0.8)        # {method: AdvantageOutput}
    diag = credit_diagnostics(batch, outputs)
    print(diag.table())

Distances come from GraphGPO's output (``d_state``/``d_next``, SUCCESS sink = 0), so ``"graphgpo"``
must be among the outputs, and ``"grpo"`` for the first diagnostic. Advantages are the totals the trainer
applies (``AdvantageOutput.advantages``). Counts and sums are kept, not ratios, so diagnostics of several
batches add up (``a + b``) into the diagnostics of their union. Distances are only informative in groups
with at least one success (elsewhere every node has ``d = 1``), so the first diagnostic is also reported
restricted to those "mixed" groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping, Sequence

import torch

from graphgpo.batch import StepBatch
from graphgpo.config import METHODS
from graphgpo.output import AdvantageOutput


__all__ = ["METHODS", "LEGEND", "StepCategories", "CreditDiagnostics", "step_categories", "compute_method_outputs",
           "credit_diagnostics", "diagnose_runs"]

LEGEND = """\
How to read it (d = graph distance to SUCCESS in GraphGPO's graph of the task's G rollouts):
  progress step       d(next) < d(state): the step moved closer to the goal.
  non-progress step   a no-op (next state = state), a loop or a step away: d(next) >= d(state).
  rescued             a progress step of a failed trajectory that GraphGPO credits (A > 0) while GRPO,
                      which gives every step of a failure the same negative advantage, blames (A < 0).
  mixed groups        groups where at least one of the G rollouts succeeded: only there are distances
                      informative (in a group without success every state has d = 1).
  scale-free ratio    mean advantage of non-progress steps / mean advantage of progress steps, per method:
                      the methods' advantage scales differ, the ratio compares them (lower = loops and
                      no-ops get less of a success's credit; negative = they are blamed).
  n/a                 no such steps in these rollouts."""
"""Plain-text legend of CreditDiagnostics.table(), printed by graphgpo diagnose."""


@dataclass
class StepCategories:
    """Boolean row masks of one batch (row order of the batch)."""

    failed: torch.Tensor
    """Row belongs to a failed trajectory."""
    succeeded: torch.Tensor
    """Row belongs to a successful trajectory."""
    mixed_group: torch.Tensor
    """Row's group has at least one successful trajectory (distances are informative)."""
    progress: torch.Tensor
    """d(next) < d(state): the step moved closer to SUCCESS in GraphGPO's graph."""
    non_progress: torch.Tensor
    """next_state == state (a no-op) or d(next) >= d(state) (a loop or a step away)."""


def step_categories(batch: StepBatch, graphgpo_output: AdvantageOutput) -> StepCategories:
    """Masks from the batch and GraphGPO's distances."""
    if graphgpo_output.d_state is None or graphgpo_output.d_next is None:
        raise ValueError(f"graphgpo_output: needs d_state/d_next (a graphgpo output), got method "
                         f"{graphgpo_output.method!r}")
    if len(graphgpo_output) != batch.num_rows:
        raise ValueError(f"graphgpo_output: {len(graphgpo_output)} rows for a batch of {batch.num_rows}")
    d_state = graphgpo_output.d_state.to("cpu")
    d_next = graphgpo_output.d_next.to("cpu")
    success = batch.success.to("cpu")
    group = batch.group.to("cpu")
    group_has_success = torch.zeros(max(batch.num_groups, 1), dtype=torch.bool)
    group_has_success[group[success]] = True
    progress = d_next < d_state
    no_op = batch.state.to("cpu") == batch.next_state.to("cpu")
    return StepCategories(failed=~success, succeeded=success, mixed_group=group_has_success[group],
                          progress=progress, non_progress=no_op | ~progress)


def compute_method_outputs(batch: StepBatch, methods: Sequence[str] = METHODS, *, backend: str = "auto",
                           omega: float | None = None, **options) -> dict[str, AdvantageOutput]:
    """``compute_advantages`` for each method; ``omega`` goes to GraphGPO, ``options`` to every method."""
    from graphgpo.api import compute_advantages

    outputs = {}
    for method in methods:
        extra = dict(options)
        if method == "graphgpo" and omega is not None:
            extra["omega"] = omega
        outputs[method] = compute_advantages(batch, method=method, backend=backend, **extra)
    return outputs


def _ratio(num: float, den: float) -> float:
    return num / den if den else float("nan")


def _nan_to_none(value):
    """NaN (a ratio over no steps) -> None, recursively: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and value != value else value


@dataclass
class CreditDiagnostics:
    """Counts and advantage sums of the diagnostic step sets; ratios are properties."""

    methods: tuple[str, ...]
    """Methods whose advantages were summed (order of the table's columns)."""
    failed_steps: int = 0
    """Rows of failed trajectories."""
    failed_progress_steps: int = 0
    """... of which d(next) < d(state)."""
    failed_rescued_steps: int = 0
    """... of which A_graphgpo > 0 and A_grpo < 0."""
    mixed_failed_steps: int = 0
    """Rows of failed trajectories in groups with a success."""
    mixed_failed_progress_steps: int = 0
    mixed_failed_rescued_steps: int = 0
    success_steps: int = 0
    """Rows of successful trajectories."""
    success_non_progress_steps: int = 0
    """... of which next_state == state or d(next) >= d(state)."""
    success_no_op_steps: int = 0
    """... of which next_state == state."""
    non_progress_advantage_sum: dict[str, float] = field(default_factory=dict)
    """Per method: sum of the advantages of the non-progress steps of successful trajectories."""
    non_progress_negative: dict[str, int] = field(default_factory=dict)
    """Per method: how many of those steps get A < 0."""
    progress_advantage_sum: dict[str, float] = field(default_factory=dict)
    """Per method: sum of the advantages of the progress steps of successful trajectories."""
    failed_progress_advantage_sum: dict[str, float] = field(default_factory=dict)
    """Per method: sum of the advantages of the progress steps of failed trajectories (mixed groups).

    Advantage scales differ between methods (RLOO is not normalised; GraphGPO adds a step and an episode
    part), so compare within a method: the non-progress / progress ratio is scale-free."""

    # ------------------------------------------------------------------ ratios
    @property
    def rescued_share(self) -> float:
        """Share of failed-trajectory steps that progress, get A_graphgpo > 0 and A_grpo < 0."""
        return _ratio(self.failed_rescued_steps, self.failed_steps)

    @property
    def mixed_rescued_share(self) -> float:
        """The same, among failed-trajectory steps of groups with a success."""
        return _ratio(self.mixed_failed_rescued_steps, self.mixed_failed_steps)

    @property
    def rescued_share_of_progress(self) -> float:
        """Share of the progress steps of failed trajectories that GraphGPO credits and GRPO blames."""
        return _ratio(self.failed_rescued_steps, self.failed_progress_steps)

    @property
    def non_progress_share(self) -> float:
        """Share of successful-trajectory steps that are loops/no-ops/steps away."""
        return _ratio(self.success_non_progress_steps, self.success_steps)

    def non_progress_mean_advantage(self, method: str) -> float:
        return _ratio(self.non_progress_advantage_sum.get(method, 0.0), self.success_non_progress_steps)

    def non_progress_negative_share(self, method: str) -> float:
        return _ratio(self.non_progress_negative.get(method, 0), self.success_non_progress_steps)

    def progress_mean_advantage(self, method: str) -> float:
        return _ratio(self.progress_advantage_sum.get(method, 0.0),
                      self.success_steps - self.success_non_progress_steps)

    def failed_progress_mean_advantage(self, method: str) -> float:
        return _ratio(self.failed_progress_advantage_sum.get(method, 0.0), self.mixed_failed_progress_steps)

    # ------------------------------------------------------------------ combining and printing
    def __add__(self, other: "CreditDiagnostics") -> "CreditDiagnostics":
        if self.methods != other.methods:
            raise ValueError(f"cannot add diagnostics of methods {self.methods} and {other.methods}")
        merged = CreditDiagnostics(methods=self.methods)
        for f in fields(self):
            if f.name == "methods":
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, dict):
                setattr(merged, f.name, {m: a.get(m, 0) + b.get(m, 0) for m in self.methods})
            else:
                setattr(merged, f.name, a + b)
        return merged

    def as_dict(self) -> dict:
        """Counts, ratios and per-method means (JSON-ready: a ratio without steps to count is None)."""
        return _nan_to_none({
            "failed_steps": self.failed_steps,
            "failed_progress_steps": self.failed_progress_steps,
            "failed_rescued_steps": self.failed_rescued_steps,
            "rescued_share": self.rescued_share,
            "rescued_share_of_progress": self.rescued_share_of_progress,
            "mixed_failed_steps": self.mixed_failed_steps,
            "mixed_failed_progress_steps": self.mixed_failed_progress_steps,
            "mixed_rescued_share": self.mixed_rescued_share,
            "success_steps": self.success_steps,
            "success_non_progress_steps": self.success_non_progress_steps,
            "success_no_op_steps": self.success_no_op_steps,
            "non_progress_share": self.non_progress_share,
            "per_method": {m: {"non_progress_mean_advantage": self.non_progress_mean_advantage(m),
                               "non_progress_negative_share": self.non_progress_negative_share(m),
                               "progress_mean_advantage": self.progress_mean_advantage(m),
                               "non_progress_to_progress_ratio": _ratio(self.non_progress_mean_advantage(m),
                                                                        self.progress_mean_advantage(m)),
                               "failed_progress_mean_advantage": self.failed_progress_mean_advantage(m)}
                           for m in self.methods},
        })

    def table(self) -> str:
        """A plain-text table for printing."""
        pct = lambda x: "   n/a" if x != x else f"{100 * x:5.1f}%"  # noqa: E731  (x != x: NaN)
        num = lambda x: "     n/a" if x != x else f"{x:+8.3f}"  # noqa: E731
        lines = [
            "Failed trajectories",
            f"  steps                                              {self.failed_steps:>8}",
            f"  progress steps (d(next) < d(state))                {self.failed_progress_steps:>8}",
            f"  progress, A_graphgpo > 0 and A_grpo < 0            {self.failed_rescued_steps:>8}"
            f"   {pct(self.rescued_share)} of failed steps, "
            f"{pct(self.rescued_share_of_progress)} of their progress steps",
            f"  same, in groups with a success                     {self.mixed_failed_rescued_steps:>8}"
            f"   {pct(self.mixed_rescued_share)} of {self.mixed_failed_steps} failed steps there",
            "Successful trajectories",
            f"  steps                                              {self.success_steps:>8}",
            f"  non-progress (no-op or d(next) >= d(state))        {self.success_non_progress_steps:>8}"
            f"   {pct(self.non_progress_share)} (no-ops: {self.success_no_op_steps})",
            "",
            f"  {'mean advantage':<44}" + "".join(f"{m:>10}" for m in self.methods),
            f"  {'non-progress steps of successes':<44}"
            + "".join(f"{num(self.non_progress_mean_advantage(m)):>10}" for m in self.methods),
            f"  {'  share with A < 0':<44}"
            + "".join(f"{pct(self.non_progress_negative_share(m)):>10}" for m in self.methods),
            f"  {'progress steps of successes':<44}"
            + "".join(f"{num(self.progress_mean_advantage(m)):>10}" for m in self.methods),
            f"  {'  ratio non-progress / progress (scale-free)':<44}"
            + "".join(f"{num(self.non_progress_mean_advantage(m) / self.progress_mean_advantage(m)):>10}"
                      if self.progress_mean_advantage(m) else f"{'n/a':>10}" for m in self.methods),
            f"  {'progress steps of failures (mixed groups)':<44}"
            + "".join(f"{num(self.failed_progress_mean_advantage(m)):>10}" for m in self.methods),
        ]
        return "\n".join(lines)


def credit_diagnostics(batch: StepBatch, outputs: Mapping[str, AdvantageOutput]) -> CreditDiagnostics:
    """Diagnostics of one batch from each method's output (``graphgpo`` and ``grpo`` required)."""
    for needed in ("graphgpo", "grpo"):
        if needed not in outputs:
            raise ValueError(f"outputs: the {needed!r} output is required (got {sorted(outputs)})")
    for method, out in outputs.items():
        if len(out) != batch.num_rows:
            raise ValueError(f"outputs[{method!r}]: {len(out)} rows for a batch of {batch.num_rows}")
    cat = step_categories(batch, outputs["graphgpo"])
    adv = {m: out.advantages.detach().to("cpu", torch.float64) for m, out in outputs.items()}
    rescued = cat.failed & cat.progress & (adv["graphgpo"] > 0) & (adv["grpo"] < 0)
    failed_progress = cat.failed & cat.progress
    success_np = cat.succeeded & cat.non_progress
    success_p = cat.succeeded & ~cat.non_progress
    mixed_failed_progress = failed_progress & cat.mixed_group
    no_op = (batch.state == batch.next_state).to("cpu")
    methods = tuple(outputs)
    return CreditDiagnostics(
        methods=methods,
        failed_steps=int(cat.failed.sum()),
        failed_progress_steps=int(failed_progress.sum()),
        failed_rescued_steps=int(rescued.sum()),
        mixed_failed_steps=int((cat.failed & cat.mixed_group).sum()),
        mixed_failed_progress_steps=int(mixed_failed_progress.sum()),
        mixed_failed_rescued_steps=int((rescued & cat.mixed_group).sum()),
        success_steps=int(cat.succeeded.sum()),
        success_non_progress_steps=int(success_np.sum()),
        success_no_op_steps=int((cat.succeeded & no_op).sum()),
        non_progress_advantage_sum={m: float(a[success_np].sum()) for m, a in adv.items()},
        non_progress_negative={m: int((a[success_np] < 0).sum()) for m, a in adv.items()},
        progress_advantage_sum={m: float(a[success_p].sum()) for m, a in adv.items()},
        failed_progress_advantage_sum={m: float(a[mixed_failed_progress].sum()) for m, a in adv.items()},
    )


def diagnose_runs(run_dirs: Sequence[str], tasks: int = 32, *, policy: str = "auto",
                  temperature: float | None = None, seed: int = 0, progress=print):
    """Credit diagnostics of fresh rollouts of each run's agent (latest checkpoint, or a random policy) on
    its first ``tasks`` evaluation tasks, G rollouts each (fewer tasks when the run has fewer; said through
    ``progress``). Returns (the diagnostics summed over the runs, {run_dir: per-run dict})."""
    from graphgpo.analysis.run_rollouts import collect_run_rollouts, evaluation_pool, evaluation_task_count, run_config

    if tasks < 1:
        raise ValueError(f"tasks must be >= 1, got {tasks}")
    total, per_run = None, {}
    for run_dir in run_dirs:
        cfg = run_config(run_dir)
        available = evaluation_task_count(cfg.eval_tasks, evaluation_pool(cfg))
        if available < tasks:
            progress(f"{run_dir}: the run has {available} evaluation tasks; diagnosing those {available}")
        runs = collect_run_rollouts(run_dir, range(min(tasks, available)), policy=policy, temperature=temperature,
                                    seed=seed)
        batch = runs.result.batch
        diag = credit_diagnostics(batch, compute_method_outputs(batch, omega=runs.omega))
        success = runs.result.stats["success_rate"]
        per_run[str(run_dir)] = {"policy": runs.policy_source, "success_rate": success, "tasks": min(tasks, available),
                                 **diag.as_dict()}
        progress(f"{run_dir}: {runs.policy_source}, success {success:.3f} over {len(runs.result.success)} episodes")
        total = diag if total is None else total + diag
    return total, per_run
