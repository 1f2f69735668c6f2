"""The batch runner: the smoke profile (both sections) over all five datasets, resuming,
failures, bad files.

The runs execute the real notebook with papermill (a kernel per dataset), so they need the
raw data: $ASYMLIB_DATA, <repo>/data or ../shared/data beside the checkout; they fail
(never skip) without it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fingerprint import TABLES, read_reference, reference_mismatches, table_fingerprint

from asymlib.core.data import DATASETS, RAW_FILES, load_dataset
from asymlib.core.project import notebook_succeeded
from asymlib.execution import params, records, runner
from asymlib.execution.cli import main
from asymlib.execution.params import ParamsError, load_params
from asymlib.execution.records import unit_priority
from asymlib.execution.runner import run_profile

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke.yaml"


def _find_data() -> Path | None:
    for candidate in (os.environ.get("ASYMLIB_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and all((Path(candidate) / rel).is_file() for d in DATASETS for rel in RAW_FILES[d]):
            return Path(candidate)
    return None


DATA = _find_data()


@pytest.fixture
def require_data():
    if DATA is None:
        pytest.fail("raw data not found: run `asymlib fetch --from DIR` (make setup does) or set ASYMLIB_DATA")


needs_data = pytest.mark.usefixtures("require_data")


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """One smoke run of every section and dataset, shared by the tests below: (out_root, runs).

    One torch thread per notebook, whatever the machine's cores, as when the committed
    reference was made (a sum over more threads rounds otherwise).
    """
    out_root = tmp_path_factory.mktemp("runs")
    profile = yaml.safe_load(SMOKE.read_text())
    for section in params.profile_sections(SMOKE):
        profile[section]["threads"] = 1
    pinned = tmp_path_factory.mktemp("params") / SMOKE.name
    pinned.write_text(yaml.safe_dump(profile))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASYMLIB_DATA", str(DATA))
        runs = run_profile(pinned, out_root=out_root, progress=False)
    return out_root, runs


@pytest.fixture
def smoke(smoke_runs):
    """The deep-ensemble part of the smoke run: (settings, out_root, run)."""
    out_root, runs = smoke_runs
    return load_params(SMOKE)["deep_ensembles"], out_root, runs["deep_ensembles"]


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv("ASYMLIB_DATA", str(DATA))


def _shard_times(out_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (out_dir / "shards").iterdir()}


@needs_data
def test_smoke_run_has_one_row_per_model_and_ensemble(smoke):
    settings, out_root, run = smoke
    out_dir = out_root / "smoke" / "deep_ensembles"
    assert run.ok and sorted(run.executed) == sorted(DATASETS) and run.skipped == []

    grid = [
        (dataset, hidden, repeat, kind)
        for dataset in DATASETS
        for hidden in settings["hidden_sizes"]
        for repeat in range(settings["repeats"])
        for kind in ("mlp", "wmlp")
    ]
    unit = ["dataset", "hidden", "repeat", "type"]
    ensembles = pd.read_parquet(out_dir / "ensembles.parquet")
    expected = sorted((*g, k) for g in grid for k in settings["ensemble_sizes"])
    assert sorted(ensembles[unit + ["ensemble_size"]].itertuples(index=False, name=None)) == expected
    models = pd.read_parquet(out_dir / "models.parquet")
    expected = sorted((*g, m) for g in grid for m in range(settings["members"]))
    assert sorted(models[unit + ["member"]].itertuples(index=False, name=None)) == expected

    assert len(pd.read_csv(out_dir / "ensembles.csv")) == len(ensembles)
    for dataset in DATASETS:
        assert notebook_succeeded(out_dir / f"{dataset}.ipynb")
    assert ensembles["ensemble_metric"].notna().all() and models["metric"].notna().all()


@needs_data
def test_smoke_tables_match_the_committed_reference(smoke_runs):
    """The smoke profile computes what it computed when tests/smoke_reference/ was made:
    the same rows, keys and flags, every float within float32 rounding of another CPU
    (tests/fingerprint.py)."""
    out_root, _ = smoke_runs
    problems = {}
    for section, tables in TABLES.items():
        for table in tables:
            frame = pd.read_parquet(out_root / "smoke" / section / f"{table}.parquet")
            found = reference_mismatches(frame, read_reference(REPO / "tests" / "smoke_reference", section, table))
            if found:
                problems[f"{section}/{table}"] = found
    assert not problems, problems


def test_reference_comparison_sees_a_changed_result_but_not_rounding():
    frame = pd.DataFrame({"dataset": ["a", "b"], "epochs": [3, 4], "metric": [0.81, 0.52], "train_time": [1.0, 2.0]})
    rounded = frame.assign(metric=frame["metric"] * (1 + 1e-6), train_time=[9.0, 9.0]).iloc[::-1]
    assert reference_mismatches(rounded, frame) == []
    assert reference_mismatches(frame.assign(metric=[0.81, 0.55]), frame) != []  # a real change
    assert reference_mismatches(frame.assign(epochs=[3, 5]), frame) != []
    assert reference_mismatches(frame.iloc[:1], frame) != []


def test_fingerprint_sees_one_changed_bit_but_not_order_or_timing():
    frame = pd.DataFrame({"dataset": ["a", "b"], "metric": [0.1, 0.2], "train_time": [1.0, 2.0]})
    reference = table_fingerprint(frame)
    shuffled = frame.iloc[::-1][["train_time", "metric", "dataset"]].assign(train_time=[5.0, 6.0])
    assert table_fingerprint(shuffled) == reference
    nudged = frame.assign(metric=[0.1, np.nextafter(0.2, 1.0)])
    assert table_fingerprint(nudged) != reference


@needs_data
def test_smoke_run_builds_a_report_per_section(smoke_runs):
    out_root, runs = smoke_runs
    for section, run in runs.items():
        assert run.report_error is None
        assert run.report == out_root / "smoke" / f"report_{section}.html"
        html = run.report.read_text()
        assert all(dataset in html for dataset in DATASETS)
        assert (out_root / "smoke" / f"report_{section}.ipynb").exists()


@needs_data
def test_smoke_run_has_one_row_per_mixture(smoke_runs):
    out_root, runs = smoke_runs
    assert list(runs) == ["deep_ensembles", "mixtures"]  # every section of the file, by default
    settings = load_params(SMOKE, sections=["mixtures"])["mixtures"]
    run, out_dir = runs["mixtures"], out_root / "smoke" / "mixtures"
    assert run.ok and sorted(run.executed) == sorted(DATASETS)

    grid = sorted(
        (dataset, gating, kind, experts, repeat)
        for dataset in DATASETS
        for gating in settings["gatings"]
        for kind in settings["kinds"]
        for experts in settings["experts"]
        for repeat in range(settings["repeats"])
    )
    mixtures = pd.read_parquet(out_dir / "mixtures.parquet")
    unit = ["dataset", "gating", "kind", "experts", "repeat"]
    assert sorted(mixtures[unit].itertuples(index=False, name=None)) == grid
    assert mixtures[["metric", "epochs", "train_time"]].notna().all().all()
    assert (mixtures.loc[mixtures["experts"] == 2, "relative_to_2"] == 0).all()
    assert mixtures["relative_to_2"].notna().all()
    assert len(pd.read_csv(out_dir / "mixtures.csv")) == len(mixtures)

    usage = pd.read_parquet(out_dir / "usage.parquet")
    per_epoch = usage.groupby(unit + ["epoch"])["usage"]
    assert (per_epoch.size() == per_epoch.size().index.get_level_values("experts")).all()
    assert abs(per_epoch.sum() - 1).max() < 1e-5  # one gate weight per expert, summing to 1
    last = usage.groupby(unit)["epoch"].max().rename("epochs")
    pd.testing.assert_series_equal(last, mixtures.set_index(unit)["epochs"].sort_index(), check_dtype=False)
    for dataset in DATASETS:
        assert notebook_succeeded(out_dir / f"{dataset}.ipynb")


@needs_data
def test_second_run_starts_no_notebook(smoke, data_env, monkeypatch):
    _, out_root, first = smoke
    out_dir = out_root / "smoke" / "deep_ensembles"
    before = _shard_times(out_dir)

    def no_papermill(*args, **kwargs):
        raise AssertionError("papermill was started for a finished dataset")

    def no_cluster(*args, **kwargs):
        raise AssertionError("a Dask cluster was started for a finished dataset")

    monkeypatch.setattr(runner, "execute_notebook", no_papermill)
    monkeypatch.setattr(runner, "open_cluster", no_cluster)
    reports = {p: p.stat().st_mtime_ns for p in (out_root / "smoke").glob("report_*")}
    runs = run_profile(SMOKE, out_root=out_root, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (out_root / "smoke").glob("report_*")} == reports
    assert all(run.executed == [] and sorted(run.skipped) == sorted(DATASETS) for run in runs.values())
    again = runs["deep_ensembles"]
    assert _shard_times(out_dir) == before
    pd.testing.assert_frame_equal(again.tables["ensembles"], first.tables["ensembles"])


@needs_data
def test_partly_done_dataset_is_executed_again(smoke, data_env):
    _, out_root, _ = smoke
    out_dir = out_root / "smoke" / "deep_ensembles"
    (out_dir / "shards" / "california-h8-r0-ensembles.parquet").unlink()
    others = {k: v for k, v in _shard_times(out_dir).items() if not k.startswith("california-")}

    run = run_profile(SMOKE, out_root=out_root, progress=False, report=False)["deep_ensembles"]
    assert run.executed == ["california"] and run.ok
    assert len(run.tables["ensembles"]["dataset"].unique()) == len(DATASETS)
    assert {k: v for k, v in _shard_times(out_dir).items() if not k.startswith("california-")} == others


def broken_churn(tmp_path: Path) -> Path:
    """A data folder whose churn file is its header line only (present, so every check
    before training passes; churn's units fail on their workers) beside the real california."""
    data = tmp_path / "data"
    data.mkdir()
    header = (DATA / "Churn_Modelling.csv").read_text().splitlines()[0]
    (data / "Churn_Modelling.csv").write_text(header + "\n")
    for name in RAW_FILES["california"]:
        (data / name).symlink_to(DATA / name)
    return data


@needs_data
def test_failed_unit_does_not_stop_the_others(tmp_path, monkeypatch, capsys):
    # churn's file has no rows (its unit fails on its worker); california runs. The
    # worker's traceback lands in churn.log.
    monkeypatch.setenv("ASYMLIB_DATA", str(broken_churn(tmp_path)))
    params = yaml.safe_load(SMOKE.read_text())
    del params["mixtures"]  # this test is about the runner, one section is enough
    params["deep_ensembles"].update(datasets=["churn", "california"])
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(params))

    status = main(["run", str(path), "--out", str(tmp_path / "runs"), "--no-progress", "--no-report"])
    assert status == 1
    out_dir = tmp_path / "runs" / "tiny" / "deep_ensembles"
    assert notebook_succeeded(out_dir / "california.ipynb")
    assert not notebook_succeeded(out_dir / "churn.ipynb")
    printed = capsys.readouterr()
    assert "churn failed with MalformedDataError: churn: raw file" in printed.out
    assert str(out_dir / "churn.log") in printed.out
    log = (out_dir / "churn.log").read_text()
    assert "unit churn-h8-r0 failed" in log and "Traceback" in log and "load_dataset" in log
    assert "deep_ensembles/churn" in printed.err


