"""The public API refuses a wrong argument at its entrance, naming it and what it expected.

One test per kind of bad input (core/checks.py): each asserts the exception type (TypeError
for a wrong type, ValueError for a wrong value) and that the message names the argument and
the expectation. Tiny tensors; nothing trains. The "meta" device stands in for a second
device (a GPU): a tensor there is on another device than a CPU model.
"""

import math

import numpy as np
import pytest
import torch

from asymlib.core.evaluation import (
    ensemble_score,
    evaluate_ensemble,
    mean_pairwise_distance,
    metric_name,
    relative_improvement,
    score,
)
from asymlib.core.mixtures import MixtureEnsemble
from asymlib.core.models import MLPEnsemble
from asymlib.core.trainer import TrainConfig, evaluate_losses, fit, predict

CONFIG = TrainConfig(max_epochs=1)


def _regressor():
    return MLPEnsemble(3, 4, 1, members=2)


def _classifier():
    return MLPEnsemble(3, 4, 3, members=2)


def _mixture():
    return MixtureEnsemble(3, 4, 1, members=2, experts=2)


def _fit(model=None, X=None, y=None, X_val=None, y_val=None, *, task="regression", order_seeds=(0, 1)):
    """fit on 4 valid rows of 3 features, with any argument replaced."""
    regression = task == "regression"
    model = model or (_regressor() if regression else _classifier())
    good_y = torch.zeros(4) if regression else torch.tensor([0, 1, 2, 1])
    return fit(
        model,
        torch.zeros(4, 3) if X is None else X,
        good_y if y is None else y,
        torch.zeros(4, 3) if X_val is None else X_val,
        good_y if y_val is None else y_val,
        task=task,
        order_seeds=list(order_seeds),
        config=CONFIG,
        progress=False,
    )


def test_the_valid_call_still_runs():
    """The baseline of every test below: the same call with good arguments trains."""
    assert _fit().epochs.tolist() == [1, 1]
    assert _fit(task="multiclass").epochs.tolist() == [1, 1]


# ---------------------------------------------------------------- constructors


@pytest.mark.parametrize("name", ["in_features", "hidden", "out_features", "members"])
@pytest.mark.parametrize("value", [0, -2])
def test_non_positive_sizes(name, value):
    sizes = dict(in_features=3, hidden=4, out_features=1, members=2)
    sizes[name] = value
    members = sizes.pop("members")
    with pytest.raises(ValueError, match=rf"{name}: expected a positive integer, got {value}"):
        MLPEnsemble(*sizes.values(), members=members)
    with pytest.raises(ValueError, match=rf"{name}: expected a positive integer, got {value}"):
        MixtureEnsemble(*sizes.values(), members=members, experts=2)


def test_non_positive_experts_and_samples():
    for name in ("experts", "samples"):
        arguments = {"experts": 2, name: 0}
        with pytest.raises(ValueError, match=rf"{name}: expected a positive integer, got 0"):
            MixtureEnsemble(3, 4, 1, members=2, **arguments)


def test_non_integer_sizes():
    with pytest.raises(TypeError, match=r"members: expected an integer, got float 2\.0"):
        MLPEnsemble(3, 4, 1, members=2.0)
    with pytest.raises(TypeError, match=r"hidden: expected an integer, got str '4'"):
        MixtureEnsemble(3, "4", 1, members=2, experts=2)


@pytest.mark.parametrize(
    "build, name, allowed",
    [
        (lambda: MLPEnsemble(3, 4, 1, members=2, kind="wmpl"), "kind", "'mlp', 'wmlp', 'smlp', 'syre'"),
        (lambda: MixtureEnsemble(3, 4, 1, members=2, experts=2, kind="moe"), "kind", "'mlp', 'wmlp', 'imlp', 'iwmlp'"),
        (lambda: MixtureEnsemble(3, 4, 1, members=2, experts=2, gating="softmax"), "gating", "'standard', 'gumbel'"),
        (
            lambda: MixtureEnsemble(3, 4, 1, members=2, experts=2, architecture="code"),
            "architecture",
            "'paper', 'release'",
        ),
    ],
)
def test_bad_literals_name_the_allowed_values(build, name, allowed):
    with pytest.raises(ValueError, match=rf"{name}: expected one of {allowed}, got '"):
        build()


