"""Ensemble aggregation, interpolation and distances on small hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from asymlib.core.evaluation import (
    ensemble_score,
    evaluate_ensemble,
    mean_pairwise_distance,
    relative_improvement,
    score,
)
from asymlib.core.models import MLPEnsemble


def test_regression_ensemble_is_mean_of_outputs():
    y = torch.tensor([1.0, 2.0])
    outputs = torch.tensor([[[0.0], [2.0]], [[2.0], [4.0]]])  # (E=2, n=2, 1)
    # member RMSEs: sqrt((1+0)/2), sqrt((1+4)/2); ensemble predicts [1, 3]: sqrt((0+1)/2)
    torch.testing.assert_close(score(outputs, y, task="regression"), torch.tensor([math.sqrt(0.5), math.sqrt(2.5)]))
    assert ensemble_score(outputs, y, task="regression", members=[0]) == pytest.approx(math.sqrt(0.5))
    assert ensemble_score(outputs, y, task="regression", members=[0, 1]) == pytest.approx(math.sqrt(0.5))


def test_classification_ensemble_averages_logits_not_votes():
    y = torch.tensor([0])
    # Two of three members vote class 1 by a hair; the third is sure of class 0.
    logits = torch.tensor([[[0.0, 0.1]], [[0.0, 0.1]], [[5.0, 0.0]]])
    assert score(logits, y, task="multiclass").tolist() == [0.0, 0.0, 1.0]
    # mean logits = [5/3, 0.2/3] -> class 0 (a majority vote would say 1)
    assert ensemble_score(logits, y, task="multiclass", members=[0, 1]) == 0.0
    assert ensemble_score(logits, y, task="multiclass", members=[0, 1, 2]) == 1.0


def test_mean_pairwise_distance_by_hand():
    flat = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 8.0]])
    # distances: 5, 8, sqrt(9+16)=5 -> mean 6
    assert mean_pairwise_distance(flat) == pytest.approx(6.0)


def test_relative_improvement_signs():
    assert relative_improvement(0.88, 0.80, task="binary") == pytest.approx(10.0)
    assert relative_improvement(0.45, 0.50, task="regression") == pytest.approx(10.0)
    assert relative_improvement(np.array([0.55]), 0.50, task="regression")[0] == pytest.approx(-10.0)


def test_interpolation_averages_parameters_and_keeps_frozen_entries():
    model = MLPEnsemble(3, 4, 1, members=3, kind="wmlp", init_seeds=[0, 1, 2], mask_seed=0)
    with torch.no_grad():
        for layer in model.layers:
            free = ~layer.frozen_mask
            for e in range(3):
                layer.weight[e][free] = float(e)  # members 0,1,2 -> mean of first two = 0.5
                layer.bias[e] = 10.0 * e
    two = model.interpolate([0, 1])
    assert two.members == 1
    for layer, src in zip(two.layers, model.layers):
        assert torch.all(layer.weight[0][~src.frozen_mask] == 0.5)
        assert torch.all(layer.bias[0] == 5.0)
        assert torch.equal(layer.weight[0][src.frozen_mask], src.frozen_values[src.frozen_mask])


def test_evaluate_ensemble_table():
    torch.manual_seed(0)
    model = MLPEnsemble(4, 8, 3, members=4, kind="mlp", init_seeds=[0, 1, 2, 3])
    X, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    member_table, table = evaluate_ensemble(model, X, y, task="multiclass", sizes=[1, 2, 4])
    members = member_table["metric"].to_numpy()
    assert members.shape == (4,)
    assert list(table["ensemble_size"]) == [1, 2, 4]
    # size 1: the ensemble and the interpolated model are both member 0
    assert table.loc[0, "ensemble_metric"] == pytest.approx(members[0])
    assert table.loc[0, "interpolated_metric"] == pytest.approx(members[0])
    flat = model.flat_parameters()
    assert table.loc[1, "mean_pairwise_l2"] == pytest.approx(float((flat[0] - flat[1]).norm()), rel=1e-5)
    with pytest.raises(ValueError, match="ensemble sizes"):
        evaluate_ensemble(model, X, y, task="multiclass", sizes=[8])


def test_excluded_members_are_left_out_of_ensembles_and_counted():
    """Member 1 diverged: its own metric is NaN, the ensemble of the first 2 is member 0
    alone, that of the first 3 is members 0 and 2, and each row counts the left-out one."""
    model = MLPEnsemble(4, 8, 3, members=3, kind="mlp", init_seeds=[0, 1, 2])
    with torch.no_grad():
        model.layers[-1].bias[1] = float("nan")  # what a diverged member looks like
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(60, 4, generator=g), torch.randint(0, 3, (60,), generator=g)
    member_table, table = evaluate_ensemble(
        model, X, y, task="multiclass", sizes=[1, 2, 3], exclude=[False, True, False]
    )
    members = member_table["metric"].to_numpy()
    assert member_table.loc[1].isna().all()  # every score of the diverged member
    assert np.isnan(members[1]) and not np.isnan(members[[0, 2]]).any()
    assert table["excluded_members"].tolist() == [0, 1, 1]
    assert table.loc[1, "ensemble_metric"] == pytest.approx(members[0])
    healthy = model.subset([0, 2])
    _, pair = evaluate_ensemble(healthy, X, y, task="multiclass", sizes=[2])
    for column in ("ensemble_metric", "interpolated_metric", "mean_pairwise_l2"):
        assert table.loc[2, column] == pytest.approx(pair.loc[0, column])
    _, none_left = evaluate_ensemble(model, X, y, task="multiclass", sizes=[2], exclude=[True, True, False])
    assert none_left.loc[0, "excluded_members"] == 2 and np.isnan(none_left.loc[0, "ensemble_metric"])


def test_ensemble_rows_carry_uncertainty_and_diversity():
    from asymlib.core.diversity import pairwise_disagreement
    from asymlib.core.uncertainty import classification_scores, probabilities

    torch.manual_seed(0)
    model = MLPEnsemble(4, 8, 3, members=3, init_seeds=[0, 1, 2])
    X, y = torch.randn(80, 4), torch.randint(0, 3, (80,))
    members, table = evaluate_ensemble(model, X, y, task="multiclass", sizes=[1, 3])
    outputs = model(X).detach()
    by_hand = classification_scores(probabilities(outputs).mean(dim=0).numpy(), y.numpy())
    for name, value in by_hand.items():
        assert table.loc[1, f"ensemble_{name}"] == pytest.approx(value)
        # an ensemble of one is its member
        assert table.loc[0, f"ensemble_{name}"] == pytest.approx(members.loc[0, name])
    assert table.loc[1, "disagreement"] == pytest.approx(pairwise_disagreement(outputs))
    assert np.isnan(table.loc[0, "disagreement"]) and table["ambiguity"].isna().all()


def test_regression_needs_validation_variances_and_reports_ambiguity():
    from asymlib.core.diversity import ambiguity
    from asymlib.core.uncertainty import gaussian_mixture_nll

    torch.manual_seed(0)
    model = MLPEnsemble(4, 8, 1, members=3, init_seeds=[0, 1, 2])
    X, y = torch.randn(40, 4), torch.randn(40)
    with pytest.raises(ValueError, match="validation residual variance"):
        evaluate_ensemble(model, X, y, task="regression", sizes=[2])
    variances = torch.tensor([0.5, 1.0, 2.0])
    members, table = evaluate_ensemble(model, X, y, task="regression", sizes=[2], variances=variances)
    outputs = model(X).detach()
    assert members.loc[2, "nll"] == pytest.approx(gaussian_mixture_nll(outputs[2:], variances[2:], y))
    assert table.loc[0, "ensemble_nll"] == pytest.approx(gaussian_mixture_nll(outputs[:2], variances[:2], y))
    assert table.loc[0, "ambiguity"] == pytest.approx(ambiguity(outputs[:2]))
    assert members[["brier", "ece"]].isna().all().all() and np.isnan(table.loc[0, "disagreement"])