@needs_data
def test_a_profile_with_barrier_pairs_writes_the_barriers_table(tmp_path, data_env):
    """One small unit (churn) through the runner and the notebook: the optional barriers
    table is combined and written beside the others, as Parquet and CSV."""
    profile = yaml.safe_load(SMOKE.read_text())
    del profile["mixtures"]
    profile["deep_ensembles"].update(datasets=["churn"], barrier_pairs=1, workers=1, threads=1)
    path = tmp_path / "barriers.yaml"
    path.write_text(yaml.safe_dump(profile))
    run = run_profile(path, out_root=tmp_path / "runs", progress=False, report=False)["deep_ensembles"]
    out_dir = tmp_path / "runs" / "barriers" / "deep_ensembles"
    assert run.ok and run.executed == ["churn"] and notebook_succeeded(out_dir / "churn.ipynb")
    assert list(run.tables) == ["models", "barriers", "ensembles"]
    barriers = pd.read_parquet(out_dir / "barriers.parquet")
    assert len(barriers) == 2 * 1 * 5  # mlp and wmlp, member 0 against 1, five alphas
    assert set(barriers["pair_b"]) == {1} and not barriers["aligned"].any()
    assert len(pd.read_csv(out_dir / "barriers.csv")) == len(barriers)
    models = pd.read_parquet(out_dir / "models.parquet")
    assert models.loc[models["member"] == 1, "loss_barrier"].notna().all()
    assert models.loc[models["member"] != 1, "loss_barrier"].isna().all()