def test_seeds_of_the_wrong_length_or_type():
    with pytest.raises(ValueError, match=r"init_seeds: expected 2 seeds \(one per member\), got 1"):
        MLPEnsemble(3, 4, 1, members=2, init_seeds=[0])
    with pytest.raises(ValueError, match=r"noise_seeds: expected 2 seeds \(one per member\), got 3"):
        MixtureEnsemble(3, 4, 1, members=2, experts=2, noise_seeds=[0, 1, 2])
    with pytest.raises(TypeError, match=r"init_seeds\[1\]: expected an integer, got float 1\.5"):
        MLPEnsemble(3, 4, 1, members=2, init_seeds=[0, 1.5])
    with pytest.raises(ValueError, match=r"mask_seed: expected an integer >= 0, got -1"):
        MLPEnsemble(3, 4, 1, members=2, kind="wmlp", mask_seed=-1)


def test_bad_n_fix():
    with pytest.raises(ValueError, match=r"n_fix: expected 4 entries \(one per layer\), got \(2, 3, 3\)"):
        MLPEnsemble(3, 4, 1, members=2, kind="wmlp", n_fix=(2, 3, 3))
    with pytest.raises(ValueError, match=r"n_fix\[0\]: expected at most 3 \(layer 0's in_features\), got 4"):
        MLPEnsemble(3, 4, 1, members=2, kind="wmlp", n_fix=(4, 3, 3, 3))
    with pytest.raises(ValueError, match=r"n_fix\[2\]: expected a positive integer, got 0"):
        MixtureEnsemble(3, 4, 1, members=2, experts=2, kind="iwmlp", n_fix=(2, 3, 0, 3))


def test_non_finite_or_negative_numbers():
    with pytest.raises(ValueError, match=r"tau: expected a finite number, got nan"):
        MixtureEnsemble(3, 4, 1, members=2, experts=2, tau=float("nan"))
    with pytest.raises(ValueError, match=r"balance_weight: expected a finite number, got nan"):
        MixtureEnsemble(3, 4, 1, members=2, experts=2, balance_weight=float("nan"))
    with pytest.raises(ValueError, match=r"kappa: expected a number >= 0\.0, got -1\.0"):
        MLPEnsemble(3, 4, 1, members=2, kind="wmlp", kappa=-1.0)


# ---------------------------------------------------------------- forward


@pytest.mark.parametrize("build", [_regressor, _mixture], ids=["mlp", "mixture"])
def test_forward_refuses_a_numpy_array(build):
    with pytest.raises(
        TypeError, match=r"x: expected a torch.Tensor, got numpy.ndarray \(convert it with torch.as_tensor"
    ):
        build()(np.zeros((4, 3), dtype=np.float32))


@pytest.mark.parametrize("build", [_regressor, _mixture], ids=["mlp", "mixture"])
def test_forward_refuses_float64(build):
    with pytest.raises(
        TypeError, match=r"x: expected dtype float32, got float64 \(convert it with x.to\(torch.float32\)\)"
    ):
        build()(torch.zeros(4, 3, dtype=torch.float64))


@pytest.mark.parametrize("build", [_regressor, _mixture], ids=["mlp", "mixture"])
@pytest.mark.parametrize("shape", [(4,), (4, 5), (3, 4, 3), (2, 2, 4, 3)])
def test_forward_refuses_a_wrong_shape(build, shape):
    with pytest.raises(ValueError, match=r"x: expected shape \(batch, 3\) or \(2, batch, 3\)"):
        build()(torch.zeros(shape))


@pytest.mark.parametrize("build", [_regressor, _mixture], ids=["mlp", "mixture"])
def test_forward_refuses_another_device(build):
    with pytest.raises(ValueError, match=r"x: expected a tensor on the model's device \(cpu\), got one on meta"):
        build()(torch.zeros(4, 3, device="meta"))


