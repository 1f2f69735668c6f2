"""The batched trainer against plain one-model-at-a-time PyTorch training."""

import numpy as np
import pytest
import torch
from torch import nn
from toydata import toy_data

from asymlib.core.models import MLPEnsemble
from asymlib.core.trainer import TrainConfig, fit


class _SigmaGate(nn.Module):
    """sigma-Asymmetric activation written plainly: z * sigmoid(z C), C frozen."""

    def __init__(self, gate):
        super().__init__()
        self.register_buffer("gate", gate.clone())

    def forward(self, z):
        return z * torch.sigmoid(z @ self.gate)


def _member_as_sequential(model, e):
    """Member e of a batched model copied into plain nn.Linear layers."""
    modules = []
    for i, layer in enumerate(model.layers):
        linear = nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            linear.weight.copy_(layer.weight[e].T)
            linear.bias.copy_(layer.bias[e])
        modules.append(linear)
        if i < len(model.layers) - 1:
            modules.append(_SigmaGate(getattr(model, f"gate{i}")) if model.kind == "smlp" else nn.GELU())
    return nn.Sequential(*modules)


def _syre_anchors(model):
    """Per layer (weight, bias, weight scales, bias scales) in nn.Linear's layout, or None."""
    if model.kind != "syre":
        return None
    return [
        (layer.anchor_weight.T, layer.anchor_bias, layer.anchor_weight_scale.T, layer.anchor_bias_scale)
        for layer in model.layers
    ]


def _train_alone(net, X, y, Xv, yv, *, task, order_seed, config, frozen_masks, anchors=None):
    """A textbook loop: torch.optim.AdamW, one permutation per epoch, early stopping.

    anchors (syre): AdamW without weight decay, and before each step the decay written out,
    theta <- theta - lr * weight_decay * D * (theta - theta_0), where AdamW decays."""
    decay = config.weight_decay if anchors is None else 0.0
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=decay)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    frozen_values = [None if mask is None else lin.weight.detach().clone() for lin, mask in zip(linears, frozen_masks)]
    loss_fn = nn.MSELoss() if task == "regression" else nn.CrossEntropyLoss()
    target = (lambda t: t.unsqueeze(-1)) if task == "regression" else (lambda t: t)
    gen = torch.Generator().manual_seed(order_seed)
    best, bad, epochs = float("inf"), 0, 0
    for epoch in range(config.max_epochs):
        perm = torch.randperm(len(X), generator=gen)
        for b in range(0, len(X), config.batch_size):
            idx = perm[b : b + config.batch_size]
            opt.zero_grad()
            loss_fn(net(X[idx]), target(y[idx])).backward()
            for lin, mask in zip(linears, frozen_masks):
                if mask is not None:  # W-Asym: frozen entries get no gradient...
                    lin.weight.grad[mask.T] = 0
            if anchors is not None:
                rate = config.lr * config.weight_decay
                with torch.no_grad():
                    for lin, (w0, b0, dw, db) in zip(linears, anchors):
                        lin.weight -= rate * dw * (lin.weight - w0)
                        lin.bias -= rate * db * (lin.bias - b0)
            opt.step()
            with torch.no_grad():  # ...and no weight decay: put them back
                for lin, mask, values in zip(linears, frozen_masks, frozen_values):
                    if mask is not None:
                        lin.weight[mask.T] = values[mask.T]
        epochs = epoch + 1
        with torch.no_grad():
            val = loss_fn(net(Xv), target(yv)).item()
        if val < best:
            best, bad = val, 0
        else:
            bad += 1
        if bad >= config.patience:
            break
    return epochs