def test_shipped_profiles_are_valid():
    for profile, sections in [
        ("smoke", ["deep_ensembles", "mixtures"]),
        ("quick", ["deep_ensembles", "mixtures"]),
        ("verdict", ["deep_ensembles"]),  # the claim under test is about deep ensembles
        ("paper", ["deep_ensembles", "mixtures"]),
        ("mechanism", ["deep_ensembles"]),  # barriers and alignment of four types
    ]:
        path = REPO / "params" / f"{profile}.yaml"
        assert params.profile_sections(path) == sections
        for settings in load_params(path, sections=sections).values():
            assert settings["datasets"] == DATASETS
    verdict = load_params(REPO / "params" / "verdict.yaml")["deep_ensembles"]
    assert verdict["split"] == "release" and verdict["repeats"] >= 5 and verdict["hidden_sizes"] == (64,)
    assert verdict["patience"] == 16 and verdict["max_epochs"] == 1000 and verdict["max_rows"] is None
    mechanism = load_params(REPO / "params" / "mechanism.yaml")["deep_ensembles"]
    assert mechanism["types"] == ("mlp", "wmlp", "smlp", "syre") and mechanism["alignment"] is True
    assert mechanism.tables == ("models", "barriers", "ensembles")


def test_sections_default_to_those_in_the_file(tmp_path, monkeypatch):
    params = yaml.safe_load(SMOKE.read_text())
    ran = []

    def record(section, *args, **kwargs):
        ran.append(section.name)
        return runner.SectionRun(section.name, tmp_path)

    monkeypatch.setattr(runner, "_run_section", record)
    path = tmp_path / "only_mixtures.yaml"
    path.write_text(yaml.safe_dump({"mixtures": params["mixtures"]}))
    assert list(run_profile(path, out_root=tmp_path, progress=False)) == ["mixtures"]
    assert main(["run", str(SMOKE), "--out", str(tmp_path), "--sections", "deep_ensembles", "--no-progress"]) == 0
    assert ran == ["mixtures", "deep_ensembles"]
    path.write_text(yaml.safe_dump({"other": {}}))
    with pytest.raises(ParamsError, match="none of the sections deep_ensembles, mixtures"):
        run_profile(path, out_root=tmp_path, progress=False)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"kinds": ["mlp", "moe"]}, ["mixtures.kinds", "mlp, wmlp, imlp, iwmlp", "'moe'"]),
        ({"gatings": "gumbel"}, ["mixtures.gatings", "standard, gumbel"]),
        ({"experts": [2, 0]}, ["mixtures.experts", "positive integers"]),
    ],
)
def test_bad_mixture_settings_stop_before_anything_runs(tmp_path, change, words):
    params = yaml.safe_load(SMOKE.read_text())
    params["mixtures"].update(change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(ParamsError) as error:
        run_profile(path, out_root=tmp_path / "runs", progress=False)
    assert all(word in str(error.value) for word in words)
    assert not (tmp_path / "runs").exists()  # not even the deep ensembles ran


def _edit(section: dict, change: str) -> None:
    if change == "missing key":
        del section["members"]
    elif change == "unknown dataset":
        section["datasets"] = ["california", "imagenet"]
    elif change == "wrong type":
        section["members"] = "four"
    elif change == "not a list":
        section["hidden_sizes"] = 64
    elif change == "unknown key":
        section["member"] = 4
    elif change == "sizes above members":
        section["ensemble_sizes"] = [2, 4, 8]


@pytest.mark.parametrize(
    "change, key, words",
    [
        ("missing key", "deep_ensembles.members", ["missing", "positive integer"]),
        ("unknown dataset", "deep_ensembles.datasets", ["'imagenet'", ", ".join(DATASETS)]),
        ("wrong type", "deep_ensembles.members", ["positive integer", "'four'"]),
        ("not a list", "deep_ensembles.hidden_sizes", ["list of positive integers"]),
        ("unknown key", "deep_ensembles.member", ["not a known key"]),
        ("sizes above members", "deep_ensembles.ensemble_sizes", ["members = 4"]),
    ],
)
def test_bad_params_file_names_the_file_and_key(tmp_path, change, key, words):
    params = yaml.safe_load(SMOKE.read_text())
    _edit(params["deep_ensembles"], change)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(params))

    with pytest.raises(ParamsError) as error:
        run_profile(path, out_root=tmp_path / "runs", progress=False)
    message = str(error.value)
    assert str(path) in message and key in message
    for word in words:
        assert word in message
    assert not (tmp_path / "runs").exists()
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2


