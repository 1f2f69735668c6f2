"""Mixtures of experts (MoE), Gumbel-gated MoE and mixtures of interpolated experts (MoIE).

docs/protocol.md, "Mixtures": K experts of the paper's 4-layer MLP or W-Asymmetric MLP shape and a
logistic-regression gate on the input, alpha(x) = softmax(W x + b), or with
``gating="gumbel"`` a Gumbel-softmax of the same logits (tau = 2).

- MoE (kinds ``mlp``, ``wmlp``): y = sum_k alpha_k(x) f_k(x), a mixture of the experts' outputs.
- MoIE (kinds ``imlp``, ``iwmlp``): y = f(x; sum_k alpha_k(x) theta_k), the experts'
  parameters interpolated per example. Every layer is affine, so its pre-activation is
  sum_k alpha_k(x) (W_k h + b_k) with h the previous interpolated layer's output; no
  per-example weights are formed (``ExpertLinear.interpolate``).

``MixtureEnsemble`` holds ``members`` independent mixtures as one batched model (expert
weights (members, K, in, out), gate (members, d, K)), so ``trainer.fit`` trains several
mixtures (repeats, seeds) at once with per-mixture data order and early stopping.

An optional load-balancing loss (``balance_weight``, 0 in the paper) adds to each mixture's
training loss w * CV(importance)^2, where importance_k is the sum of expert k's gate weights
over the batch and CV^2 its variance over the experts (population variance) divided by its
squared mean (Shazeer et al., 2017): 0 when every expert gets the same share.

``architecture="release"`` builds the networks of the paper's code release instead of its
text's (docs/departures.md, "Mixtures"). Its MoE is the text's (K experts of the 4-layer
GELU MLP or WMLP); its MoIE has five interpolated layers (d -> h, three h -> h, h -> out)
with ReLU between them, and 2 frozen entries per unit in every layer of an ``iwmlp``.

Gumbel gates draw one sample per example in training, from a generator per mixture
(``noise_seeds``) so that training repeats exactly. At inference the gate is the mean of
``samples`` Gumbel-softmax draws from a generator seeded afresh on every call
(``eval_seed``), so evaluation repeats as well. For MoE this *is* the mean prediction over
the samples (the output is linear in alpha); for MoIE it is the protocol's "average alpha".
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backprop import Workspace
from .checks import check_choice, check_input, check_int, check_n_fix, check_number, check_seeds
from .layers import ExpertLinear, LinearEnsemble, set_stacked_parameters, wasym_entries
from .mixture_backprop import mixture_loss_and_gradients
from .models import default_n_fix

Gating = Literal["standard", "gumbel"]
MixtureKind = Literal["mlp", "wmlp", "imlp", "iwmlp"]
GATINGS: tuple[str, ...] = ("standard", "gumbel")
#: Whose networks: the paper's text ("paper") or its code release ("release"; module docstring).
ARCHITECTURES: tuple[str, ...] = ("paper", "release")
MIXTURE_KINDS: tuple[str, ...] = ("mlp", "wmlp", "imlp", "iwmlp")
PAPER_EXPERTS: tuple[int, ...] = (2, 4, 8, 16, 32, 64, 128)


def importance_cv2(alpha: Tensor) -> Tensor:
    """Squared coefficient of variation of the experts' importance, per mixture.

    alpha: (members, batch, experts) gate weights. Returns (members,):
    var_k(I_k) / mean_k(I_k)^2 with I_k = sum over the batch of alpha_k.
    """
    importance = alpha.sum(dim=1)
    return importance.var(dim=-1, unbiased=False) / importance.mean(dim=-1).pow(2)


def gumbel_noise(shape: Sequence[int], generator: torch.Generator) -> Tensor:
    """Standard Gumbel samples, -log(E) with E ~ Exp(1) (as torch's gumbel_softmax draws them)."""
    return -torch.empty(tuple(shape)).exponential_(generator=generator).log()


class MixtureEnsemble(nn.Module):
    """``members`` independent mixtures of ``experts`` experts each, as one batched model.

    Args:
        in_features: d, the number of input features (the gate's input too).
        hidden: h, the width of every expert's three hidden layers (64 in the paper).
        out_features: 1 for regression, the number of classes otherwise.
        members: M, the number of independent mixtures.
        experts: K, the number of experts per mixture.
        kind: "mlp" or "wmlp" (MoE), "imlp" or "iwmlp" (MoIE).
        gating: "standard" (softmax) or "gumbel" (Gumbel-softmax).
        init_seeds: M seeds; mixture m draws its experts 0..K-1 (each layer by layer, like a
            freshly built nn.Sequential) and then its gate from one generator with its seed,
            all like ``nn.Linear``. ``None`` uses 0..M-1.
        noise_seeds: M seeds of the training Gumbel noise; ``None`` uses the init seeds.
        mask_seed: seed of the W-Asymmetric frozen entries, shared by every expert of every
            mixture (the same entries as an ``MLPEnsemble`` of that mask seed).
        n_fix: frozen entries per output unit for each layer (default: the paper's, or the
            release's 2 in every layer of its MoIE).
        kappa: standard deviation of the frozen values.
        tau: Gumbel-softmax temperature.
        samples: S, Gumbel samples averaged at inference.
        eval_seed: seed of the inference Gumbel noise (the same for every mixture).
        balance_weight: w of the load-balancing loss (module docstring); 0, the paper's,
            adds nothing.
        architecture: "paper" (the text's networks) or "release" (the code release's MoIE:
            five interpolated layers with ReLU; module docstring).

    Every argument is checked here (``core/checks.py``): sizes are positive integers, seeds
    integers (``mask_seed`` non-negative), tau > 0, balance_weight and kappa finite and
    >= 0, n_fix one entry per layer in 1..its in_features; a wrong type raises TypeError
    and a wrong value ValueError, naming the argument.
    """

    def __init__(
        self,
        in_features: int,
        hidden: int,
        out_features: int,
        *,
        members: int,
        experts: int,
        kind: MixtureKind = "mlp",
        gating: Gating = "standard",
        init_seeds: Sequence[int] | None = None,
        noise_seeds: Sequence[int] | None = None,
        mask_seed: int = 0,
        n_fix: Sequence[int] | None = None,
        kappa: float = 1.0,
        tau: float = 2.0,
        samples: int = 10,
        eval_seed: int = 0,
        balance_weight: float = 0.0,
        architecture: str = "paper",
    ) -> None:
        super().__init__()
        for name, size in (("in_features", in_features), ("hidden", hidden), ("out_features", out_features)):
            check_int(size, name=name)
        for name, size in (("members", members), ("experts", experts), ("samples", samples)):
            check_int(size, name=name)
        check_choice(kind, MIXTURE_KINDS, name="kind")
        check_choice(architecture, ARCHITECTURES, name="architecture")
        check_choice(gating, GATINGS, name="gating")
        check_number(tau, name="tau", minimum=0.0, strict=True)
        check_number(balance_weight, name="balance_weight", minimum=0.0)
        check_number(kappa, name="kappa", minimum=0.0)
        check_int(mask_seed, name="mask_seed", minimum=0)
        check_int(eval_seed, name="eval_seed", minimum=None)
        self.balance_weight = float(balance_weight)
        self._balance: Tensor | None = None
        self.kind, self.gating, self.members, self.experts, self.hidden = kind, gating, members, experts, hidden
        self.interpolated = kind in ("imlp", "iwmlp")
        self.mask_seed, self.kappa, self.tau, self.samples, self.eval_seed = mask_seed, kappa, tau, samples, eval_seed

        self.architecture = architecture
        release_moie = architecture == "release" and self.interpolated
        sizes = [in_features] + [hidden] * (4 if release_moie else 3) + [out_features]
        self.activation = "relu" if release_moie else "gelu"
        if n_fix is None:
            self.n_fix = (2,) * (len(sizes) - 1) if release_moie else default_n_fix(hidden)
        else:
            self.n_fix = check_n_fix(n_fix, fan_ins=sizes[:-1], frozen=kind in ("wmlp", "iwmlp"))
        self.gate = LinearEnsemble(in_features, experts, members=members)
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            frozen = None
            if kind in ("wmlp", "iwmlp"):
                # the seeds of MLPEnsemble's WMLP layers: the same frozen entries
                frozen = wasym_entries(fan_in, fan_out, n_fix=self.n_fix[i], kappa=kappa, seed=(mask_seed, i))
            layers.append(ExpertLinear(fan_in, fan_out, members=members, experts=experts, frozen=frozen))
        self.layers = nn.ModuleList(layers)

        if init_seeds is not None:
            check_seeds(init_seeds, name="init_seeds", count=members)
        if noise_seeds is not None:
            check_seeds(noise_seeds, name="noise_seeds", count=members)
        seeds = list(range(members)) if init_seeds is None else [int(s) for s in init_seeds]
        noise = seeds if noise_seeds is None else [int(s) for s in noise_seeds]
        self.init_seeds, self.noise_seeds = seeds, noise
        for member, seed in enumerate(seeds):
            generator = torch.Generator().manual_seed(seed)
            for expert in range(experts):
                for layer in self.layers:
                    layer.init_expert(member, expert, generator)
            self.gate.init_member(member, generator)
        self.apply_frozen()
        # Per-mixture state besides the parameters: the training noise, and which of the
        # original mixtures the parameters hold now (fit drops the ones that stopped).
        self._noise = [torch.Generator().manual_seed(s) for s in noise]
        self._active = list(range(members))
        self._workspace: Workspace | None = None  # the hand-written step's buffers, made at its first call

    @property
    def in_features(self) -> int:
        return self.gate.in_features

    @property
    def activation_width(self) -> int:
        """Floats per row and mixture in the widest activation, every expert's hidden layer
        (trainer.predict chunks evaluation rows by it)."""
        return self.experts * max(layer.out_features for layer in self.layers)

    @property
    def steps_capturable(self) -> bool:
        """Whether a training step is device work only (trainer.fit may record it in a CUDA
        graph): not with Gumbel gates, whose training noise is drawn on the CPU per step."""
        return self.gating == "standard"

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    # ------------------------------------------------------------------ forward

    def gate_weights(self, x: Tensor) -> Tensor:
        """alpha: (members, batch, experts), rows summing to 1.

        x: (batch, in_features) shared by every mixture, or (members, batch, in_features).
        Standard gates: softmax of the logits. Gumbel gates: one Gumbel-softmax sample per
        example in training; in ``eval()`` mode the mean of ``samples`` samples.
        """
        logits = self.gate(x)
        if self.gating == "standard":
            return torch.softmax(logits, dim=-1)
        members, batch, experts = logits.shape
        if self.training:
            return torch.softmax((logits + self._training_noise(batch, logits.device)) / self.tau, dim=-1)
        generator = torch.Generator().manual_seed(self.eval_seed)
        noise = gumbel_noise((self.samples, 1, batch, experts), generator).to(logits.device)
        return torch.softmax((logits + noise) / self.tau, dim=-1).mean(dim=0)

    def _training_noise(self, batch: int, device: torch.device) -> Tensor:
        """The next training Gumbel samples of every active mixture: (members, batch, experts)."""
        noise = torch.stack([gumbel_noise((batch, self.experts), self._noise[m]) for m in self._active])
        return noise.to(device)

    def expert_outputs(self, x: Tensor) -> Tensor:
        """Every expert's own output f_k(x): (members, experts, batch, out_features).

        x: (batch, in_features) or (members, batch, in_features).
        """
        h = x
        for layer in self.layers[:-1]:
            h = self._activate(layer(h))
        return self.layers[-1](h)

    def _activate(self, h: Tensor) -> Tensor:
        return F.relu(h) if self.activation == "relu" else F.gelu(h)

    def mix(self, x: Tensor, alpha: Tensor) -> Tensor:
        """The mixture's output for given gate weights.

        x: (batch, in_features) or (members, batch, in_features);
        alpha: (members, batch, experts). Returns (members, batch, out_features).
        """
        if not self.interpolated:
            return torch.einsum("mkbo,mbk->mbo", self.expert_outputs(x), alpha)
        h = x
        for layer in self.layers[:-1]:
            h = self._activate(layer.interpolate(h, alpha))
        return self.layers[-1].interpolate(h, alpha)

    def forward(self, x: Tensor) -> Tensor:
        """x: (batch, in_features) or (members, batch, in_features) -> (members, batch, out_features).

        x must be a torch tensor of the model's dtype (float32 unless converted) on the
        model's device: a numpy array or a float64 tensor is refused (TypeError), not
        converted, and the message gives the conversion (``torch.as_tensor(x,
        dtype=torch.float32)``, ``x.to(torch.float32)``). Under autocast any floating dtype
        passes. A wrong shape or device is a ValueError.

        In training with a ``balance_weight``, also keeps this batch's load-balancing loss
        for ``auxiliary_losses``.
        """
        check_input(x, self.gate.weight)
        alpha = self.gate_weights(x)
        if self.training and self.balance_weight:
            self._balance = self.balance_weight * importance_cv2(alpha)
        return self.mix(x, alpha)

    def auxiliary_losses(self) -> Tensor | None:
        """The (members,) load-balancing losses of the last training forward pass, once
        (then None); None without a ``balance_weight``. ``trainer.fit`` adds them to the
        training losses; validation and early stopping see the task's loss alone."""
        balance, self._balance = self._balance, None
        return balance

    @torch.no_grad()
    def expert_usage(self, X: Tensor, *, batch_size: int = 4096) -> Tensor:
        """Mean gate weight of every expert over the rows of X: (members, experts).

        Uses the gate of the current mode (call it in ``eval()`` mode for the inference gate;
        ``fit``'s monitor does).
        """
        total = torch.zeros(self.members, self.experts, dtype=torch.float64, device=X.device)
        for start in range(0, len(X), batch_size):
            total += self.gate_weights(X[start : start + batch_size]).double().sum(dim=1)
        return total / len(X)

    # ------------------------------------------------------------------ trainer.fit protocol

    #: ``loss_and_gradients`` takes the training step (trainer.fit uses it unless under autocast).
    hand_written_step = True

    def loss_and_gradients(self, x: Tensor, targets: Tensor, *, task: str) -> Tensor:
        """The training step's forward and backward pass, written out (core/mixture_backprop.py).

        x: (members, batch, in_features); targets: (members, batch). Overwrites every
        parameter's ``.grad`` (the load-balancing term included) and returns the (members,)
        task losses of the batch. Draws the batch's training Gumbel noise, as ``forward``
        does in training.
        """
        if self._workspace is None:
            self._workspace = Workspace()
        noise = self._training_noise(x.shape[1], x.device) if self.gating == "gumbel" else None
        return mixture_loss_and_gradients(
            self.gate,
            self.layers,
            x,
            targets,
            task=task,
            interpolated=self.interpolated,
            workspace=self._workspace,
            noise=noise,
            tau=self.tau,
            balance_weight=self.balance_weight,
            activation=self.activation,
        )

    @torch.no_grad()
    def set_members(self, parameters: Sequence[Tensor], members: Sequence[int] | Tensor) -> None:
        """Replace the parameters (``parameters()`` order) by tensors holding the original
        mixtures ``members`` (indices into the mixtures this model was built with); their
        training-noise generators follow them."""
        members = [int(m) for m in members]
        if len(members) != parameters[0].shape[0]:
            raise ValueError(f"members names {len(members)} mixtures, the parameters hold {parameters[0].shape[0]}")
        set_stacked_parameters(self, parameters)
        self.members, self._active = len(members), members
        self._workspace = None  # sized for the old members

    @torch.no_grad()
    def apply_frozen(self) -> None:
        """Rewrite the W-Asymmetric frozen entries of every expert layer (no-op for MLP experts)."""
        for layer in self.layers:
            layer.apply_frozen()

    def parameters_per_mixture(self) -> int:
        """Number of parameters of one mixture (experts and gate, frozen entries included)."""
        return sum(p[0].numel() for p in self.parameters())

    def extra_repr(self) -> str:
        architecture = "" if self.architecture == "paper" else f", architecture={self.architecture}"
        return f"kind={self.kind}, gating={self.gating}, tau={self.tau}, samples={self.samples}{architecture}"
