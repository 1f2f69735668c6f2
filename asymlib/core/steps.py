"""One epoch of optimisation steps of a batched model, on buffers that stay put all epoch.

``fit`` hands an ``EpochRunner`` each epoch's row order (one permutation per member) and
gets back, per member, whether every training loss of the epoch was finite; nothing is read
back to the host in between. The runner

- gathers every member's rows for many steps at once into one pre-permuted block
  (``EpochBatches``: member m's rows of the block lie contiguous), so a step reads a view
  instead of gathering its own batch;
- takes a step with the model's hand-written forward and backward pass when it has one
  (``hand_written_step`` and ``loss_and_gradients``: ``MLPEnsemble`` of GELU networks and
  ``MixtureEnsemble``) and with autograd otherwise (SMLPs, and any model under bfloat16
  autocast), then AdamW (for syre: its decay towards the anchors, then AdamW without decay)
  and the W-Asymmetric rewrite;
- on a CUDA device, records the whole epoch (block gathers and steps) in one CUDA graph and
  replays it in later epochs, so that an epoch costs one launch instead of thousands.
  The graph is recorded in the second epoch of a set of members (the first runs eagerly on
  the capture stream and is the warm-up the capture needs) and recorded again whenever
  members stop and leave the batch. Only ``_CudaGraphEpoch`` is CUDA-specific; on a CPU the
  same ``_run_steps`` runs eagerly, which is what the tests exercise.

``precision`` (``TrainConfig.precision``): "float32" (the default, and the paper's),
"tf32" (CUDA only: TensorFloat-32 matrix multiplies) or "bf16" (the training step's
forward pass under ``torch.autocast`` to bfloat16, on CPU or CUDA; parameters, gradients,
AdamW and every evaluation stay float32).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import Tensor, nn

from .backprop import member_losses

PRECISIONS: tuple[str, ...] = ("float32", "tf32", "bf16")

#: The most bytes of pre-permuted rows kept at once (members x rows x features).
BLOCK_BYTES = 64 * 2**20


class EpochBatches:
    """Every member's rows of an epoch, gathered block by block into one static buffer.

    X: (n, d) and y: (n,) on the device; ``members`` rows orders of length n are loaded
    per epoch (``load_order``). A block holds ``rows_per_block`` rows of every member, a
    multiple of the batch size chosen so that the block fits ``block_bytes``; for a small
    dataset (california: 13,209 x 8) one block is the whole epoch.
    """

    def __init__(self, X: Tensor, y: Tensor, *, members: int, batch_size: int, block_bytes: int = BLOCK_BYTES):
        self.X, self.y, self.members, self.batch_size = X, y, members, batch_size
        n, row_bytes = len(X), X[0].numel() * X.element_size() + y.element_size()
        batches_per_block = max(1, block_bytes // (members * batch_size * row_bytes))
        self.rows_per_block = min(n, batches_per_block * batch_size)
        self.order = torch.empty(members, n, dtype=torch.long, device=X.device)
        # flat storage, so that a shorter last block is a contiguous (members, rows, ...) view too
        self._X_block = torch.empty(members * self.rows_per_block * X[0].numel(), dtype=X.dtype, device=X.device)
        self._y_block = torch.empty(members * self.rows_per_block, dtype=y.dtype, device=y.device)

    def load_order(self, order: Tensor) -> None:
        """order: (members, n) row indices, one permutation per member (any device)."""
        self.order.copy_(order)

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """The epoch's batches in order: x (members, batch, d) and y (members, batch), views
        into the block buffer, which is refilled (one gather) when a block is used up: a
        batch is valid until the next one is asked for."""
        n = len(self.X)
        for start in range(0, n, self.rows_per_block):
            rows = min(self.rows_per_block, n - start)
            index = self.order[:, start : start + rows].reshape(-1)
            X_block = self._X_block[: self.members * rows * self.X[0].numel()].view(
                self.members * rows, *self.X.shape[1:]
            )
            y_block = self._y_block[: self.members * rows]
            torch.index_select(self.X, 0, index, out=X_block)
            torch.index_select(self.y, 0, index, out=y_block)
            X_block = X_block.view(self.members, rows, *self.X.shape[1:])
            y_block = y_block.view(self.members, rows)
            for begin in range(0, rows, self.batch_size):
                yield X_block[:, begin : begin + self.batch_size], y_block[:, begin : begin + self.batch_size]


@contextmanager
def precision_context(precision: str, device: torch.device, *, for_graph: bool = False):
    """The matrix-multiply precision of the training steps (see the module's docstring)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "tf32":
        if device.type != "cuda":
            raise ValueError(f"precision 'tf32' needs a CUDA device; the model is on {device.type}")
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
        return
    if precision == "bf16":
        # A graph must not keep autocast's cached casts of the weights from its recording.
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=not for_graph):
            yield
        return
    yield


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    task: str,
    hand_written: bool,
    anchor_decay: float = 0.0,
) -> Tensor:
    """One AdamW step of every member on its batch; returns the (E,) batch losses.

    x: (E, batch, d), y: (E, batch). ``hand_written`` uses the model's
    ``loss_and_gradients`` (it overwrites the gradients); otherwise autograd.
    anchor_decay: for an anchored model (syre), the rate of its decay towards its anchors,
    applied where AdamW applies its own (after the gradients, before the update), the
    optimizer's weight decay being 0.
    """
    if hand_written:
        losses = model.loss_and_gradients(x, y, task=task)
    else:
        losses = member_losses(model(x), y, task=task)
        # e.g. a mixture's load-balancing loss, which trains but is not the task's loss
        auxiliary = model.auxiliary_losses() if hasattr(model, "auxiliary_losses") else None
        objective = losses if auxiliary is None else losses + auxiliary
        optimizer.zero_grad(set_to_none=True)
        # Summing keeps each member's gradient equal to that of its own mean loss.
        objective.sum().backward()
        losses = losses.detach()
    if anchor_decay:
        model.decay_towards_anchors(anchor_decay)
    optimizer.step()
    model.apply_frozen()  # undo weight decay on the W-Asymmetric entries
    return losses


