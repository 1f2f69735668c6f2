"""Tests of asymlib.core.data on the real raw files (docs/protocol.md, "Datasets" and "Split").

The raw files are found through ASYMLIB_DATA, else <repo>/data, else ../shared/data.
Every dataset is loaded at most once per module and setting (see the ``load`` fixture).
"""

from __future__ import annotations

import dataclasses
import filecmp
import gzip
import hashlib
import io
import math
import os
import stat
import tarfile
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from asymlib.core.data import (
    DATASET_SHAPES,
    DATASETS,
    RAW_FILES,
    DataFileError,
    Dataset,
    MalformedDataError,
    default_data_dir,
    fetch_datasets,
    load_dataset,
)
from asymlib.core.datasets import DATASET_RECORDS

REPO = Path(__file__).resolve().parents[1]

# name: (rows, features, task, n_classes)
EXPECTED = {
    "california": (20640, 8, "regression", 0),
    "churn": (10000, 13, "binary", 2),
    "adult": (48842, 108, "binary", 2),
    "mnist": (70000, 784, "multiclass", 10),
    "otto": (61878, 93, "multiclass", 9),
}
CLASSIFICATION = [name for name in DATASETS if EXPECTED[name][3]]
PARTS = ("train", "val", "test")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    env = os.environ.get("ASYMLIB_DATA")
    if env:
        return Path(env)
    for candidate in (REPO / "data", REPO.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    pytest.fail("raw data not found: set ASYMLIB_DATA or run `asymlib fetch --from <mirror>`")


@pytest.fixture(scope="module")
def load(data_dir):
    """load(name, **kwargs) -> Dataset, cached for the module: mnist, otto and adult
    take about a second each, so each setting is read once."""
    cache: dict = {}

    def _load(name: str, **kwargs) -> Dataset:
        key = (name, *sorted(kwargs.items()))
        if key not in cache:
            cache[key] = load_dataset(name, data_dir=data_dir, **kwargs)
        return cache[key]

    return _load


def part(ds: Dataset, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    return getattr(ds, f"X_{which}"), getattr(ds, f"y_{which}")


def real_columns(X: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    # Boolean indexing copies; mnist's (44800, 784) doubles are worth sparing that.
    return X if cols.all() else X[:, cols]


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", DATASETS)
def test_rows_features_and_dtypes(load, name):
    rows, n_features, task, n_classes = EXPECTED[name]
    ds = load(name)
    assert ds.sizes["raw"] == ds.sizes["used"] == rows
    assert DATASET_SHAPES[name] == (rows, n_features)  # what the runner orders units by
    assert ds.n_features == n_features == len(ds.feature_names)
    assert len(set(ds.feature_names)) == n_features
    assert (ds.task, ds.n_classes) == (task, n_classes)
    assert ds.n_outputs == (n_classes if n_classes else 1)
    y_dtype = torch.float32 if task == "regression" else torch.int64
    for which in PARTS:
        X, y = part(ds, which)
        assert X.dtype == torch.float32 and y.dtype == y_dtype
        assert X.shape == (ds.sizes[which], n_features) and y.shape == (ds.sizes[which],)
        assert torch.isfinite(X).all(), f"{name} X_{which} has NaN/inf"
        assert torch.isfinite(y.double()).all()
        if n_classes:
            # every class occurs in every part
            assert set(y.tolist()) == set(range(n_classes))
    # The parts partition the raw rows.
    all_rows = torch.cat([ds.row_indices[p] for p in PARTS]).sort().values
    assert torch.equal(all_rows, torch.arange(rows))
    assert ds.real_valued.shape == ds.feature_mean.shape == ds.feature_scale.shape
    assert name in repr(ds) and "tensor" not in repr(ds)


@pytest.mark.parametrize("name", DATASETS)
def test_split_is_64_16_20(load, name):
    ds = load(name)
    n = ds.sizes["raw"]
    for which, share in zip(PARTS, (0.64, 0.16, 0.20)):
        assert abs(ds.sizes[which] - share * n) <= 1, (which, ds.sizes)


def test_release_split_72_8_20(data_dir):
    ds = load_dataset("churn", data_dir=data_dir, val_fraction=0.1)
    assert (ds.sizes["train"], ds.sizes["val"], ds.sizes["test"]) == (7200, 800, 2000)


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_stratified_split_keeps_class_balance(load, name):
    ds = load(name)
    k = ds.n_classes
    whole = torch.bincount(torch.cat([ds.y_train, ds.y_val, ds.y_test]), minlength=k)
    whole = whole / whole.sum()
    for which in PARTS:
        y = part(ds, which)[1]
        counts = torch.bincount(y, minlength=k)
        assert (counts / len(y) - whole).abs().max() < 0.01, (which, counts, whole)
        # Stratification is exact up to rounding in each of the two splits, which a
        # lucky unstratified split would not match.
        assert (counts - len(y) * whole).abs().max() <= 2, (which, counts, len(y) * whole)


@pytest.mark.parametrize("name", ["churn", "adult"])
def test_one_hot_columns_stay_binary(load, name):
    ds = load(name)
    one_hot = ~ds.real_valued
    assert one_hot.any()
    groups: dict[str, list[int]] = {}
    for j, feature in enumerate(ds.feature_names):
        if one_hot[j]:
            assert "=" in feature
            groups.setdefault(feature.split("=")[0], []).append(j)
    for which in PARTS:
        X = part(ds, which)[0][:, one_hot]
        assert ((X == 0) | (X == 1)).all()
        for columns in groups.values():
            per_row = part(ds, which)[0][:, columns].sum(1)
            # Exactly one category per row: the real files have no blank categorical cells.
            assert (per_row == 1).all()


# --------------------------------------------------------------------------- scaling


@pytest.mark.parametrize("name", ["adult", "mnist", "otto"])
def test_scaler_uses_training_statistics_only(load, name):
    ds, raw = load(name), load(name, standardize=False)
    for which in PARTS:  # scaling does not change the split
        assert torch.equal(ds.row_indices[which], raw.row_indices[which])
    cols = ds.real_valued
    assert cols.any()
    std, mean = torch.std_mean(real_columns(raw.X_train.double(), cols), 0, unbiased=False)
    constant = std == 0
    torch.testing.assert_close(ds.feature_mean[cols], mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(ds.feature_scale[cols][~constant], std[~constant], rtol=1e-6, atol=0)
    assert (ds.feature_scale[cols][constant] == 1).all()  # no division by zero
    assert (ds.feature_mean[~cols] == 0).all() and (ds.feature_scale[~cols] == 1).all()
    scale = torch.where(constant, torch.ones_like(std), std)
    for which in PARTS:
        # 5000 rows per part suffice to see which statistics were used, and keep
        # mnist's comparison quick.
        X, X_raw = part(ds, which)[0][:5000].double(), part(raw, which)[0][:5000].double()
        expected = (X_raw[:, cols] - mean) / scale
        torch.testing.assert_close(X[:, cols], expected, rtol=1e-4, atol=1e-4)
        assert torch.equal(X[:, ~cols], X_raw[:, ~cols])
    X = real_columns(ds.X_train.double(), cols)
    std, mean = torch.std_mean(X, 0, unbiased=False)
    assert mean.abs().max() < 1e-4
    assert (std[~constant] - 1).abs().max() < 1e-4
    assert (X[:, constant] == 0).all()
    # Validation is transformed, not re-centred on its own statistics.
    assert ds.X_val.double()[:, cols].mean(0).abs().max() > 1e-3


def _california_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's fetch_california_housing derivation, written out independently."""
    raw = np.loadtxt(path, delimiter=",")
    lon, lat, age, rooms, beds, pop, households, income, value = raw.T
    X = np.column_stack([income, age, rooms / households, beds / households, pop, pop / households, lat, lon])
    return X, value / 100000.0


def test_california_matches_independent_derivation(load, data_dir):
    X_all, y_all = _california_features(data_dir / "cal_housing.data")
    ds = load("california")
    assert ds.feature_names == ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population",
                                "AveOccup", "Latitude", "Longitude"]  # fmt: skip
    assert ds.real_valued.all()
    train = ds.row_indices["train"].numpy()
    mean, std = X_all[train].mean(0), X_all[train].std(0)
    for which in PARTS:
        rows = ds.row_indices[which].numpy()
        X, y = part(ds, which)
        expected = torch.from_numpy((X_all[rows] - mean) / std)
        torch.testing.assert_close(X.double(), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(y.double(), torch.from_numpy(y_all[rows]), rtol=1e-6, atol=0)
    # The statistics are the training part's, not those of all rows.
    assert not np.allclose(mean, X_all.mean(0), rtol=1e-4, atol=0)
    assert ds.X_train.double().mean(0).abs().max() < 1e-4
    assert (ds.X_train.double().std(0, unbiased=False) - 1).abs().max() < 1e-4


def test_churn_matches_raw_file_and_imputes_from_train(load, data_dir):
    frame = pd.read_csv(data_dir / "Churn_Modelling.csv")
    ds = load("churn")
    numeric = ["CreditScore", "Age", "Tenure", "Balance", "NumOfProducts", "HasCrCard",
               "IsActiveMember", "EstimatedSalary"]  # fmt: skip
    assert ds.feature_names == numeric + [
        "Geography=France", "Geography=Germany", "Geography=Spain",
        "Gender=Female", "Gender=Male",
    ]  # fmt: skip
    assert ds.real_valued.tolist() == [True] * 8 + [False] * 5
    train = frame.iloc[ds.row_indices["train"].numpy()]
    mean, std = train[numeric].mean(), train[numeric].std(ddof=0)
    torch.testing.assert_close(ds.feature_mean[:8], torch.tensor(mean.to_numpy()))
    torch.testing.assert_close(ds.feature_scale[:8], torch.tensor(std.to_numpy()))
    for which in PARTS:
        rows = frame.iloc[ds.row_indices[which].numpy()]
        X, y = part(ds, which)
        expected = (rows[numeric] - mean) / std
        torch.testing.assert_close(X[:, :8].double(), torch.tensor(expected.to_numpy()),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
        for j, (column, value) in enumerate(
            [("Geography", "France"), ("Geography", "Germany"), ("Geography", "Spain"),
             ("Gender", "Female"), ("Gender", "Male")], start=8,
        ):  # fmt: skip
            assert X[:, j].tolist() == (rows[column] == value).astype(float).tolist()
        assert y.tolist() == rows["Exited"].tolist()
    assert not frame.isna().any().any()  # Kaggle's original file: no blank cells
    assert sum(int(part(ds, p)[1].sum()) for p in PARTS) == 2037


def test_churn_blank_cells_take_training_mean_and_no_category(tmp_path, data_dir):
    """Kaggle's file has no blanks, but copies of it with blank cells circulate: a blank
    number takes the training mean (0 once standardised), a blank category an all-zero
    one-hot row, and churn keeps its 13 features. Tested on a small file written here."""
    frame = pd.read_csv(data_dir / "Churn_Modelling.csv", nrows=400)
    frame["Age"] = frame["Age"].astype(float)
    blank_age, blank_gender = frame.index[::7], frame.index[3::11]
    frame.loc[blank_age, "Age"] = np.nan
    frame.loc[blank_gender, "Gender"] = np.nan
    frame.to_csv(tmp_path / "Churn_Modelling.csv", index=False)

    ds = load_dataset("churn", data_dir=tmp_path)
    raw = load_dataset("churn", data_dir=tmp_path, standardize=False)
    assert ds.n_features == 13
    age, genders = ds.feature_names.index("Age"), [8 + 3, 8 + 4]
    assert ds.feature_names[8 + 3 :] == ["Gender=Female", "Gender=Male"]
    train_rows = ds.row_indices["train"].numpy()
    train_age = frame["Age"].iloc[train_rows]
    for which in PARTS:
        rows = ds.row_indices[which].numpy()
        X, X_raw = part(ds, which)[0], part(raw, which)[0]
        age_blank = torch.tensor(frame["Age"].iloc[rows].isna().to_numpy())
        gender_blank = torch.tensor(frame["Gender"].iloc[rows].isna().to_numpy())
        assert age_blank.any() and gender_blank.any()
        assert (X[age_blank, age] == 0).all()
        torch.testing.assert_close(X_raw[age_blank, age], torch.full((int(age_blank.sum()),), float(train_age.mean())))
        assert (X[gender_blank][:, genders] == 0).all()
        assert (X[~gender_blank][:, genders].sum(1) == 1).all()
        assert torch.isfinite(X).all()


def _parse_adult_by_hand(path: Path) -> list[list[str]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("|"):
            rows.append([field.strip() for field in line.split(",")])
    return rows


def test_adult_one_hot_counts_match_raw_files(load, data_dir):
    ds = load("adult")
    assert ds.n_features == 108
    assert ds.feature_names[:6] == ["age", "fnlwgt", "education-num", "capital-gain",
                                    "capital-loss", "hours-per-week"]  # fmt: skip
    assert ds.real_valued.tolist() == [True] * 6 + [False] * 102
    for column in ("workclass", "occupation", "native-country"):
        assert f"{column}=MissingValue" in ds.feature_names
    assert not any("?" in f or f.endswith(".") or f.startswith("income") for f in ds.feature_names)

    rows = _parse_adult_by_hand(data_dir / "adult.data") + _parse_adult_by_hand(data_dir / "adult.test")
    assert len(rows) == 48842
    raw = load("adult", standardize=False)
    X = torch.cat([raw.X_train, raw.X_val, raw.X_test]).double()
    y = torch.cat([raw.y_train, raw.y_val, raw.y_test])
    order = torch.cat([raw.row_indices[p] for p in PARTS])
    labels = [0 if r[14].rstrip(".") == "<=50K" else 1 for r in rows]
    assert y.tolist() == [labels[i] for i in order.tolist()]
    assert sum(labels) == 11687
    columns = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
               "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
               "hours-per-week", "native-country"]  # fmt: skip
    sums = X.sum(0).tolist()
    for j, feature in enumerate(ds.feature_names[:6]):
        k = columns.index(feature)
        assert sums[j] == pytest.approx(sum(float(r[k]) for r in rows))
    counts = {column: Counter(r[k] for r in rows) for k, column in enumerate(columns)}
    n_one_hot = 0
    for j, feature in enumerate(ds.feature_names[6:], start=6):
        column, value = feature.split("=", 1)
        value = "?" if value == "MissingValue" else value
        assert sums[j] == counts[column][value], feature
        n_one_hot += 1
    # Every category seen in the files has its column.
    assert n_one_hot == sum(len(counts[c]) for c in columns if c not in ds.feature_names[:6])


def _idx_payload(path: Path, header: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        return np.frombuffer(fh.read(), np.uint8, offset=header)


def test_mnist_matches_idx_files(load, data_dir):
    ds, raw = load("mnist"), load("mnist", standardize=False)
    folder = data_dir / "mnist"
    labels = np.concatenate([_idx_payload(folder / "train-labels-idx1-ubyte.gz", 8),
                             _idx_payload(folder / "t10k-labels-idx1-ubyte.gz", 8)])  # fmt: skip
    images = np.concatenate([_idx_payload(folder / "train-images-idx3-ubyte.gz", 16),
                             _idx_payload(folder / "t10k-images-idx3-ubyte.gz", 16)])  # fmt: skip
    images = images.reshape(70000, 784)
    for which in PARTS:
        rows = ds.row_indices[which].numpy()
        assert np.array_equal(part(ds, which)[1].numpy(), labels[rows])
        assert np.array_equal(part(raw, which)[0][:500].numpy(), images[rows[:500]])
    assert ds.real_valued.all()
    # Some border pixels are blank in every training image; they must not give NaN.
    blank = (images[ds.row_indices["train"].numpy()] == 0).all(0)
    assert blank.any()
    assert (ds.X_train[:, torch.from_numpy(blank)] == 0).all()


def test_otto_labels_and_values(load, data_dir):
    ds, raw = load("otto"), load("otto", standardize=False)
    counts = torch.bincount(torch.cat([ds.y_train, ds.y_val, ds.y_test]))
    assert counts.tolist() == [1929, 16122, 8004, 2691, 2739, 14135, 2839, 8464, 4955]
    assert ds.feature_names == [f"feat_{i}" for i in range(1, 94)]
    head = pd.read_csv(data_dir / "otto.csv.gz", nrows=2000)
    first = raw.row_indices["train"][:50].numpy()
    first = first[first < 2000]
    assert len(first) > 0
    position = {int(r): i for i, r in enumerate(raw.row_indices["train"].tolist())}
    for r in first:
        assert raw.X_train[position[int(r)]].tolist() == head.iloc[r, 1:94].astype(float).tolist()
        assert int(raw.y_train[position[int(r)]]) == int(head.iloc[r, 94].split("_")[1]) - 1


# --------------------------------------------------------------------------- options


def test_max_rows_subsamples_stratified(load, data_dir):
    full = load("otto")
    ds = load_dataset("otto", data_dir=data_dir, max_rows=1000)
    assert ds.sizes == {"raw": 61878, "used": 1000, "train": 640, "val": 160, "test": 200}
    whole = torch.bincount(torch.cat([full.y_train, full.y_val, full.y_test])) / 61878
    sub = torch.bincount(torch.cat([ds.y_train, ds.y_val, ds.y_test]), minlength=9) / 1000
    assert (sub - whole).abs().max() < 0.01
    assert torch.isfinite(ds.X_train).all()

    reg = load_dataset("california", data_dir=data_dir, max_rows=500)
    assert reg.sizes["used"] == 500 and reg.sizes["raw"] == 20640
    everything = load_dataset("churn", data_dir=data_dir, max_rows=10**6)
    assert everything.sizes["used"] == 10000


def test_max_rows_too_small_for_stratification(data_dir):
    with pytest.raises(ValueError, match="max_rows"):
        load_dataset("otto", data_dir=data_dir, max_rows=5)


def test_same_seed_same_split_other_seed_other_split(data_dir):
    a = load_dataset("churn", data_dir=data_dir, split_seed=3, max_rows=3000)
    b = load_dataset("churn", data_dir=data_dir, split_seed=3, max_rows=3000)
    c = load_dataset("churn", data_dir=data_dir, split_seed=4, max_rows=3000)
    for which in PARTS:
        assert torch.equal(a.row_indices[which], b.row_indices[which])
        assert torch.equal(part(a, which)[0], part(b, which)[0])
        assert torch.equal(part(a, which)[1], part(b, which)[1])
    assert not torch.equal(a.row_indices["test"].sort().values, c.row_indices["test"].sort().values)


def test_dataset_is_frozen(load):
    ds = load("california")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ds.name = "other"


def test_default_data_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("ASYMLIB_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    with pytest.raises(DataFileError, match=str(tmp_path)):
        load_dataset("california")  # no data_dir: reads the env var
    monkeypatch.delenv("ASYMLIB_DATA")
    assert default_data_dir() == REPO / "data"


# --------------------------------------------------------------------------- errors

SOURCE_HINTS = {
    "california": "figshare.com/files/5976036",
    "churn": "kaggle.com/datasets/shrutimechlearn/churn-modelling",
    "adult": "archive.ics.uci.edu",
    "mnist": "yann.lecun.com/exdb/mnist",
    "otto": "otto-group-product-classification-challenge",
}


@pytest.mark.parametrize("name", DATASETS)
def test_missing_file_names_file_and_how_to_fetch(tmp_path, name):
    with pytest.raises(DataFileError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path / RAW_FILES[name][0]) in message
    assert "asymlib fetch --from" in message
    assert SOURCE_HINTS[name] in message
    assert info.value.path == tmp_path / RAW_FILES[name][0]


def test_missing_second_adult_file_is_named(tmp_path, data_dir):
    (tmp_path / "adult.data").symlink_to(data_dir / "adult.data")
    with pytest.raises(DataFileError) as info:
        load_dataset("adult", data_dir=tmp_path)
    assert str(tmp_path / "adult.test") in str(info.value)
    assert str(tmp_path / "adult.data") not in str(info.value)


def test_missing_folder_is_reported(tmp_path):
    with pytest.raises(DataFileError, match="does not exist"):
        load_dataset("otto", data_dir=tmp_path / "nowhere")


def _link_others(name: str, data_dir: Path, tmp_path: Path, bad: str) -> Path:
    """Symlink the dataset's good files into tmp_path; return where the bad one goes."""
    (tmp_path / "mnist").mkdir()
    for rel in RAW_FILES[name]:
        if rel != bad:
            (tmp_path / rel).symlink_to(data_dir / rel)
    return tmp_path / bad


def _corrupt_idx(source: Path, target: Path, *, magic: bytes | None = None, cut: int = 0):
    with gzip.open(source, "rb") as fh:
        data = fh.read()
    if magic is not None:
        data = magic + data[4:]
    target.write_bytes(gzip.compress(data[: len(data) - cut], compresslevel=1))


def _otto_csv(path: Path, *, label: str = "Class_3", value: str = "1") -> None:
    header = ",".join(["id"] + [f"feat_{i}" for i in range(1, 94)] + ["target"])
    rows = [",".join([str(r)] + ["0"] * 92 + [value if r == 2 else "1"] + [label if r == 2 else
            "Class_1"]) for r in range(1, 4)]  # fmt: skip
    path.write_bytes(gzip.compress(("\n".join([header] + rows) + "\n").encode()))


def _write_bad(case: str, data_dir: Path, tmp_path: Path) -> tuple[str, Path]:
    if case == "california_5_columns":
        bad = _link_others("california", data_dir, tmp_path, "cal_housing.data")
        bad.write_text("1,2,3,4,5\n" * 10)
        return "california", bad
    if case == "california_text":
        bad = _link_others("california", data_dir, tmp_path, "cal_housing.data")
        lines = (data_dir / "cal_housing.data").read_text().splitlines()[:50]
        lines[7] = lines[7].replace("-122.", "abc", 1)
        bad.write_text("\n".join(lines) + "\n")
        return "california", bad
    if case == "churn_without_exited":
        bad = _link_others("churn", data_dir, tmp_path, "Churn_Modelling.csv")
        pd.read_csv(data_dir / "Churn_Modelling.csv").drop(columns="Exited").to_csv(bad, index=False)
        return "churn", bad
    if case == "churn_bad_label":
        bad = _link_others("churn", data_dir, tmp_path, "Churn_Modelling.csv")
        frame = pd.read_csv(data_dir / "Churn_Modelling.csv", nrows=100)
        frame.loc[5, "Exited"] = 2
        frame.to_csv(bad, index=False)
        return "churn", bad
    if case == "adult_14_columns":
        bad = _link_others("adult", data_dir, tmp_path, "adult.data")
        lines = (data_dir / "adult.data").read_text().splitlines()[:100]
        bad.write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
        return "adult", bad
    if case == "adult_bad_label":
        bad = _link_others("adult", data_dir, tmp_path, "adult.test")
        lines = (data_dir / "adult.test").read_text().splitlines()[:100]
        lines[10] = lines[10].rsplit(",", 1)[0] + ", maybe."
        bad.write_text("\n".join(lines) + "\n")
        return "adult", bad
    if case == "mnist_bad_magic":
        bad = _link_others("mnist", data_dir, tmp_path, "mnist/t10k-labels-idx1-ubyte.gz")
        _corrupt_idx(data_dir / "mnist/t10k-labels-idx1-ubyte.gz", bad, magic=b"\x00\x00\x08\x03")
        return "mnist", bad
    if case == "mnist_truncated":
        bad = _link_others("mnist", data_dir, tmp_path, "mnist/t10k-labels-idx1-ubyte.gz")
        _corrupt_idx(data_dir / "mnist/t10k-labels-idx1-ubyte.gz", bad, cut=5000)
        return "mnist", bad
    if case == "mnist_not_gzip":
        bad = _link_others("mnist", data_dir, tmp_path, "mnist/t10k-labels-idx1-ubyte.gz")
        bad.write_bytes(b"\x00\x00\x08\x01" + bytes(100))
        return "mnist", bad
    if case == "otto_unknown_class":
        bad = _link_others("otto", data_dir, tmp_path, "otto.csv.gz")
        _otto_csv(bad, label="Class_10")
        return "otto", bad
    if case == "otto_text_feature":
        bad = _link_others("otto", data_dir, tmp_path, "otto.csv.gz")
        _otto_csv(bad, value="many")
        return "otto", bad
    raise AssertionError(case)


MALFORMED = {
    "california_5_columns": "5 columns",
    "california_text": "non-numeric",
    "churn_without_exited": "Exited",
    "churn_bad_label": "unexpected labels",
    "adult_14_columns": "14 columns",
    "adult_bad_label": "maybe",
    "mnist_bad_magic": "magic number 0x00000803",
    "mnist_truncated": "bytes follow",
    "mnist_not_gzip": "gzip",
    "otto_unknown_class": "Class_10",
    "otto_text_feature": "many",
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_is_named(case, data_dir, tmp_path):
    name, bad = _write_bad(case, data_dir, tmp_path)
    with pytest.raises(MalformedDataError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(bad) in message
    assert MALFORMED[case] in message
    assert "expected" in message and "asymlib fetch" in message
    assert info.value.path == bad


# Bad cells are written into small copies of the real files. Messages must name the
# column and the first bad row as a person finds it in the file: the row among the
# data rows, 1-based, and its line (which counts a header line).

CALIFORNIA_COLUMNS = ["longitude", "latitude", "housingMedianAge", "totalRooms", "totalBedrooms",
                      "population", "households", "medianIncome", "medianHouseValue"]  # fmt: skip
ADULT_COLUMNS = ["age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                 "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                 "hours-per-week", "native-country", "income"]  # fmt: skip
# Lines of each file above its first data row (adult.test: the '|1x3 Cross validator' line).
HEADER_LINES = {"cal_housing.data": 0, "Churn_Modelling.csv": 1, "otto.csv.gz": 1, "adult.test": 1}

# case: (dataset, file, column, data row counted from 1, the cell's new text, message words)
BAD_VALUES = {
    "california_target_1e44": ("california", "cal_housing.data", "medianHouseValue", 17, "1e44",
                               "beyond float32's range"),
    "california_feature_1e44": ("california", "cal_housing.data", "totalRooms", 17, "1e44",
                                "beyond float32's range"),
    "california_feature_-3.5e38": ("california", "cal_housing.data", "longitude", 30, "-3.5e38",
                                   "beyond float32's range"),
    "california_inf": ("california", "cal_housing.data", "latitude", 5, "inf", "infinite"),
    "california_1e999": ("california", "cal_housing.data", "population", 5, "1e999", "infinite"),
    "california_nan": ("california", "cal_housing.data", "housingMedianAge", 9, "nan",
                       "'nan' is not a number we accept"),
    "california_empty": ("california", "cal_housing.data", "households", 9, "",
                         "the cell is empty"),
    "california_text": ("california", "cal_housing.data", "longitude", 8, "abc",
                        "non-numeric value 'abc'"),
    "churn_inf": ("churn", "Churn_Modelling.csv", "Balance", 41, "inf", "infinite"),
    "churn_1e44": ("churn", "Churn_Modelling.csv", "EstimatedSalary", 100, "1e44",
                   "beyond float32's range"),
    "otto_1e44": ("otto", "otto.csv.gz", "feat_5", 3, "1e44", "beyond float32's range"),
    "otto_-inf": ("otto", "otto.csv.gz", "feat_93", 250, "-inf", "infinite"),
    "adult_test_inf": ("adult", "adult.test", "capital-gain", 11, "inf", "infinite"),
}  # fmt: skip


def _text_lines(path: Path) -> list[str]:
    raw = path.read_bytes()
    return (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode().splitlines()


def _write_with_cell(data_dir: Path, tmp_path: Path, name: str, rel: str, column: str, row: int, text: str) -> Path:
    """A copy of the head of the real file ``rel`` in tmp_path with one cell set to
    ``text`` (data row ``row``, from 1); the dataset's other files are linked."""
    bad = _link_others(name, data_dir, tmp_path, rel)
    if rel in ("Churn_Modelling.csv", "otto.csv.gz"):
        frame = pd.read_csv(data_dir / rel, nrows=300, dtype=str, keep_default_na=False)
        if name == "churn":  # missing numbers, which churn accepts, come first
            frame.loc[2, "Age"], frame.loc[4, "Age"] = "", "nan"
        frame.loc[row - 1, column] = text
        csv = frame.to_csv(index=False).encode()
        bad.write_bytes(gzip.compress(csv) if rel.endswith(".gz") else csv)
        return bad
    columns = CALIFORNIA_COLUMNS if name == "california" else ADULT_COLUMNS
    lines = (data_dir / rel).read_text().splitlines()[:200]
    line = row - 1 + HEADER_LINES[rel]
    fields = lines[line].split(",")
    fields[columns.index(column)] = text
    lines[line] = ",".join(fields)
    bad.write_text("\n".join(lines) + "\n")
    return bad


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_unusable_value_is_refused_naming_column_and_row(case, data_dir, tmp_path):
    """NaN, infinities and numbers beyond float32 (features and target) are refused on
    the raw values: 1e44 is finite in float64 but inf in training's float32."""
    name, rel, column, row, text, problem = BAD_VALUES[case]
    bad = _write_with_cell(data_dir, tmp_path, name, rel, column, row, text)
    with pytest.raises(MalformedDataError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert str(bad) in message and info.value.path == bad
    assert problem in message
    assert f"column {column!r}" in message
    line = row + HEADER_LINES[rel]
    counting = ", counting the header line" if HEADER_LINES[rel] else ""
    assert f"row {row} of the data (line {line} of the file{counting})" in message
    # The line named is the one that holds the cell.
    lines = _text_lines(bad)
    columns = {"california": CALIFORNIA_COLUMNS, "adult": ADULT_COLUMNS}.get(name)
    index = (columns or lines[0].split(",")).index(column)
    assert lines[line - 1].split(",")[index].strip() == text
    if text == "nan":
        assert "empty" not in message


def test_california_ratios_name_raw_columns_and_row(data_dir, tmp_path):
    """AveRooms, AveBedrms and AveOccup divide by households: 0 there, or a value so
    small that a ratio leaves float32, is refused with the raw columns and the row."""
    _write_with_cell(data_dir, tmp_path, "california", "cal_housing.data", "households", 12, "0")
    with pytest.raises(MalformedDataError) as info:
        load_dataset("california", data_dir=tmp_path)
    message = str(info.value)
    assert "row 12 of the data (line 12 of the file), column 'households' is 0" in message
    assert all(c in message for c in ("totalRooms", "totalBedrooms", "population", "AveRooms"))

    tiny = tmp_path / "tiny"
    tiny.mkdir()
    bad = _write_with_cell(data_dir, tiny, "california", "cal_housing.data", "households", 12, "1e-40")
    with pytest.raises(MalformedDataError) as info:
        load_dataset("california", data_dir=tiny)
    message = str(info.value)
    assert "row 12 of the data (line 12 of the file), AveRooms = totalRooms / households" in message
    assert "beyond float32's range" in message and str(bad) in message


def _write_without_rows(case: str, data_dir: Path, tmp_path: Path) -> tuple[str, Path]:
    if case == "churn_header_only":
        bad = _link_others("churn", data_dir, tmp_path, "Churn_Modelling.csv")
        bad.write_text(_text_lines(data_dir / "Churn_Modelling.csv")[0] + "\n")
        return "churn", bad
    if case == "otto_header_only":
        bad = _link_others("otto", data_dir, tmp_path, "otto.csv.gz")
        bad.write_bytes(gzip.compress((_text_lines(data_dir / "otto.csv.gz")[0] + "\n").encode()))
        return "otto", bad
    if case == "california_empty_file":
        bad = _link_others("california", data_dir, tmp_path, "cal_housing.data")
        bad.write_text("")
        return "california", bad
    if case == "adult_test_only_first_line":
        bad = _link_others("adult", data_dir, tmp_path, "adult.test")
        bad.write_text(_text_lines(data_dir / "adult.test")[0] + "\n")
        return "adult", bad
    if case == "mnist_no_test_images":
        for kind, magic, dims in (("images", b"\x00\x00\x08\x03", (0, 28, 28)),
                                  ("labels", b"\x00\x00\x08\x01", (0,))):  # fmt: skip
            rel = f"mnist/t10k-{kind}-idx{len(dims)}-ubyte.gz"
            if kind == "images":
                bad = _link_others("mnist", data_dir, tmp_path, rel)
            else:
                (tmp_path / rel).unlink()
            header = magic + b"".join(n.to_bytes(4, "big") for n in dims)
            (tmp_path / rel).write_bytes(gzip.compress(header))
        return "mnist", bad
    raise AssertionError(case)


NO_ROWS = {
    "churn_header_only": "the file has no data rows, only its header line",
    "otto_header_only": "the file has no data rows, only its header line",
    "california_empty_file": "the file has no data rows",
    "adult_test_only_first_line": "the file has no data rows",
    "mnist_no_test_images": "the file has no images",
}


@pytest.mark.parametrize("case", sorted(NO_ROWS))
def test_file_without_data_rows_is_named(case, data_dir, tmp_path):
    name, bad = _write_without_rows(case, data_dir, tmp_path)
    with pytest.raises(MalformedDataError) as info:
        load_dataset(name, data_dir=tmp_path)
    message = str(info.value)
    assert str(bad) in message and info.value.path == bad
    assert NO_ROWS[case] in message and "max_rows" not in message


def test_unknown_dataset_lists_valid_names(tmp_path):
    for call in (lambda: load_dataset("iris", data_dir=tmp_path),
                 lambda: fetch_datasets(tmp_path, names=["iris"])):  # fmt: skip
        with pytest.raises(ValueError) as info:
            call()
        assert "iris" in str(info.value)
        assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("parameter", ["test_fraction", "val_fraction"])
@pytest.mark.parametrize("value", [0, 1, 0.0, 1.0, -0.2, 1.5, math.nan, "0.2", True])
def test_bad_fraction_is_rejected(parameter, value, tmp_path):
    # tmp_path is empty: a DataFileError here would mean the check came too late.
    with pytest.raises(ValueError, match=parameter):
        load_dataset("california", data_dir=tmp_path, **{parameter: value})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_rows": 0},
        {"max_rows": -3},
        {"max_rows": 2.5},
        {"max_rows": True},
        {"split_seed": -1},
        {"split_seed": 1.5},
        {"split_seed": None},
    ],  # fmt: skip
)
def test_bad_max_rows_or_seed_is_rejected(kwargs, tmp_path):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        load_dataset("california", data_dir=tmp_path, **kwargs)


# --------------------------------------------------------------------------- fetching


def test_fetch_from_mirror_copies_everything(tmp_path, data_dir, load):
    dest = tmp_path / "data"
    paths = fetch_datasets(dest, source=data_dir)
    expected = [dest / rel for name in DATASETS for rel in RAW_FILES[name]]
    assert paths == expected
    for rel in (rel for name in DATASETS for rel in RAW_FILES[name]):
        assert filecmp.cmp(dest / rel, data_dir / rel, shallow=False), rel
        # Mirrors are often read-only; the copies must stay writable. (os.access
        # would say yes to root whatever the mode bits are.)
        assert (dest / rel).stat().st_mode & stat.S_IWUSR, rel
    assert (dest / "mnist").is_dir()
    assert not list(dest.rglob("*.part"))
    copied = load_dataset("churn", data_dir=dest)
    assert torch.equal(copied.X_train, load("churn").X_train)
    assert load_dataset("california", data_dir=dest).sizes["raw"] == 20640


def test_fetch_keeps_existing_files_unless_overwrite(tmp_path, data_dir):
    target = tmp_path / "cal_housing.data"
    target.write_text("sentinel")
    assert fetch_datasets(tmp_path, source=data_dir, names="california") == [target]
    assert target.read_text() == "sentinel"
    fetch_datasets(tmp_path, source=data_dir, names="california", overwrite=True)
    assert filecmp.cmp(target, data_dir / "cal_housing.data", shallow=False)


def test_fetch_reports_file_missing_from_mirror(tmp_path, data_dir):
    mirror, dest = tmp_path / "mirror", tmp_path / "dest"
    mirror.mkdir()
    (mirror / "cal_housing.data").symlink_to(data_dir / "cal_housing.data")
    with pytest.raises(DataFileError) as info:
        fetch_datasets(dest, source=mirror, names=["california", "churn"])
    assert str(mirror / "Churn_Modelling.csv") in str(info.value)
    assert not (dest / "cal_housing.data").exists()  # nothing copied from a bad mirror


def test_fetch_without_source_explains_manual_download(tmp_path, data_dir):
    # Churn and otto need a Kaggle login, so no network is tried for them.
    with pytest.raises(DataFileError) as info:
        fetch_datasets(tmp_path, names=["churn", "otto"])
    message = str(info.value)
    assert str(tmp_path / "Churn_Modelling.csv") in message
    assert str(tmp_path / "otto.csv.gz") in message
    assert "kaggle.com" in message and "asymlib fetch --from" in message
    # Files already in place need no fetching at all.
    (tmp_path / "Churn_Modelling.csv").symlink_to(data_dir / "Churn_Modelling.csv")
    assert fetch_datasets(tmp_path, names="churn") == [tmp_path / "Churn_Modelling.csv"]


# The network paths, with urlopen replaced: this machine (and CI) has no network.


def _serve(monkeypatch, payload: bytes | Exception) -> list[str]:
    requested: list[str] = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        if isinstance(payload, Exception):
            raise payload
        return io.BytesIO(payload)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    return requested


def _california_archive(data_dir: Path, monkeypatch) -> bytes:
    """A cal_housing.tgz holding the real file, with its sha256 made the expected one."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(data_dir / "cal_housing.data", arcname="CaliforniaHousing/cal_housing.data")
    archive = buffer.getvalue()
    record = DATASET_RECORDS["california"]
    (download,) = record.downloads
    download = dataclasses.replace(download, sha256=hashlib.sha256(archive).hexdigest())
    monkeypatch.setitem(DATASET_RECORDS, "california", dataclasses.replace(record, downloads=(download,)))
    return archive


def test_fetch_california_extracts_data_file_from_archive(tmp_path, data_dir, monkeypatch):
    archive = _california_archive(data_dir, monkeypatch)
    url = DATASET_RECORDS["california"].downloads[0].url
    requested = _serve(monkeypatch, archive)
    assert fetch_datasets(tmp_path, names="california") == [tmp_path / "cal_housing.data"]
    assert requested == [url]
    assert filecmp.cmp(tmp_path / "cal_housing.data", data_dir / "cal_housing.data", shallow=False)
    assert [p.name for p in tmp_path.iterdir()] == ["cal_housing.data"]  # no .part left


def test_fetch_rejects_download_with_wrong_checksum(tmp_path, monkeypatch):
    _serve(monkeypatch, b"<html>not the file</html>")
    with pytest.raises(MalformedDataError, match="sha256"):
        fetch_datasets(tmp_path, names="adult")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_fetch_network_failure_says_how_to_get_files(tmp_path, monkeypatch):
    _serve(monkeypatch, urllib.error.URLError("no route to host"))
    with pytest.raises(DataFileError) as info:
        fetch_datasets(tmp_path, names="mnist")
    message = str(info.value)
    assert "no route to host" in message and "asymlib fetch --from" in message
    assert "yann.lecun.com" in message


def test_fetch_offline_tries_every_file_and_lists_all_missing(tmp_path, monkeypatch):
    """Offline, every file is tried, then one DataFileError lists all nine: the path to
    save each at, where to get it and, for a download, its URL and the error."""
    requested: list[tuple[str, float]] = []

    def offline(url, timeout=None):
        requested.append((url, timeout))
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    dest = tmp_path / "dest"
    with pytest.raises(DataFileError) as info:
        fetch_datasets(dest, timeout=3)
    lines = str(info.value).splitlines()
    assert "9 of the 9 raw files to fetch are missing" in lines[0]
    assert "asymlib fetch --from" in lines[0]
    urls = {d.file: d.url for record in DATASET_RECORDS.values() for d in record.downloads}
    for name in DATASETS:
        for rel in RAW_FILES[name]:
            (line,) = [line for line in lines if f"{dest / rel} ({name})" in line]
            assert SOURCE_HINTS[name] in line
            if rel in urls:
                assert f"downloading {urls[rel]} failed" in line
                assert "Name or service not known" in line
            else:
                assert "Kaggle login" in line and "kaggle.com" in line
    assert sorted(url for url, _ in requested) == sorted(urls.values())
    assert {timeout for _, timeout in requested} == {3}
    assert info.value.path == dest / "cal_housing.data"
    assert not [p for p in dest.rglob("*") if p.is_file()]  # nothing half-written


def test_fetch_keeps_the_files_it_could_download(tmp_path, data_dir, monkeypatch):
    archive = _california_archive(data_dir, monkeypatch)
    url = DATASET_RECORDS["california"].downloads[0].url

    def only_figshare(requested, timeout=None):
        if requested == url:
            return io.BytesIO(archive)
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", only_figshare)
    with pytest.raises(DataFileError) as info:
        fetch_datasets(tmp_path, names=["california", "adult", "otto"])
    message = str(info.value)
    assert "3 of the 4 raw files to fetch are missing (1 fetched and kept)" in message
    assert filecmp.cmp(tmp_path / "cal_housing.data", data_dir / "cal_housing.data", shallow=False)
    assert str(tmp_path / "cal_housing.data") not in message
    for rel in ("adult.data", "adult.test", "otto.csv.gz"):
        assert str(tmp_path / rel) in message


# --------------------------------------------------------------------------- the release's split


@pytest.mark.parametrize(
    ("name", "paper", "release"),
    [
        ("california", (13209, 3303, 4128), (14860, 1652, 4128)),
        ("churn", (6400, 1600, 2000), (7200, 800, 2000)),
    ],
)
def test_paper_and_release_splits_have_their_sizes_and_are_disjoint(load, name, paper, release):
    for split, sizes in (("paper", paper), ("release", release)):
        ds = load(name, split=split)
        assert ds.split == split
        assert tuple(ds.sizes[p] for p in PARTS) == sizes
        parts = [set(ds.row_indices[p].tolist()) for p in PARTS]
        assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
        assert set().union(*parts) == set(range(ds.n_raw_rows))


def test_release_split_keeps_californias_extreme_rows_in_training(load):
    """The paper-text split puts a block with AveOccup |z| = 234 into test; the release's
    seeds leave the test set's largest |z| near 76.6, with the extremes in training."""
    paper, release = load("california"), load("california", split="release")
    occupancy = paper.feature_names.index("AveOccup")
    assert float(paper.X_test[:, occupancy].abs().max()) == pytest.approx(234, abs=1)
    assert paper.X_test[:, occupancy].abs().max() > paper.X_train[:, occupancy].abs().max()
    assert float(release.X_test.abs().max()) == pytest.approx(76.6, abs=0.05)
    assert release.X_test[:, occupancy].abs().max() < release.X_train[:, occupancy].abs().max()
    # One test row lies beyond training's range in each: the paper split's AveOccup row
    # (|z| 234), the release's AveBedrms row (|z| 76.6, above training's 57).
    assert paper.test_out_of_range().sum() == release.test_out_of_range().sum() == 1


def test_release_scaler_leaks_all_rows_only_where_the_release_did(load, data_dir):
    """churn under the release: one scaler over all 10,000 rows and all 13 columns (the
    one-hot ones too); california under the release: training rows only, as the paper."""
    churn = load("churn", split="release")
    assert churn.real_valued.all()
    X = load("churn", standardize=False).X_train.double()  # raw values of any part work
    frame = pd.read_csv(data_dir / "Churn_Modelling.csv")
    ages = torch.tensor(frame["Age"].to_numpy(dtype=float))
    assert float(churn.feature_mean[1]) == pytest.approx(float(ages.mean()))
    female = torch.tensor((frame["Gender"] == "Female").to_numpy(dtype=float))
    assert float(churn.feature_mean[11]) == pytest.approx(float(female.mean()))
    assert X.shape[1] == 13
    california = load("california", split="release")
    assert (california.X_train.double().mean(0).abs() < 1e-4).all()  # fitted on training rows


def test_unknown_split_is_refused(tmp_path):
    with pytest.raises(ValueError, match="split must be one of 'paper', 'release'"):
        load_dataset("churn", data_dir=tmp_path, split="kaggle")
