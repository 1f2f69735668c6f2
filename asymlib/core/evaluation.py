"""Test metrics of members, deep ensembles and interpolated (weight-averaged) models."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .trainer import predict


def metric_name(task: str) -> str:
    """RMSE for regression, accuracy for classification (docs/protocol.md)."""
    return "rmse" if task == "regression" else "accuracy"


def higher_is_better(task: str) -> bool:
    return task != "regression"


def score(outputs: Tensor, y: Tensor, *, task: str) -> Tensor:
    """The test metric of each leading slice of ``outputs``.

    outputs: (..., n, out_features); y: (n,). Returns (...): RMSE of the single regression
    output, or accuracy of the argmax over classes.
    """
    if task == "regression":
        return (outputs.squeeze(-1) - y).pow(2).mean(dim=-1).sqrt()
    return (outputs.argmax(dim=-1) == y).double().mean(dim=-1)


def ensemble_score(outputs: Tensor, y: Tensor, *, task: str, members: Sequence[int]) -> float:
    """Metric of the deep ensemble of the given members.

    outputs: (E, n, out_features), members' outputs (regression values or logits); the
    ensemble averages those of ``members`` (mean logits, then argmax, for classification).
    """
    return float(score(outputs[list(members)].mean(dim=0), y, task=task))


def mean_pairwise_distance(flat: Tensor) -> float:
    """Mean L2 distance over all pairs of rows. flat: (k, n_parameters), k >= 2."""
    return float(torch.pdist(flat.double()).mean())


def relative_improvement(ensemble: np.ndarray | float, single: np.ndarray | float, *, task: str):
    """Figure 1's gain of an ensemble over the mean single model, in percent.

    Accuracy: (ens - single) / single; RMSE: (single - ens) / single; times 100.
    """
    gain = np.asarray(ensemble) - np.asarray(single)
    if not higher_is_better(task):
        gain = -gain
    return 100.0 * gain / np.asarray(single)


def evaluate_ensemble(
    model,
    X: Tensor,
    y: Tensor,
    *,
    task: str,
    sizes: Sequence[int],
    exclude: Sequence[bool] | np.ndarray | None = None,
    batch_size: int = 4096,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Score every member, and the ensemble and interpolated model of the first k members.

    model: an ensemble with ``members`` >= max(sizes), ``interpolate`` and ``flat_parameters``.
    X: (n, d); y: (n,).
    exclude: (E,) bool, members to leave out (diverged ones): their own metric is NaN, and
        the ensemble of the first k members is that of the others among them.
    Returns the (E,) member metrics and a table with one row per ensemble size:
    ensemble_size, ensemble_metric, interpolated_metric, mean_pairwise_l2 (NaN where no
    member is left) and excluded_members (how many of the first k were left out).
    """
    sizes = [int(k) for k in sizes]
    if max(sizes) > model.members or min(sizes) < 1:
        raise ValueError(f"ensemble sizes must lie in 1..{model.members} (the members trained), got {sizes}")
    excluded = np.zeros(model.members, dtype=bool) if exclude is None else np.asarray(exclude, dtype=bool)
    if excluded.shape != (model.members,):
        raise ValueError(f"exclude needs one flag per member ({model.members}), got shape {excluded.shape}")
    outputs = predict(model, X, batch_size=batch_size)
    members = score(outputs, y, task=task).cpu().numpy()
    members[excluded] = np.nan
    flat = model.flat_parameters()
    rows = []
    for k in sizes:
        kept = np.flatnonzero(~excluded[:k]).tolist()
        row = {"ensemble_size": k, "ensemble_metric": np.nan, "interpolated_metric": np.nan, "mean_pairwise_l2": np.nan}
        if kept:
            interpolated = predict(model.interpolate(kept), X, batch_size=batch_size)
            row.update(
                ensemble_metric=ensemble_score(outputs, y, task=task, members=kept),
                interpolated_metric=float(score(interpolated[0], y, task=task)),
                mean_pairwise_l2=mean_pairwise_distance(flat[kept]) if len(kept) > 1 else 0.0,
            )
        rows.append({**row, "excluded_members": k - len(kept)})
    return members, pd.DataFrame(rows)
