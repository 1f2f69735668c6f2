"""The batch runner: the smoke profile over all five datasets, resuming, failures, bad files.

The runs execute the real notebook with papermill (a kernel per dataset), so they need the
raw data: $ASYMLIB_DATA, <repo>/data or ../shared/data beside the checkout; they fail
(never skip) without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from asymlib import runner
from asymlib.cli import main
from asymlib.data import DATASETS, RAW_FILES
from asymlib.runner import ParamsError, load_params, run_profile

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
def smoke(tmp_path_factory):
    """One smoke run of every dataset, shared by the tests below: (settings, out_root, run)."""
    out_root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASYMLIB_DATA", str(DATA))
        run = run_profile(SMOKE, out_root=out_root, progress=False)["deep_ensembles"]
    return load_params(SMOKE)["deep_ensembles"], out_root, run


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
        assert runner.notebook_succeeded(out_dir / f"{dataset}.ipynb")
    assert ensembles["ensemble_metric"].notna().all() and models["metric"].notna().all()


@needs_data
def test_second_run_starts_no_notebook(smoke, data_env, monkeypatch):
    _, out_root, first = smoke
    out_dir = out_root / "smoke" / "deep_ensembles"
    before = _shard_times(out_dir)

    def no_papermill(*args, **kwargs):
        raise AssertionError("papermill was started for a finished dataset")

    monkeypatch.setattr(runner, "_execute", no_papermill)
    again = run_profile(SMOKE, out_root=out_root, progress=False)["deep_ensembles"]
    assert again.executed == [] and sorted(again.skipped) == sorted(DATASETS)
    assert _shard_times(out_dir) == before
    pd.testing.assert_frame_equal(again.tables["ensembles"], first.tables["ensembles"])


@needs_data
def test_partly_done_dataset_is_executed_again(smoke, data_env):
    _, out_root, _ = smoke
    out_dir = out_root / "smoke" / "deep_ensembles"
    (out_dir / "shards" / "california-h8-r0-ensembles.parquet").unlink()
    others = {k: v for k, v in _shard_times(out_dir).items() if not k.startswith("california-")}

    run = run_profile(SMOKE, out_root=out_root, progress=False)["deep_ensembles"]
    assert run.executed == ["california"] and run.ok
    assert len(run.tables["ensembles"]["dataset"].unique()) == len(DATASETS)
    assert {k: v for k, v in _shard_times(out_dir).items() if not k.startswith("california-")} == others


@needs_data
def test_failed_notebook_does_not_stop_the_others(tmp_path, data_env, capsys):
    # 5 rows cannot be split with stratification (churn fails); regression can (california runs).
    params = yaml.safe_load(SMOKE.read_text())
    params["deep_ensembles"].update(datasets=["churn", "california"], max_rows=5)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(params))

    status = main(["run", str(path), "--out", str(tmp_path / "runs"), "--no-progress"])
    assert status == 1
    out_dir = tmp_path / "runs" / "tiny" / "deep_ensembles"
    assert runner.notebook_succeeded(out_dir / "california.ipynb")
    assert not runner.notebook_succeeded(out_dir / "churn.ipynb")
    printed = capsys.readouterr()
    assert "churn failed with ValueError" in printed.out and str(out_dir / "churn.ipynb") in printed.out
    assert "deep_ensembles/churn" in printed.err


def test_shipped_profiles_are_valid():
    for profile in ("smoke", "quick", "paper"):
        settings = load_params(REPO / "params" / f"{profile}.yaml")["deep_ensembles"]
        assert settings["datasets"] == list(DATASETS)


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


def test_changed_settings_need_force(tmp_path):
    section = runner.SECTIONS["deep_ensembles"]
    settings = load_params(SMOKE)["deep_ensembles"]
    runner._record_settings(section, settings, ["adult"], tmp_path, force=False)
    # More repeats only grow the grid; other changes would mix incomparable results.
    runner._record_settings(section, {**settings, "repeats": 3}, ["adult"], tmp_path, force=False)
    with pytest.raises(ParamsError, match=r"adult results made with other settings \(members: 4 -> 8\)"):
        runner._record_settings(section, {**settings, "members": 8}, ["adult"], tmp_path, force=False)
    runner._record_settings(section, {**settings, "members": 8}, ["adult"], tmp_path, force=True)
