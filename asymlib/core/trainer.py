"""Train the E members of a batched model at once, with results equal to training them one by one.

Each member keeps everything a lone training run would have: its own shuffling generator
(a fresh permutation every epoch), its own AdamW moments and its own early stopping.
Members that stop are taken out of the batched model (their parameters are set aside
untouched) and the rest train on. A member whose training or validation loss stops being
finite has *diverged*: it stops at the end of that epoch and is flagged, so that nothing
downstream mistakes its numbers for results. Because every member still training has taken the
same number of steps, a single ``torch.optim.AdamW`` with one step count per tensor is
exact for all of them, and no compute is spent on members that have stopped.

A member is whatever the model stacks: one network of a deep ensemble (``MLPEnsemble``)
or one whole mixture of experts (``MixtureEnsemble``). ``fit`` needs only the small
protocol of ``BatchedModel``. The steps of an epoch (pre-permuted data, the hand-written or
autograd step, a CUDA graph on a GPU) are ``core/steps.py``'s; this module decides, once per
epoch, who stops.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from .backprop import member_losses
from .steps import PRECISIONS, EpochBatches, EpochRunner

__all__ = [
    "BatchedModel",
    "TrainConfig",
    "TrainResult",
    "evaluate_losses",
    "evaluating",
    "fit",
    "member_losses",
    "predict",
]


@runtime_checkable
class BatchedModel(Protocol):
    """What ``fit`` needs of a model that holds ``members`` independent members.

    - every parameter has a leading dim of size ``members`` (a member's slice is all of it);
    - ``set_members(parameters, members)`` replaces the parameters (listed in
      ``parameters()`` order) by tensors holding any number of members; ``members`` says
      which of the original members they are, for per-member state that is not a
      parameter (e.g. a member's random generator);
    - ``apply_frozen()`` rewrites entries that must not train (W-Asymmetric weights); the
      model also keeps their gradient at zero, so Adam's moments stay 0 there.
    A forward pass maps (members, batch, in) to (members, batch, out).
    """

    members: int

    def set_members(self, parameters: Sequence[Tensor], members: Sequence[int] | Tensor) -> None: ...

    def apply_frozen(self) -> None: ...


@dataclass(frozen=True)
class TrainConfig:
    """The paper's training settings (docs/protocol.md, "Training").

    precision: the training steps' matrix multiplies: "float32" (the paper's, default),
    "tf32" (CUDA only) or "bf16" (autocast); see ``core/steps.py``. It is recorded in
    ``TrainResult.precision`` and shown in the repr only when it is not float32.
    """

    lr: float = 1e-3
    weight_decay: float = 3e-2
    batch_size: int = 256
    max_epochs: int = 1000
    patience: int = 16
    restore_best: bool = False
    eval_batch_size: int = 4096
    precision: str = field(default="float32", repr=False)

    def __repr__(self) -> str:
        return "TrainConfig(" + ", ".join(f"{k}={v!r}" for k, v in self.as_record().items()) + ")"

    def as_record(self) -> dict:
        """The settings as a dict for result tables; precision only when it is not float32,
        so that the records of float32 runs read as they always have."""
        record = asdict(self)
        if self.precision == "float32":
            del record["precision"]
        return record

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("batch_size", "max_epochs", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ValueError(f"TrainConfig needs lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}")


@dataclass
class TrainResult:
    """What one batched run records per member.

    epochs: (E,) epochs run by each member.
    best_val_loss: (E,) lowest validation loss seen.
    final_val_loss: (E,) validation loss at the epoch the member stopped.
    train_time: (E,) seconds from the start until the member stopped.
    diverged: (E,) bool, True where a member's training or validation loss became
        non-finite (it stopped at the end of that epoch).
    diverged_reason: E strings, why each member diverged ("" where it did not).
    val_history: (epochs, E) validation loss per epoch (NaN once a member has stopped).
    monitored: (epochs, E, ...) what ``fit``'s ``monitor`` returned after each epoch (NaN
        once a member has stopped), or None without a monitor.
    precision: the training steps' ``TrainConfig.precision``.
    """

    epochs: np.ndarray
    best_val_loss: np.ndarray
    final_val_loss: np.ndarray
    train_time: np.ndarray
    diverged: np.ndarray
    diverged_reason: list[str]
    val_history: np.ndarray = field(repr=False)
    monitored: np.ndarray | None = field(default=None, repr=False)
    precision: str = "float32"

    def as_dict(self) -> dict:
        return asdict(self)


def _check_batched(model: nn.Module) -> int:
    """The number of members of a model that follows ``BatchedModel``."""
    if not isinstance(model, BatchedModel):
        raise TypeError(
            f"fit needs a batched model (members, set_members, apply_frozen; see BatchedModel), "
            f"got {type(model).__name__}"
        )
    members = model.members
    for name, parameter in model.named_parameters():
        if parameter.dim() == 0 or parameter.shape[0] != members:
            raise ValueError(
                f"parameter {name} has shape {tuple(parameter.shape)}; fit needs a leading members dim of {members}"
            )
    return members


def _adamw(params: Sequence[nn.Parameter], config: TrainConfig, state: dict | None = None):
    params = list(params)
    device = params[0].device.type
    # The fused kernel is one pass over the parameters instead of a dozen (CPU and CUDA);
    # capturable keeps its step count on the GPU, so that a CUDA graph can replay it.
    fused = device in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(
        params, lr=config.lr, weight_decay=config.weight_decay, fused=fused, capturable=device == "cuda"
    )
    if state is not None:
        optimizer.load_state_dict(state)
    return optimizer


def _keep_members(model: BatchedModel, optimizer, config: TrainConfig, keep: Tensor, running: Tensor):
    """Keep the members where ``keep`` is True (the original members ``running``) in the
    model and the optimizer state; drop the others."""
    state = optimizer.state_dict()
    for moments in state["state"].values():
        for name, value in moments.items():
            if name != "step":
                moments[name] = value[keep]
    model.set_members([p.detach()[keep] for p in model.parameters()], running)
    return _adamw(model.parameters(), config, state)


@contextmanager
def evaluating(model: nn.Module):
    """Inference mode (``model.eval()``, no gradients) for the block, then the mode before.

    Models whose inference differs from training (Gumbel-gated mixtures average the gate
    over seeded samples) need it; for MLP ensembles it changes nothing.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


