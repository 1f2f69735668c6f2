"""Loss barriers between members (core/barriers.py): ends, identical members, batched vs one
by one, a hand-made barrier, frozen entries and the input checks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from asymlib.core.backprop import member_losses
from asymlib.core.barriers import barrier_curves, barrier_summary, blend
from asymlib.core.evaluation import score
from asymlib.core.models import MLPEnsemble
from asymlib.core.trainer import predict
from tests.toydata import toy_data

TASKS = ("regression", "multiclass")


def model_and_data(task, kind="mlp", members=3):
    X, y, _, _ = toy_data(task)
    out = 1 if task == "regression" else 3
    model = MLPEnsemble(X.shape[1], 16, out, members=members, kind=kind, init_seeds=[5, 6, 7][:members], mask_seed=2)
    return model, X, y


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ["mlp", "wmlp", "smlp"])
def test_ends_equal_the_members_alone(task, kind):
    model, X, y = model_and_data(task, kind)
    curves = barrier_curves(model, X, y, task=task, pairs=[(0, 1), (2, 0)])
    outputs = predict(model, X)
    losses, metrics = member_losses(outputs, y, task=task), score(outputs, y, task=task)
    for (a, b), group in curves.groupby(["pair_a", "pair_b"]):
        start, end = group[group.alpha == 0.0].iloc[0], group[group.alpha == 1.0].iloc[0]
        assert start.loss == pytest.approx(float(losses[a]), rel=1e-6)
        assert end.loss == pytest.approx(float(losses[b]), rel=1e-6)
        assert start.metric == pytest.approx(float(metrics[a]), rel=1e-6)
        assert end.metric == pytest.approx(float(metrics[b]), rel=1e-6)
    assert list(curves.columns) == ["pair_a", "pair_b", "alpha", "loss", "metric"]
    assert len(curves) == 2 * 5
    # default pairs: member 0 against the others
    assert sorted(set(zip(*barrier_curves(model, X, y, task=task)[["pair_a", "pair_b"]].values.T))) == [(0, 1), (0, 2)]


@pytest.mark.parametrize("task", TASKS)
def test_identical_members_have_no_barrier(task):
    model, X, y = model_and_data(task, "wmlp")
    twins = model.subset([1, 1, 0])
    curves = barrier_curves(twins, X, y, task=task, pairs=[(0, 1), (0, 2)])
    summary = barrier_summary(curves, task=task)
    same = curves[curves.pair_b == 1]
    assert same.loss.nunique() == 1 and same.metric.nunique() == 1
    row = summary[summary.pair_b == 1].iloc[0]
    assert row.loss_barrier == 0.0 and row.metric_barrier == 0.0
    # a pair of different members does move along the path
    assert curves[curves.pair_b == 2].loss.nunique() > 1


def blended_one_by_one(model, a, b, alpha):
    """One blended network, built with the plain formula."""
    net = model.subset([a])
    with torch.no_grad():
        for layer, src in zip(net.layers, model.layers):
            layer.weight.copy_((1 - alpha) * src.weight[a : a + 1] + alpha * src.weight[b : b + 1])
            layer.bias.copy_((1 - alpha) * src.bias[a : a + 1] + alpha * src.bias[b : b + 1])
    return net


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("kind", ["mlp", "wmlp"])
def test_batched_blends_equal_one_at_a_time(task, kind):
    model, X, y = model_and_data(task, kind)
    alphas = (0.0, 0.1, 0.5, 0.9, 1.0)
    curves = barrier_curves(model, X, y, task=task, pairs=[(0, 2), (1, 0)], alphas=alphas, batch_size=64)
    i = 0
    for a, b in [(0, 2), (1, 0)]:
        for alpha in alphas:
            out = predict(blended_one_by_one(model, a, b, alpha), X)
            row = curves.iloc[i]
            assert (row.pair_a, row.pair_b, row.alpha) == (a, b, alpha)
            assert row.loss == pytest.approx(float(member_losses(out, y, task=task)[0]), rel=1e-5)
            assert row.metric == pytest.approx(float(score(out, y, task=task)[0]), rel=1e-5, abs=1e-6)
            i += 1


def test_wasym_frozen_entries_stay_exact_and_model_unchanged():
    model, _, _ = model_and_data("multiclass", "wmlp")
    before = [p.detach().clone() for p in model.parameters()]
    blended = blend(model, [(0, 1), (1, 2)], (0.0, 0.3, 0.5, 0.7, 1.0))
    assert blended.members == 10
    for layer in blended.layers:
        frozen = layer.weight[:, layer.frozen_mask]
        assert torch.equal(frozen, layer.frozen_values[layer.frozen_mask].expand_as(frozen))
    assert all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    # the ends are the members exactly
    assert torch.equal(blended.layers[0].weight[0], model.layers[0].weight[0])
    assert torch.equal(blended.layers[0].weight[4], model.layers[0].weight[1])
    # members that lost their frozen values are refused
    with torch.no_grad():
        model.layers[1].weight[2][model.layers[1].frozen_mask] += 1.0
    with pytest.raises(ValueError, match="frozen entries"):
        blend(model, [(1, 2)])


def test_hand_made_barrier():
    """Two members that swap hidden units 0 and 1 of the last hidden layer: both fit y
    exactly, their blends do not; the output along the path is known in closed form."""
    t = 2.0
    model = MLPEnsemble(3, 4, 1, members=2, kind="mlp")
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # layers 0, 1 output 0, so hidden layer 2's output is GELU(bias)
        model.layers[2].bias[0, 0] = t
        model.layers[2].bias[1, 1] = t
        model.layers[3].weight[0, 0, 0] = 1.0
        model.layers[3].weight[1, 1, 0] = 1.0
    X = torch.randn(7, 3)
    target = F.gelu(torch.tensor(t, dtype=torch.float64))
    y = torch.full((7,), float(target), dtype=torch.float32)
    alphas = np.array([0.0, 0.2, 0.5, 0.6, 1.0])
    curves = barrier_curves(model, X, y, task="regression", alphas=alphas)
    summary = barrier_summary(curves, task="regression")
    a = torch.tensor(alphas, dtype=torch.float64)
    output = (1 - a) * F.gelu((1 - a) * t) + a * F.gelu(a * t)
    expected_loss = ((output - target) ** 2).numpy()
    np.testing.assert_allclose(curves.loss, expected_loss, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(curves.metric, np.sqrt(expected_loss), rtol=1e-5, atol=1e-6)
    assert expected_loss[0] < 1e-12 and expected_loss[2] > 0.1  # good ends, a bad midpoint
    row = summary.iloc[0]
    assert row.loss_barrier == pytest.approx(expected_loss.max(), rel=1e-5)
    assert row.loss_barrier_alpha == 0.5
    assert row.metric_barrier == pytest.approx(np.sqrt(expected_loss).max(), rel=1e-5)


def test_summary_formula_and_orientation():
    curves = __import__("pandas").DataFrame(
        {
            "pair_a": [0] * 4,
            "pair_b": [1] * 4,
            "alpha": [1.0, 0.0, 0.5, 0.25],  # unsorted on purpose
            "loss": [3.0, 1.0, 2.5, 1.2],
            "metric": [0.6, 0.8, 0.5, 0.75],
        }
    )
    # loss line: 1 + 2 alpha -> excess at 0.25: 1.2 - 1.5 = -0.3, at 0.5: 2.5 - 2 = 0.5
    # accuracy line: 0.8 - 0.2 alpha -> drop at 0.25: 0.75 - 0.75 = 0, at 0.5: 0.7 - 0.5 = 0.2
    row = barrier_summary(curves, task="multiclass").iloc[0]
    assert row.loss_barrier == pytest.approx(0.5) and row.loss_barrier_alpha == 0.5
    assert row.metric_barrier == pytest.approx(0.2) and row.metric_barrier_alpha == 0.5
    assert row.metric == "accuracy"
    # for RMSE higher is worse: excess above the line 0.8 - 0.2 alpha is 0 at the ends, -0.2 at 0.5
    row = barrier_summary(curves, task="regression").iloc[0]
    assert row.metric_barrier == pytest.approx(0.0) and row.metric == "rmse"


def test_input_checks():
    model, X, y = model_and_data("multiclass")
    run = lambda **kw: barrier_curves(model, kw.pop("X", X), kw.pop("y", y), task="multiclass", **kw)  # noqa: E731
    with pytest.raises(ValueError, match=r"pairs\[1\]: expected member indices in \[0, 3\)"):
        run(pairs=[(0, 1), (0, 3)])
    with pytest.raises(ValueError, match=r"pairs\[0\]: expected a pair"):
        run(pairs=[(0, 1, 2)])
    with pytest.raises(TypeError, match="integer member indices"):
        run(pairs=[(0, 1.0)])
    with pytest.raises(ValueError, match="at least one"):
        run(pairs=[])
    with pytest.raises(ValueError, match=r"alphas\[1\]: expected a number in \[0, 1\]"):
        run(alphas=[0.0, 1.5, 1.0])
    with pytest.raises(ValueError, match="both ends 0 and 1"):
        run(alphas=[0.0, 0.5])
    with pytest.raises(ValueError, match="both ends 0 and 1"):
        run(alphas=[0.5, 1.0])
    with pytest.raises(ValueError, match="distinct"):
        run(alphas=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="X: expected 5 columns"):
        run(X=X[:, :4])
    with pytest.raises(ValueError, match="y: expected 200 rows"):
        run(y=y[:10])
    with pytest.raises(TypeError, match="model: expected an ensemble"):
        barrier_curves(torch.nn.Linear(5, 3), X, y, task="multiclass")
    with pytest.raises(ValueError, match="at least 2 members"):
        barrier_curves(model.subset([0]), X, y, task="multiclass")
    with pytest.raises(ValueError, match="alphas including 0 and 1"):
        barrier_summary(barrier_curves(model, X, y, task="multiclass").query("alpha > 0"), task="multiclass")
