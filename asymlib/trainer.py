"""Train the E members of an ensemble at once, with results equal to training them one by one.

Each member keeps everything a lone training run would have: its own shuffling generator
(a fresh permutation every epoch), its own AdamW step count and moments, and its own early
stopping. Once a member stops, its parameters and optimizer state never change again; the
batched forward still carries it along (dropping it would cost a copy of every parameter).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import LinearEnsemble


@dataclass(frozen=True)
class TrainConfig:
    """The paper's training settings (SPEC, "Training")."""

    lr: float = 1e-3
    weight_decay: float = 3e-2
    batch_size: int = 256
    max_epochs: int = 1000
    patience: int = 16
    restore_best: bool = False
    eval_batch_size: int = 4096

    def __post_init__(self) -> None:
        for name in ("batch_size", "max_epochs", "patience", "eval_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"TrainConfig needs lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


@dataclass
class TrainResult:
    """What one batched run records per member.

    epochs: (E,) epochs run by each member.
    best_val_loss: (E,) lowest validation loss seen.
    final_val_loss: (E,) validation loss at the epoch the member stopped.
    train_time: (E,) seconds from the start until the member stopped.
    val_history: (epochs, E) validation loss per epoch (NaN once a member has stopped).
    """

    epochs: np.ndarray
    best_val_loss: np.ndarray
    final_val_loss: np.ndarray
    train_time: np.ndarray
    val_history: np.ndarray = field(repr=False)

    def as_dict(self) -> dict:
        return asdict(self)


class BatchedAdamW:
    """AdamW over stacked member parameters (leading dim E), one step count per member.

    ``torch.optim.AdamW`` keeps a single step count per tensor and updates every element,
    so it cannot leave a stopped member untouched. This class follows its update exactly
    (decoupled weight decay, then bias-corrected Adam) but scales every term by a per-member
    coefficient that is 0 for stopped members, and never updates W-Asymmetric frozen
    entries (no weight decay, zero moments).
    """

    def __init__(
        self,
        layers: Sequence[LinearEnsemble],
        *,
        lr: float = 1e-3,
        weight_decay: float = 3e-2,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.params: list[tuple[Tensor, Tensor | None]] = []
        for layer in layers:
            self.params.append((layer.weight, layer.frozen_mask))
            self.params.append((layer.bias, None))
        members = layers[0].members
        device = layers[0].weight.device
        self.steps = torch.zeros(members, dtype=torch.float64, device=device)
        self.exp_avg = [torch.zeros_like(p) for p, _ in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p, _ in self.params]

    def zero_grad(self) -> None:
        for p, _ in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: Tensor) -> None:
        """One update for the members where ``active`` (E,) bool is True."""
        beta1, beta2 = self.betas
        self.steps += active.to(self.steps.dtype)
        t = self.steps.clamp(min=1)
        # Coefficients in float64 then cast, as torch.optim.AdamW computes its scalars in
        # Python floats: for an active member they equal torch's, for a stopped one they
        # make every update an exact identity (x * 1, x + 0).
        dtype = self.params[0][0].dtype
        one, zero = torch.ones_like(t), torch.zeros_like(t)

        def coef(value_active: Tensor | float, value_stopped: Tensor) -> Tensor:
            return torch.where(active, value_active, value_stopped).to(dtype)

        decay = coef(1.0 - self.lr * self.weight_decay * one, one)
        w1 = coef((1.0 - beta1) * one, zero)
        d2 = coef(beta2 * one, one)
        c2 = coef((1.0 - beta2) * one, zero)
        step_size = coef(self.lr / (1.0 - beta1**t), zero)
        bc2_sqrt = (1.0 - beta2**t).sqrt().to(dtype)
        for (p, frozen), m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            g = p.grad
            m.lerp_(g, w1.view(shape))
            v.mul_(d2.view(shape)).addcmul_(c2.view(shape) * g, g)
            denom = (v.sqrt() / bc2_sqrt.view(shape)).add_(self.eps)
            updated = p * decay.view(shape) - step_size.view(shape) * (m / denom)
            if frozen is not None:
                updated = torch.where(frozen, p, updated)
            p.copy_(updated)

    def state_dict(self) -> dict:
        return {"steps": self.steps.clone(), "exp_avg": [m.clone() for m in self.exp_avg],
                "exp_avg_sq": [v.clone() for v in self.exp_avg_sq]}


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
def predict(model: nn.Module, X: Tensor, *, batch_size: int = 4096) -> Tensor:
    """Outputs of every member on a shared input. X: (n, d) -> (E, n, out_features)."""
    was_training = model.training
    model.eval()
    parts = [model(X[start : start + batch_size]) for start in range(0, len(X), batch_size)]
    model.train(was_training)
    return torch.cat(parts, dim=1)


@torch.no_grad()
def evaluate_losses(model: nn.Module, X: Tensor, y: Tensor, *, task: str, batch_size: int = 4096) -> Tensor:
    """(E,) mean loss of every member on a shared (X, y), computed in chunks of rows."""
    total = None
    for start in range(0, len(X), batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        part = member_losses(model(xb), yb, task=task) * len(xb)
        total = part if total is None else total + part
    return total / len(X)


def fit(
    model: nn.Module,
    X_train: Tensor,
    y_train: Tensor,
    X_val: Tensor,
    y_val: Tensor,
    *,
    task: str,
    order_seeds: Sequence[int],
    config: TrainConfig = TrainConfig(),
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train every member of ``model`` (an ensemble with ``.layers`` of LinearEnsemble).

    X_train: (n, d); y_train: (n,) float32 for regression, int64 classes otherwise.
    order_seeds: E seeds; member e shuffles the training rows with its own generator.
    The data must already be on the model's device.

    A member stops when its validation loss has not improved for ``config.patience``
    consecutive epochs, or at ``config.max_epochs``. With ``restore_best`` each member is
    reset to its best-validation epoch at the end; by default (as the paper's code) the
    model kept is the one at the epoch training stopped.
    """
    layers = [m for m in model.modules() if isinstance(m, LinearEnsemble)]
    members = layers[0].members
    if len(order_seeds) != members:
        raise ValueError(f"order_seeds needs one seed per member ({members}), got {len(order_seeds)}")
    device = layers[0].weight.device
    optimizer = BatchedAdamW(layers, lr=config.lr, weight_decay=config.weight_decay)
    generators = [torch.Generator().manual_seed(int(s)) for s in order_seeds]
    n = len(X_train)

    active = torch.ones(members, dtype=torch.bool, device=device)
    epochs = np.zeros(members, dtype=np.int64)
    best = torch.full((members,), float("inf"), dtype=torch.float64, device=device)
    bad_epochs = torch.zeros(members, dtype=torch.long, device=device)
    final = torch.full((members,), float("nan"), dtype=torch.float64, device=device)
    stop_time = np.zeros(members)
    history: list[np.ndarray] = []
    best_state = [p.detach().clone() for p in model.parameters()] if config.restore_best else None

    from tqdm.auto import tqdm

    bar = tqdm(total=config.max_epochs, desc=description, disable=not progress, leave=False)
    start_time = time.perf_counter()
    model.train()
    for epoch in range(config.max_epochs):
        running = active.nonzero().flatten().cpu().tolist()
        # A stopped member needs no new order; it gets the identity so the batch stays rectangular.
        order = torch.arange(n).repeat(members, 1)
        for e in running:
            order[e] = torch.randperm(n, generator=generators[e])
        order = order.to(device)
        for begin in range(0, n, config.batch_size):
            index = order[:, begin : begin + config.batch_size]
            losses = member_losses(model(X_train[index]), y_train[index], task=task)
            optimizer.zero_grad()
            # Summing keeps each member's gradient equal to that of its own mean loss.
            losses.sum().backward()
            optimizer.step(active)

        val = evaluate_losses(model, X_val, y_val, task=task, batch_size=config.eval_batch_size).double()
        history.append(torch.where(active, val, torch.nan).cpu().numpy())
        improved = active & (val < best)
        if best_state is not None and improved.any():
            for saved, p in zip(best_state, model.parameters()):
                saved[improved] = p.detach()[improved]
        best = torch.where(improved, val, best)
        bad_epochs = torch.where(improved, 0, bad_epochs + active.long())
        final = torch.where(active, val, final)
        epochs[active.cpu().numpy()] = epoch + 1
        stopping = active & (bad_epochs >= config.patience)
        now = time.perf_counter() - start_time
        stop_time[active.cpu().numpy()] = now
        active = active & ~stopping
        bar.update(1)
        bar.set_postfix(active=f"{int(active.sum())}/{members}", refresh=False)
        if not active.any():
            break
    bar.close()

    if best_state is not None:
        with torch.no_grad():
            for saved, p in zip(best_state, model.parameters()):
                p.copy_(saved)
    return TrainResult(
        epochs=epochs,
        best_val_loss=best.cpu().numpy(),
        final_val_loss=final.cpu().numpy(),
        train_time=stop_time,
        val_history=np.stack(history),
    )
