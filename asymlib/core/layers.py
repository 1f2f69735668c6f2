"""Stacked linear layers: E independent affine maps evaluated as one batched matmul.

``LinearEnsemble`` holds one layer of every member of a deep ensemble; ``ExpertLinear`` holds
one layer of the K experts of every member of a batch of mixtures of experts. A weight is
stored as (in_features, out_features), the transpose of ``torch.nn.Linear``, so that a
forward pass is ``baddbmm(bias, x, weight)`` without a transpose. W-Asymmetric layers (Lim
et al., 2024) freeze ``n_fix`` entries of every output unit's incoming weights at values
drawn from N(0, kappa^2); the positions and values are a pure function of
``(in_features, out_features, n_fix, kappa, seed)`` and are shared by every member (and
every expert). ``sigma_gate`` draws the frozen matrix of a sigma-Asymmetric activation
the same way, and ``syre_anchor`` the fixed random point and decay scales of a syre layer
(weight decay towards a random anchor, Ziyin et al., 2025), which a ``LinearEnsemble`` holds
beside its weights and decays towards (``decay_towards_anchor``).

We considered ``tabm.LinearEnsemble`` (same (k, in, out) layout); it is not used because it
initialises all members from one generator, has no frozen entries and would add a
dependency for one class of a few lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class FrozenEntries:
    """The frozen part of a W-Asymmetric weight matrix.

    mask: (in_features, out_features) bool, exactly ``n_fix`` True per output column.
    values: (in_features, out_features) float32, the frozen values where ``mask`` is True
        and 0 elsewhere.
    """

    mask: Tensor
    values: Tensor

    @property
    def n_fix(self) -> int:
        return int(self.mask[:, 0].sum())


def wasym_entries(
    in_features: int, out_features: int, *, n_fix: int, kappa: float = 1.0, seed: int | tuple[int, ...]
) -> FrozenEntries:
    """Draw the frozen positions and values of one W-Asymmetric layer.

    For each output unit, ``n_fix`` of its ``in_features`` incoming weights are chosen
    uniformly without replacement and given values from N(0, kappa^2). NumPy's PCG64 is
    used (not torch, not Python's ``hash``) so that the result depends only on the
    arguments, never on the process, the hash seed, the torch version or the device.
    """
    if not 0 < n_fix <= in_features:
        raise ValueError(f"n_fix must be in 1..in_features={in_features}, got {n_fix}")
    key = [seed] if isinstance(seed, int) else list(seed)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*key, in_features, out_features])))
    # argsort of uniforms is a uniform random permutation per row; keep its first n_fix.
    positions = np.argsort(rng.random((out_features, in_features)), axis=1)[:, :n_fix]
    values = rng.normal(0.0, kappa, size=(out_features, n_fix))
    mask = np.zeros((out_features, in_features), dtype=bool)
    full = np.zeros((out_features, in_features), dtype=np.float32)
    rows = np.arange(out_features)[:, None]
    mask[rows, positions] = True
    full[rows, positions] = values
    return FrozenEntries(mask=torch.from_numpy(mask.T.copy()), values=torch.from_numpy(full.T.copy()))


#: Mixed into the seed of a sigma-Asymmetric gate, so that it never repeats the draws of a
#: W-Asymmetric layer of the same shape and mask seed.
_SIGMA_GATE_TAG = 0x5167


def sigma_gate(width: int, *, seed: int | tuple[int, ...]) -> Tensor:
    """The frozen gate matrix C of one sigma-Asymmetric activation, x * sigmoid(x @ C).

    C: (width, width) float32, i.i.d. N(0, 1) (Lim et al., 2024), a pure function of
    ``(width, seed)`` drawn with NumPy's PCG64 like ``wasym_entries``.
    """
    key = [seed] if isinstance(seed, int) else list(seed)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*key, width, _SIGMA_GATE_TAG])))
    return torch.from_numpy(rng.standard_normal((width, width)).astype(np.float32))


#: Mixed into the seed of a syre anchor, so that it never repeats another frozen draw.
_SYRE_TAG = 0x5E7E

#: syre's defaults: anchor entries ~ N(0, (0.01 / sqrt(fan_in))^2), decay scales in 1 +- 0.01.
SYRE_ANCHOR_SCALE = 0.01
SYRE_SPREAD = 0.01


@dataclass(frozen=True)
class Anchor:
    """The fixed random point a syre layer decays towards, and its diagonal decay scales.

    weight, weight_scale: (in_features, out_features); bias, bias_scale: (out_features,).
    Shared by every member, like W-Asymmetric frozen entries.
    """

    weight: Tensor
    bias: Tensor
    weight_scale: Tensor
    bias_scale: Tensor


def syre_anchor(
    in_features: int,
    out_features: int,
    *,
    seed: int | tuple[int, ...],
    scale: float = SYRE_ANCHOR_SCALE,
    spread: float = SYRE_SPREAD,
) -> Anchor:
    """Draw one layer's syre anchor theta_0 ~ N(0, (scale / sqrt(in_features))^2) and its
    decay scales D ~ U(1 - spread, 1 + spread), entry by entry, with NumPy's PCG64 as a
    pure function of the arguments (like ``wasym_entries``).

    Training then replaces weight decay's pull towards 0 by a pull towards theta_0, each
    entry at its own rate (``LinearEnsemble.decay_towards_anchor``): the regulariser
    ||D (theta - theta_0)||^2 is changed by any permutation or rescaling of units, so the
    loss keeps no such symmetry. Both scales are small by default, so the objective hardly
    changes; that is the method's point (symmetry removed, solutions kept).
    """
    if not (scale >= 0 and 0 <= spread < 1):
        raise ValueError(f"syre_anchor: expected scale >= 0 and spread in [0, 1), got {scale}, {spread}")
    key = [seed] if isinstance(seed, int) else list(seed)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([*key, in_features, out_features, _SYRE_TAG])))
    std = scale / math.sqrt(in_features)
    draw = lambda *shape: torch.from_numpy(rng.normal(0.0, std, size=shape).astype(np.float32))  # noqa: E731
    spread_of = lambda *shape: torch.from_numpy(  # noqa: E731
        rng.uniform(1.0 - spread, 1.0 + spread, size=shape).astype(np.float32)
    )
    weight, bias = draw(in_features, out_features), draw(out_features)
    return Anchor(
        weight=weight, bias=bias, weight_scale=spread_of(in_features, out_features), bias_scale=spread_of(out_features)
    )


def linear_init(in_features: int, out_features: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """PyTorch's default ``nn.Linear`` initialisation, drawn from ``generator``.

    Draws the weight as an (out, in) matrix, then the bias, both U(-1/sqrt(in), 1/sqrt(in))
    (kaiming_uniform with a=sqrt(5)), in the same order as ``nn.Linear`` does, so the result
    equals an ``nn.Linear`` initialised from the same generator state.
    Returns the weight as (in_features, out_features) and the bias as (out_features,).
    """
    bound = 1.0 / math.sqrt(in_features)
    weight = torch.empty(out_features, in_features).uniform_(-bound, bound, generator=generator)
    bias = torch.empty(out_features).uniform_(-bound, bound, generator=generator)
    return weight.T, bias


class LinearEnsemble(nn.Module):
    """``members`` independent linear layers held as stacked parameters.

    weight: (members, in_features, out_features)
    bias: (members, out_features)
    frozen: optional W-Asymmetric entries shared by all members; they are written into
        ``weight`` and their gradient is zeroed by a hook (so Adam's moments stay 0 there);
        the trainer rewrites them after every step, undoing weight decay, so they stay
        bit-exact.

    anchor: optional syre anchor shared by all members (``syre_anchor``); the trainer then
        decays the parameters towards it (``decay_towards_anchor``) instead of towards 0.

    Parameters start at zero; the owning model initialises them member by member
    (:meth:`init_member`) so that each member can have its own seed.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        members: int,
        frozen: FrozenEntries | None = None,
        anchor: Anchor | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.members = in_features, out_features, members
        self.weight = nn.Parameter(torch.zeros(*self._stack_shape(members), in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(*self._stack_shape(members), out_features))
        if frozen is None:
            self.frozen_mask = None
        else:
            if frozen.mask.shape != (in_features, out_features):
                raise ValueError(
                    f"frozen mask has shape {tuple(frozen.mask.shape)}, expected {(in_features, out_features)}"
                )
            self.register_buffer("frozen_mask", frozen.mask.clone())
            self.register_buffer("frozen_values", frozen.values.clone())
            # flat positions in an (in * out) row, for cheap rewrites of the frozen entries
            self.register_buffer("frozen_index", frozen.mask.flatten().nonzero().squeeze(1))
            self.weight.register_hook(self._zero_frozen_grad)
        self.anchored = anchor is not None
        if anchor is not None:
            for name in ("weight", "bias", "weight_scale", "bias_scale"):
                self.register_buffer(f"anchor_{name}", getattr(anchor, name).clone())

    def _stack_shape(self, members: int) -> tuple[int, ...]:
        """The parameters' dims before (in_features, out_features): one matrix per member."""
        return (members,)

    def _zero_frozen_grad(self, grad: Tensor) -> Tensor:
        return grad.masked_fill(self.frozen_mask, 0.0)

    @torch.no_grad()
    def init_member(self, member: int, generator: torch.Generator) -> None:
        """PyTorch's default ``nn.Linear`` initialisation for one member (see ``linear_init``)."""
        weight, bias = linear_init(self.in_features, self.out_features, generator)
        self.weight[member].copy_(weight)
        self.bias[member].copy_(bias)
        self.apply_frozen()

    @torch.no_grad()
    def apply_frozen(self) -> None:
        """Write the frozen values into every member's weight (a no-op for a plain layer).

        Only the n_fix * out_features frozen positions are touched, so calling this after
        every optimizer step (to undo weight decay there) costs next to nothing.
        """
        if self.frozen_mask is not None:
            flat = self.weight.view(-1, self.in_features * self.out_features)
            flat[:, self.frozen_index] = self.frozen_values.flatten()[self.frozen_index]

    @torch.no_grad()
    def decay_towards_anchor(self, rate: float) -> None:
        """syre's decoupled weight decay, theta <- theta - rate * D * (theta - theta_0), on
        every member (rate: the learning rate times the weight decay, as AdamW's own decay,
        which the trainer turns off for an anchored model). A no-op without an anchor."""
        if self.anchored:
            self.weight.addcmul_(self.weight - self.anchor_weight, self.anchor_weight_scale, value=-rate)
            self.bias.addcmul_(self.bias - self.anchor_bias, self.anchor_bias_scale, value=-rate)

    @torch.no_grad()
    def set_members(self, weight: Tensor, bias: Tensor) -> None:
        """Replace the parameters by new (members', ..., in, out) and (members', ..., out) tensors.

        The trainer uses this to drop members that stopped early and to put them back at
        the end; the parameters are new tensors, so an optimizer must be rebuilt after it.
        """
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.members = weight.shape[0]
        if self.frozen_mask is not None:
            self.weight.register_hook(self._zero_frozen_grad)

    def forward(self, x: Tensor) -> Tensor:
        """x: (members, batch, in_features) or (batch, in_features) shared by all members.

        Returns (members, batch, out_features).
        """
        if self.out_features == 1:
            # A single output column is a dot product per row; a batched matrix product of
            # width 1 takes a slow path in the BLAS (4x slower than this on the CI CPU).
            return (x * self.weight.transpose(-1, -2)).sum(-1, keepdim=True) + self.bias.unsqueeze(1)
        if x.dim() == 2:
            # One input for every member: broadcasting matmul avoids copying x E times.
            return torch.matmul(x, self.weight) + self.bias.unsqueeze(1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    def extra_repr(self) -> str:
        n_fix = 0 if self.frozen_mask is None else int(self.frozen_mask[:, 0].sum())
        return (
            f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}, n_fix={n_fix}"
        )


class ExpertLinear(LinearEnsemble):
    """One layer of the K experts of each of ``members`` mixtures of experts.

    weight: (members, experts, in_features, out_features)
    bias: (members, experts, out_features)
    frozen: W-Asymmetric entries shared by every expert of every member (as in LinearEnsemble).

    ``forward`` evaluates every expert (a mixture of the experts' outputs, MoE);
    ``interpolate`` evaluates the layer whose parameters are the gate-weighted average of the
    experts' parameters, per example (MoIE), without forming per-example weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        members: int,
        experts: int,
        frozen: FrozenEntries | None = None,
    ) -> None:
        self.experts = experts  # read by _stack_shape while LinearEnsemble builds the parameters
        super().__init__(in_features, out_features, members=members, frozen=frozen)

    def _stack_shape(self, members: int) -> tuple[int, ...]:
        return (members, self.experts)

    @torch.no_grad()
    def init_member(self, member: int, generator: torch.Generator) -> None:
        """Every expert of one member, in turn, like ``nn.Linear`` (see ``linear_init``)."""
        for expert in range(self.experts):
            self.init_expert(member, expert, generator)
        self.apply_frozen()

    @torch.no_grad()
    def init_expert(self, member: int, expert: int, generator: torch.Generator) -> None:
        """One expert like ``nn.Linear``. The frozen entries are left to the caller's
        ``apply_frozen`` (one call once every expert is drawn)."""
        weight, bias = linear_init(self.in_features, self.out_features, generator)
        self.weight[member, expert].copy_(weight)
        self.bias[member, expert].copy_(bias)

    def forward(self, x: Tensor) -> Tensor:
        """Every expert's output.

        x: (batch, in_features) shared by every expert of every member,
           (members, batch, in_features) shared by the experts of a member, or
           (members, experts, batch, in_features) one input per expert.
        Returns (members, experts, batch, out_features).
        """
        bias = self.bias.unsqueeze(2)
        members, experts = self.weight.shape[:2]
        if x.dim() < 4 and x.shape[-1] <= self.out_features:
            # A narrow input is cheaper to copy K times than the output is to permute (what
            # einsum does); then the bias add is fused into the multiply below.
            x = x.unsqueeze(-3).expand(members, experts, *x.shape[-2:])
        if x.dim() == 4 and self.out_features == 1:
            # a dot product per row: a batched matrix product of width 1 is a slow BLAS path
            return (x * self.weight.transpose(-1, -2)).sum(-1, keepdim=True) + bias
        if x.dim() == 4:
            # one baddbmm over members x experts (the bias add fused into the multiply)
            batch = x.shape[2]
            flat = torch.baddbmm(bias.flatten(0, 1), x.reshape(members * experts, batch, -1), self.weight.flatten(0, 1))
            return flat.view(members, experts, batch, -1)
        # einsum multiplies x by all experts' weights at once, without copying x K times
        equation = "bi,mkio->mkbo" if x.dim() == 2 else "mbi,mkio->mkbo"
        return torch.einsum(equation, x, self.weight) + bias

    def interpolate(self, x: Tensor, alpha: Tensor) -> Tensor:
        """sum_k alpha_k (x W_k + b_k): the layer with per-example interpolated parameters.

        x: (members, batch, in_features), or (batch, in_features) shared by every member.
        alpha: (members, batch, experts), the gate weights of each example.
        Returns (members, batch, out_features).

        Two equal orders of summation; the one with the smaller intermediate,
        (members, batch, experts, min(in, out)), is used.
        """
        if x.dim() == 2:
            x = x.expand(alpha.shape[0], *x.shape)
        bias = torch.bmm(alpha, self.bias)
        if self.in_features <= self.out_features:
            # alpha (x) x, flattened to (.., batch, K*in), times the weights as (K*in, out)
            weighted_inputs = (alpha.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)
            return torch.baddbmm(bias, weighted_inputs, self.weight.flatten(1, 2))
        outputs = torch.einsum("mbi,mkio->mbko", x, self.weight)
        return bias + torch.matmul(alpha.unsqueeze(-2), outputs).squeeze(-2)

    def extra_repr(self) -> str:
        return f"experts={self.experts}, " + super().extra_repr()


def stacked_layers(module: nn.Module) -> list[LinearEnsemble]:
    """The stacked layers of a model, in the order ``module.parameters()`` lists their
    weights and biases; the model must have no other parameters."""
    layers = [m for m in module.modules() if isinstance(m, LinearEnsemble)]
    owned = [p for layer in layers for p in (layer.weight, layer.bias)]
    params = list(module.parameters())
    if len(owned) != len(params) or any(a is not b for a, b in zip(owned, params)):
        raise ValueError(f"{type(module).__name__} has parameters outside its LinearEnsemble layers")
    return layers


def set_stacked_parameters(module: nn.Module, parameters: Sequence[Tensor]) -> None:
    """Give the stacked layers of ``module`` new parameters, listed in ``module.parameters()``
    order (weight, bias of each layer), holding any number of members."""
    layers = stacked_layers(module)
    if len(parameters) != 2 * len(layers):
        raise ValueError(f"expected {2 * len(layers)} tensors (a weight and a bias per layer), got {len(parameters)}")
    for i, layer in enumerate(layers):
        layer.set_members(parameters[2 * i], parameters[2 * i + 1])
