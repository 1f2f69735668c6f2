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
from .checks import check_data, check_features, check_int, check_number, check_outputs_for, check_seeds, check_task
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
        check_number(self.lr, name="TrainConfig.lr", minimum=0.0, strict=True)
        check_number(self.weight_decay, name="TrainConfig.weight_decay", minimum=0.0)


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


def _adamw(params: Sequence[nn.Parameter], config: TrainConfig, state: dict | None = None, *, decay: bool = True):
    """AdamW at the config's settings; ``decay=False``: without its weight decay (an anchored
    model decays towards its anchors itself, ``steps.train_step``)."""
    params = list(params)
    device = params[0].device.type
    # The fused kernel is one pass over the parameters instead of a dozen (CPU and CUDA);
    # capturable keeps its step count on the GPU, so that a CUDA graph can replay it.
    fused = device in ("cpu", "cuda")
    optimizer = torch.optim.AdamW(
        params,
        lr=config.lr,
        weight_decay=config.weight_decay if decay else 0.0,
        fused=fused,
        capturable=device == "cuda",
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
    return _adamw(model.parameters(), config, state, decay=not _anchored(model))


def _anchored(model: nn.Module) -> bool:
    """Whether the model decays towards anchors of its own (syre) instead of towards 0."""
    return bool(getattr(model, "anchored", False))


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
    """Outputs of every member on a shared input. X: (n, d) -> (E, n, out_features).

    X: a non-empty float32 tensor (the model's dtype) with the model's in_features columns,
    on its device; anything else is refused (TypeError for a type, ValueError for a value).
    """
    check_features(model, X, name="X")
    check_int(batch_size, name="batch_size")
    rows = _eval_rows(model, batch_size)
    with evaluating(model):
        parts = [model(X[start : start + rows]) for start in range(0, len(X), rows)]
    return torch.cat(parts, dim=1)


def evaluate_losses(model: nn.Module, X: Tensor, y: Tensor, *, task: str, batch_size: int = 4096) -> Tensor:
    """(E,) mean loss of every member on a shared (X, y), computed in chunks of rows.

    X as ``predict``'s; y: (n,) float32 targets for regression, int64 class indices in
    [0, out_features) otherwise (checked once here: one host read on a GPU).
    """
    check_task(task)
    check_outputs_for(model, task)
    check_data(model, X, y, task=task, X_name="X", y_name="y")
    check_int(batch_size, name="batch_size")
    return _evaluate_losses(model, X, y, task=task, batch_size=batch_size)


def _evaluate_losses(model: nn.Module, X: Tensor, y: Tensor, *, task: str, batch_size: int) -> Tensor:
    """``evaluate_losses`` without the checks (``fit`` made them at its entrance)."""
    total = None
    rows = _eval_rows(model, batch_size)
    with evaluating(model):
        for start in range(0, len(X), rows):
            xb, yb = X[start : start + rows], y[start : start + rows]
            part = member_losses(model(xb), yb, task=task) * len(xb)
            total = part if total is None else total + part
    return total / len(X)


def _check_fit_inputs(model, X_train, y_train, X_val, y_val, task, order_seeds, config, monitor) -> list[int]:
    """``fit``'s argument checks (its docstring says which); returns the order seeds as ints."""
    check_task(task)
    check_outputs_for(model, task)
    check_data(model, X_train, y_train, task=task, X_name="X_train", y_name="y_train")
    check_data(model, X_val, y_val, task=task, X_name="X_val", y_name="y_val")
    if X_val.shape[1] != X_train.shape[1]:
        raise ValueError(f"X_val: expected {X_train.shape[1]} columns (as X_train), got shape {tuple(X_val.shape)}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config: expected a TrainConfig, got {type(config).__name__}")
    if monitor is not None and not callable(monitor):
        raise TypeError(f"monitor: expected a callable or None, got {type(monitor).__name__}")
    return check_seeds(order_seeds, name="order_seeds", count=model.members)


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

    X_train: (n, d); y_train: (n,) float32 for regression, int64 classes otherwise;
    X_val, y_val likewise. task: "regression", "binary" or "multiclass" (``Dataset.task``).
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

    Every argument is checked here, once, before any step (``core/checks.py``): the data
    are non-empty tensors on the model's device, X 2-D of the model's dtype (float32) with
    its in_features columns, y as long as X with the task's dtype and, for classification,
    labels in [0, out_features) (the only value check, one host read on a GPU); a
    regression model has one output. A wrong type raises TypeError, a wrong value
    ValueError, naming the argument. Nothing is checked inside the epochs.
    """
    from tqdm.auto import tqdm

    members = _check_batched(model)
    order_seeds = _check_fit_inputs(model, X_train, y_train, X_val, y_val, task, order_seeds, config, monitor)
    generators = [torch.Generator().manual_seed(int(s)) for s in order_seeds]
    n = len(X_train)
    book = _Bookkeeping.start(model, config)
    anchored = _anchored(model)
    optimizer = _adamw(model.parameters(), config, decay=not anchored)
    anchor_decay = config.lr * config.weight_decay if anchored else 0.0

    def runner_for_running_members() -> EpochRunner:
        data = EpochBatches(X_train, y_train, members=len(book.running), batch_size=config.batch_size)
        return EpochRunner(model, optimizer, data, task=task, precision=config.precision, anchor_decay=anchor_decay)

    runner = runner_for_running_members()
    bar = tqdm(total=config.max_epochs, desc=description, disable=not progress, leave=False)
    start_time = time.perf_counter()
    for epoch in range(config.max_epochs):
        order = torch.stack([torch.randperm(n, generator=generators[m]) for m in book.running.tolist()])
        train_finite = runner.run_epoch(order)
        val = _evaluate_losses(model, X_val, y_val, task=task, batch_size=config.eval_batch_size).double().cpu()
        watched = None
        if monitor is not None:
            with evaluating(model):
                watched = monitor(model).detach().double().cpu().numpy()
        stopping = book.record_epoch(model, epoch, val, train_finite.cpu(), watched, time.perf_counter() - start_time)
        if epoch + 1 == config.max_epochs:
            stopping[:] = True
        if stopping.any():
            keep = book.stop(model, stopping)
            if len(book.running):
                optimizer = _keep_members(model, optimizer, config, keep.to(book.device), book.running)
                runner = runner_for_running_members()
        bar.update(1)
        bar.set_postfix(training=f"{len(book.running)}/{members}", refresh=False)
        if not len(book.running):
            break
    bar.close()
    return book.finish(model, precision=config.precision, monitored=monitor is not None)


@dataclass
class _Bookkeeping:
    """What ``fit`` keeps per member while the batch shrinks. Records are full size, indexed
    by member (E); ``running`` maps the model's batched slots to the members still training.

    final_params / best_params: each parameter's (E, ...) copy, set aside when a member stops
        (and, with ``restore_best``, whenever it improves).
    best, final: (E,) float64 best and latest validation loss; bad_epochs: (E,) epochs since
        the last improvement; epochs, stop_time: (E,) epochs run and seconds until the stop.
    history, monitored: one (E, ...) array per epoch, NaN for members that had stopped.
    """

    patience: int
    device: torch.device
    final_params: list[Tensor]
    best_params: list[Tensor] | None
    running: Tensor
    epochs: np.ndarray
    best: Tensor
    final: Tensor
    bad_epochs: Tensor
    stop_time: np.ndarray
    diverged: np.ndarray
    diverged_reason: list[str]
    history: list[np.ndarray] = field(default_factory=list)
    monitored: list[np.ndarray] = field(default_factory=list)

    @classmethod
    def start(cls, model: nn.Module, config: TrainConfig) -> "_Bookkeeping":
        members = model.members
        final_params = [p.detach().clone() for p in model.parameters()]
        return cls(
            patience=config.patience,
            device=next(model.parameters()).device,
            final_params=final_params,
            best_params=[p.clone() for p in final_params] if config.restore_best else None,
            running=torch.arange(members),
            epochs=np.zeros(members, dtype=np.int64),
            best=torch.full((members,), float("inf"), dtype=torch.float64),
            final=torch.full((members,), float("nan"), dtype=torch.float64),
            bad_epochs=torch.zeros(members, dtype=torch.long),
            stop_time=np.zeros(members),
            diverged=np.zeros(members, dtype=bool),
            diverged_reason=[""] * members,
        )

    def _set_aside(self, model: nn.Module, slots: Tensor, into: list[Tensor]) -> None:
        for record, parameter in zip(into, model.parameters()):
            record[self.running[slots]] = parameter.detach()[slots.to(self.device)]

    def _rows(self, value: np.ndarray) -> np.ndarray:
        """A full-size (E, ...) copy of ``value`` (running members, ...), NaN elsewhere."""
        rows = np.full((len(self.epochs), *value.shape[1:]), np.nan)
        rows[self.running.numpy()] = value
        return rows

    def record_epoch(
        self, model: nn.Module, epoch: int, val: Tensor, train_finite: Tensor, watched, elapsed: float
    ) -> Tensor:
        """Record one epoch of the running members; returns which of them stop (by patience
        or divergence). val, train_finite: (running,) on the host; watched: the monitor's
        (running, ...) array or None."""
        running = self.running
        self.history.append(self._rows(val.numpy()))
        if watched is not None:
            self.monitored.append(self._rows(watched))
        improved = val < self.best[running]
        if self.best_params is not None and improved.any():
            self._set_aside(model, improved.nonzero().squeeze(1), self.best_params)
        self.best[running] = torch.where(improved, val, self.best[running])
        self.bad_epochs[running] = torch.where(improved, 0, self.bad_epochs[running] + 1)
        self.final[running] = val
        self.epochs[running.numpy()] = epoch + 1
        self.stop_time[running.numpy()] = elapsed
        diverging = ~train_finite | ~torch.isfinite(val)
        for slot in diverging.nonzero().squeeze(1).tolist():
            member = int(running[slot])
            self.diverged[member] = True
            when = (
                f"training loss in epoch {epoch + 1}"
                if not train_finite[slot]
                else f"validation loss after epoch {epoch + 1}"
            )
            self.diverged_reason[member] = f"non-finite {when}"
        return (self.bad_epochs[running] >= self.patience) | diverging

    def stop(self, model: nn.Module, stopping: Tensor) -> Tensor:
        """Set the stopping members' parameters aside and drop them from ``running``;
        returns the (running,) mask of the slots that stay."""
        self._set_aside(model, stopping.nonzero().squeeze(1), self.final_params)
        keep = ~stopping
        self.running = self.running[keep]
        return keep

    def finish(self, model: nn.Module, *, precision: str, monitored: bool) -> TrainResult:
        """Put every member's kept parameters back into ``model`` and return the records."""
        model.set_members(self.best_params or self.final_params, torch.arange(len(self.epochs)))
        return TrainResult(
            epochs=self.epochs,
            best_val_loss=self.best.numpy(),
            final_val_loss=self.final.numpy(),
            train_time=self.stop_time,
            diverged=self.diverged,
            diverged_reason=self.diverged_reason,
            val_history=np.stack(self.history),
            monitored=np.stack(self.monitored) if monitored else None,
            precision=precision,
        )
