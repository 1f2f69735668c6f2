"""Per-member losses, and the batched MLP's training step with its backward pass written out.

``member_losses`` is the loss every part of the package uses (training, validation). The
rest is the deep ensemble's hot path: the forward pass keeps each layer's input and
pre-activation, and the backward pass applies the chain rule layer by layer with the same
ATen kernels autograd would call (``gelu_backward``, ``bmm``, a sum over the batch for the
bias), writing into gradient buffers that live as long as the parameters. Against autograd
this saves its graph, its temporary tensors (a fresh (members, batch, hidden) tensor per
node and step) and the copies its ``baddbmm`` backward makes; gradients agree within
float32 rounding (the loss gradient is formed in another order), which
``tests/test_backprop.py`` checks against autograd. Intermediates go into a ``Workspace``
of buffers that persist from step to step.

Why not ``torch.compile``: on the 2-core CI CPU, inductor took 32 s to compile one
bias + GELU + derivative kernel, and the kernel ran at 1.4 ms per (64, 256, 64) tensor
against 0.9 ms for ATen's GELU forward and backward together (benchmarks/README.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import LinearEnsemble


def member_losses(outputs: Tensor, targets: Tensor, *, task: str) -> Tensor:
    """Mean loss of each member.

    outputs: (E, batch, out_features); targets: (E, batch) or (batch,) shared.
    Returns (E,): MSE for regression, cross-entropy otherwise.
    """
    members, batch, n_out = outputs.shape
    targets = targets.expand(members, batch) if targets.dim() == 1 else targets
    if task == "regression":
        return (outputs.squeeze(-1) - targets).pow(2).mean(dim=1)
    losses = F.cross_entropy(outputs.reshape(members * batch, n_out), targets.reshape(-1), reduction="none")
    return losses.view(members, batch).mean(dim=1)


@torch.no_grad()
def losses_and_output_grad(outputs: Tensor, targets: Tensor, *, task: str) -> tuple[Tensor, Tensor]:
    """``member_losses`` and its gradient with respect to the outputs.

    outputs: (E, batch, out_features); targets: (E, batch).
    Returns losses (E,) and d(sum of the losses)/d outputs (E, batch, out_features): each
    member's gradient is that of its own mean loss, as in ``losses.sum().backward()``.
    """
    batch = outputs.shape[1]
    if task == "regression":
        error = outputs - targets.unsqueeze(-1)
        return error.squeeze(-1).pow(2).mean(dim=1), error.mul_(2.0 / batch)
    log_probs = torch.log_softmax(outputs, dim=-1)
    index = targets.unsqueeze(-1)
    losses = log_probs.gather(-1, index).squeeze(-1).mean(dim=1).neg_()
    # softmax - one-hot(target), over the batch size: cross-entropy's gradient
    grad = log_probs.exp_().scatter_add_(-1, index, torch.full_like(index, -1.0, dtype=outputs.dtype))
    return losses, grad.div_(batch)


class Workspace:
    """Scratch tensors that outlive a step: ``get(name, shape)`` returns a contiguous
    tensor of that shape, a view of a flat buffer made once per name and enlarged only when
    a larger shape is asked for (the epoch's shorter last batch reuses the full one's).

    Writing every intermediate into memory already in use saves a fresh allocation per
    tensor and step: on the CI CPU an elementwise pass into a new (64, 256, 64) tensor took
    1.5x to 3x as long as into a reused one. On a GPU it also keeps a CUDA graph's
    addresses fixed.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def get(self, name: str, shape: Sequence[int], like: Tensor) -> Tensor:
        numel = 1
        for size in shape:
            numel *= size
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
            self._buffers[name] = buffer
        return buffer[:numel].view(*shape)


def grad_buffer(parameter: Tensor) -> Tensor:
    """The parameter's ``.grad``, made the first time and then overwritten every step."""
    if parameter.grad is None:
        parameter.grad = torch.empty_like(parameter)
    return parameter.grad


def zero_frozen_grad(layer: LinearEnsemble) -> None:
    """Zero the weight gradient at the layer's W-Asymmetric frozen entries (if it has any),
    as its autograd hook does, so that AdamW's moments stay 0 there."""
    if layer.frozen_mask is not None:
        layer.weight.grad.masked_fill_(layer.frozen_mask, 0.0)


@torch.no_grad()
def mlp_loss_and_gradients(
    layers: Sequence[LinearEnsemble], x: Tensor, targets: Tensor, *, task: str, workspace: Workspace
) -> Tensor:
    """One forward and backward pass of Linear GELU ... GELU Linear, members stacked.

    x: (E, batch, in_features), each member's own rows; targets: (E, batch).
    Writes every layer's ``weight.grad`` and ``bias.grad`` (overwriting them; frozen
    W-Asymmetric entries get 0) and returns the (E,) losses of the batch.

    The same arithmetic as ``LinearEnsemble.forward`` and autograd's backward, kernel for
    kernel: ``baddbmm`` then ``gelu``; a width-1 output layer as a product and a sum over
    the features; per layer ``bmm`` for the weight and input gradients and a sum over the
    batch for the bias.
    """
    members, batch = x.shape[:2]
    ws = lambda name, *shape: workspace.get(name, (members, batch, *shape), x)  # noqa: E731
    inputs, pre_activations = [x], []
    for i, layer in enumerate(layers[:-1]):
        z = torch.baddbmm(layer.bias.unsqueeze(1), inputs[-1], layer.weight, out=ws(f"z{i}", layer.out_features))
        pre_activations.append(z)
        inputs.append(torch.ops.aten.gelu.out(z, out=ws(f"h{i + 1}", layer.out_features)))

    last, h = layers[-1], inputs[-1]
    wide = ws("wide", h.shape[-1])  # a (members, batch, hidden) scratch for the width-1 layer
    if last.out_features == 1:
        torch.mul(h, last.weight.transpose(1, 2), out=wide)
        outputs = torch.sum(wide, dim=-1, keepdim=True, out=ws("out", 1)).add_(last.bias.unsqueeze(1))
    else:
        outputs = torch.baddbmm(last.bias.unsqueeze(1), h, last.weight, out=ws("out", last.out_features))
    losses, grad = losses_and_output_grad(outputs, targets, task=task)

    for i in reversed(range(len(layers))):
        layer, h = layers[i], inputs[i]
        weight_grad, bias_grad = grad_buffer(layer.weight), grad_buffer(layer.bias)
        if i < len(layers) - 1:
            grad = torch.ops.aten.gelu_backward.grad_input(
                grad, pre_activations[i], grad_input=ws("grad_pre", layer.out_features)
            )
        if layer.out_features == 1:
            torch.sum(torch.mul(h, grad, out=wide), dim=1, out=weight_grad.squeeze(-1))
        else:
            torch.bmm(h.transpose(1, 2), grad, out=weight_grad)
        torch.sum(grad, dim=1, out=bias_grad)
        zero_frozen_grad(layer)
        if i == 0:
            break  # the data need no gradient
        grad_input = ws("grad_post", layer.in_features)
        if layer.out_features == 1:
            grad = torch.mul(grad, layer.weight.transpose(1, 2), out=grad_input)
        else:
            grad = torch.bmm(grad, layer.weight.transpose(1, 2), out=grad_input)
    return losses
