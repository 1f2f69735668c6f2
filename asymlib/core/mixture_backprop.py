"""The mixtures' training step with its backward pass written out, like ``backprop.py`` for
the MLP ensembles.

Shapes: M mixtures, K experts, a batch of B rows, d input features, O outputs. The gate is
``alpha = softmax(x Wg + bg)`` (with Gumbel noise: ``softmax((x Wg + bg + g) / tau)``),
alpha: (M, B, K).

- **MoE**: every expert runs on every row; activations are (M*K, B, H), every layer one
  ``baddbmm`` over M*K (the output layer a product and a sum for O = 1), and the mixture
  an ``einsum`` of the outputs and alpha. A wide input (d > H) is instead multiplied once by
  the experts' first-layer weights side by side, (M, d, K*H), so x is never copied K times
  (``_moe_first_layer``).
- **MoIE**: each layer's pre-activation is ``sum_k alpha_k (h W_k + b_k)``, computed in the
  order ``ExpertLinear.interpolate`` uses (the smaller intermediate): for in <= out the
  gate-weighted inputs ``alpha (x) h`` (M, B, K*in) times the stacked weights (M, K*in, out),
  otherwise every expert's products P = h W_k, (M, B, K, out), mixed by alpha.

The backward pass is the chain rule through the same products: for every layer a
``bmm`` for the weight gradient and one for the input gradient, a sum (MoE) or an
``alpha^T`` product (MoIE) for the bias; the gradient reaching alpha is collected from
every place alpha enters (the mixture, or every MoIE layer's inputs and biases), then goes
through the softmax (``_softmax_backward_data``, autograd's kernel) to the gate. An
optional load-balancing term (``mixtures.importance_cv2``) adds its gradient to alpha's.
Gradients agree with autograd's within float32 rounding (``tests/test_mixture_backprop.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .backprop import Workspace, grad_buffer, losses_and_output_grad, zero_frozen_grad
from .layers import ExpertLinear, LinearEnsemble


def _gate_forward(gate: LinearEnsemble, x: Tensor, noise: Tensor | None, tau: float) -> Tensor:
    """alpha: (M, B, K) from x: (M, B, d); Gumbel gates add ``noise`` and divide by tau."""
    logits = torch.baddbmm(gate.bias.unsqueeze(1), x, gate.weight)
    if noise is not None:
        logits.add_(noise).div_(tau)
    return torch.softmax(logits, dim=-1)


def _gate_backward(
    gate: LinearEnsemble,
    x: Tensor,
    alpha: Tensor,
    grad_alpha: Tensor,
    *,
    noise: Tensor | None,
    tau: float,
    balance_weight: float,
) -> None:
    """Writes the gate's gradients from d(loss)/d(alpha): (M, B, K)."""
    if balance_weight:
        # d/dI_k of var(I) / mean(I)^2, I = alpha summed over the batch (population variance)
        importance = alpha.sum(dim=1)
        experts = importance.shape[-1]
        mean = importance.mean(dim=-1, keepdim=True)
        variance = importance.var(dim=-1, unbiased=False, keepdim=True)
        grad_importance = (2.0 / experts) * ((importance - mean) / mean.pow(2) - variance / mean.pow(3))
        grad_alpha = grad_alpha + balance_weight * grad_importance.unsqueeze(1)
    grad_logits = torch.ops.aten._softmax_backward_data(grad_alpha, alpha, -1, alpha.dtype)
    if noise is not None:
        grad_logits.div_(tau)
    torch.bmm(x.transpose(1, 2), grad_logits, out=grad_buffer(gate.weight))
    torch.sum(grad_logits, dim=1, out=grad_buffer(gate.bias))


def _side_by_side(layer: ExpertLinear, ws, name: str) -> Tensor:
    """The layer's weights as (M, in, K*out): expert k's matrix in columns k*out..(k+1)*out."""
    members, experts, fan_in, fan_out = layer.weight.shape
    stacked = ws(name, (members, fan_in, experts, fan_out))
    stacked.copy_(layer.weight.permute(0, 2, 1, 3))
    return stacked.view(members, fan_in, experts * fan_out)