class EpochRunner:
    """Runs the epochs of one set of members (rebuilt by ``fit`` whenever members stop).

    The model's parameters, the optimizer built on them and the ``EpochBatches`` must not
    change while the runner is in use: a CUDA graph replays on those very tensors.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: EpochBatches,
        *,
        task: str,
        precision: str = "float32",
        use_graph: bool | None = None,
        anchor_decay: float = 0.0,
    ):
        self.model, self.optimizer, self.data, self.task, self.precision = model, optimizer, data, task, precision
        self.anchor_decay = anchor_decay
        self.device = data.X.device
        self.hand_written = getattr(model, "hand_written_step", False) and precision != "bf16"
        self.finite = torch.ones(data.members, dtype=torch.bool, device=self.device)
        if use_graph is None:
            use_graph = self.device.type == "cuda" and getattr(model, "steps_capturable", True)
        self.graph = _CudaGraphEpoch() if use_graph else None

    def _run_steps(self) -> None:
        with precision_context(self.precision, self.device, for_graph=self.graph is not None):
            for x, y in self.data.batches():
                losses = train_step(
                    self.model,
                    self.optimizer,
                    x,
                    y,
                    task=self.task,
                    hand_written=self.hand_written,
                    anchor_decay=self.anchor_decay,
                )
                self.finite &= torch.isfinite(losses)

    def run_epoch(self, order: Tensor) -> Tensor:
        """Train one epoch in the row order ``order`` (members, n). Returns (members,) bool
        on the device: True where every training loss of the epoch was finite."""
        self.data.load_order(order)
        self.finite.fill_(True)
        self.model.train()
        if self.graph is None:
            self._run_steps()
        else:
            self.graph.run(self._run_steps)
        return self.finite


class _CudaGraphEpoch:
    """CUDA only: run an epoch's work eagerly on a side stream once (the warm-up), then
    record it as one CUDA graph and replay that graph in every later epoch."""

    def __init__(self) -> None:
        self.stream = torch.cuda.Stream()
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = False

    def run(self, work: Callable[[], None]) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        self.stream.wait_stream(torch.cuda.current_stream())
        if not self.warm:
            with torch.cuda.stream(self.stream):
                work()
            torch.cuda.current_stream().wait_stream(self.stream)
            self.warm = True
            return
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            work()
        self.graph = graph
        graph.replay()
