"""Extreme but accepted inputs give finite advantages that agree across backends (the limits of
graphgpo.batch.REWARD_LIMIT and the config bounds); beyond them every constructor refuses the batch."""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from graphgpo.backends import reference, torch_backend  # noqa: E402
from graphgpo.batch import REWARD_LIMIT, StepBatch  # noqa: E402
from graphgpo.config import make_config  # noqa: E402


def extreme_batch():
    """Two groups: episode rewards at +-REWARD_LIMIT and step rewards at the limit, with costs near it."""
    records = []
    for g, (win, lose) in enumerate([(REWARD_LIMIT, -REWARD_LIMIT), (1e-300, 0.0)]):
        for t, (reward, success) in enumerate([(win, True), (lose, False), (win, True)]):
            for step in range(3):
                records.append(dict(group=g, traj=f"{g}-{t}", step=step, state=f"s{step + t % 2}",
                                    next_state=f"s{step + 1}", success=success, valid=step != 1,
                                    episode_reward=reward, reward=reward if step == 2 else -REWARD_LIMIT,
                                    cost=REWARD_LIMIT if step == 0 else 1e-3))
    return StepBatch.from_records(records)


CASES = [("graphgpo", dict(r_succ=1e20, invalid_penalty=1e20, step_weight=1e6)),
         ("graphgpo", dict(graph_return="paper", normalize="mean", episode_weight=-1e6)),
         ("gigpo", dict(gamma=1.0, invalid_penalty=1e20, normalize="mean", step_weight=1e6)),
         ("grpo", {}), ("rloo", {})]


@pytest.mark.parametrize("method, options", CASES)
def test_extreme_values_finite_and_equal_across_backends(method, options):
    batch = extreme_batch()
    config = make_config(method, **options)
    want = reference.compute(batch, method, config)
    outputs = {"torch": torch_backend.compute(batch, method, config)}
    try:
        from graphgpo.backends import triton_backend

        device = "cuda" if torch.cuda.is_available() else "cpu"
        outputs["triton"] = triton_backend.compute(batch.to(device), method, config)
    except ImportError:  # triton is a dev extra: the torch comparison still runs
        pass
    for name in ("advantages", "step_advantages", "episode_advantages", "returns"):
        expected = getattr(want, name)
        assert torch.isfinite(expected).all(), name
        for backend, out in outputs.items():
            got = getattr(out, name).cpu()
            assert torch.isfinite(got).all(), (backend, name)
            torch.testing.assert_close(got.double(), expected.double(), rtol=1e-6, atol=1e-6, msg=f"{backend} {name}")