def _moe_first_layer(first: ExpertLinear, x: Tensor, ws) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Every expert's first pre-activation, (M*K, B, H), and what its backward needs.

    A narrow input (d <= H) is copied once per expert, (M*K, B, d), and multiplied in one
    ``baddbmm`` over M*K like the hidden layers. A wide one is multiplied once by the
    experts' weights side by side, (M, d, K*H), and the (M, B, K, H) result copied into the
    experts' layout: copying x K times would cost more than copying the output.
    Returns z0 and either the copied input or the side-by-side weights.
    """
    members, experts, fan_in, hidden = first.weight.shape
    batch, flat = x.shape[1], members * experts
    if fan_in <= hidden:
        copies = ws("moe_x", (members, experts, batch, fan_in)).copy_(
            x.unsqueeze(1).expand(members, experts, batch, fan_in)
        )
        z0 = torch.baddbmm(
            first.bias.view(flat, 1, hidden),
            copies.view(flat, batch, fan_in),
            first.weight.view(flat, fan_in, hidden),
            out=ws("moe_z0", (flat, batch, hidden)),
        )
        return z0, copies.view(flat, batch, fan_in), None
    side_by_side = _side_by_side(first, ws, "moe_w0")
    products = torch.baddbmm(
        first.bias.view(members, 1, experts * hidden),
        x,
        side_by_side,
        out=ws("moe_p0", (members, batch, experts * hidden)),
    )
    z0 = ws("moe_z0", (members, experts, batch, hidden)).copy_(
        products.view(members, batch, experts, hidden).permute(0, 2, 1, 3)
    )
    return z0.view(flat, batch, hidden), None, side_by_side


def _moe_forward_backward(
    layers: Sequence[ExpertLinear], x: Tensor, alpha: Tensor, targets: Tensor, *, task: str, ws
) -> tuple[Tensor, Tensor]:
    """Losses (M,) and d(loss)/d(alpha) (M, B, K); writes the experts' gradients.

    Activations are kept as (M*K, B, H), contiguous: aten's GELU backward on a permuted
    view ran 2.6x slower than on contiguous memory plus the copy.
    """
    members, batch, _ = x.shape
    experts, hidden, last = layers[0].experts, layers[0].out_features, layers[-1]
    flat = members * experts
    z0, x_copies, side_by_side = _moe_first_layer(layers[0], x, ws)
    inputs, pre_activations = [x_copies], [z0]
    for i, layer in enumerate(layers[1:], start=1):
        h = torch.ops.aten.gelu.out(pre_activations[-1], out=ws(f"moe_h{i}", (flat, batch, hidden)))
        inputs.append(h)
        if i == len(layers) - 1:
            break
        z = torch.baddbmm(
            layer.bias.view(flat, 1, hidden),
            h,
            layer.weight.view(flat, hidden, hidden),
            out=ws(f"moe_z{i}", (flat, batch, hidden)),
        )
        pre_activations.append(z)

    h = inputs[-1]
    wide = ws("moe_wide", (flat, batch, hidden))
    if last.out_features == 1:
        torch.mul(h, last.weight.view(flat, 1, hidden), out=wide)
        expert_outputs = wide.sum(-1, keepdim=True).add_(last.bias.view(flat, 1, 1))
    else:
        expert_outputs = torch.baddbmm(last.bias.view(flat, 1, -1), h, last.weight.view(flat, hidden, -1))
    expert_outputs = expert_outputs.view(members, experts, batch, -1)
    outputs = torch.einsum("mkbo,mbk->mbo", expert_outputs, alpha)
    losses, grad_outputs = losses_and_output_grad(outputs, targets, task=task)

    grad_alpha = torch.einsum("mbo,mkbo->mbk", grad_outputs, expert_outputs)
    grad = torch.mul(
        alpha.transpose(1, 2).unsqueeze(-1), grad_outputs.unsqueeze(1), out=ws("moe_grad_out", expert_outputs.shape)
    ).view(flat, batch, -1)  # d loss / d f_k(x)
    for i in reversed(range(len(layers))):
        layer = layers[i]
        if i < len(layers) - 1:
            grad = torch.ops.aten.gelu_backward.grad_input(
                grad, pre_activations[i], grad_input=ws("moe_grad_pre", (flat, batch, hidden))
            )
        torch.sum(grad, dim=1, out=grad_buffer(layer.bias).view(flat, -1))
        if i == 0:
            break
        if layer.out_features == 1:
            torch.sum(torch.mul(inputs[i], grad, out=wide), dim=1, out=grad_buffer(layer.weight).view(flat, hidden))
            grad = torch.mul(grad, layer.weight.view(flat, 1, hidden), out=ws("moe_grad_post", (flat, batch, hidden)))
        else:
            weight = layer.weight.view(flat, hidden, -1)
            torch.bmm(inputs[i].transpose(1, 2), grad, out=grad_buffer(layer.weight).view(weight.shape))
            grad = torch.bmm(grad, weight.transpose(1, 2), out=ws("moe_grad_post", (flat, batch, hidden)))
        zero_frozen_grad(layer)

    first = layers[0]
    if x_copies is not None:
        torch.bmm(x_copies.transpose(1, 2), grad, out=grad_buffer(first.weight).view(flat, -1, hidden))
    else:
        grad_side = ws("moe_grad_p0", (members, batch, experts, hidden)).copy_(
            grad.view(members, experts, batch, hidden).permute(0, 2, 1, 3)
        )
        grad_weights = torch.bmm(
            x.transpose(1, 2),
            grad_side.view(members, batch, experts * hidden),
            out=ws("moe_grad_w0", side_by_side.shape),
        )
        grad_buffer(first.weight).copy_(grad_weights.view(members, -1, experts, hidden).permute(0, 2, 1, 3))
    zero_frozen_grad(first)
    return losses, grad_alpha


def _mix(alpha: Tensor, per_expert: Tensor, scratch: Tensor) -> Tensor:
    """sum_k alpha[m, b, k] per_expert[m, b, k, :]: (M, B, n) from (M, B, K, n).

    Per row, K*n multiply-adds: an elementwise product and a sum, because a ``bmm`` batched
    over the M*B rows is a slow BLAS path for such tiny matrices (as are the dot products
    in ``_dot``)."""
    return torch.mul(per_expert, alpha.unsqueeze(-1), out=scratch).sum(-2)


def _dot(per_expert: Tensor, vector: Tensor, scratch: Tensor) -> Tensor:
    """sum_i per_expert[m, b, k, i] vector[m, b, i]: (M, B, K) from (M, B, K, n), (M, B, n)."""
    return torch.mul(per_expert, vector.unsqueeze(-2), out=scratch).sum(-1)


def _activation_forward(z: Tensor, activation: str, out: Tensor) -> Tensor:
    """GELU (the paper's) or ReLU (the code release's MoIE) of z, into ``out``."""
    if activation == "relu":
        return torch.clamp_min(z, 0.0, out=out)
    return torch.ops.aten.gelu.out(z, out=out)


def _activation_backward(grad: Tensor, z: Tensor, activation: str, out: Tensor) -> Tensor:
    """The gradient through the activation at pre-activation z (ReLU: where z > 0), into ``out``."""
    if activation == "relu":
        return torch.ops.aten.threshold_backward.grad_input(grad, z, 0.0, grad_input=out)
    return torch.ops.aten.gelu_backward.grad_input(grad, z, grad_input=out)


def _moie_forward_backward(
    layers: Sequence[ExpertLinear],
    x: Tensor,
    alpha: Tensor,
    targets: Tensor,
    *,
    task: str,
    ws,
    activation: str = "gelu",
) -> tuple[Tensor, Tensor]:
    """Losses (M,) and d(loss)/d(alpha) (M, B, K); writes the experts' gradients.
    Any number of layers; ``activation`` between them ("gelu" or "relu")."""
    members, batch, _ = x.shape
    experts = alpha.shape[-1]
    inputs, saved, pre_activations = [x], [], []
    for i, layer in enumerate(layers):
        h, fan_in, fan_out = inputs[-1], layer.in_features, layer.out_features
        mixed_bias = torch.bmm(alpha, layer.bias)
        if fan_in <= fan_out:
            weighted = torch.mul(
                alpha.unsqueeze(-1), h.unsqueeze(-2), out=ws(f"moie_u{i}", (members, batch, experts, fan_in))
            )
            z = torch.baddbmm(
                mixed_bias,
                weighted.view(members, batch, experts * fan_in),
                layer.weight.view(members, experts * fan_in, fan_out),
                out=ws(f"moie_z{i}", (members, batch, fan_out)),
            )
            saved.append(weighted)
        else:
            side_by_side = _side_by_side(layer, ws, f"moie_w{i}")
            products = torch.bmm(h, side_by_side, out=ws(f"moie_p{i}", (members, batch, experts * fan_out)))
            products = products.view(members, batch, experts, fan_out)
            scratch = ws("moie_scratch", products.shape)
            z = torch.add(mixed_bias, _mix(alpha, products, scratch), out=ws(f"moie_z{i}", (members, batch, fan_out)))
            saved.append((side_by_side, products))
        pre_activations.append(z)
        if i < len(layers) - 1:
            inputs.append(_activation_forward(z, activation, ws(f"moie_h{i + 1}", (members, batch, fan_out))))
    losses, grad = losses_and_output_grad(pre_activations[-1], targets, task=task)

    grad_alpha = torch.zeros_like(alpha)
    for i in reversed(range(len(layers))):
        layer, h, fan_in, fan_out = layers[i], inputs[i], layers[i].in_features, layers[i].out_features
        if i < len(layers) - 1:
            grad = _activation_backward(
                grad, pre_activations[i], activation, ws("moie_grad_pre", (members, batch, fan_out))
            )
        torch.bmm(alpha.transpose(1, 2), grad, out=grad_buffer(layer.bias))
        grad_alpha.baddbmm_(grad, layer.bias.transpose(1, 2))
        if fan_in <= fan_out:
            weighted = saved[i].view(members, batch, experts * fan_in)
            weight = layer.weight.view(members, experts * fan_in, fan_out)
            torch.bmm(weighted.transpose(1, 2), grad, out=grad_buffer(layer.weight).view(weight.shape))
            grad_weighted = torch.bmm(grad, weight.transpose(1, 2), out=ws("moie_grad_u", weighted.shape))
            grad_weighted = grad_weighted.view(members, batch, experts, fan_in)
            scratch = ws("moie_scratch", grad_weighted.shape)
            grad_alpha.add_(_dot(grad_weighted, h, scratch))
            if i > 0:
                grad = _mix(alpha, grad_weighted, scratch)
        else:
            side_by_side, products = saved[i]
            scratch = ws("moie_scratch", products.shape)
            grad_alpha.add_(_dot(products, grad, scratch))
            grad_products = torch.mul(alpha.unsqueeze(-1), grad.unsqueeze(-2), out=scratch)
            grad_products = grad_products.view(members, batch, experts * fan_out)
            grad_side = torch.bmm(h.transpose(1, 2), grad_products, out=ws("moie_grad_w", side_by_side.shape))
            grad_buffer(layer.weight).copy_(grad_side.view(members, fan_in, experts, fan_out).permute(0, 2, 1, 3))
            if i > 0:
                grad = torch.bmm(
                    grad_products, side_by_side.transpose(1, 2), out=ws("moie_grad_post", (members, batch, fan_in))
                )
        zero_frozen_grad(layer)
    return losses, grad_alpha


@torch.no_grad()
def mixture_loss_and_gradients(
    gate: LinearEnsemble,
    layers: Sequence[ExpertLinear],
    x: Tensor,
    targets: Tensor,
    *,
    task: str,
    interpolated: bool,
    workspace: Workspace,
    noise: Tensor | None = None,
    tau: float = 1.0,
    balance_weight: float = 0.0,
    activation: str = "gelu",
) -> Tensor:
    """One forward and backward pass of M mixtures on their own batches.

    gate: weights (M, d, K); layers: the experts' layers, weights (M, K, in, out) (MoE: the
    4 GELU layers; MoIE: any number, with ``activation`` "gelu" or "relu" between them);
    x: (M, B, d); targets: (M, B); noise: (M, B, K) Gumbel samples for a Gumbel gate (then
    ``tau`` applies), None for a softmax gate. Overwrites every parameter's ``.grad``
    (frozen W-Asymmetric entries get 0) and returns the (M,) task losses of the batch (the
    load-balancing term trains but is not among them, as in ``trainer.fit``).
    """
    ws = lambda name, shape: workspace.get(name, shape, x)  # noqa: E731
    alpha = _gate_forward(gate, x, noise, tau)
    if interpolated:
        losses, grad_alpha = _moie_forward_backward(layers, x, alpha, targets, task=task, ws=ws, activation=activation)
    elif activation == "gelu":
        losses, grad_alpha = _moe_forward_backward(layers, x, alpha, targets, task=task, ws=ws)
    else:  # no MoE of either architecture has another activation
        raise ValueError(f"the MoE step is written for GELU experts, got activation {activation!r}")
    _gate_backward(gate, x, alpha, grad_alpha, noise=noise, tau=tau, balance_weight=balance_weight)
    return losses