def test_forward_takes_a_model_of_another_dtype_its_own_inputs():
    """The expected dtype is the model's: a float64 model takes float64 inputs."""
    assert _regressor().double()(torch.zeros(4, 3, dtype=torch.float64)).dtype == torch.float64


# ---------------------------------------------------------------- fit


def test_fit_refuses_a_bad_task():
    for task in ("regresion", "classification"):
        with pytest.raises(ValueError, match=r"task: expected one of 'regression', 'binary', 'multiclass', got '"):
            _fit(task=task)


def test_fit_refuses_numpy_data():
    with pytest.raises(TypeError, match=r"X_train: expected a torch.Tensor, got numpy.ndarray \(convert it with"):
        _fit(X=np.zeros((4, 3), dtype=np.float32))


def test_fit_refuses_float64_data():
    with pytest.raises(TypeError, match=r"X_val: expected dtype float32, got float64"):
        _fit(X_val=torch.zeros(4, 3, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"y_train: expected dtype float32, got float64"):
        _fit(y=torch.zeros(4, dtype=torch.float64))


def test_fit_refuses_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"X_train: expected 3 columns \(the model's in_features\), got shape \(4, 5\)"
    ):
        _fit(X=torch.zeros(4, 5))
    with pytest.raises(ValueError, match=r"X_train: expected a 2-D tensor, got shape \(4,\)"):
        _fit(X=torch.zeros(4))
    with pytest.raises(ValueError, match=r"y_val: expected a 1-D tensor, got shape \(4, 1\)"):
        _fit(y_val=torch.zeros(4, 1))


def test_fit_refuses_a_length_mismatch():
    with pytest.raises(ValueError, match=r"y_train: expected 4 rows \(as many as X_train\), got 3"):
        _fit(y=torch.zeros(3))


def test_fit_refuses_empty_data():
    with pytest.raises(ValueError, match=r"X_train: expected at least one row, got shape \(0, 3\)"):
        _fit(X=torch.zeros(0, 3), y=torch.zeros(0))


def test_fit_refuses_labels_of_the_wrong_dtype():
    with pytest.raises(TypeError, match=r"y_train: expected dtype int64, got float32"):
        _fit(y=torch.tensor([0.0, 1.0, 2.0, 1.0]), task="multiclass")
    with pytest.raises(TypeError, match=r"y_train: expected dtype int64, got int32"):
        _fit(y=torch.tensor([0, 1, 2, 1], dtype=torch.int32), task="multiclass")


@pytest.mark.parametrize("bad, row", [(3, 2), (-1, 2)])
def test_fit_names_a_bad_label(bad, row):
    labels = torch.tensor([0, 1, bad, 1])
    with pytest.raises(ValueError, match=rf"y_val: expected class indices in \[0, 3\).*got {bad} at row {row}"):
        _fit(y_val=labels, task="multiclass")


def test_fit_refuses_a_regression_model_with_several_outputs():
    with pytest.raises(ValueError, match=r"task: 'regression' expects a model with out_features 1, got out_features 3"):
        _fit(_classifier())


def test_fit_refuses_data_on_another_device():
    with pytest.raises(ValueError, match=r"X_train: expected a tensor on the model's device \(cpu\), got one on meta"):
        _fit(X=torch.zeros(4, 3, device="meta"))


def test_fit_refuses_order_seeds_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"order_seeds: expected 2 seeds \(one per member\), got 1"):
        _fit(order_seeds=[0])


@pytest.mark.parametrize("lr", [float("nan"), math.inf, 0.0, -1e-3])
def test_train_config_refuses_a_non_finite_or_non_positive_lr(lr):
    with pytest.raises(ValueError, match=r"TrainConfig.lr: expected a (finite number|number > 0\.0), got"):
        TrainConfig(lr=lr)


def test_train_config_refuses_a_non_finite_weight_decay():
    with pytest.raises(ValueError, match=r"TrainConfig.weight_decay: expected a finite number, got nan"):
        TrainConfig(weight_decay=float("nan"))


