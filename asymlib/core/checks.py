"""Checks of the public API's arguments, at the entrance: one place, one wording.

Every entry point of ``core`` (the models' constructors and ``forward``, ``trainer.fit``,
``predict`` and ``evaluate_losses``, the scores of ``evaluation``) checks what it is given
with these helpers before doing any work, so that a wrong argument fails at once with a
message that names it and says what was expected and what came::

    x: expected a torch.Tensor, got numpy.ndarray (convert it with torch.as_tensor(x, dtype=torch.float32))
    y_train: expected 160 rows (as many as X_train), got 150

A wrong type (not a tensor, an integer tensor where floats belong, float64 inputs to a
float32 model) raises ``TypeError``; a wrong value (a shape, a size, a device, a label, a
choice outside the allowed ones) raises ``ValueError``.

The checks are cheap: ``check_tensor`` reads a tensor's shape, dtype and device only,
never its values, so it may run on every forward pass (on a GPU, inside a CUDA graph's
recording) without a host-device synchronisation. ``check_labels`` reads the values (one
min and max, one synchronisation): it belongs at the entrance of ``fit`` or of an
evaluation, once, never inside a training loop.
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

#: The tasks a dataset has (``Dataset.task``) and that ``fit`` and the scores take:
#: "regression" trains on MSE with one output; "binary" and "multiclass" on cross-entropy
#: of class indices.
TASKS: tuple[str, ...] = ("regression", "binary", "multiclass")


def _type_name(value) -> str:
    kind = type(value)
    return kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def check_choice(value, choices: Sequence[str], *, name: str) -> str:
    """``value`` if it is one of ``choices``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_task(task) -> str:
    """``task`` if it is one of ``TASKS``."""
    return check_choice(task, TASKS, name="task")


def is_integer(value) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value, *, name: str, minimum: int | None = 1) -> None:
    """An integer (TypeError otherwise) of at least ``minimum`` (ValueError otherwise;
    ``None``: any integer)."""
    if not is_integer(value):
        raise TypeError(f"{name}: expected an integer, got {_type_name(value)} {value!r}")
    if minimum is not None and value < minimum:
        expected = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_number(value, *, name: str, minimum: float | None = None, strict: bool = False) -> None:
    """A finite real number (TypeError if not a number, ValueError if NaN or infinite),
    above ``minimum`` (``strict``) or at least ``minimum``."""
    if not isinstance(value, (numbers.Real, np.floating, np.integer)) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a number, got {_type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name}: expected a number {'>' if strict else '>='} {minimum}, got {value!r}")


