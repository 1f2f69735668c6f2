"""Section settings check themselves, and the shard store owns which settings made each unit:
a unit stored with other settings, another unit's rows or another table is never counted as
done, on every path in (the notebooks' ``run_*``, a task's result, old shards).

Tiny units on real data (churn, a few hundred rows, one epoch): seconds.
"""

from __future__ import annotations

import dataclasses
import shutil

import pandas as pd
import pytest
import yaml

from asymlib.execution import tasks
from asymlib.execution.params import ParamsError, load_params
from asymlib.sections.deep_ensembles import DeepEnsembleSettings, read_barriers, run_deep_ensembles
from asymlib.sections.mixtures import MixtureSettings
from asymlib.sections.settings import SectionSettings
from asymlib.sections.units import ShardMismatch, ShardStore

TINY = DeepEnsembleSettings(
    datasets=["churn"],
    hidden_sizes=[8],
    members=2,
    ensemble_sizes=[2],
    repeats=1,
    max_epochs=1,
    patience=1,
    max_rows=300,
    val_fraction=0.2,
)
UNIT = "churn-h8-r0"


def _strip_records(store: ShardStore, unit: str) -> None:
    """Rewrite a unit's shards as the code before records wrote them (plain ``to_parquet``)."""
    for table in store.tables:
        path = store.path(unit, table)
        pd.read_parquet(path).to_parquet(path, index=False)
        assert store.record(unit, table) is None


# --------------------------------------------------------------------------- settings


def test_settings_check_their_values_and_name_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"^deep_ensembles\.members must be a positive integer .*, got 0$"):
        DeepEnsembleSettings(members=0)
    with pytest.raises(ParamsError, match=r"deep_ensembles\.ensemble_sizes has 64, more than members = 4"):
        DeepEnsembleSettings(members=4)
    with pytest.raises(ParamsError, match=r"mixtures\.experts must include 2"):
        MixtureSettings(experts=[4, 8])
    with pytest.raises(ParamsError, match=r"mixtures\.kinds lists 'mlp' more than once"):
        MixtureSettings(kinds=["mlp", "mlp"])
    profile = tmp_path / "x.yaml"
    profile.write_text(yaml.safe_dump({"deep_ensembles": {**TINY.as_dict(), "members": 0}}))
    with pytest.raises(ParamsError, match=r"x\.yaml: deep_ensembles\.members must be a positive integer"):
        load_params(profile)


def test_settings_are_frozen_read_like_a_mapping_and_record_what_makes_results_comparable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.members = 3
    assert TINY["members"] == TINY.members == 2 and TINY.hidden_sizes == (8,) and dict(TINY)["max_rows"] == 300
    assert TINY.as_dict()["hidden_sizes"] == [8]  # plain values, for YAML and papermill
    record = TINY.record()
    assert "members" in record and record["ensemble_sizes"] == [2]
    # the grid's size, where it runs and the runner's keys do not make results incomparable
    assert not {"hidden_sizes", "repeats", "device", "datasets", "workers", "threads"} & set(record)
    assert "repeats" in MixtureSettings().record()  # a mixture unit's repeats are its members
    assert TINY.config.max_epochs == 1 and TINY.units("churn") == {UNIT: {"hidden": 8, "repeat": 0}}


def test_rows_name_their_unit():
    row = {"dataset": "churn", "gating": "gumbel", "kind": "iwmlp", "experts": 4}
    assert MixtureSettings.unit_of(row) == "churn-gumbel-iwmlp-e4"  # from before the load-balancing axis
    assert MixtureSettings.unit_of({**row, "balance_weight": 0.0}) == "churn-gumbel-iwmlp-e4"
    assert MixtureSettings.unit_of({**row, "balance_weight": 0.1}) == "churn-gumbel-iwmlp-e4-b0.1"
    assert set(MixtureSettings.UNIT_COLUMNS) == set(row) | {"balance_weight"}
    assert DeepEnsembleSettings.unit_of({"dataset": "adult", "hidden": 64, "repeat": 2}) == "adult-h64-r2"


