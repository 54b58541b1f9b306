"""The shared pipeline's hooks (graph keys, step keys, extra edges) against the reference backend and by hand.

The hooks are what the similarity merge (graph nodes and step groups from separate passes) and graph memory
(remembered edges that enter the distances without being rows) build on; here they are fed random keys and
edges and must agree with the reference backend, and leave results bit-identical when they change nothing.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from graphgpo.backends import reference, torch_backend
from graphgpo.backends.pipeline import GraphInputs
from graphgpo.config import GiGPOConfig, GraphGPOConfig, GRPOConfig

from tests.random_batches import batch_params, random_inputs, random_rows, to_batch


def assert_matches_reference(batch, method, config, inputs):
    ours = torch_backend.compute(batch, method, config, inputs)
    ref = reference.compute(batch, method, config, inputs)
    for name in ("d_state", "d_next", "step_group"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b)), name
    torch.testing.assert_close(ours.returns, ref.returns, rtol=1e-12, atol=1e-12)
    for name in ("step_advantages", "episode_advantages"):
        torch.testing.assert_close(getattr(ours, name), getattr(ref, name), rtol=0, atol=1e-6)
    assert ours.stats == ref.stats
    assert len(ours) == batch.num_rows  # extra edges give no rows


hook_params = st.fixed_dictionaries({
    "seed": st.integers(0, 2**32 - 1),
    "merge": st.booleans(),
    "step_keys": st.booleans(),
    "num_extra": st.sampled_from((0, 1, 7, 40)),
})


@given(batch_params, hook_params, st.sampled_from(("graphgpo", "gigpo", "grpo")))
def test_hooks_match_reference(params, hooks, method):
    batch = to_batch(random_rows(**params))
    config = {"graphgpo": GraphGPOConfig(graph_return="progress"), "gigpo": GiGPOConfig(), "grpo": GRPOConfig()}[method]
    assert_matches_reference(batch, method, config, random_inputs(batch, **hooks))


@given(batch_params)
def test_hooks_that_change_nothing_change_nothing(params):
    batch = to_batch(random_rows(**params))
    base = torch_backend.compute(batch, "graphgpo", GraphGPOConfig())
    same = GraphInputs(state_key=batch.state.clone(), next_key=batch.next_state.clone(), step_key=batch.state.clone())
    got = torch_backend.compute(batch, "graphgpo", GraphGPOConfig(), same)
    for name in ("advantages", "step_advantages", "episode_advantages", "returns", "d_state", "d_next", "step_group"):
        assert torch.equal(getattr(got, name), getattr(base, name)), name
    assert got.stats == base.stats


def _two_rows(state_a=1, state_b=2, success=False):
    """One group, two one-step trajectories: A -> B and B -> A (no success)."""
    rows = [dict(group=0, traj=t, step=0, state=s, next_state=n, success=success, valid=True,
                 episode_reward=10.0 if success else 0.0, reward=0.0)
            for t, (s, n) in enumerate([(state_a, state_b), (state_b, state_a)])]
    return to_batch(rows)


def test_remembered_success_edge_gives_distances_to_a_failed_group():
    # Without memory the group has no success: every distance is 1. A remembered edge B -> SUCCESS makes
    # d(B) = 1 and d(A) = 2, although no row reaches SUCCESS.
    batch = _two_rows()
    plain = torch_backend.compute(batch, "graphgpo", GraphGPOConfig(omega=0.5))
    assert plain.d_state.tolist() == [1.0, 1.0]
    memory = GraphInputs(extra_group=torch.tensor([0]), extra_src=torch.tensor([2]), extra_dst=torch.tensor([0]),
                         extra_success=torch.tensor([True]))
    out = torch_backend.compute(batch, "graphgpo", GraphGPOConfig(omega=0.5), memory)
    assert out.d_state.tolist() == [2.0, 1.0] and out.d_next.tolist() == [1.0, 2.0]
    assert out.returns.tolist() == [10 * 0.5, 10 * 0.25]
    assert out.stats["groups_without_success"] == 0 and out.stats["num_edges"] == 3
    assert reference.compute(batch, "graphgpo", GraphGPOConfig(omega=0.5), memory).d_state.tolist() == [2.0, 1.0]


def test_step_keys_group_rows_that_graph_keys_separate():
    # Rows with states 1 and 2 are different nodes, but one step group: their returns are compared.
    batch = _two_rows()
    memory = dict(extra_group=torch.tensor([0]), extra_src=torch.tensor([2]), extra_dst=torch.tensor([0]),
                  extra_success=torch.tensor([True]))
    separate = torch_backend.compute(batch, "graphgpo", GraphGPOConfig(), GraphInputs(**memory))
    assert separate.step_advantages.tolist() == [0.0, 0.0]  # two singleton step groups
    joined = torch_backend.compute(batch, "graphgpo", GraphGPOConfig(),
                                   GraphInputs(step_key=torch.tensor([7, 7]), **memory))
    assert joined.step_group.tolist() == [0, 0]
    assert joined.step_advantages[0] > 0 > joined.step_advantages[1]  # A -> B (d 1) beats B -> A (d 2)


@pytest.mark.parametrize("inputs, message", [
    (GraphInputs(state_key=torch.zeros(3, dtype=torch.int64)), "state_key must be a 1-D tensor of 2"),
    (GraphInputs(step_key=torch.zeros(2)), "step_key must be torch.int64"),
    (GraphInputs(extra_src=torch.tensor([1]), extra_dst=torch.tensor([1])), "together"),
    (GraphInputs(extra_group=torch.tensor([3]), extra_src=torch.tensor([1]), extra_dst=torch.tensor([1])),
     "extra_group holds ids outside 0..0"),
    (GraphInputs(extra_group=torch.tensor([0]), extra_src=torch.tensor([1]), extra_dst=torch.tensor([1]),
                 extra_cost=torch.tensor([1.0], dtype=torch.float64)), "exactly when the batch has costs"),
    (GraphInputs(extra_success=torch.tensor([True])), "without extra edges"),
])
def test_bad_graph_inputs_name_the_field(inputs, message):
    with pytest.raises(ValueError, match=message):
        torch_backend.compute(_two_rows(), "graphgpo", GraphGPOConfig(), inputs)