# ---------------------------------------------------------------- predict and scores


def test_predict_and_evaluate_losses_check_their_inputs():
    model = _regressor()
    with pytest.raises(TypeError, match=r"X: expected a torch.Tensor, got numpy.ndarray"):
        predict(model, np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"X: expected 3 columns \(the model's in_features\), got shape \(4, 2\)"):
        predict(model, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"X: expected at least one row"):
        predict(model, torch.zeros(0, 3))
    with pytest.raises(ValueError, match=r"task: expected one of 'regression', 'binary', 'multiclass', got 'mse'"):
        evaluate_losses(model, torch.zeros(4, 3), torch.zeros(4), task="mse")
    with pytest.raises(ValueError, match=r"y: expected 4 rows \(as many as X\), got 5"):
        evaluate_losses(model, torch.zeros(4, 3), torch.zeros(5), task="regression")


def test_score_checks_lengths_shapes_and_task():
    logits, labels = torch.zeros(2, 4, 3), torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"y: expected 4 rows \(as many as n in outputs' shape"):
        score(logits, labels[:3], task="multiclass")
    with pytest.raises(ValueError, match=r"outputs: expected one regression output, shape \(\.\.\., n, 1\)"):
        score(logits, torch.zeros(4), task="regression")
    with pytest.raises(TypeError, match=r"y: expected an integer tensor \(class indices\), got dtype float32"):
        score(logits, torch.zeros(4), task="multiclass")
    with pytest.raises(ValueError, match=r"task: expected one of 'regression', 'binary', 'multiclass', got 'accuracy'"):
        score(logits, labels, task="accuracy")
    with pytest.raises(ValueError, match=r"y: expected a tensor on the device of outputs \(cpu\), got one on meta"):
        score(logits, labels.to("meta"), task="multiclass")


def test_ensemble_score_checks_the_members():
    logits, labels = torch.zeros(2, 4, 3), torch.tensor([0, 1, 2, 1])
    with pytest.raises(ValueError, match=r"members: expected at least one member index, got none"):
        ensemble_score(logits, labels, task="multiclass", members=[])
    with pytest.raises(ValueError, match=r"members\[1\]: expected an index in \[0, 2\) \(the members\), got 2"):
        ensemble_score(logits, labels, task="multiclass", members=[0, 2])


def test_evaluate_ensemble_checks_its_inputs():
    model, X = _classifier(), torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"y: expected class indices in \[0, 3\).*got 5 at row 2"):
        evaluate_ensemble(model, X, torch.tensor([0, 1, 5, 1]), task="multiclass", sizes=[1])
    with pytest.raises(ValueError, match=r"sizes: expected at least one ensemble size in 1\.\.2, got none"):
        evaluate_ensemble(model, X, torch.tensor([0, 1, 2, 1]), task="multiclass", sizes=[])
    with pytest.raises(ValueError, match=r"variances: expected 2 rows \(as many as the model's members\), got 3"):
        evaluate_ensemble(_regressor(), X, torch.zeros(4), task="regression", sizes=[1], variances=torch.ones(3))


def test_the_small_helpers_check_the_task_and_shapes():
    for call in (lambda: metric_name("rmse"), lambda: relative_improvement(1.0, 1.0, task="rmse")):
        with pytest.raises(ValueError, match=r"task: expected one of 'regression', 'binary', 'multiclass', got 'rmse'"):
            call()
    with pytest.raises(ValueError, match=r"flat: expected at least 2 rows \(pairs of models\)"):
        mean_pairwise_distance(torch.zeros(1, 5))


# ---------------------------------------------------------------- load_dataset


def test_load_dataset_refuses_a_non_bool_standardize():
    """Checked before any file is read (no data needed)."""
    from asymlib.core.data import load_dataset

    with pytest.raises(TypeError, match=r"standardize: expected True or False, got str 'no'"):
        load_dataset("churn", data_dir="/nonexistent", standardize="no")
