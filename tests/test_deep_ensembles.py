"""Deep-ensemble work units: seeds, repeatability, tidy tables, resuming."""

import dataclasses

import pandas as pd
import pytest

from asymlib.core.data import load_dataset
from asymlib.sections.deep_ensembles import (
    DeepEnsembleSettings,
    member_seeds,
    run_deep_ensembles,
    train_deep_ensemble,
)
from asymlib.sections.units import ShardStore

SETTINGS = DeepEnsembleSettings(members=4, ensemble_sizes=[2, 4], max_epochs=3, patience=2)


@pytest.fixture(scope="module")
def churn():
    return load_dataset("churn", max_rows=800)


def test_seeds_differ_per_member_and_repeat_and_are_stable():
    init, order = member_seeds(0, 0, 8)
    assert len(set(init)) == 8 and len(set(order)) == 8 and not set(init) & set(order)
    assert member_seeds(0, 0, 8) == (init, order)
    assert member_seeds(0, 1, 8)[0] != init and member_seeds(1, 0, 8)[0] != init


def test_a_unit_repeats_exactly_and_gives_tidy_tables(churn):
    first = train_deep_ensemble(churn, SETTINGS, hidden=8, kind="wmlp", progress=False)
    again = train_deep_ensemble(churn, SETTINGS, hidden=8, kind="wmlp", progress=False)
    models, ensembles = first
    pd.testing.assert_frame_equal(models.drop(columns="train_time"), again[0].drop(columns="train_time"))
    assert len(models) == 4 and list(ensembles["ensemble_size"]) == [2, 4]
    assert {"dataset", "hidden", "repeat", "type", "metric", "epochs", "train_time"} <= set(models.columns)
    assert ensembles["single_mean"].iloc[0] == pytest.approx(models["metric"].mean())


def test_mlp_and_wmlp_share_member_seeds(churn):
    settings = dataclasses.replace(SETTINGS, members=3, ensemble_sizes=[2])
    mlp, _ = train_deep_ensemble(churn, settings, hidden=8, kind="mlp", progress=False)
    wmlp, _ = train_deep_ensemble(churn, settings, hidden=8, kind="wmlp", progress=False)
    assert mlp["init_seed"].tolist() == wmlp["init_seed"].tolist()
    assert mlp["order_seed"].tolist() == wmlp["order_seed"].tolist()


def test_finished_units_are_not_trained_again(tmp_path, monkeypatch):
    settings = dataclasses.replace(SETTINGS, hidden_sizes=[8], members=2, ensemble_sizes=[2], repeats=2, max_rows=600)
    where = dict(out_dir=tmp_path, progress=False)
    models, ensembles = run_deep_ensembles("churn", settings, **where)
    assert len(models) == 2 * 2 * 2 and len(ensembles) == 2 * 2
    assert ShardStore(tmp_path, tables=("models", "ensembles")).units() == ["churn-h8-r0", "churn-h8-r1"]

    import asymlib.sections.deep_ensembles as experiments

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(experiments, "fit_deep_ensemble", no_training)
    again_models, again_ensembles = run_deep_ensembles("churn", settings, **where)
    pd.testing.assert_frame_equal(models, again_models)
    # growing the grid trains only the new unit
    monkeypatch.undo()
    grown, _ = run_deep_ensembles("churn", dataclasses.replace(settings, repeats=3), **where)
    assert sorted(grown["repeat"].unique()) == [0, 1, 2]


def test_a_lower_precision_is_recorded_in_the_tables(churn):
    common = dict(hidden=8, kind="mlp", progress=False)
    settings = dataclasses.replace(SETTINGS, members=2, ensemble_sizes=[2])
    models, ensembles = train_deep_ensemble(churn, settings, **common)
    assert "precision" not in models.columns and "precision" not in ensembles.columns  # float32: as before
    lower = dataclasses.replace(settings, max_epochs=2, precision="bf16")
    models, ensembles = train_deep_ensemble(churn, lower, **common)
    assert set(models["precision"]) == set(ensembles["precision"]) == {"bf16"}