def check_seeds(seeds, *, name: str, count: int) -> list:
    """``seeds`` as a list of ``count`` integers."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"{name}: expected a sequence of {count} integer seeds, got {_type_name(seeds)} {seeds!r}")
    seeds = list(seeds)
    if len(seeds) != count:
        raise ValueError(f"{name}: expected {count} seeds (one per member), got {len(seeds)}")
    for i, seed in enumerate(seeds):
        check_int(seed, name=f"{name}[{i}]", minimum=None)
    return seeds


def check_n_fix(n_fix, *, fan_ins: Sequence[int], frozen: bool) -> tuple:
    """``n_fix`` as a tuple of one positive integer per layer (``fan_ins``: each layer's
    in_features); where the layers have frozen entries (``frozen``), at most that layer's
    in_features."""
    if isinstance(n_fix, (str, bytes)) or not hasattr(n_fix, "__iter__"):
        raise TypeError(
            f"n_fix: expected a sequence of {len(fan_ins)} integers (one per layer), got {_type_name(n_fix)} {n_fix!r}"
        )
    n_fix = tuple(n_fix)
    if len(n_fix) != len(fan_ins):
        raise ValueError(f"n_fix: expected {len(fan_ins)} entries (one per layer), got {n_fix}")
    for i, (value, fan_in) in enumerate(zip(n_fix, fan_ins)):
        check_int(value, name=f"n_fix[{i}]")
        if frozen and value > fan_in:
            raise ValueError(f"n_fix[{i}]: expected at most {fan_in} (layer {i}'s in_features), got {value}")
    return n_fix


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def check_tensor(
    x,
    *,
    name: str,
    dims: int | Sequence[int],
    dtype: torch.dtype | str | None = None,
    device: torch.device | None = None,
    columns: int | None = None,
    rows: int | None = None,
    rows_of: str | None = None,
    nonempty: bool = False,
    device_of: str = "the model's device",
) -> None:
    """Shape, dtype and device of a tensor argument (never its values: no synchronisation).

    dims: the allowed numbers of dimensions. dtype: the exact dtype, or "floating" /
    "integer" for any of that kind. device: the device it must be on (the model's).
    columns: the size of the last dim (the model's in_features). rows: the size of the
    first dim, ``rows_of`` naming where that number comes from. nonempty: at least one
    row. device_of: what ``device`` is, for the message.
    A numpy array is refused (TypeError) with the conversion to use.
    """
    if not isinstance(x, Tensor):
        hint = ""
        if isinstance(x, np.ndarray):
            target = ", dtype=torch.float32" if dtype in (torch.float32, "floating") else ""
            hint = f" (convert it with torch.as_tensor({name}{target}))"
        raise TypeError(f"{name}: expected a torch.Tensor, got {_type_name(x)}{hint}")
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if x.dim() not in dims:
        allowed = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name}: expected a {allowed} tensor, got shape {tuple(x.shape)}")
    if dtype == "floating":
        if not x.is_floating_point():
            raise TypeError(f"{name}: expected a floating-point tensor, got dtype {_dtype_name(x.dtype)}")
    elif dtype == "integer":
        if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name}: expected an integer tensor (class indices), got dtype {_dtype_name(x.dtype)}")
    elif dtype is not None and x.dtype != dtype:
        hint = f" (convert it with {name}.to(torch.{_dtype_name(dtype)}))"
        raise TypeError(f"{name}: expected dtype {_dtype_name(dtype)}, got {_dtype_name(x.dtype)}{hint}")
    if columns is not None and x.shape[-1] != columns:
        raise ValueError(f"{name}: expected {columns} columns (the model's in_features), got shape {tuple(x.shape)}")
    if rows is not None and x.shape[0] != rows:
        source = f" (as many as {rows_of})" if rows_of else ""
        raise ValueError(f"{name}: expected {rows} rows{source}, got {x.shape[0]}")
    if nonempty and x.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {tuple(x.shape)}")
    check_device(x, device, name=name, device_of=device_of)


def check_device(x: Tensor, device: torch.device | None, *, name: str, device_of: str = "the model's device") -> None:
    """``x`` on ``device`` (the model's): a ValueError naming both otherwise."""
    if device is not None and x.device != device:
        raise ValueError(
            f"{name}: expected a tensor on {device_of} ({device}), got one on {x.device} "
            f"(move it with {name}.to({str(device)!r}))"
        )


def check_labels(y: Tensor, *, name: str, n_classes: int) -> None:
    """1-D class indices in ``[0, n_classes)``; the ValueError names the first bad one.

    Reads the values (one synchronisation on a GPU): call it once at an entrance. Tensors
    on the meta device have no values and pass.
    """
    if y.device.type == "meta" or y.numel() == 0:
        return
    low, high = torch.stack(torch.aminmax(y)).tolist()
    if low < 0 or high >= n_classes:
        row = int(((y < 0) | (y >= n_classes)).nonzero()[0, 0])
        raise ValueError(
            f"{name}: expected class indices in [0, {n_classes}) (the model's out_features), "
            f"got {int(y[row])} at row {row}"
        )


def check_input(x, weight: Tensor) -> None:
    """The input of a batched model's ``forward``, checked against ``weight``, the model's
    first stacked weight (members, ..., in_features, out): a tensor of its dtype (any
    floating dtype under autocast) on its device, (batch, in_features) shared by every
    member or (members, batch, in_features). Shape, dtype and device only: no values read."""
    if not isinstance(x, Tensor) or x.dtype != weight.dtype and not (x.is_floating_point() and _autocast(x)):
        check_tensor(x, name="x", dims=(2, 3), dtype=weight.dtype)
    members, in_features = weight.shape[0], weight.shape[-2]
    if x.dim() not in (2, 3) or x.shape[-1] != in_features or x.dim() == 3 and x.shape[0] != members:
        raise ValueError(
            f"x: expected shape (batch, {in_features}) or ({members}, batch, {in_features}) "
            f"(members, batch, in_features), got {tuple(x.shape)}"
        )
    if x.device != weight.device:
        check_device(x, weight.device, name="x")


def _autocast(x: Tensor) -> bool:
    """Whether autocast is on for ``x``'s device (it casts the inputs itself)."""
    try:
        return torch.is_autocast_enabled(x.device.type)
    except (TypeError, RuntimeError):  # torch < 2.4: no device argument; "meta": none
        return torch.is_autocast_enabled()


def model_device_dtype(model) -> tuple[torch.device | None, torch.dtype | None]:
    """The device and dtype of a model's parameters (None, None for a model without any)."""
    parameter = next(iter(model.parameters()), None)
    return (None, None) if parameter is None else (parameter.device, parameter.dtype)


def check_targets(y, *, name: str, task: str, rows: int, rows_of: str, device, dtype, n_outputs: int | None) -> None:
    """Targets of ``task``: 1-D, ``rows`` long, on ``device``; regression floats of the
    model's ``dtype``; classification int64 class indices in ``[0, n_outputs)`` (a value
    check: call once at an entrance)."""
    regression = task == "regression"
    check_tensor(
        y, name=name, dims=1, dtype=dtype if regression else torch.int64, device=device, rows=rows, rows_of=rows_of
    )
    if not regression and n_outputs is not None:
        check_labels(y, name=name, n_classes=n_outputs)


def check_features(model, X, *, name: str) -> None:
    """X: a 2-D, non-empty float tensor of the model's dtype with its in_features
    columns, on its device."""
    device, dtype = model_device_dtype(model)
    check_tensor(
        X,
        name=name,
        dims=2,
        dtype=dtype or "floating",
        device=device,
        columns=getattr(model, "in_features", None),
        nonempty=True,
    )


def check_data(model, X, y, *, task: str, X_name: str, y_name: str) -> None:
    """X as ``check_features``; y the targets of ``task`` for its rows (``check_targets``:
    class indices in range, one value check)."""
    check_features(model, X, name=X_name)
    device, dtype = model_device_dtype(model)
    n_outputs = getattr(model, "out_features", None)
    check_targets(
        y, name=y_name, task=task, rows=len(X), rows_of=X_name, device=device, dtype=dtype, n_outputs=n_outputs
    )


def check_outputs_for(model, task: str) -> None:
    """A regression model has one output per member."""
    n_outputs = getattr(model, "out_features", None)
    if task == "regression" and n_outputs is not None and n_outputs != 1:
        raise ValueError(f"task: 'regression' expects a model with out_features 1, got out_features {n_outputs}")
