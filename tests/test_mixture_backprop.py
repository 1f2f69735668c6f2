"""The mixtures' hand-written training step against autograd, on every kind, gate and
layer order (narrow and wide inputs), with and without load balancing."""

import copy

import pytest
import torch

from asymlib.core.backprop import member_losses
from asymlib.core.mixtures import MixtureEnsemble


def _autograd_step(model, x, y, task):
    model.zero_grad(set_to_none=True)
    losses = member_losses(model(x), y, task=task)
    auxiliary = model.auxiliary_losses()
    (losses if auxiliary is None else losses + auxiliary).sum().backward()
    return losses.detach(), [p.grad.clone() for p in model.parameters()]


KINDS = [
    ("mlp", "paper"),
    ("wmlp", "paper"),
    ("imlp", "paper"),
    ("iwmlp", "paper"),
    ("imlp", "release"),
    ("iwmlp", "release"),
]  # the release's MoE is the paper's


@pytest.mark.parametrize("kind, architecture", KINDS)
@pytest.mark.parametrize("gating", ["standard", "gumbel"])
@pytest.mark.parametrize("task, n_out", [("regression", 1), ("multiclass", 3)])
@pytest.mark.parametrize("in_features", [5, 12])  # narrower and wider than the hidden layers
def test_hand_written_mixture_gradients_equal_autograd(kind, architecture, gating, task, n_out, in_features):
    """Same products in other groupings (e.g. the experts' first layer side by side), so
    the gradients agree to float32 rounding, not bit for bit."""
    g = torch.Generator().manual_seed(0)
    n_fix = [2, 3, 3, 2] if architecture == "paper" else [2, 3, 3, 2, 1]
    model = MixtureEnsemble(
        in_features,
        8,
        n_out,
        members=3,
        experts=4,
        kind=kind,
        gating=gating,
        init_seeds=[1, 2, 3],
        noise_seeds=[4, 5, 6],
        mask_seed=7,
        n_fix=n_fix,
        architecture=architecture,
    )
    model.train()
    twin = copy.deepcopy(model)  # the same Gumbel generators, drawn by the hand-written step
    # a full batch, then a shorter one that reuses the full one's buffers
    for batch in (32, 7):
        x = torch.randn(3, batch, in_features, generator=g)
        y = (
            torch.randn(3, batch, generator=g)
            if task == "regression"
            else torch.randint(0, n_out, (3, batch), generator=g)
        )
        expected_losses, expected = _autograd_step(model, x, y, task)
        twin.zero_grad(set_to_none=True)
        losses = twin.loss_and_gradients(x, y, task=task)
        torch.testing.assert_close(losses, expected_losses, rtol=1e-5, atol=1e-6)
        for (name, p), want in zip(twin.named_parameters(), expected):
            torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-6, msg=lambda m: f"{name}: {m}")
    if kind in ("wmlp", "iwmlp"):
        for layer in twin.layers:
            assert not layer.weight.grad[layer.frozen_mask.expand_as(layer.weight)].any()


@pytest.mark.parametrize("kind", ["mlp", "imlp"])
def test_hand_written_load_balancing_gradient_equals_autograd(kind):
    g = torch.Generator().manual_seed(1)
    model = MixtureEnsemble(6, 8, 2, members=2, experts=5, kind=kind, init_seeds=[3, 4], balance_weight=0.5)
    model.train()
    x, y = torch.randn(2, 40, 6, generator=g), torch.randint(0, 2, (2, 40), generator=g)
    expected_losses, expected = _autograd_step(model, x, y, "binary")
    losses = model.loss_and_gradients(x, y, task="binary")
    torch.testing.assert_close(losses, expected_losses)  # the task's loss alone
    gate_weight_grad = model.gate.weight.grad.clone()
    for p, want in zip(model.parameters(), expected):
        torch.testing.assert_close(p.grad, want, rtol=1e-4, atol=1e-6)
    # the balancing term does reach the gate: without it the gate's gradient differs
    model.balance_weight = 0.0
    model.loss_and_gradients(x, y, task="binary")
    assert not torch.allclose(model.gate.weight.grad, gate_weight_grad)
