"""How good a model's or an ensemble's predictive distribution is, beyond its accuracy or RMSE.

Classification (members output logits):
  - a member's distribution is the softmax of its logits; a deep ensemble's is the mean of
    its members' softmax probabilities (the usual predictive distribution of a deep
    ensemble; its accuracy keeps the paper's rule, the argmax of the mean logits);
  - NLL: mean negative log probability of the true class (scikit-learn's ``log_loss``);
  - Brier: mean over rows of the squared distance between the probability vector and the
    one-hot label, summed over classes (``brier_score_loss`` with ``scale_by_half=False``;
    for two classes this is twice the binary Brier score of the positive class);
  - ECE: expected calibration error of the top-label confidence over 15 equal-width bins
    of [0, 1] (a bin holds the rows whose confidence is in (lower, upper], the first also
    0): sum over bins of (rows in bin / rows) * |accuracy in bin - mean confidence in bin|.
    scikit-learn has no multiclass ECE.

Regression (members output one value):
  - a member's distribution is Gaussian around its prediction, with the variance of its
    residuals on the validation set (a member is trained on MSE and has no variance head);
  - an ensemble's is the equal-weight mixture of its members' Gaussians;
  - NLL: mean negative log density of the true target under that distribution.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.metrics import brier_score_loss, log_loss
from torch import Tensor

#: Bins of the expected calibration error.
ECE_BINS = 15


def probabilities(logits: Tensor) -> Tensor:
    """Softmax over the last axis, in float64. logits: (..., n, classes)."""
    return torch.softmax(logits.double(), dim=-1)


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, *, bins: int = ECE_BINS) -> float:
    """ECE of the top-label confidence. proba: (n, classes) rows summing to 1; y: (n,)."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    # Bin b holds confidences in (b / bins, (b + 1) / bins]; a confidence of 0 joins bin 0.
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def classification_scores(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """NLL, Brier score and ECE of one predictive distribution. proba: (n, classes); y: (n,)."""
    labels = np.arange(proba.shape[1])
    return {
        "nll": float(log_loss(y, proba, labels=labels)),
        "brier": float(brier_score_loss(y, proba, labels=labels, scale_by_half=False)),
        "ece": expected_calibration_error(proba, y),
    }


def residual_variances(predictions: Tensor, y: Tensor) -> Tensor:
    """Each member's mean squared residual. predictions: (E, n) or (E, n, 1); y: (n,). -> (E,)"""
    return (predictions.reshape(predictions.shape[0], -1).double() - y.double()).pow(2).mean(dim=1)


def gaussian_mixture_nll(predictions: Tensor, variances: Tensor, y: Tensor) -> float:
    """Mean NLL of ``y`` under the equal-weight mixture of N(predictions[e], variances[e]).

    predictions: (E, n) or (E, n, 1); variances: (E,); y: (n,). With E = 1, a member's own NLL.
    """
    mean = predictions.reshape(predictions.shape[0], -1).double()
    var = variances.double().clamp_min(1e-12)[:, None]
    log_density = -0.5 * (math.log(2 * math.pi) + var.log() + (y.double() - mean).pow(2) / var)
    mixture = torch.logsumexp(log_density, dim=0) - math.log(mean.shape[0])
    return float(-mixture.mean())


def member_uncertainty(
    outputs: Tensor, y: Tensor, *, task: str, variances: Tensor | None = None
) -> dict[str, np.ndarray]:
    """Each member's uncertainty scores, as arrays of shape (E,).

    outputs: (E, n, out) test outputs; y: (n,). Classification: nll, brier, ece. Regression:
    nll, which needs ``variances`` (E,), the members' validation residual variances.
    """
    if task == "regression":
        if variances is None:
            raise ValueError("regression NLL needs each member's validation residual variance (variances=)")
        return {
            "nll": np.array(
                [gaussian_mixture_nll(outputs[e : e + 1], variances[e : e + 1], y) for e in range(outputs.shape[0])]
            )
        }
    proba = probabilities(outputs).cpu().numpy()
    labels = y.cpu().numpy()
    scores = [classification_scores(p, labels) for p in proba]
    return {name: np.array([s[name] for s in scores]) for name in scores[0]}


def ensemble_uncertainty(
    outputs: Tensor, y: Tensor, *, task: str, members: list[int], variances: Tensor | None = None
) -> dict[str, float]:
    """The uncertainty scores of the deep ensemble of ``members`` (see the module's text)."""
    if task == "regression":
        if variances is None:
            raise ValueError("regression NLL needs each member's validation residual variance (variances=)")
        return {"nll": gaussian_mixture_nll(outputs[members], variances[members], y)}
    proba = probabilities(outputs[members]).mean(dim=0).cpu().numpy()
    return classification_scores(proba, y.cpu().numpy())
