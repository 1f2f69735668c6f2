"""Uncertainty and diversity scores against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from asymlib.core.diversity import ambiguity, pairwise_disagreement
from asymlib.core.uncertainty import (
    classification_scores,
    ensemble_uncertainty,
    expected_calibration_error,
    gaussian_mixture_nll,
    member_uncertainty,
    residual_variances,
)

# Four rows, two classes: top-label confidences 0.9 (right), 0.62 (wrong), 0.7 (right),
# 0.56 (wrong), each alone in its bin of width 1/15.
PROBA = np.array([[0.9, 0.1], [0.62, 0.38], [0.3, 0.7], [0.44, 0.56]])
Y = np.array([0, 1, 1, 0])


def test_ece_by_hand():
    assert expected_calibration_error(PROBA, Y) == pytest.approx((0.1 + 0.62 + 0.3 + 0.56) / 4)
    # Two rows in one bin (0.9 right, 0.92 wrong): |accuracy 0.5 - confidence 0.91|.
    two = np.array([[0.9, 0.1], [0.92, 0.08]])
    assert expected_calibration_error(two, np.array([0, 1])) == pytest.approx(0.41)
    # Calibrated by construction: every row at confidence 1 and right.
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_nll_and_brier_by_hand():
    scores = classification_scores(PROBA, Y)
    true_class = np.array([0.9, 0.38, 0.7, 0.44])
    assert scores["nll"] == pytest.approx(-np.log(true_class).mean())
    # Squared distance to the one-hot label, summed over both classes.
    assert scores["brier"] == pytest.approx(np.mean([2 * 0.1**2, 2 * 0.62**2, 2 * 0.3**2, 2 * 0.56**2]))


def test_ensemble_distribution_is_the_mean_of_member_probabilities():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 1.0]]])  # 2 members, 1 row
    y = torch.tensor([0])
    p0 = math.exp(2) / (math.exp(2) + 1)
    p1 = 1 / (1 + math.e)
    mean = (p0 + p1) / 2
    scores = ensemble_uncertainty(logits, y, task="binary", members=[0, 1])
    assert scores["nll"] == pytest.approx(-math.log(mean))
    members = member_uncertainty(logits, y, task="binary")
    assert members["nll"] == pytest.approx([-math.log(p0), -math.log(p1)])


def test_gaussian_nll_by_hand():
    y = torch.tensor([0.0, 1.0])
    one = torch.tensor([[0.5, 0.5]])
    # A member with variance 0.25: 0.5 log(2 pi 0.25) + 0.25 / (2 * 0.25) on both rows.
    assert gaussian_mixture_nll(one, torch.tensor([0.25]), y) == pytest.approx(0.5 * math.log(2 * math.pi * 0.25) + 0.5)
    # Two members at 0 and 2, unit variance, y = 0: density (phi(0) + phi(2)) / 2.
    phi = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    two = torch.tensor([[0.0], [2.0]])
    assert gaussian_mixture_nll(two, torch.ones(2), torch.tensor([0.0])) == pytest.approx(
        -math.log((phi(0) + phi(2)) / 2)
    )
    assert residual_variances(torch.tensor([[1.0, 3.0], [0.0, 1.0]]), torch.tensor([0.0, 1.0])).tolist() == [2.5, 0.0]
    with pytest.raises(ValueError, match="validation residual variance"):
        member_uncertainty(two.unsqueeze(-1), torch.tensor([0.0]), task="regression")


def test_disagreement_by_hand():
    # Members predict [0, 0, 1] on row 1 (2 of 3 pairs disagree) and [1, 1, 1] on row 2.
    outputs = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [0.0, 1.0]]])
    assert pairwise_disagreement(outputs) == pytest.approx((2 / 3 + 0) / 2)
    with pytest.raises(ValueError, match="at least 2 members"):
        pairwise_disagreement(outputs[:1])


def test_ensemble_error_is_mean_member_error_minus_ambiguity():
    generator = torch.Generator().manual_seed(0)
    predictions = torch.randn(5, 100, 1, generator=generator, dtype=torch.float64)
    y = torch.randn(100, generator=generator, dtype=torch.float64)
    ensemble_mse = float((predictions.mean(dim=0).squeeze(-1) - y).pow(2).mean())
    member_mse = float(residual_variances(predictions, y).mean())
    assert ensemble_mse == pytest.approx(member_mse - ambiguity(predictions))
    assert ambiguity(torch.ones(3, 10)) == 0.0
