"""Loss barriers between the members of one trained ensemble (linear mode connectivity).

For a pair (a, b) of members and alpha in [0, 1], the blend theta(alpha) = (1 - alpha) *
theta_a + alpha * theta_b is the network on the straight line between the two. Its loss
(MSE for regression, cross-entropy otherwise: ``backprop.member_losses``, the training
loss) and metric (RMSE or accuracy: ``evaluation.score``) are measured on given data, and
the barrier of the pair is the largest excess over the straight line between the ends:

    loss_barrier = max_alpha [loss(alpha) - ((1 - alpha) loss(0) + alpha loss(1))]

and likewise ``metric_barrier``, oriented so that positive means worse than the line (for
accuracy, the drop below it). With 0 and 1 among the alphas (required) a barrier is >= 0,
and 0 means the path is no worse than its ends' line anywhere it was measured.

Every (pair, alpha) blend becomes one member of a single ``MLPEnsemble`` (``blend``), so all
of them are evaluated in one batched forward pass. Blends are made with ``torch.lerp``,
which returns the ends exactly at alpha 0 and 1 and leaves entries equal in both members
unchanged, so the W-Asymmetric frozen entries (shared by every member) stay bit-exact; this
is checked after blending.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .backprop import member_losses
from .checks import check_data, check_int, check_outputs_for, check_task, is_integer
from .evaluation import higher_is_better, metric_name, score
from .layers import stacked_layers
from .trainer import predict

#: The default points along each path.
DEFAULT_ALPHAS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def _check_model(model) -> None:
    if not all(hasattr(model, name) for name in ("members", "subset", "set_members", "layers")):
        raise TypeError(
            f"model: expected an ensemble with members, subset, set_members and layers (an MLPEnsemble), "
            f"got {type(model).__name__}"
        )


def check_pairs(pairs, *, members: int) -> list[tuple[int, int]]:
    """``pairs``: a non-empty sequence of (a, b) member indices in [0, members); ``None``
    gives member 0 against each of 1..members-1 (which needs at least 2 members)."""
    if pairs is None:
        if members < 2:
            raise ValueError(
                f"pairs: the default (member 0 against the others) needs at least 2 members, got {members}"
            )
        return [(0, b) for b in range(1, members)]
    if isinstance(pairs, (str, bytes)) or not hasattr(pairs, "__len__"):
        raise TypeError(f"pairs: expected a sequence of (a, b) member index pairs, got {type(pairs).__name__}")
    if not len(pairs):
        raise ValueError("pairs: expected at least one (a, b) pair of member indices, got none")
    checked = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ValueError(f"pairs[{i}]: expected a pair (a, b) of member indices, got {pair!r}")
        for member in pair:
            if not is_integer(member):
                raise TypeError(f"pairs[{i}]: expected integer member indices, got {pair!r}")
            if not 0 <= member < members:
                raise ValueError(f"pairs[{i}]: expected member indices in [0, {members}) (the members), got {pair!r}")
        checked.append((int(pair[0]), int(pair[1])))
    return checked


def check_alphas(alphas) -> list[float]:
    """``alphas``: distinct finite numbers in [0, 1] that include 0 and 1; returned sorted."""
    if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__iter__"):
        raise TypeError(f"alphas: expected a sequence of numbers in [0, 1], got {type(alphas).__name__}")
    values = list(alphas)
    for i, alpha in enumerate(values):
        if isinstance(alpha, (bool, np.bool_)) or not isinstance(alpha, (int, float, np.integer, np.floating)):
            raise TypeError(f"alphas[{i}]: expected a number in [0, 1], got {alpha!r}")
        if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
            raise ValueError(f"alphas[{i}]: expected a number in [0, 1], got {alpha!r}")
    values = [float(alpha) for alpha in values]
    if 0.0 not in values or 1.0 not in values:
        raise ValueError(f"alphas: expected both ends 0 and 1 among the alphas (the barrier needs them), got {values}")
    if len(set(values)) != len(values):
        raise ValueError(f"alphas: expected distinct values, got {values}")
    return sorted(values)


@torch.no_grad()
def blend(model, pairs: Sequence[tuple[int, int]] | None = None, alphas: Sequence[float] = DEFAULT_ALPHAS):
    """One ensemble whose members are all the blends (1 - alpha) theta_a + alpha theta_b.

    model: an ``MLPEnsemble`` of E members. pairs: P pairs (a, b) (default (0, 1), ...,
    (0, E-1)). alphas: A numbers in [0, 1] including 0 and 1 (sorted here).
    Returns a new ensemble of P * A members, pair-major: member p * A + j is pair p at the
    j-th alpha in sorted order; its weights are (P * A, in, out) per layer. The model is
    left unchanged. W-Asymmetric frozen entries are checked to be exactly the frozen
    values in every blend (ValueError if the members a, b no longer held them).
    """
    _check_model(model)
    pairs = check_pairs(pairs, members=model.members)
    alphas = check_alphas(alphas)
    layers = stacked_layers(model)
    device = layers[0].weight.device
    a = torch.tensor([p[0] for p in pairs], device=device).repeat_interleave(len(alphas))
    b = torch.tensor([p[1] for p in pairs], device=device).repeat_interleave(len(alphas))
    weight = torch.tensor(alphas, dtype=layers[0].weight.dtype, device=device).repeat(len(pairs))
    parameters = []
    for param in model.parameters():
        w = weight.view(-1, *[1] * (param.dim() - 1))
        parameters.append(torch.lerp(param.detach()[a], param.detach()[b], w))
    blended = model.subset([0])
    blended.set_members(parameters)
    blended.init_seeds = [-1] * len(parameters[0])
    for i, layer in enumerate(stacked_layers(blended)):
        if layer.frozen_mask is not None:
            frozen = layer.weight[:, layer.frozen_mask]  # (P * A, n_frozen)
            expected = layer.frozen_values[layer.frozen_mask]
            if not torch.equal(frozen, expected.expand_as(frozen)):
                raise ValueError(
                    f"layer {i}: expected the W-Asymmetric frozen entries to be the frozen values in every "
                    "blend, but the blended members do not hold them (call model.apply_frozen() after editing)"
                )
    return blended


def barrier_curves(
    model,
    X: Tensor,
    y: Tensor,
    *,
    task: str,
    pairs: Sequence[tuple[int, int]] | None = None,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    batch_size: int = 4096,
) -> pd.DataFrame:
    """Loss and metric along the straight path between each pair of members.

    model: an ``MLPEnsemble`` of E members. X: (n, d) float32 on the model's device; y: (n,)
    there too, float32 for regression, int64 class indices in [0, out_features) otherwise.
    pairs: P pairs (a, b) of member indices (default: member 0 against 1..E-1).
    alphas: A numbers in [0, 1] including 0 and 1.
    Returns P * A rows: pair_a, pair_b, alpha, loss (MSE or mean cross-entropy), metric
    (RMSE or accuracy), in pair order, then increasing alpha. One batched forward.
    """
    _check_model(model)
    check_task(task)
    check_outputs_for(model, task)
    check_data(model, X, y, task=task, X_name="X", y_name="y")
    check_int(batch_size, name="batch_size")
    pairs = check_pairs(pairs, members=model.members)
    alphas = check_alphas(alphas)
    blended = blend(model, pairs, alphas)
    outputs = predict(blended, X, batch_size=batch_size)  # (P * A, n, out_features)
    losses = member_losses(outputs, y, task=task)
    metrics = score(outputs, y, task=task)
    return pd.DataFrame(
        {
            "pair_a": np.repeat([p[0] for p in pairs], len(alphas)),
            "pair_b": np.repeat([p[1] for p in pairs], len(alphas)),
            "alpha": np.tile(alphas, len(pairs)),
            "loss": losses.double().cpu().numpy(),
            "metric": metrics.double().cpu().numpy(),
        }
    )


def _excess(alpha: np.ndarray, values: np.ndarray) -> np.ndarray:
    """values(alpha) - the straight line between values(0) and values(1); alpha sorted, 0 and 1 in it."""
    return values - ((1.0 - alpha) * values[0] + alpha * values[-1])


def barrier_summary(curves: pd.DataFrame, *, task: str) -> pd.DataFrame:
    """Per pair: loss_barrier, metric_barrier (positive: worse than the ends' line; for
    accuracy the drop below it) and the alpha where each is reached.

    curves: ``barrier_curves``'s table (each pair's alphas include 0 and 1).
    Returns one row per pair: pair_a, pair_b, loss_barrier, loss_barrier_alpha,
    metric_barrier, metric_barrier_alpha, and metric (the metric's name).
    """
    check_task(task)
    missing = {"pair_a", "pair_b", "alpha", "loss", "metric"} - set(curves.columns)
    if missing:
        raise ValueError(f"curves: expected barrier_curves' columns, missing {sorted(missing)}")
    sign = -1.0 if higher_is_better(task) else 1.0
    rows = []
    for (pair_a, pair_b), group in curves.groupby(["pair_a", "pair_b"], sort=False):
        group = group.sort_values("alpha")
        alpha = group["alpha"].to_numpy(dtype=float)
        if alpha[0] != 0.0 or alpha[-1] != 1.0:
            raise ValueError(f"curves: pair ({pair_a}, {pair_b}) expected alphas including 0 and 1, got {list(alpha)}")
        loss = _excess(alpha, group["loss"].to_numpy(dtype=float))
        metric = sign * _excess(alpha, group["metric"].to_numpy(dtype=float))
        rows.append(
            {
                "pair_a": pair_a,
                "pair_b": pair_b,
                "loss_barrier": float(loss.max()) + 0.0,  # + 0.0: no negative zero
                "loss_barrier_alpha": float(alpha[loss.argmax()]),
                "metric_barrier": float(metric.max()) + 0.0,
                "metric_barrier_alpha": float(alpha[metric.argmax()]),
                "metric": metric_name(task),
            }
        )
    return pd.DataFrame(rows)
