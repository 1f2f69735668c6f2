"""Deep-ensemble work units: seeds, repeatability, tidy tables, resuming, loss barriers and
alignment between members."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from asymlib.core.alignment import aligned_ensemble, match_members
from asymlib.core.barriers import barrier_curves, barrier_summary
from asymlib.core.data import load_dataset
from asymlib.core.evaluation import relative_improvement, score
from asymlib.core.trainer import predict
from asymlib.execution.params import ParamsError
from asymlib.sections.deep_ensembles import (
    DeepEnsembleSettings,
    deep_ensemble_tables,
    fit_deep_ensemble,
    member_seeds,
    run_deep_ensembles,
    train_deep_ensemble,
    train_deep_ensemble_unit,
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


# --------------------------------------------------------------------------- barriers and alignment

#: A unit of every type that measures loss barriers (member 0 against 1 and 2) and aligns.
BETWEEN = DeepEnsembleSettings(
    types=["mlp", "wmlp", "smlp", "syre"],
    hidden_sizes=[8],
    members=4,
    ensemble_sizes=[2, 4],
    max_epochs=3,
    patience=2,
    max_rows=1500,
    barrier_pairs=2,
    alignment=True,
)
BARRIER_COLUMNS = ["loss_barrier", "metric_barrier", "loss_barrier_aligned", "metric_barrier_aligned"]
UNIT_KEY = ["dataset", "split", "hidden", "repeat", "type", "metric_name", "n_fix", "kappa"]


@pytest.fixture(scope="module")
def churn1500():
    return BETWEEN.load_data("churn")


@pytest.fixture(scope="module")
def between_unit(churn1500):
    return train_deep_ensemble_unit(churn1500, BETWEEN, hidden=8, repeat=0, progress=False)


def test_a_unit_with_barriers_writes_the_barriers_table_between_its_others(between_unit):
    assert BETWEEN.tables == ("models", "barriers", "ensembles")
    assert list(between_unit) == ["models", "barriers", "ensembles"]
    models, barriers, ensembles = between_unit.values()
    assert set(models["type"]) == set(barriers["type"]) == set(ensembles["type"])
    assert len(set(models["type"])) == 4
    for kind, rows in models.groupby("type"):
        healthy = rows.loc[~rows["diverged"], "member"].tolist()
        paired = healthy[1:3]  # the first healthy member against the next two
        measured = rows.set_index("member")[BARRIER_COLUMNS]
        assert measured.loc[paired].notna().all().all(), kind
        assert measured.drop(index=paired).isna().all().all(), kind
        if not rows["diverged"].any():
            assert paired == [1, 2]
        assert (measured.loc[paired] >= 0).all().all(), kind  # 0 and 1 are among the alphas

    # per type: 2 pairs x 5 alphas x (unaligned, aligned), with the unit's key
    assert list(barriers.columns) == [*UNIT_KEY, "aligned", "pair_a", "pair_b", "alpha", "loss", "metric"]
    assert barriers.groupby("type").size().tolist() == [2 * 5 * 2] * 4
    for (kind, aligned), rows in barriers.groupby(["type", "aligned"]):
        assert sorted(set(zip(rows["pair_a"], rows["pair_b"]))) == [(0, 1), (0, 2)], (kind, aligned)
        assert sorted(rows["alpha"].unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert set(barriers["dataset"]) == {"churn"} and set(barriers["hidden"]) == {8} and set(barriers["repeat"]) == {0}
    assert barriers["metric"].between(0, 1).all() and (barriers["loss"] > 0).all()  # accuracy, cross-entropy

    # the aligned weight average, beside the plain one
    for column in ("interpolated_metric_aligned", "interpolated_relative_improvement_aligned"):
        assert column in ensembles.columns
    assert ensembles["interpolated_metric_aligned"].between(0, 1).all()
    assert list(ensembles.columns[: len(UNIT_KEY) + 1]) == [*UNIT_KEY, "ensemble_size"]


def test_the_barrier_columns_are_barrier_summary_of_the_trained_members(churn1500, between_unit):
    common = dict(hidden=8, repeat=0, kind="mlp")
    trained = fit_deep_ensemble(churn1500, BETWEEN, **common, progress=False)
    tables = deep_ensemble_tables(churn1500, BETWEEN, trained, **common)
    assert list(tables) == ["models", "barriers", "ensembles"]
    # one type on its own gives what the unit gave for it (training repeats exactly)
    for name, table in tables.items():
        in_unit = between_unit[name]
        in_unit = in_unit[in_unit["type"] == "mlp"].reset_index(drop=True)
        if name == "ensembles":
            in_unit = in_unit.drop(columns="settings")
        timing = ["train_time", "batch_wall_time"]
        pd.testing.assert_frame_equal(
            table.drop(columns=timing, errors="ignore"), in_unit.drop(columns=timing, errors="ignore")
        )

    assert not trained.result.diverged.any()
    model, task = trained.model, churn1500.task
    X, y = churn1500.X_test, churn1500.y_test
    pairs = [(0, 1), (0, 2)]
    aligned = aligned_ensemble(model, match_members(model, reference=0))
    models = tables["models"].set_index("member")
    for suffix, network in (("", model), ("_aligned", aligned)):
        curves = barrier_curves(network, X, y, task=task, pairs=pairs)
        summary = barrier_summary(curves, task=task).set_index("pair_b")
        for column in ("loss_barrier", "metric_barrier"):
            assert models.loc[[1, 2], column + suffix].tolist() == pytest.approx(summary[column].tolist(), abs=1e-7)
        stored = tables["barriers"][tables["barriers"]["aligned"] == bool(suffix)]
        for column in ("pair_a", "pair_b", "alpha"):
            assert stored[column].tolist() == curves[column].tolist()
        for column in ("loss", "metric"):
            assert stored[column].tolist() == pytest.approx(curves[column].tolist(), abs=1e-7)

    # the aligned weight average of the first k members
    ensembles = tables["ensembles"].set_index("ensemble_size")
    for k in BETWEEN.ensemble_sizes:
        averaged = predict(aligned.interpolate(list(range(k))), X, batch_size=4096)[0]
        expected = float(score(averaged, y, task=task))
        assert ensembles.loc[k, "interpolated_metric_aligned"] == pytest.approx(expected, abs=1e-7)
        assert ensembles.loc[k, "interpolated_relative_improvement_aligned"] == pytest.approx(
            float(relative_improvement(expected, ensembles.loc[k, "single_mean"], task=task)), abs=1e-7
        )


@pytest.mark.parametrize("kind", ["mlp", "syre"])
def test_alignment_keeps_the_ends_of_every_path(between_unit, kind):
    """A permutation of hidden units leaves an MLP's function unchanged (syre computes like
    one): aligned or not, the path starts at member 0 and ends at the same function."""
    barriers = between_unit["barriers"]
    barriers = barriers[(barriers["type"] == kind) & barriers["alpha"].isin([0.0, 1.0])]
    plain = barriers[~barriers["aligned"]].reset_index(drop=True)
    aligned = barriers[barriers["aligned"]].reset_index(drop=True)
    assert len(plain) == len(aligned) == 2 * 2
    pd.testing.assert_frame_equal(plain[["pair_a", "pair_b", "alpha"]], aligned[["pair_a", "pair_b", "alpha"]])
    for column in ("loss", "metric"):
        assert aligned[column].to_numpy() == pytest.approx(plain[column].to_numpy(), abs=1e-5)


def test_without_barriers_or_alignment_a_unit_is_as_before(churn1500):
    settings = dataclasses.replace(BETWEEN, types=["mlp", "syre"], barrier_pairs=0, alignment=False)
    assert settings.tables == ("models", "ensembles")
    tables = train_deep_ensemble_unit(churn1500, settings, hidden=8, repeat=0, progress=False)
    assert list(tables) == ["models", "ensembles"]
    new = {*BARRIER_COLUMNS, "interpolated_metric_aligned", "interpolated_relative_improvement_aligned"}
    assert not new & {*tables["models"].columns, *tables["ensembles"].columns}
    assert set(tables["models"]["type"]) == {"mlp", "syre"}

    # alignment alone: the aligned weight average, but no barriers (no pairs) and no table
    aligned = dataclasses.replace(settings, types=["mlp"], alignment=True)
    assert aligned.tables == ("models", "ensembles")
    models, ensembles = train_deep_ensemble(churn1500, aligned, hidden=8, kind="mlp", progress=False)
    assert not set(BARRIER_COLUMNS) & set(models.columns)
    assert ensembles["interpolated_metric_aligned"].between(0, 1).all()


def test_barrier_pairs_and_alignment_are_checked():
    base = dict(members=4, ensemble_sizes=[2, 4])
    assert DeepEnsembleSettings(**base, barrier_pairs=3).barrier_pairs == 3  # every other member
    with pytest.raises(ParamsError, match=r"deep_ensembles\.barrier_pairs = 4 .*other 3"):
        DeepEnsembleSettings(**base, barrier_pairs=4)
    for bad in (-1, 1.5, "2", True, None):
        with pytest.raises(ParamsError, match=r"^deep_ensembles\.barrier_pairs must be a non-negative integer"):
            DeepEnsembleSettings(**base, barrier_pairs=bad)
    for bad in ("yes", 1, 0, None):
        with pytest.raises(ParamsError, match=r"^deep_ensembles\.alignment must be true or false"):
            DeepEnsembleSettings(**base, alignment=bad)
    assert DeepEnsembleSettings(**base).tables == ("models", "ensembles")
    assert DeepEnsembleSettings(**base, alignment=True).tables == ("models", "ensembles")
    assert DeepEnsembleSettings(**base, barrier_pairs=1).tables == ("models", "barriers", "ensembles")


def test_syre_scale_sets_the_anchor_and_is_recorded_in_syre_rows_only(churn):
    for bad in (0, -0.1, "big", None):
        with pytest.raises(ParamsError, match=r"^deep_ensembles\.syre_scale must be a positive number"):
            DeepEnsembleSettings(members=4, ensemble_sizes=[2, 4], syre_scale=bad)
    settings = DeepEnsembleSettings(
        members=2, ensemble_sizes=[2], max_epochs=1, patience=1, types=["mlp", "syre"], syre_scale=1.0
    )
    trained = fit_deep_ensemble(churn, settings, hidden=8, repeat=0, kind="syre", progress=False)
    first = trained.model.layers[0]
    # an anchor as large as a fresh initialisation's weights: std 1 / sqrt(fan-in)
    assert first.anchor_weight.std().item() == pytest.approx(1 / churn.n_features**0.5, rel=0.2)
    assert trained.model.subset([0]).layers[0].anchor_weight.equal(first.anchor_weight)  # copies keep it
    tables = train_deep_ensemble_unit(churn, settings, hidden=8, repeat=0, progress=False)
    scales = tables["models"].groupby("type")["syre_scale"].first()
    assert scales["syre"] == 1.0 and np.isnan(scales["mlp"])
