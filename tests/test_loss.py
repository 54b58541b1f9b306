"""PPO loss math against values computed by hand (see the comments next to each expectation)."""

import math

import pytest
import torch

from graphgpo.trainer.loss import clipped_pg_loss, entropy_from_logits, k3_kl, masked_token_mean, policy_loss


def _logp(ratios):
    """old log-prob 0 and new log-prob log(ratio): the ratio exp(new - old) is exactly `ratios`."""
    new = torch.tensor([[math.log(r) for r in ratios]], dtype=torch.float64, requires_grad=True)
    return new, torch.zeros_like(new)


def test_clip_upper_side_for_positive_advantage():
    # A = +1. ratio 1.5: -A*r = -1.5, clipped -1.2 -> max = -1.2 (clipped, no gradient).
    # ratio 0.5: -0.5 vs clipped -0.8 -> max = -0.5 (unclipped: a worse action is not clipped below).
    new, old = _logp([1.5, 0.5])
    loss, clipped = clipped_pg_loss(new, old, torch.tensor([1.0], dtype=torch.float64), clip_ratio=0.2)
    assert loss.flatten().tolist() == pytest.approx([-1.2, -0.5])
    assert clipped.tolist() == [[True, False]]
    loss.sum().backward()
    # d(-A r)/d logp = -A r = -0.5 for the unclipped token; 0 for the clipped one.
    assert new.grad.flatten().tolist() == pytest.approx([0.0, -0.5])


def test_clip_lower_side_for_negative_advantage():
    # A = -1. ratio 0.5: A*(-r) = 0.5, clipped 0.8 -> 0.8 (clipped). ratio 1.5: 1.5 vs 1.2 -> 1.5.
    new, old = _logp([0.5, 1.5])
    loss, clipped = clipped_pg_loss(new, old, torch.tensor([-1.0], dtype=torch.float64), clip_ratio=0.2)
    assert loss.flatten().tolist() == pytest.approx([0.8, 1.5])
    assert clipped.tolist() == [[True, False]]
    loss.sum().backward()
    assert new.grad.flatten().tolist() == pytest.approx([0.0, 1.5])


def test_dual_clip_caps_negative_advantages_only():
    # c = 3. A = -2, ratio 5: max(10, 2.4) = 10 -> capped at -A*c = 6. ratio 2: max(4, 2.4) = 4 < 6 stays.
    new, old = _logp([5.0, 2.0])
    loss, _ = clipped_pg_loss(new, old, torch.tensor([-2.0], dtype=torch.float64), clip_ratio=0.2, dual_clip=3.0)
    assert loss.flatten().tolist() == pytest.approx([6.0, 4.0])
    # A = +2, ratio 5: max(-10, -2.4) = -2.4; dual clip does not touch positive advantages.
    new, old = _logp([5.0])
    loss, _ = clipped_pg_loss(new, old, torch.tensor([2.0], dtype=torch.float64), clip_ratio=0.2, dual_clip=3.0)
    assert loss.flatten().tolist() == pytest.approx([-2.4])


def test_k3_value_and_unbiasedness():
    # logp = log 0.5, ref = log 0.25: r = ref/p = 0.5, k3 = r - log r - 1 = 0.5 + ln 2 - 1.
    value = k3_kl(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert value.item() == pytest.approx(0.5 + math.log(2) - 1)
    # E_{x~p}[k3] = KL(p || q) exactly (E_p[q/p] = 1): p = (0.5, 0.3, 0.2), q = (0.2, 0.5, 0.3).
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    expectation = (p * k3_kl(p.log(), q.log())).sum().item()
    kl = 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.5) + 0.2 * math.log(0.2 / 0.3)
    assert expectation == pytest.approx(kl, rel=1e-12)
    assert (k3_kl(q.log(), p.log()) >= 0).all()


def test_token_mean_ignores_masked_tokens():
    values = torch.tensor([[1.0, 2.0, 100.0], [4.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # (1 + 2 + 4) / 3 real tokens
    assert masked_token_mean(values, mask).item() == pytest.approx(7 / 3)
    # gradient accumulation: the same micro-batch normalised by a mini-batch of 7 tokens
    assert masked_token_mean(values, mask, num_tokens=7).item() == pytest.approx(1.0)


def test_policy_loss_combines_parts_with_token_mean():
    # Two rows: row 0 has 2 response tokens, row 1 has 1 (its second position is padding).
    # All ratios 1 (new = old), so pg per token = -A: row 0 A = 1 -> -1, -1; row 1 A = -3 -> 3.
    new = torch.log(torch.tensor([[0.5, 0.5], [0.25, 0.9]]))
    old = new.clone()
    ref = torch.log(torch.tensor([[0.25, 0.5], [0.25, 0.1]]))
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -3.0])
    entropy = torch.tensor([[1.0, 2.0], [3.0, 50.0]])
    out = policy_loss(new, old, adv, mask, clip_ratio=0.2, ref_logprobs=ref, kl_coef=0.1,
                      entropy=entropy, entropy_coef=0.01)
    pg = (-1 - 1 + 3) / 3
    kl = ((0.5 + math.log(2) - 1) + 0.0 + 0.0) / 3  # k3 at r = 0.5, then r = 1 twice (0); padding ignored
    ent = (1 + 2 + 3) / 3
    assert out.pg_loss.item() == pytest.approx(pg)
    assert out.kl.item() == pytest.approx(kl, rel=1e-6)
    assert out.entropy.item() == pytest.approx(ent)
    assert out.loss.item() == pytest.approx(pg + 0.1 * kl - 0.01 * ent, rel=1e-6)
    assert out.clip_fraction.item() == 0.0


def test_entropy_from_logits_with_masked_actions():
    # Two equally likely actions and two masked out (-inf): entropy ln 2, no NaN from 0 * -inf.
    logits = torch.tensor([[0.0, 0.0, -math.inf, -math.inf]])
    assert entropy_from_logits(logits).item() == pytest.approx(math.log(2))