def test_a_notebook_built_from_its_parameters_gets_the_profiles_settings():
    parameters = {**TINY.as_dict(), "dataset": "churn", "out_dir": "runs/x", "progress": False}
    assert DeepEnsembleSettings.from_namespace(parameters, datasets=["churn"]) == TINY


# --------------------------------------------------------------------------- the notebook path


def test_the_notebook_path_refuses_other_settings_and_redoes_them_on_request(tmp_path, monkeypatch):
    import asymlib.sections.deep_ensembles as section

    models, _ = run_deep_ensembles("churn", TINY, out_dir=tmp_path, progress=False)
    other = dataclasses.replace(TINY, max_epochs=2)
    with pytest.raises(ShardMismatch, match=r"churn-h8-r0 .*max_epochs: 1 -> 2.*redo=True"):
        run_deep_ensembles("churn", other, out_dir=tmp_path, progress=False)
    # more repeats only grow the grid: the stored unit is reused, only the new one trained
    grown, _ = run_deep_ensembles("churn", dataclasses.replace(TINY, repeats=2), out_dir=tmp_path, progress=False)
    assert sorted(grown["repeat"].unique()) == [0, 1]
    pd.testing.assert_frame_equal(grown[grown["repeat"] == 0].reset_index(drop=True), models)

    redone, _ = run_deep_ensembles("churn", other, out_dir=tmp_path, redo=True, progress=False)
    assert ShardStore(tmp_path, settings=other).record(UNIT, "models")["settings"]["max_epochs"] == 2
    assert yaml.safe_load((tmp_path / "settings.yaml").read_text())["churn"]["max_epochs"] == 2
    with pytest.raises(ShardMismatch, match=r"max_epochs: 2 -> 1"):  # and now the first settings are refused
        run_deep_ensembles("churn", TINY, out_dir=tmp_path, progress=False)

    monkeypatch.setattr(section, "fit_deep_ensemble", lambda *a, **k: pytest.fail("a finished unit was retrained"))
    again, _ = run_deep_ensembles("churn", other, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, redone)


# --------------------------------------------------------------------------- what a shard holds


@pytest.fixture
def stored(tmp_path):
    """A store with one finished tiny unit, churn-h8-r0."""
    run_deep_ensembles("churn", TINY, out_dir=tmp_path, progress=False)
    store = ShardStore(tmp_path, settings=TINY)
    assert store.done(UNIT) and store.record(UNIT, "ensembles")["unit"] == UNIT
    return store


def test_a_shard_of_another_unit_is_never_done(stored):
    other = "churn-h8-r1"
    for table in stored.tables:
        shutil.copyfile(stored.path(UNIT, table), stored.path(other, table))
    assert stored.complete(other) and stored.problems(other) == [
        "its models shard shards/churn-h8-r1-models.parquet was written for unit churn-h8-r0",
        "its ensembles shard shards/churn-h8-r1-ensembles.parquet was written for unit churn-h8-r0",
    ]
    with pytest.raises(ShardMismatch):
        stored.done(other)
    assert not ShardStore(stored.root, settings=TINY, redo=True).done(other)
    _strip_records(stored, other)  # without a record, its rows still give it away
    assert "its models shard shards/churn-h8-r1-models.parquet holds rows of churn-h8-r0" in stored.problems(other)
    with pytest.raises(ShardMismatch, match="holds rows of churn-h8-r0"):
        run_deep_ensembles("churn", dataclasses.replace(TINY, repeats=2), out_dir=stored.root, progress=False)


