"""The hand-written training step against autograd, the epoch's pre-permuted batches, the
epoch's work as device work only, and the precision setting."""

import pytest
import torch
from toydata import RECORDABLE_MODELS, toy_data

from asymlib.core.backprop import Workspace, losses_and_output_grad, member_losses, mlp_loss_and_gradients
from asymlib.core.models import MLPEnsemble
from asymlib.core.steps import EpochBatches, EpochRunner
from asymlib.core.trainer import TrainConfig, fit


def _autograd_gradients(model, x, y, task):
    model.zero_grad(set_to_none=True)
    losses = member_losses(model(x), y, task=task)
    losses.sum().backward()
    return losses.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("task, n_out", [("regression", 1), ("multiclass", 3)])
@pytest.mark.parametrize("kind", ["mlp", "wmlp"])
def test_hand_written_gradients_equal_autograd(kind, task, n_out):
    """Same kernels in the same layout, so the gradients agree to float32 rounding only: the
    loss gradient is formed in another order ((softmax - onehot) / batch rather than
    autograd's chain through log_softmax), which moves the last bits."""
    g = torch.Generator().manual_seed(0)
    model = MLPEnsemble(5, 16, n_out, members=3, kind=kind, init_seeds=[1, 2, 3], mask_seed=4)
    workspace = Workspace()
    # a full batch, then a shorter one that reuses the full one's buffers
    for batch in (32, 7):
        x = torch.randn(3, batch, 5, generator=g)
        y = (
            torch.randn(3, batch, generator=g)
            if task == "regression"
            else torch.randint(0, n_out, (3, batch), generator=g)
        )
        expected_losses, expected = _autograd_gradients(model, x, y, task)
        model.zero_grad(set_to_none=True)
        losses = mlp_loss_and_gradients(model.layers, x, y, task=task, workspace=workspace)
        torch.testing.assert_close(losses, expected_losses, rtol=1e-6, atol=1e-7)
        for got, want in zip((p.grad for p in model.parameters()), expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    if kind == "wmlp":
        for layer in model.layers:
            assert torch.all(layer.weight.grad[:, layer.frozen_mask] == 0)


def test_output_gradient_of_cross_entropy_is_softmax_minus_onehot():
    outputs = torch.randn(2, 4, 3, requires_grad=True)
    targets = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 1]])
    losses, grad = losses_and_output_grad(outputs.detach(), targets, task="multiclass")
    member_losses(outputs, targets, task="multiclass").sum().backward()
    torch.testing.assert_close(grad, outputs.grad, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(losses, member_losses(outputs.detach(), targets, task="multiclass"), rtol=0, atol=0)


@pytest.mark.parametrize("block_bytes", [1, 10**9])  # one batch per block; the whole epoch in one block
def test_epoch_batches_are_each_members_rows_in_its_order(block_bytes):
    X = torch.arange(50 * 3, dtype=torch.float32).view(50, 3)
    y = torch.arange(50)
    data = EpochBatches(X, y, members=4, batch_size=8, block_bytes=block_bytes)
    order = torch.stack([torch.randperm(50, generator=torch.Generator().manual_seed(m)) for m in range(4)])
    data.load_order(order)
    # a batch is a view into the block buffer, valid until the next block is gathered
    xs, ys = zip(*[(x.clone(), y.clone()) for x, y in data.batches()])
    assert [x.shape[1] for x in xs] == [8] * 6 + [2]  # 50 rows: six full batches and a short one
    assert torch.equal(torch.cat(xs, dim=1), X[order])
    assert torch.equal(torch.cat(ys, dim=1), y[order])


def _meta_epoch(model, *, task, n=50, batch_size=8):
    """One EpochRunner epoch of ``model`` on the meta device (shapes without storage)."""
    model, members = model.to("meta"), model.members
    X = torch.empty(n, model.in_features, device="meta")
    y = torch.empty(n, device="meta", dtype=torch.float32 if task == "regression" else torch.long)
    # PyTorch's capturable AdamW (the one a GPU uses) runs on CUDA-like devices only
    optimizer = torch.optim.AdamW(model.parameters(), fused=False, capturable=False)
    data = EpochBatches(X, y, members=members, batch_size=batch_size)
    anchor_decay = 1e-5 if getattr(model, "anchored", False) else 0.0  # syre's decay is in the step too
    runner = EpochRunner(model, optimizer, data, task=task, anchor_decay=anchor_decay)
    assert runner.graph is None  # graphs are for CUDA devices
    return runner.run_epoch(torch.empty(members, n, dtype=torch.long))


class _ReadsALoss(MLPEnsemble):
    def loss_and_gradients(self, x, targets, *, task):
        losses = super().loss_and_gradients(x, targets, task=task)
        if losses.sum().item() > 1e6:  # a per-step decision on the host
            raise RuntimeError("diverging")
        return losses


@pytest.mark.parametrize("task, n_out", [("regression", 1), ("multiclass", 3)])
# 5 and 12 features: narrower and wider than a mixture's hidden layers (its first layer's two paths)
@pytest.mark.parametrize("in_features", [5, 12])
@pytest.mark.parametrize("name", list(RECORDABLE_MODELS))  # smlp: through autograd
def test_an_epoch_is_device_work_only(name, task, n_out, in_features):
    """A CUDA graph records an epoch only if nothing in it waits for a value on the host
    (``.item()``, ``if tensor``, ``.cpu()``, ``nonzero``). No GPU here: on the meta device
    every such read raises, so an epoch that runs there to the end has none. Gumbel-gated
    mixtures draw their noise on the CPU and are not recorded (``steps_capturable``)."""
    finite = _meta_epoch(RECORDABLE_MODELS[name](in_features, n_out), task=task)
    assert finite.shape == (3,) and finite.device.type == "meta"


def test_a_host_read_in_the_step_fails_on_the_meta_device():
    """The check above can fail: a step that reads a loss on the host raises there."""
    with pytest.raises((RuntimeError, NotImplementedError), match="meta"):
        _meta_epoch(_ReadsALoss(5, 8, 1, members=2), task="regression")


def test_precision_is_opt_in_recorded_and_checked():
    X, y, Xv, yv = toy_data("regression")
    assert "precision" not in repr(TrainConfig())  # the default's repr is as before
    assert "precision='bf16'" in repr(TrainConfig(precision="bf16"))
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
    results = {}
    for precision in ("float32", "bf16"):
        model = MLPEnsemble(5, 16, 1, members=2, init_seeds=[0, 1])
        config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=3, patience=10, precision=precision)
        result = fit(model, X, y, Xv, yv, task="regression", order_seeds=[0, 1], config=config, progress=False)
        assert result.precision == precision
        results[precision] = (result, model.flat_parameters())
    (single, w32), (half, w16) = results["float32"], results["bf16"]
    assert not torch.equal(w32, w16)  # bfloat16 matmuls did run...
    assert abs(half.final_val_loss - single.final_val_loss).max() < 0.1 * single.final_val_loss.max()  # ...and train
    with pytest.raises(ValueError, match="tf32.*CUDA"):
        fit(
            MLPEnsemble(5, 4, 1, members=1),
            X,
            y,
            Xv,
            yv,
            task="regression",
            order_seeds=[0],
            config=TrainConfig(max_epochs=1, precision="tf32"),
            progress=False,
        )