def test_missing_section_or_file(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("mixtures: {}\n")
    with pytest.raises(ParamsError, match=r"empty\.yaml: section 'deep_ensembles' is missing"):
        load_params(path)
    with pytest.raises(ParamsError, match="no such parameter file"):
        load_params(tmp_path / "absent.yaml")


@needs_data
def test_changed_settings_need_force(tmp_path):
    section = params.SECTIONS["deep_ensembles"]
    settings = dataclasses.replace(load_params(SMOKE)["deep_ensembles"], max_rows=300, max_epochs=1)
    check = dict(out_dir=tmp_path, datasets=["adult"], in_tables=["adult"])
    records.check_settings(section, settings, **check, force=False)  # no results: nothing to mix
    data = load_dataset("adult", data_dir=DATA, max_rows=300, val_fraction=0.2)
    unit = {"hidden": 8, "repeat": 0}
    section.store(tmp_path, settings).save("adult-h8-r0", **section.train(data, settings, **unit, progress=False))
    # More repeats only grow the grid; other changes would mix incomparable results.
    records.check_settings(section, dataclasses.replace(settings, repeats=3), **check, force=False)
    with pytest.raises(ParamsError, match=r"adult results made with other settings \(members: 4 -> 8\)"):
        records.check_settings(section, dataclasses.replace(settings, members=8), **check, force=False)
    records.check_settings(section, dataclasses.replace(settings, members=8), **check, force=True)


def test_scheduler_comes_from_the_file_and_is_checked(tmp_path, capsys, monkeypatch):
    document = yaml.safe_load(SMOKE.read_text())
    assert document["scheduler"] is None and params.load_scheduler(SMOKE) is None
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**document, "scheduler": 8786}))
    with pytest.raises(ParamsError, match=r"bad\.yaml: scheduler must be a Dask scheduler's address"):
        run_profile(path, out_root=tmp_path / "runs", progress=False)

    # Nothing listens on a port just freed: the run stops before anything is written, exit 2.
    import socket

    from asymlib.execution import cluster

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 2)
    path.write_text(yaml.safe_dump({**document, "scheduler": address}))
    assert main(["run", str(path), "--datasets", "churn", "--out", str(tmp_path / "runs"), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert f"cannot reach a Dask scheduler at {address}" in message and "dask scheduler" in message
    assert not list((tmp_path / "runs").rglob("*.parquet"))


def test_units_are_started_largest_first():
    """mnist's units before churn's, more experts before fewer, wider before narrower: the
    longest units must not start last while the other workers idle."""
    verdict = load_params(REPO / "params" / "verdict.yaml")["deep_ensembles"]
    by_dataset = {d: unit_priority(d, {"hidden": 64, "repeat": 0}, verdict) for d in verdict["datasets"]}
    assert sorted(by_dataset, key=by_dataset.get, reverse=True) == ["mnist", "otto", "adult", "california", "churn"]
    assert unit_priority("churn", {"hidden": 256, "repeat": 0}, verdict) > by_dataset["churn"]
    mixtures = {"hidden": 64}
    priority = lambda k: unit_priority("adult", {"gating": "softmax", "kind": "mlp", "experts": k}, mixtures)  # noqa: E731
    assert priority(32) > priority(8) > priority(2) > 0