def test_a_shard_of_another_table_or_format_is_never_done(stored):
    shutil.copyfile(stored.path(UNIT, "models"), stored.path(UNIT, "ensembles"))
    assert stored.problems(UNIT) == ["its ensembles shard shards/churn-h8-r0-ensembles.parquet holds the models table"]
    run_deep_ensembles("churn", TINY, out_dir=stored.root, redo=True, progress=False)
    assert stored.done(UNIT)

    frame = pd.read_parquet(stored.path(UNIT, "models"))
    newer = type("Newer", (DeepEnsembleSettings,), {"SCHEMA": 2})(**TINY)
    assert ShardStore(stored.root, settings=newer).problems(UNIT)[0] == (
        "its models shard shards/churn-h8-r0-models.parquet has table format 1, not 2"
    )
    assert not ShardStore(stored.root, settings=newer, redo=True).done(UNIT)
    assert len(frame) == 4  # untouched


def test_old_shards_count_by_the_settings_yaml_beside_them(stored):
    _strip_records(stored, UNIT)
    assert stored.done(UNIT)  # settings.yaml records churn's settings: these
    other = dataclasses.replace(TINY, members=3)
    assert ShardStore(stored.root, settings=other).problems(UNIT) == ["members: 2 -> 3"]
    (stored.root / "settings.yaml").unlink()
    assert stored.problems(UNIT) == ["no record of the settings it was made with"]
    with pytest.raises(ShardMismatch, match="no record of the settings"):
        run_deep_ensembles("churn", TINY, out_dir=stored.root, progress=False)


def test_old_shards_keep_their_settings_when_a_dataset_entry_changes(stored):
    _strip_records(stored, UNIT)
    other = dataclasses.replace(TINY, max_epochs=2)
    tables = tasks.train_unit("deep_ensembles", other, "churn", {"hidden": 8, "repeat": 1}, threads=1).tables
    ShardStore(stored.root, settings=other).save("churn-h8-r1", **tables)
    assert stored.record(UNIT, "models")["settings"] == TINY.record()  # stamped with what it was made with
    assert ShardStore(stored.root, settings=other).problems(UNIT) == ["max_epochs: 1 -> 2"]
    assert stored.done(UNIT) and not ShardStore(stored.root, settings=other).problems("churn-h8-r1")


def test_settings_yaml_follows_the_units_saved_and_deleted(stored, tmp_path):
    assert stored.summary() == {"churn": TINY.record()}
    stored.delete(UNIT)
    assert not (stored.root / "settings.yaml").exists()  # no unit left, no entry
    ShardStore(tmp_path / "new", settings=TINY).note_settings("churn")
    assert yaml.safe_load((tmp_path / "new" / "settings.yaml").read_text()) == {"churn": TINY.record()}


# --------------------------------------------------------------------------- a task's result


def test_a_tasks_tables_are_saved_only_under_their_unit_and_settings(tmp_path):
    result = tasks.train_unit("deep_ensembles", TINY, "churn", {"hidden": 8, "repeat": 0}, threads=1)
    assert result.made_with == TINY
    other = ShardStore(tmp_path, settings=dataclasses.replace(TINY, seed=1))
    with pytest.raises(ShardMismatch, match=r"seed: 0 -> 1"):
        other.save(UNIT, made_with=result.made_with, **result.tables)
    store = ShardStore(tmp_path, settings=TINY)
    with pytest.raises(ShardMismatch, match=r"the models table holds rows of churn-h8-r0"):
        store.save("churn-h8-r1", made_with=result.made_with, **result.tables)
    assert not (tmp_path / "shards").exists()  # nothing written
    store.save(UNIT, made_with=result.made_with, **result.tables)
    assert store.done(UNIT) and store.units() == [UNIT]


# --------------------------------------------------------------------------- an optional table


