"""``AdvantageOutput``: what every backend returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

STAT_KEYS = (
    "num_steps",
    "num_groups",
    "num_nodes",
    "num_edges",
    "num_unique_edges",
    "duplicate_edge_rate",
    "singleton_step_group_share",
    "unreachable_state_share",
    "groups_without_success",
)
"""Keys of ``AdvantageOutput.stats``, in display order."""


@dataclass
class AdvantageOutput:
    """Per-row advantages and diagnostics, in the batch's row order and on the batch's device.

    ``advantages`` is what the trainer uses: one float32 scalar per step, applied to every response token of
    that step. The other tensors explain it.
    """

    advantages: torch.Tensor
    """float32 [rows]: step_weight * step_advantages + episode_weight * episode_advantages."""
    step_advantages: torch.Tensor
    """float64 [rows]: return normalised within the step group (zeros for grpo/rloo)."""
    episode_advantages: torch.Tensor
    """float64 [rows]: episode score normalised within the group (the whole advantage for grpo/rloo)."""
    returns: torch.Tensor
    """float64 [rows]: graph return (graphgpo), discounted step return (gigpo) or episode reward (grpo/rloo),
    after the invalid penalty where the method applies it."""
    d_state: torch.Tensor | None
    """float64 [rows]: shortest distance from the row's state to SUCCESS (graphgpo only)."""
    d_next: torch.Tensor | None
    """float64 [rows]: distance of the row's next node; 0 where it is the SUCCESS sink (graphgpo only)."""
    step_group: torch.Tensor | None
    """int64 [rows]: dense id of (group, state) in sorted order (graphgpo/gigpo only)."""
    stats: dict[str, float | int] = field(default_factory=dict)
    """Batch diagnostics, keys ``STAT_KEYS``: sizes of the state graphs and how informative they were."""
    method: str = ""
    backend: str = ""

    @classmethod
    def empty(cls, method: str, backend: str, device: torch.device | str = "cpu") -> "AdvantageOutput":
        """The result for a batch with no rows: length-0 tensors and all-zero stats."""
        f64 = torch.zeros(0, dtype=torch.float64, device=device)
        graph = method == "graphgpo"
        return cls(
            advantages=torch.zeros(0, dtype=torch.float32, device=device),
            step_advantages=f64,
            episode_advantages=f64.clone(),
            returns=f64.clone(),
            d_state=f64.clone() if graph else None,
            d_next=f64.clone() if graph else None,
            step_group=torch.zeros(0, dtype=torch.int64, device=device) if method in ("graphgpo", "gigpo") else None,
            stats=zero_stats(),
            method=method,
            backend=backend,
        )

    def __len__(self) -> int:
        return int(self.advantages.shape[0])

    def summary(self) -> str:
        """A short table of the batch diagnostics and the spread of the outputs, for printing."""
        lines = [f"{self.method} advantages ({self.backend} backend)"]
        width = max(len(k) for k in STAT_KEYS)
        for key in STAT_KEYS:
            value = self.stats.get(key, 0)
            text = f"{value:.4f}" if isinstance(value, float) else str(value)
            lines.append(f"  {key:<{width}}  {text:>12}")
        lines.append(f"  {'':<{width}}  {'mean':>12} {'std':>10} {'min':>10} {'max':>10}")
        for name in ("advantages", "step_advantages", "episode_advantages", "returns"):
            lines.append(f"  {name:<{width}}  " + _spread(getattr(self, name)))
        return "\n".join(lines)


def _spread(values: torch.Tensor) -> str:
    if values.numel() == 0:
        return f"{'-':>12} {'-':>10} {'-':>10} {'-':>10}"
    v = values.detach().to("cpu", torch.float64)
    std = v.std().item() if v.numel() > 1 else 0.0
    return f"{v.mean().item():>12.4g} {std:>10.4g} {v.min().item():>10.4g} {v.max().item():>10.4g}"


def zero_stats() -> dict[str, float | int]:
    """Stats of an empty batch: counts 0, shares 0.0."""
    return {k: (0.0 if k.endswith(("_rate", "_share")) else 0) for k in STAT_KEYS}