#: Evaluation rows per chunk are capped so that one (members, rows, width) activation stays
#: within this many bytes: larger ones fall out of the CPU's caches and are fresh memory on
#: every call (on the CI CPU a (64, 3303, 64) validation forward took 25 % of a hidden-64
#: epoch, chunked to 8 MiB a third of that). 2 MiB, one core's L2 on the Intel Xeon CI CPU,
#: measured 7 % more churn model-epochs/s than 8 MiB (32 members, hidden 64, half the page
#: faults) and the same on california and for mixtures (benchmarks/README.md).
EVAL_CHUNK_BYTES = 2 * 2**20


def _eval_rows(model: nn.Module, batch_size: int) -> int:
    """Rows per evaluation chunk: ``batch_size`` at most, fewer for a model that declares
    ``activation_width`` (floats per row and member in its widest activation)."""
    width = getattr(model, "activation_width", None)
    members = getattr(model, "members", 1)
    if width is None:
        return batch_size
    return max(1, min(batch_size, EVAL_CHUNK_BYTES // (4 * members * width)))


def predict(model: nn.Module, X: Tensor, *, batch_size: int = 4096) -> Tensor:
    """Outputs of every member on a shared input. X: (n, d) -> (E, n, out_features)."""
    rows = _eval_rows(model, batch_size)
    with evaluating(model):
        parts = [model(X[start : start + rows]) for start in range(0, len(X), rows)]
    return torch.cat(parts, dim=1)


def evaluate_losses(model: nn.Module, X: Tensor, y: Tensor, *, task: str, batch_size: int = 4096) -> Tensor:
    """(E,) mean loss of every member on a shared (X, y), computed in chunks of rows."""
    total = None
    rows = _eval_rows(model, batch_size)
    with evaluating(model):
        for start in range(0, len(X), rows):
            xb, yb = X[start : start + rows], y[start : start + rows]
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
    monitor: Callable[[nn.Module], Tensor] | None = None,
    progress: bool = True,
    description: str = "train",
) -> TrainResult:
    """Train every member of ``model`` (a ``BatchedModel``: an MLP ensemble, a batch of mixtures).

    X_train: (n, d); y_train: (n,) float32 for regression, int64 classes otherwise.
    order_seeds: E seeds; member e shuffles the training rows with its own generator.
    monitor: called after every epoch's validation, in inference mode, with the model
        holding the members still training; returns a (members still training, ...) tensor
        per epoch, kept in ``TrainResult.monitored`` (e.g. a mixture's expert usage).
    The data must already be on the model's device; on a GPU, keep it there for the whole
    run (nothing is copied per step).

    A member stops when its validation loss has not improved for ``config.patience``
    consecutive epochs, or at ``config.max_epochs``, or when it diverged: a non-finite
    training loss in the epoch or a non-finite validation loss after it (checked once per
    epoch, so there is no host synchronisation per step). With ``restore_best`` each member is
    reset to its best-validation epoch at the end; by default (as the paper's code) the
    model kept is the one at the epoch training stopped.
    """
    from tqdm.auto import tqdm

    members = _check_batched(model)
    order_seeds = list(order_seeds)
    if len(order_seeds) != members:
        raise ValueError(f"order_seeds needs one seed per member ({members}), got {len(order_seeds)}")
    device = next(model.parameters()).device
    generators = [torch.Generator().manual_seed(int(s)) for s in order_seeds]
    n = len(X_train)

    # Full-size records, indexed by member; `running` maps batched slots to members.
    final_params = [p.detach().clone() for p in model.parameters()]
    best_params = [p.clone() for p in final_params] if config.restore_best else None
    running = torch.arange(members)
    epochs = np.zeros(members, dtype=np.int64)
    best = torch.full((members,), float("inf"), dtype=torch.float64)
    final = torch.full((members,), float("nan"), dtype=torch.float64)
    bad_epochs = torch.zeros(members, dtype=torch.long)
    stop_time = np.zeros(members)
    diverged = np.zeros(members, dtype=bool)
    diverged_reason = [""] * members
    history: list[np.ndarray] = []
    monitored: list[np.ndarray] = []

    def set_aside(slots: Tensor, into: list[Tensor]) -> None:
        for record, parameter in zip(into, model.parameters()):
            record[running[slots]] = parameter.detach()[slots.to(device)]

    optimizer = _adamw(model.parameters(), config)

    def runner_for_running_members() -> EpochRunner:
        data = EpochBatches(X_train, y_train, members=len(running), batch_size=config.batch_size)
        return EpochRunner(model, optimizer, data, task=task, precision=config.precision)

    runner = runner_for_running_members()
    bar = tqdm(total=config.max_epochs, desc=description, disable=not progress, leave=False)
    start_time = time.perf_counter()
    for epoch in range(config.max_epochs):
        order = torch.stack([torch.randperm(n, generator=generators[m]) for m in running.tolist()])
        train_finite = runner.run_epoch(order)

        val = evaluate_losses(model, X_val, y_val, task=task, batch_size=config.eval_batch_size).double().cpu()
        history.append(np.full(members, np.nan))
        history[-1][running.numpy()] = val.numpy()
        if monitor is not None:
            with evaluating(model):
                value = monitor(model).detach().double().cpu().numpy()
            monitored.append(np.full((members, *value.shape[1:]), np.nan))
            monitored[-1][running.numpy()] = value
        improved = val < best[running]
        if best_params is not None and improved.any():
            set_aside(improved.nonzero().squeeze(1), best_params)
        best[running] = torch.where(improved, val, best[running])
        bad_epochs[running] = torch.where(improved, 0, bad_epochs[running] + 1)
        final[running] = val
        epochs[running.numpy()] = epoch + 1
        stop_time[running.numpy()] = time.perf_counter() - start_time
        train_finite = train_finite.cpu()
        diverging = ~train_finite | ~torch.isfinite(val)
        for slot in diverging.nonzero().squeeze(1).tolist():
            member = int(running[slot])
            diverged[member] = True
            when = (
                f"training loss in epoch {epoch + 1}"
                if not train_finite[slot]
                else (f"validation loss after epoch {epoch + 1}")
            )
            diverged_reason[member] = f"non-finite {when}"
        stopping = (bad_epochs[running] >= config.patience) | diverging
        if epoch + 1 == config.max_epochs:
            stopping[:] = True
        if stopping.any():
            set_aside(stopping.nonzero().squeeze(1), final_params)
            keep = ~stopping
            running = running[keep]
            if len(running):
                optimizer = _keep_members(model, optimizer, config, keep.to(device), running)
                runner = runner_for_running_members()
        bar.update(1)
        bar.set_postfix(training=f"{len(running)}/{members}", refresh=False)
        if not len(running):
            break
    bar.close()

    model.set_members(best_params or final_params, torch.arange(members))
    return TrainResult(
        epochs=epochs,
        best_val_loss=best.numpy(),
        final_val_loss=final.numpy(),
        train_time=stop_time,
        diverged=diverged,
        diverged_reason=diverged_reason,
        val_history=np.stack(history),
        monitored=np.stack(monitored) if monitor is not None else None,
        precision=config.precision,
    )