def test_the_barriers_table_is_optional_in_reading_completing_and_deleting(tmp_path):
    """A unit that measured loss barriers has a barriers shard; one that did not, none. A
    store that reads whatever made the units (no settings: reports) reads the barriers of
    the units that have them, and counts both units as done; deleting a unit takes its
    barriers shard too."""
    assert SectionSettings.for_tables(("models", "barriers", "ensembles")) is DeepEnsembleSettings
    assert SectionSettings.for_tables(("models", "ensembles")) is DeepEnsembleSettings
    with_barriers = dataclasses.replace(TINY, barrier_pairs=1)
    assert with_barriers.tables == ("models", "barriers", "ensembles")
    run_deep_ensembles("churn", with_barriers, out_dir=tmp_path, progress=False)  # churn-h8-r0
    other = "churn-h8-r1"
    tables = tasks.train_unit("deep_ensembles", TINY, "churn", {"hidden": 8, "repeat": 1}, threads=1).tables
    assert list(tables) == ["models", "ensembles"]
    ShardStore(tmp_path, settings=TINY).save(other, **tables)

    barriers = ShardStore(tmp_path, settings=with_barriers)
    assert barriers.path(UNIT, "barriers").exists() and not barriers.path(other, "barriers").exists()
    curves = barriers.read([UNIT], "barriers")
    assert len(curves) == 2 * 1 * 5  # mlp and wmlp, one pair, five alphas (not aligned)
    pd.testing.assert_frame_equal(read_barriers("churn", with_barriers, out_dir=tmp_path), curves)

    store = ShardStore(tmp_path, tables=("models", "ensembles"))
    assert store.units() == [UNIT, other]
    assert all(store.complete(u) and store.done(u) and not store.problems(u) for u in (UNIT, other))
    pd.testing.assert_frame_equal(store.read([UNIT, other], "barriers"), curves)  # only the unit that has them
    assert store.read([other], "barriers").empty
    assert len(store.read([UNIT, other], "models")) == 2 * 2 * 2

    # where the settings measure barriers, a unit without them is finished, but with other
    # settings: refused (not trained again over, unless redo)
    assert barriers.done(UNIT) and barriers.complete(other)
    assert {"barrier_pairs: 0 -> 1", "no barriers shard"} <= set(barriers.problems(other))
    with pytest.raises(ShardMismatch, match="barrier_pairs: 0 -> 1"):
        barriers.done(other)
    assert not ShardStore(tmp_path, settings=with_barriers, redo=True).done(other)

    kept = tmp_path / "kept"
    shutil.copytree(tmp_path / "shards", kept)
    store.delete(UNIT)
    assert not list((tmp_path / "shards").glob(f"{UNIT}-*")) and store.units() == [other]
    assert store.read([UNIT, other], "barriers").empty
    # so does a store whose settings measure no barriers
    shutil.rmtree(tmp_path / "shards")
    shutil.copytree(kept, tmp_path / "shards")
    ShardStore(tmp_path, settings=TINY).delete(UNIT)
    assert not list((tmp_path / "shards").glob(f"{UNIT}-*")) and store.units() == [other]


def test_an_optional_shard_of_another_unit_is_never_read(tmp_path):
    """The barriers shard is held to what every other shard is: its record must name its
    unit and table, even where the store reads it as an optional table."""
    run_deep_ensembles("churn", dataclasses.replace(TINY, barrier_pairs=1, repeats=2), out_dir=tmp_path, progress=False)
    other = "churn-h8-r1"
    store = ShardStore(tmp_path, tables=("models", "ensembles"))
    shutil.copyfile(store.path(UNIT, "barriers"), store.path(other, "barriers"))
    assert store.done(other)  # its own tables are sound
    with pytest.raises(ShardMismatch, match=r"its barriers shard shards/churn-h8-r1-barriers\.parquet was written for"):
        store.read([UNIT, other], "barriers")
    redo = ShardStore(tmp_path, tables=("models", "ensembles"), redo=True)
    assert set(redo.read([UNIT, other], "barriers")["repeat"]) == {0}  # left out, as with redo a unit is


def test_turning_barrier_pairs_on_over_stored_units_is_refused(stored):
    with_barriers = dataclasses.replace(TINY, barrier_pairs=1)
    with pytest.raises(ShardMismatch, match=r"barrier_pairs: 0 -> 1"):
        run_deep_ensembles("churn", with_barriers, out_dir=stored.root, progress=False)
