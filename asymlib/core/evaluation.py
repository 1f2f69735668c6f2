"""Test metrics of members, deep ensembles and interpolated (weight-averaged) models, with
the uncertainty scores (``uncertainty.py``) and the diversity (``diversity.py``) beside them."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .checks import (
    check_data,
    check_int,
    check_outputs_for,
    check_task,
    check_tensor,
    is_integer,
)
from .diversity import ambiguity, pairwise_disagreement
from .trainer import predict
from .uncertainty import ensemble_uncertainty, member_uncertainty


def metric_name(task: str) -> str:
    """RMSE for regression, accuracy for classification (docs/protocol.md)."""
    check_task(task)
    return "rmse" if task == "regression" else "accuracy"


def higher_is_better(task: str) -> bool:
    check_task(task)
    return task != "regression"


def score(outputs: Tensor, y: Tensor, *, task: str) -> Tensor:
    """The test metric of each leading slice of ``outputs``.

    outputs: (..., n, out_features), floats; y: (n,) on the same device, floats for
    regression (whose out_features is 1), integer class indices otherwise. Returns (...):
    RMSE of the single regression output, or accuracy of the argmax over classes.
    Shapes, dtypes and devices are checked, not the labels' values.
    """
    _check_scoring(outputs, y, task=task)
    if task == "regression":
        return (outputs.squeeze(-1) - y).pow(2).mean(dim=-1).sqrt()
    return (outputs.argmax(dim=-1) == y).double().mean(dim=-1)


def ensemble_score(outputs: Tensor, y: Tensor, *, task: str, members: Sequence[int]) -> float:
    """Metric of the deep ensemble of the given members.

    outputs: (E, n, out_features), members' outputs (regression values or logits); the
    ensemble averages those of ``members`` (mean logits, then argmax, for classification).
    members: a non-empty sequence of indices in [0, E).
    """
    _check_scoring(outputs, y, task=task, dims=3)
    _check_members(members, count=outputs.shape[0])
    return float(score(outputs[list(members)].mean(dim=0), y, task=task))


def mean_pairwise_distance(flat: Tensor) -> float:
    """Mean L2 distance over all pairs of rows. flat: (k, n_parameters), k >= 2."""
    check_tensor(flat, name="flat", dims=2, dtype="floating")
    if flat.shape[0] < 2:
        raise ValueError(f"flat: expected at least 2 rows (pairs of models), got shape {tuple(flat.shape)}")
    return float(torch.pdist(flat.double()).mean())


def relative_improvement(ensemble: np.ndarray | float, single: np.ndarray | float, *, task: str):
    """Figure 1's gain of an ensemble over the mean single model, in percent.

    Accuracy: (ens - single) / single; RMSE: (single - ens) / single; times 100.
    """
    check_task(task)
    gain = np.asarray(ensemble) - np.asarray(single)
    if not higher_is_better(task):
        gain = -gain
    return 100.0 * gain / np.asarray(single)


def _check_scoring(outputs, y, *, task: str, dims: int | tuple[int, ...] = (2, 3, 4)) -> None:
    """The arguments of ``score``: outputs (..., n, out_features) floats, y (n,) of the
    task's kind on the same device."""
    check_task(task)
    check_tensor(outputs, name="outputs", dims=dims, dtype="floating")
    regression = task == "regression"
    if regression and outputs.shape[-1] != 1:
        raise ValueError(
            f"outputs: expected one regression output, shape (..., n, 1), got shape {tuple(outputs.shape)}"
        )
    check_tensor(
        y,
        name="y",
        dims=1,
        dtype="floating" if regression else "integer",
        rows=outputs.shape[-2],
        rows_of="n in outputs' shape (..., n, out_features)",
        device=outputs.device,
        device_of="the device of outputs",
    )


def _check_members(members, *, count: int) -> None:
    """``members``: a non-empty sequence of indices of the ``count`` members."""
    if isinstance(members, (str, bytes)) or not hasattr(members, "__len__"):
        raise TypeError(f"members: expected a sequence of member indices, got {type(members).__name__}")
    if not len(members):
        raise ValueError("members: expected at least one member index, got none")
    for i, member in enumerate(members):
        if not is_integer(member):
            raise TypeError(f"members[{i}]: expected an integer index, got {member!r}")
        if not 0 <= member < count:
            raise ValueError(f"members[{i}]: expected an index in [0, {count}) (the members), got {member}")


#: The uncertainty scores of each task: classification nll, brier, ece; regression nll.
UNCERTAINTY_SCORES = ("nll", "brier", "ece")


