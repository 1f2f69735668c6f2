"""Stacked linear layers: E independent affine maps evaluated as one batched matmul.

A member's weight is stored as (in_features, out_features), the transpose of
``torch.nn.Linear``, so that a forward pass is ``baddbmm(bias, x, weight)`` without a
transpose. W-Asymmetric layers (Lim et al., 2024) freeze ``n_fix`` entries of every output
unit's incoming weights at values drawn from N(0, kappa^2); the positions and values are a
pure function of ``(in_features, out_features, n_fix, kappa, seed)`` and are shared by every
member.

We considered ``tabm.LinearEnsemble`` (same (k, in, out) layout); it is not used because it
initialises all members from one generator, has no frozen entries and would add a
dependency for one class of a few lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


class LinearEnsemble(nn.Module):
    """``members`` independent linear layers held as stacked parameters.

    weight: (members, in_features, out_features)
    bias: (members, out_features)
    frozen: optional W-Asymmetric entries shared by all members; they are written into
        ``weight`` and their gradient is zeroed by a hook (so Adam's moments stay 0 there);
        the trainer rewrites them after every step, undoing weight decay, so they stay
        bit-exact.

    Parameters start at zero; the owning model initialises them member by member
    (:meth:`init_member`) so that each member can have its own seed.
    """

    def __init__(
        self, in_features: int, out_features: int, *, members: int, frozen: FrozenEntries | None = None
    ) -> None:
        super().__init__()
        self.in_features, self.out_features, self.members = in_features, out_features, members
        self.weight = nn.Parameter(torch.zeros(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, out_features))
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

    def _zero_frozen_grad(self, grad: Tensor) -> Tensor:
        return grad.masked_fill(self.frozen_mask, 0.0)

    @torch.no_grad()
    def init_member(self, member: int, generator: torch.Generator) -> None:
        """PyTorch's default ``nn.Linear`` initialisation for one member.

        Draws the weight as an (out, in) matrix, then the bias, both U(-1/sqrt(in), 1/sqrt(in))
        (kaiming_uniform with a=sqrt(5)), in the same order as ``nn.Linear`` does, so a
        member equals an ``nn.Linear`` initialised from the same generator state.
        """
        bound = 1.0 / math.sqrt(self.in_features)
        w = torch.empty(self.out_features, self.in_features).uniform_(-bound, bound, generator=generator)
        b = torch.empty(self.out_features).uniform_(-bound, bound, generator=generator)
        self.weight[member].copy_(w.T)
        self.bias[member].copy_(b)
        self.apply_frozen()

    @torch.no_grad()
    def apply_frozen(self) -> None:
        """Write the frozen values into every member's weight (a no-op for a plain layer).

        Only the n_fix * out_features frozen positions are touched, so calling this after
        every optimizer step (to undo weight decay there) costs next to nothing.
        """
        if self.frozen_mask is not None:
            flat = self.weight.view(self.members, -1)
            flat[:, self.frozen_index] = self.frozen_values.flatten()[self.frozen_index]

    @torch.no_grad()
    def set_members(self, weight: Tensor, bias: Tensor) -> None:
        """Replace the parameters by new (members', in, out) and (members', out) tensors.

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
        if x.dim() == 2:
            # One input for every member: broadcasting matmul avoids copying x E times.
            return torch.matmul(x, self.weight) + self.bias.unsqueeze(1)
        return torch.baddbmm(self.bias.unsqueeze(1), x, self.weight)

    def extra_repr(self) -> str:
        n_fix = 0 if self.frozen_mask is None else int(self.frozen_mask[:, 0].sum())
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}, n_fix={n_fix}"
