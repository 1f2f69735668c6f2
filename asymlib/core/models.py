"""MLP, W-Asymmetric and sigma-Asymmetric MLP ensembles: E four-layer networks as one batched model.

Architecture (docs/protocol.md): Linear(d, h) GELU Linear(h, h) GELU Linear(h, h) GELU Linear(h, out).

- ``mlp``: the plain network.
- ``wmlp``: W-Asymmetric (Lim et al., 2024), some weights of every layer frozen at random values.
- ``smlp``: sigma-Asymmetric (Lim et al., 2024): every GELU replaced by x * sigmoid(x @ C), a
  gate with its own frozen random matrix C per hidden layer (``layers.sigma_gate``), shared by
  every member. The paper compares only ``mlp`` and ``wmlp``; ``smlp`` asks whether the way
  symmetry is broken matters.
- ``syre``: the plain network trained with syre (Ziyin et al., 2025): weight decay pulls every
  parameter towards a fixed random anchor, at a random rate per entry, instead of towards 0
  (``layers.syre_anchor``); the anchor is shared by every member. Symmetry is broken in the
  objective, not in the architecture, so a syre network computes like an MLP.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backprop import Workspace, mlp_loss_and_gradients
from .checks import check_choice, check_input, check_int, check_n_fix, check_number, check_seeds
from .layers import SYRE_ANCHOR_SCALE, LinearEnsemble, set_stacked_parameters, sigma_gate, syre_anchor, wasym_entries

Kind = Literal["mlp", "wmlp", "smlp", "syre"]
#: The paper's two types, the default of the deep-ensemble section.
KINDS: tuple[str, ...] = ("mlp", "wmlp")
#: Every type an ``MLPEnsemble`` can be.
MODEL_TYPES: tuple[str, ...] = ("mlp", "wmlp", "smlp", "syre")


def default_n_fix(hidden: int, n_layers: int = 4) -> tuple[int, ...]:
    """The paper's frozen entries per output unit: 2 in the first layer, then 3 for
    hidden 64 or 128 and 4 for hidden 256 (the release's rule: 4 from 256 up)."""
    later = 4 if hidden >= 256 else 3
    return (2,) + (later,) * (n_layers - 1)


class MLPEnsemble(nn.Module):
    """``members`` MLPs (``kind="mlp"``), W-Asymmetric MLPs (``"wmlp"``), sigma-Asymmetric
    MLPs (``"smlp"``) or MLPs trained with syre (``"syre"``).

    Args:
        in_features: d, the number of input features.
        hidden: h, the width of the three hidden layers.
        out_features: 1 for regression, the number of classes otherwise.
        members: E, the number of independent networks.
        kind: "mlp", "wmlp", "smlp" or "syre".
        init_seeds: E seeds, one per member, for PyTorch's default initialisation;
            ``None`` uses 0..E-1.
        mask_seed: seed of the W-Asymmetric frozen entries (or of the sigma-Asymmetric gates,
            or of the syre anchors), shared by every member; a non-negative integer.
        n_fix: frozen entries per output unit for each of the 4 layers (default: the paper's),
            each in 1..that layer's in_features.
        kappa: standard deviation of the frozen values (finite, >= 0).
        anchor_scale: a syre anchor's entries have standard deviation anchor_scale /
            sqrt(fan-in) (finite, >= 0; ``layers.syre_anchor``); other kinds ignore it.

    Every argument is checked here (``core/checks.py``): sizes are positive integers, a
    wrong type raises TypeError and a wrong value ValueError, naming the argument.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        *,
        members: int,
        kind: Kind = "mlp",
        init_seeds: Sequence[int] | None = None,
        mask_seed: int = 0,
        n_fix: Sequence[int] | None = None,
        kappa: float = 1.0,
        anchor_scale: float = SYRE_ANCHOR_SCALE,
    ) -> None:
        super().__init__()
        for name, size in (("in_features", in_features), ("hidden", hidden), ("out_features", out_features)):
            check_int(size, name=name)
        check_int(members, name="members")
        check_choice(kind, MODEL_TYPES, name="kind")
        check_int(mask_seed, name="mask_seed", minimum=0)
        check_number(kappa, name="kappa", minimum=0.0)
        check_number(anchor_scale, name="anchor_scale", minimum=0.0)
        self.kind, self.members, self.hidden = kind, members, hidden
        self.mask_seed, self.kappa, self.anchor_scale = mask_seed, kappa, anchor_scale
        sizes = [in_features, hidden, hidden, hidden, out_features]
        self.n_fix = default_n_fix(hidden)
        if n_fix is not None:
            self.n_fix = check_n_fix(n_fix, fan_ins=sizes[:-1], frozen=kind == "wmlp")
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            frozen = None
            if kind == "wmlp":
                # The layer index enters the seed so layers of equal shape get different masks.
                frozen = wasym_entries(fan_in, fan_out, n_fix=self.n_fix[i], kappa=kappa, seed=(mask_seed, i))
            # syre: the layer index enters the anchor's seed for the same reason
            anchor = None
            if kind == "syre":
                anchor = syre_anchor(fan_in, fan_out, seed=(mask_seed, i), scale=anchor_scale)
            layers.append(LinearEnsemble(fan_in, fan_out, members=members, frozen=frozen, anchor=anchor))
        self.layers = nn.ModuleList(layers)
        # smlp: one frozen gate matrix per hidden layer, a buffer (never trained, moves with .to)
        for i in range(len(sizes) - 2):
            if kind == "smlp":
                self.register_buffer(f"gate{i}", sigma_gate(hidden, seed=(mask_seed, i)))
        seeds = list(range(members))
        if init_seeds is not None:
            seeds = check_seeds(init_seeds, name="init_seeds", count=members)
        self.init_seeds = seeds
        self._workspace: Workspace | None = None  # the hand-written step's buffers, made at its first call
        for member, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(int(seed))
            for layer in self.layers:
                layer.init_member(member, generator)

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    @property
    def activation_width(self) -> int:
        """Floats per row and member in the widest activation (trainer.predict chunks by it)."""
        return max(layer.out_features for layer in self.layers)

    def activation(self, i: int, z: Tensor) -> Tensor:
        """The nonlinearity after hidden layer i: GELU, or for ``smlp`` z * sigmoid(z @ C_i)."""
        if self.kind != "smlp":
            return F.gelu(z)
        return z * torch.sigmoid(torch.matmul(z, getattr(self, f"gate{i}")))

    def forward(self, x: Tensor) -> Tensor:
        """x: (members, batch, in_features) or (batch, in_features) -> (members, batch, out_features).

        x must be a torch tensor of the model's dtype (float32 unless converted) on the
        model's device: a numpy array or a float64 tensor is refused (TypeError), not
        converted, and the message gives the conversion (``torch.as_tensor(x,
        dtype=torch.float32)``, ``x.to(torch.float32)``). Under autocast any floating dtype
        passes. A wrong shape or device is a ValueError.
        """
        check_input(x, self.layers[0].weight)
        for i, layer in enumerate(self.layers[:-1]):
            x = self.activation(i, layer(x))
        return self.layers[-1](x)

    # The protocol of trainer.fit: every parameter has a leading members dim.

    @property
    def hand_written_step(self) -> bool:
        """Whether ``loss_and_gradients`` can take the training step (GELU networks only: an
        SMLP's step written out measured no faster than autograd's, benchmarks/README.md)."""
        return self.kind != "smlp"

    def loss_and_gradients(self, x: Tensor, targets: Tensor, *, task: str) -> Tensor:
        """The training step's forward and backward pass, written out (core/backprop.py).

        x: (members, batch, in_features); targets: (members, batch). Overwrites every
        parameter's ``.grad`` and returns the (members,) mean losses of the batch.
        """
        if self._workspace is None:
            self._workspace = Workspace()
        return mlp_loss_and_gradients(self.layers, x, targets, task=task, workspace=self._workspace)

    @torch.no_grad()
    def set_members(self, parameters: Sequence[Tensor], members: Sequence[int] | Tensor | None = None) -> None:
        """Replace the parameters by new ones (in ``parameters()`` order) of any number of members.

        members: which of the original members the new parameters hold; an MLP ensemble
        keeps no other per-member state, so this is only checked for length.
        """
        if members is not None and len(members) != parameters[0].shape[0]:
            raise ValueError(f"members names {len(members)} members, the parameters hold {parameters[0].shape[0]}")
        set_stacked_parameters(self, parameters)
        self.members = parameters[0].shape[0]
        self._workspace = None  # sized for the old members

    @property
    def anchored(self) -> bool:
        """Whether training decays towards anchors (``syre``) rather than towards 0: ``fit``
        then calls ``decay_towards_anchors`` before each step and turns AdamW's decay off."""
        return self.kind == "syre"

    @torch.no_grad()
    def decay_towards_anchors(self, rate: float) -> None:
        """syre's weight decay on every layer (``LinearEnsemble.decay_towards_anchor``)."""
        for layer in self.layers:
            layer.decay_towards_anchor(rate)

    @torch.no_grad()
    def apply_frozen(self) -> None:
        """Rewrite the W-Asymmetric frozen entries of every layer (a no-op for an MLP)."""
        for layer in self.layers:
            layer.apply_frozen()

    def flat_parameters(self) -> Tensor:
        """(members, n_parameters): every member's parameters as one row."""
        return torch.cat([p.detach().reshape(self.members, -1) for p in self.parameters()], dim=1)

    @torch.no_grad()
    def subset(self, members: Sequence[int] | Tensor) -> "MLPEnsemble":
        """A new ensemble made of the given members (copies, same masks)."""
        index = torch.as_tensor(members, dtype=torch.long, device=self.layers[0].weight.device)
        clone = self._empty_like(len(index))
        for src, dst in zip(self.layers, clone.layers):
            dst.weight.copy_(src.weight[index])
            dst.bias.copy_(src.bias[index])
        clone.init_seeds = [self.init_seeds[int(i)] for i in index]
        return clone

    @torch.no_grad()
    def interpolate(self, members: Sequence[int] | Tensor | None = None) -> "MLPEnsemble":
        """The weight-averaged network of the given members (default: all), as a 1-member ensemble.

        Frozen W-Asymmetric entries are equal in every member; they are written back after
        averaging so that rounding in the mean cannot move them.
        """
        source = self if members is None else self.subset(members)
        clone = self._empty_like(1)
        for src, dst in zip(source.layers, clone.layers):
            dst.weight.copy_(src.weight.mean(dim=0, keepdim=True))
            dst.bias.copy_(src.bias.mean(dim=0, keepdim=True))
            dst.apply_frozen()
        clone.init_seeds = [-1]
        return clone

    def _empty_like(self, members: int) -> "MLPEnsemble":
        clone = MLPEnsemble(
            self.in_features,
            self.hidden,
            self.out_features,
            members=members,
            kind=self.kind,
            init_seeds=[0] * members,
            mask_seed=self.mask_seed,
            n_fix=self.n_fix,
            kappa=self.kappa,
            anchor_scale=self.anchor_scale,
        )
        return clone.to(self.layers[0].weight.device)