def _check_ensemble_inputs(model, X, y, *, task, sizes, exclude, batch_size, variances) -> tuple[list[int], np.ndarray]:
    """``evaluate_ensemble``'s argument checks; returns the sizes as ints and the (E,) bool
    exclusion flags."""
    if not all(hasattr(model, name) for name in ("members", "interpolate", "flat_parameters")):
        raise TypeError(
            f"model: expected an ensemble with members, interpolate and flat_parameters (an MLPEnsemble), "
            f"got {type(model).__name__}"
        )
    check_task(task)
    check_outputs_for(model, task)
    check_data(model, X, y, task=task, X_name="X", y_name="y")
    check_int(batch_size, name="batch_size")
    if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
        raise TypeError(f"sizes: expected a sequence of ensemble sizes, got {type(sizes).__name__}")
    sizes = list(sizes)
    if not sizes:
        raise ValueError(f"sizes: expected at least one ensemble size in 1..{model.members}, got none")
    for i, k in enumerate(sizes):
        check_int(k, name=f"sizes[{i}]", minimum=None)
    sizes = [int(k) for k in sizes]
    if max(sizes) > model.members or min(sizes) < 1:
        raise ValueError(f"ensemble sizes must lie in 1..{model.members} (the members trained), got {sizes}")
    excluded = np.zeros(model.members, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    if excluded.shape != (model.members,):
        raise ValueError(f"exclude needs one flag per member ({model.members}), got shape {excluded.shape}")
    if variances is not None:
        check_tensor(
            variances, name="variances", dims=1, dtype="floating", rows=model.members, rows_of="the model's members"
        )
    return sizes, excluded


def evaluate_ensemble(
    model,
    X: Tensor,
    y: Tensor,
    *,
    task: str,
    sizes: Sequence[int],
    exclude: Sequence[bool] | np.ndarray | None = None,
    batch_size: int = 4096,
    variances: Tensor | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score every member, and the ensemble and interpolated model of the first k members.

    model: an ensemble with ``members`` >= max(sizes), ``interpolate`` and ``flat_parameters``.
    X: (n, d) float32 on the model's device; y: (n,) there too, float32 for regression,
    int64 class indices in [0, out_features) otherwise (checked once, like ``fit``'s).
    exclude: (E,) bool, members to leave out (diverged ones): their own scores are NaN, and
        the ensemble of the first k members is that of the others among them.
    variances: (E,) each member's residual variance on the validation set; regression
        needs it for the Gaussian NLL (``uncertainty.py``), classification ignores it.
    Returns two tables.
      members, one row per member: metric (accuracy or RMSE), nll, brier, ece (brier and
      ece NaN for regression).
      ensembles, one row per ensemble size: ensemble_size, ensemble_metric,
      interpolated_metric, mean_pairwise_l2, the ensemble's ensemble_nll, ensemble_brier,
      ensemble_ece, the members' diversity (disagreement for classification, ambiguity for
      regression; NaN for the other task and with fewer than 2 members), all NaN where no
      member is left, and excluded_members (how many of the first k were left out).
    """
    sizes, excluded = _check_ensemble_inputs(
        model, X, y, task=task, sizes=sizes, exclude=exclude, batch_size=batch_size, variances=variances
    )
    regression = task == "regression"
    outputs = predict(model, X, batch_size=batch_size)
    members = pd.DataFrame({"metric": score(outputs, y, task=task).cpu().numpy()})
    for name in UNCERTAINTY_SCORES:
        members[name] = np.nan
    healthy = np.flatnonzero(~excluded)
    if len(healthy):
        scores = member_uncertainty(
            outputs[healthy], y, task=task, variances=None if variances is None else variances[healthy]
        )
        for name, values in scores.items():
            members.loc[healthy, name] = values
    members.loc[excluded, "metric"] = np.nan
    flat = model.flat_parameters()
    rows = []
    for k in sizes:
        kept = np.flatnonzero(~excluded[:k]).tolist()
        row = {
            "ensemble_size": k,
            "ensemble_metric": np.nan,
            "interpolated_metric": np.nan,
            "mean_pairwise_l2": np.nan,
            **{f"ensemble_{name}": np.nan for name in UNCERTAINTY_SCORES},
            "disagreement": np.nan,
            "ambiguity": np.nan,
        }
        if kept:
            interpolated = predict(model.interpolate(kept), X, batch_size=batch_size)
            row.update(
                ensemble_metric=ensemble_score(outputs, y, task=task, members=kept),
                interpolated_metric=float(score(interpolated[0], y, task=task)),
                mean_pairwise_l2=mean_pairwise_distance(flat[kept]) if len(kept) > 1 else 0.0,
            )
            scores = ensemble_uncertainty(outputs, y, task=task, members=kept, variances=variances)
            row.update({f"ensemble_{name}": value for name, value in scores.items()})
            if len(kept) > 1:
                if regression:
                    row["ambiguity"] = ambiguity(outputs[kept])
                else:
                    row["disagreement"] = pairwise_disagreement(outputs[kept])
        rows.append({**row, "excluded_members": k - len(kept)})
    return members, pd.DataFrame(rows)