@pytest.mark.parametrize("task", ["regression", "multiclass"])
@pytest.mark.parametrize("kind", ["mlp", "wmlp", "smlp", "syre"])
def test_batched_equals_one_by_one(task, kind):
    """Equal within float32 rounding, not bit for bit: the plain loop multiplies with
    nn.Linear's addmm on one member and autograd's backward, the batched model with bmm on
    stacked members and its hand-written backward (core/backprop.py); the kernels sum in
    different orders, so the last bits differ after a step and stay within 1e-4 here."""
    X, y, Xv, yv = toy_data(task)
    n_out = 1 if task == "regression" else 3
    members = 5
    config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=40, patience=3)
    model = MLPEnsemble(X.shape[1], 16, n_out, members=members, kind=kind, init_seeds=range(10, 15), mask_seed=3)
    singles = [_member_as_sequential(model, e) for e in range(members)]
    order_seeds = [100 + e for e in range(members)]
    result = fit(model, X, y, Xv, yv, task=task, order_seeds=order_seeds, config=config, progress=False)

    masks = [layer.frozen_mask for layer in model.layers]
    for e, net in enumerate(singles):
        epochs = _train_alone(
            net,
            X,
            y,
            Xv,
            yv,
            task=task,
            order_seed=order_seeds[e],
            config=config,
            frozen_masks=masks,
            anchors=_syre_anchors(model),
        )
        assert result.epochs[e] == epochs
        for layer, lin in zip(model.layers, [m for m in net if isinstance(m, nn.Linear)]):
            torch.testing.assert_close(layer.weight[e], lin.weight.detach().T, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(layer.bias[e], lin.bias.detach(), rtol=1e-4, atol=1e-5)
    # The point of the test: members stopped at different epochs, some before the cap.
    assert len(set(result.epochs.tolist())) > 1
    assert result.epochs.min() < config.max_epochs


def test_restore_best_keeps_each_members_best_epoch():
    from asymlib.core.trainer import evaluate_losses

    X, y, Xv, yv = toy_data("regression")
    config = TrainConfig(lr=3e-2, batch_size=32, max_epochs=25, patience=4, restore_best=True)
    model = MLPEnsemble(X.shape[1], 16, 1, members=4, init_seeds=range(4))
    result = fit(model, X, y, Xv, yv, task="regression", order_seeds=range(4), config=config, progress=False)
    val = evaluate_losses(model, Xv, yv, task="regression").double().numpy()
    np.testing.assert_allclose(val, result.best_val_loss, rtol=1e-5)
    # with a high learning rate the last epoch is worse than the best for some member
    assert np.any(result.final_val_loss > result.best_val_loss)


def test_history_and_max_epochs():
    X, y, Xv, yv = toy_data("multiclass")
    config = TrainConfig(batch_size=64, max_epochs=3, patience=50)
    model = MLPEnsemble(X.shape[1], 8, 3, members=2, init_seeds=[0, 1])
    result = fit(model, X, y, Xv, yv, task="multiclass", order_seeds=[0, 1], config=config, progress=False)
    assert result.epochs.tolist() == [3, 3]
    assert result.val_history.shape == (3, 2) and not np.isnan(result.val_history).any()
    assert model.layers[0].weight.shape[0] == 2  # every member is back in the model


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="order_seeds"):
        fit(
            MLPEnsemble(3, 4, 1, members=2),
            torch.zeros(4, 3),
            torch.zeros(4),
            torch.zeros(2, 3),
            torch.zeros(2),
            task="regression",
            order_seeds=[0],
            progress=False,
        )


@pytest.mark.parametrize("task", ["regression", "multiclass"])
def test_a_diverged_member_stops_is_flagged_and_leaves_the_others_alone(task):
    """Member 2 starts with output weights so large that its outputs overflow float32 in the
    first step: it is flagged as diverged after epoch 1 with the reason, while members 0, 1
    and 3 train exactly as they do beside a healthy member 2."""
    X, y, Xv, yv = toy_data(task)
    n_out = 1 if task == "regression" else 3
    config = TrainConfig(max_epochs=6, patience=3, batch_size=64)

    def run(poison: bool):
        model = MLPEnsemble(5, 16, n_out, members=4, kind="mlp", init_seeds=[1, 2, 3, 4], mask_seed=0)
        if poison:
            with torch.no_grad():
                signs = torch.randn(model.layers[-1].weight[2].shape, generator=torch.Generator().manual_seed(0)).sign()
                model.layers[-1].weight[2] = 3e38 * signs  # outputs overflow to +-inf
        result = fit(model, X, y, Xv, yv, task=task, order_seeds=[5, 6, 7, 8], config=config, progress=False)
        return model, result

    healthy_model, healthy = run(poison=False)
    model, result = run(poison=True)
    assert result.diverged.tolist() == [False, False, True, False]
    assert result.diverged_reason[2] == "non-finite training loss in epoch 1"
    assert result.diverged_reason[0] == result.diverged_reason[1] == result.diverged_reason[3] == ""
    assert result.epochs[2] == 1 and not healthy.diverged.any()
    others = [0, 1, 3]
    np.testing.assert_array_equal(result.epochs[others], healthy.epochs[others])
    np.testing.assert_array_equal(result.final_val_loss[others], healthy.final_val_loss[others])
    for poisoned, clean in zip(model.parameters(), healthy_model.parameters()):
        torch.testing.assert_close(poisoned[others], clean[others], rtol=0, atol=0)


def test_syre_decays_towards_its_anchors_not_towards_zero():
    """The syre run differs from the MLP run with the same seeds (the decay's target is the
    only difference) by far more than the rounding the exactness test above allows."""
    X, y, Xv, yv = toy_data("multiclass")
    config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=10, patience=3)
    trained = {}
    for kind in ("mlp", "syre"):
        model = MLPEnsemble(X.shape[1], 16, 3, members=3, kind=kind, init_seeds=range(3), mask_seed=3)
        fit(model, X, y, Xv, yv, task="multiclass", order_seeds=[7, 8, 9], config=config, progress=False)
        trained[kind] = model
    gap = max((a.weight - b.weight).abs().max().item() for a, b in zip(*(m.layers for m in trained.values())))
    assert gap > 1e-4
