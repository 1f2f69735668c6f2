"""A user's own dataset in a profile: scikit-learn's bundled datasets written to CSV and
Parquet, read through the registry like a built-in one, refused with errors naming file,
column and row, and run end to end through ``asymlib run``."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.datasets import load_breast_cancer, load_diabetes, load_wine

from asymlib.core import datasets as registry
from asymlib.core.data import MalformedDataError, load_dataset, too_few_rows
from asymlib.core.data_errors import DataFileError
from asymlib.core.user_data import MAX_CATEGORIES, register, user_spec
from asymlib.execution.params import load_params
from asymlib.execution.records import unit_priority
from asymlib.reports.tables import grid_order
from asymlib.sections.deep_ensembles import DeepEnsembleSettings
from asymlib.sections.settings import ParamsError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_registry():
    """Each test starts and ends with the built-ins only."""
    saved = [dict(d) for d in (registry.DATASET_RECORDS, registry.DATASET_SHAPES, registry.RAW_FILES)]
    yield
    for d, s in zip((registry.DATASET_RECORDS, registry.DATASET_SHAPES, registry.RAW_FILES), saved):
        d.clear()
        d.update(s)


def _frame(loader) -> pd.DataFrame:
    return loader(as_frame=True).frame


def _register(tmp_path, frame: pd.DataFrame, name="mine", suffix=".csv", **spec):
    path = tmp_path / f"{name}{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path)
    return register(user_spec({"name": name, "file": str(path), "target": "target", **spec}), quiet=True)


def test_breast_cancer_csv_is_binary_split_64_16_20_and_scaled_on_training_rows(tmp_path, capsys):
    path = tmp_path / "cancer.csv"
    _frame(load_breast_cancer).to_csv(path, index=False)
    record = register(user_spec({"name": "cancer", "file": str(path), "target": "target"}))
    assert "cancer: task binary inferred from the target column 'target'" in capsys.readouterr().out
    assert (record.task, record.n_classes, record.shape) == ("binary", 2, (569, 30))
    assert registry.DATASET_SHAPES["cancer"] == (569, 30) and "cancer" in registry.registered()
    ds = load_dataset("cancer")
    assert ds.sizes == {"raw": 569, "used": 569, "train": 364, "val": 91, "test": 114}
    assert ds.X_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert torch.allclose(ds.X_train.mean(0), torch.zeros(30), atol=1e-5)
    # stratified: the class shares of the parts agree within a row
    assert abs(ds.y_test.float().mean() - ds.y_train.float().mean()) < 0.01
    with pytest.raises(
        ValueError,
        match=r"split \(split: release\) is defined only for the five built-in datasets, not for a user dataset",
    ):
        load_dataset("cancer", split="release")


def test_wine_parquet_with_a_categorical_column_and_missing_cells(tmp_path):
    wine = _frame(load_wine)
    wine["colour"] = np.where(wine["alcohol"] > 13, "dark", "light").astype(object)
    wine.loc[3, "colour"] = None  # a missing category: a category of its own
    wine.loc[5, "ash"] = np.nan  # a missing number: the training mean
    wine["region"] = np.arange(len(wine)) % 3  # numbers, one-hot because listed
    record = _register(tmp_path, wine, suffix=".parquet", categorical=["region"])
    assert (record.task, record.n_classes) == ("multiclass", 3)
    ds = load_dataset("mine")
    names = ds.feature_names
    assert names[-6:] == ["colour=MissingValue", "colour=dark", "colour=light", "region=0", "region=1", "region=2"]
    assert ds.real_valued.sum() == 13 and ds.n_features == 19
    X = torch.cat([ds.X_train, ds.X_val, ds.X_test])
    rows = torch.cat([ds.row_indices[p] for p in ("train", "val", "test")])
    assert X[rows == 3, names.index("colour=MissingValue")].item() == 1.0
    assert X[rows == 5, names.index("ash")].item() == 0.0  # the training mean, standardised
    assert set(X[:, 13:].unique().tolist()) == {0.0, 1.0}  # one-hot columns left unscaled


def test_diabetes_is_regression_and_a_given_task_is_checked(tmp_path):
    record = _register(tmp_path, _frame(load_diabetes))
    assert (record.task, record.n_classes) == ("regression", 0)
    ds = load_dataset("mine")
    assert ds.y_train.dtype == torch.float32 and ds.n_outputs == 1
    with pytest.raises(MalformedDataError, match="task binary needs exactly 2"):
        _register(tmp_path, _frame(load_wine), name="wine", task="binary")
    assert _register(tmp_path, _frame(load_wine), name="wine2", task="multiclass").task == "multiclass"


@pytest.mark.parametrize(
    "change, spec, message",
    [
        (lambda f: f.rename(columns={"target": "label"}), {}, r"mine\.csv: has no target column 'target'"),
        (lambda f: f.assign(target=1), {}, r"target column 'target' is constant \(1 in every row\)"),
        (
            lambda f: f.assign(note=[f"free text {i}" for i in range(len(f))]),
            {},
            rf"column 'note' is text with 569 distinct values \(more than {MAX_CATEGORIES}; .*"
            rf"row {MAX_CATEGORIES + 1} of the data \(line {MAX_CATEGORIES + 2} of the file\)",
        ),
        (
            lambda f: f.assign(**{"mean radius": f["mean radius"].astype(object).where(f.index != 7, "12,5")}),
            {},
            r"mine\.csv is malformed: row 8 of the data \(line 9 .*column 'mean radius': the non-numeric value '12,5'",
        ),
        (
            lambda f: f.assign(**{"mean area": f["mean area"].where(f.index != 2, 1e300)}),
            {},
            r"row 3 of the data .*column 'mean area': the value .* beyond float32's range",
        ),
        (
            lambda f: f.assign(target=f["target"].astype(float).where(f.index != 4)),
            {},
            r"target column 'target': row 5 of the data \(line 6 of the file\) has no value",
        ),
        (
            lambda f: f.assign(target=np.where(f.index == 10, 2, f["target"])),
            {"task": "multiclass"},
            r"class 2 has 1 rows \(the first in row 11 of the data .*each class needs at least 16",
        ),
        (lambda f: f, {"categorical": ["nope"]}, r"categorical names the column 'nope', which the file lacks"),
    ],
)
def test_errors_name_file_column_and_row(tmp_path, change, spec, message):
    frame = change(_frame(load_breast_cancer))
    with pytest.raises(MalformedDataError, match=message) as error:
        _register(tmp_path, frame, **spec)
    assert error.value.path == tmp_path / "mine.csv"
    assert "mine" not in registry.DATASET_RECORDS


def test_spec_errors_a_missing_file_and_a_built_in_name(tmp_path):
    with pytest.raises(ValueError, match="'churn' is a built-in dataset's"):
        user_spec({"name": "churn", "file": "x.csv", "target": "y"})
    with pytest.raises(ValueError, match="name must be a dataset name of letters, digits and _"):
        user_spec({"name": "my-data", "file": "x.csv", "target": "y"})
    with pytest.raises(ValueError, match="missing the key 'target'"):
        user_spec({"name": "a", "file": "x.csv"})
    with pytest.raises(ValueError, match="task must be one of regression, binary, multiclass"):
        user_spec({"name": "a", "file": "x.csv", "target": "y", "task": "ranking"})
    with pytest.raises(DataFileError, match="no such file"):
        register(user_spec({"name": "a", "file": str(tmp_path / "x.csv"), "target": "y"}))


def _profile(tmp_path, entry: str, **extra) -> Path:
    keys = {"datasets": f"[{entry}]", "members": 2, "ensemble_sizes": "[2]", "hidden_sizes": "[8]",
            "repeats": 1, "seed": 0, "max_epochs": 2, "patience": 1, "max_rows": "null", "workers": 1,
            "threads": 1, **extra}  # fmt: skip
    path = tmp_path / "profiles" / "mine.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text("deep_ensembles:\n" + "".join(f"  {k}: {v}\n" for k, v in keys.items()))
    return path


def test_profile_resolves_the_file_from_its_folder_and_settings_travel(tmp_path):
    (tmp_path / "data").mkdir()
    _frame(load_breast_cancer).to_csv(tmp_path / "data" / "bc.csv", index=False)
    path = _profile(tmp_path, "california, {name: bc, file: ../data/bc.csv, target: target}")
    settings = load_params(path)["deep_ensembles"]
    assert settings.datasets == ("california", "bc")
    assert settings.user_datasets[0].file == str((tmp_path / "data" / "bc.csv").resolve())
    assert settings.as_dict()["user_datasets"] == [
        {"name": "bc", "file": str((tmp_path / "data" / "bc.csv").resolve()), "target": "target"}
    ]
    assert unit_priority("bc", {"hidden": 8}, settings) >= 0
    # a worker unpickles the settings: the dataset is registered there on arrival
    blob = pickle.dumps(settings)
    del registry.DATASET_RECORDS["bc"]
    assert pickle.loads(blob) == settings and registry.DATASET_RECORDS["bc"].task == "binary"
    # a notebook rebuilds its settings from its papermill parameters
    del registry.DATASET_RECORDS["bc"]
    rebuilt = DeepEnsembleSettings.from_namespace({**settings.as_dict(), "dataset": "bc"}, datasets=["bc"])
    assert rebuilt.datasets == ("bc",) and "bc" in registry.DATASET_RECORDS


def test_profile_errors_release_split_rows_and_names(tmp_path):
    _frame(load_breast_cancer).to_csv(tmp_path / "bc.csv", index=False)
    entry = f"{{name: bc, file: {tmp_path / 'bc.csv'}, target: target}}"
    with pytest.raises(
        ParamsError, match=r"mine\.yaml: deep_ensembles\.split = release: .*use split: paper .*\(user datasets: bc\)"
    ):
        load_params(_profile(tmp_path, entry, split="release"))
    with pytest.raises(ParamsError, match=r"max_rows = 40 leaves bc .*rarest class has 212"):
        load_params(_profile(tmp_path, entry, max_rows=40))
    with pytest.raises(ParamsError, match=r"datasets\[0\] name 'adult' is a built-in dataset's"):
        load_params(_profile(tmp_path, "{name: adult, file: bc.csv, target: target}"))
    with pytest.raises(ParamsError, match=r"deep_ensembles\.datasets: bc: .*has no target column 'label'"):
        load_params(_profile(tmp_path, entry.replace("target}", "label}")))
    assert too_few_rows("bc", None) is None


def test_reports_order_user_datasets_after_the_built_ins():
    order = grid_order(pd.Series(["zeta", "otto", "credit", "california"], name="dataset"))
    assert order.tolist() == [3, 1, 2, 0]


@pytest.mark.skipif(not (REPO / "data").is_dir() and "ASYMLIB_DATA" not in os.environ, reason="no data folder")
def test_asymlib_run_on_breast_cancer_end_to_end_and_a_changed_file_refused(tmp_path):
    _frame(load_breast_cancer).to_csv(tmp_path / "breast_cancer.csv", index=False)
    profile = (REPO / "params" / "smoke.yaml").read_text().split("\nmixtures:")[0]
    profile = profile.replace(
        "datasets: [california, churn, adult, mnist, otto]",
        "datasets: [{name: breast_cancer, file: breast_cancer.csv, target: target}]",
    ).replace("workers: 2 ", "workers: 1 ")
    assert "breast_cancer.csv" in profile
    (tmp_path / "cancer.yaml").write_text(profile)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "asymlib", "run", "cancer.yaml", "--out", str(tmp_path / "runs"), "--no-progress"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "breast_cancer: task binary inferred" in done.stdout
    assert "breast_cancer ok" in done.stdout and "mean over 1 dataset" in done.stdout
    out = tmp_path / "runs" / "cancer"
    models = pd.read_csv(out / "deep_ensembles" / "models.csv")
    assert set(models["dataset"]) == {"breast_cancer"} and set(models["metric_name"]) == {"accuracy"}
    assert len(models) == 8 and models["metric"].between(0, 1).all()
    assert "breast_cancer" in (out / "report_deep_ensembles.html").read_text()
    # the store records the file's digest: another file under the same name is refused
    recorded = yaml.safe_load((out / "deep_ensembles" / "settings.yaml").read_text())["breast_cancer"]
    assert recorded["user_dataset"]["task"] == "binary" and len(recorded["user_dataset"]["sha256"]) == 64
    _frame(load_breast_cancer).iloc[:-1].to_csv(tmp_path / "breast_cancer.csv", index=False)
    again = subprocess.run(
        [sys.executable, "-m", "asymlib", "train", "cancer.yaml", "--out", str(tmp_path / "runs")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 2 and "made with other settings (user_dataset:" in again.stderr, again.stderr[-2000:]


def test_train_and_estimate_take_a_user_dataset_by_name(tmp_path, capsys):
    from asymlib.execution.cli import main

    _frame(load_breast_cancer).to_csv(tmp_path / "bc.csv", index=False)
    path = _profile(tmp_path, f"{{name: bc, file: {tmp_path / 'bc.csv'}, target: target}}")
    assert main(["train", str(path), "--datasets", "nope", "--out", str(tmp_path / "runs")]) == 2
    assert "unknown dataset 'nope'; valid: california, churn, adult, mnist, otto, bc" in capsys.readouterr().err
    assert main(["estimate", str(path), "--datasets", "bc", "--no-progress"]) == 0
    assert "max_epochs (2): no recorded run of the user dataset bc" in capsys.readouterr().out
    assert main(["train", str(path), "--datasets", "bc", "--out", str(tmp_path / "runs")]) == 0
    assert (tmp_path / "runs" / "mine" / "deep_ensembles" / "shards").is_dir()


def test_mixtures_train_on_a_user_dataset(tmp_path):
    from asymlib.execution.cli import main
    from asymlib.execution.params import SECTIONS

    wine = _frame(load_wine)
    wine["colour"] = np.where(wine["alcohol"] > 13, "dark", "light")
    wine.to_parquet(tmp_path / "wine.parquet")
    profile = (REPO / "params" / "smoke.yaml").read_text().split("\nmixtures:")[1]
    profile = "mixtures:" + profile.replace(
        "datasets: [california, churn, adult, mnist, otto]",
        "datasets: [{name: wine, file: wine.parquet, target: target}]",
    ).replace("gatings: [standard, gumbel]", "gatings: [gumbel]").replace(
        "kinds: [mlp, wmlp, imlp, iwmlp]", "kinds: [wmlp, iwmlp]"
    ).replace("experts: [2, 4]", "experts: [2]").replace("max_rows: 1500", "max_rows: null")
    (tmp_path / "wine.yaml").write_text(profile)
    assert "wine.parquet" in profile and "kinds: [wmlp, iwmlp]" in profile
    assert main(["train", str(tmp_path / "wine.yaml"), "--out", str(tmp_path / "runs")]) == 0
    settings = load_params(tmp_path / "wine.yaml", sections=["mixtures"])["mixtures"]
    store = SECTIONS["mixtures"].store(tmp_path / "runs" / "wine" / "mixtures", settings)
    units = SECTIONS["mixtures"].units(settings, "wine")
    assert len(units) == 2 and all(store.done(u) for u in units)
    mixtures = store.read(units, "mixtures")
    assert set(mixtures["kind"]) == {"wmlp", "iwmlp"} and set(mixtures["metric_name"]) == {"accuracy"}
