"""The readers: one function per dataset that turns its raw files into one pooled table.

``reader(record, data_dir) -> Table`` reads the files of ``record.files`` under
``data_dir``, checks every cell (``parsing``), and returns the whole dataset in file
order (for adult and mnist the training file first), with the features the paper uses:
california's derived ratios as in scikit-learn, churn's and adult's categories one-hot
encoded, mnist's pixels, otto's counts. Splitting and scaling come later (``splits``).
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset_record import DatasetRecord, Table
from .parsing import (
    class_labels,
    numeric_columns,
    one_hot_columns,
    read_csv,
    refuse_first_bad,
    unusable,
)

__all__ = ["read_adult", "read_california", "read_churn", "read_mnist", "read_otto"]


_CALIFORNIA_COLUMNS = ("longitude", "latitude", "housingMedianAge", "totalRooms",
                       "totalBedrooms", "population", "households", "medianIncome",
                       "medianHouseValue")  # fmt: skip

# The ratios among sklearn's derived features: (feature, numerator column); each
# divides by households.
_CALIFORNIA_RATIOS = (("AveRooms", "totalRooms"), ("AveBedrms", "totalBedrooms"),
                      ("AveOccup", "population"))  # fmt: skip


def read_california(record: DatasetRecord, data_dir: Path) -> Table:
    """StatLib's cal_housing.data: scikit-learn's 8 features, the house value in $100,000s."""
    path = data_dir / record.files[0]  # cal_housing.data
    expected = (
        f"StatLib's cal_housing.data: no header, 9 comma-separated numeric columns ({', '.join(_CALIFORNIA_COLUMNS)})"
    )
    frame = read_csv(record, path, expected, header=None)
    if frame.shape[1] != 9:
        raise record.malformed(path, f"{frame.shape[1]} columns", expected)
    frame.columns = list(_CALIFORNIA_COLUMNS)  # so that messages name the columns
    raw = numeric_columns(record, path, frame, expected, header_lines=0)
    column = dict(zip(_CALIFORNIA_COLUMNS, raw.T))
    households = column["households"]

    def not_positive(row: int, _: int) -> str:
        return (
            f"column 'households' is {households[row]:g}, but it counts homes, and "
            "AveRooms, AveBedrms and AveOccup divide totalRooms, totalBedrooms and "
            "population by it"
        )

    refuse_first_bad(record, path, (households <= 0)[:, None], not_positive, expected, header_lines=0)
    # Checked values can still give a ratio beyond float32 (households of 1e-40).
    with np.errstate(over="ignore"):
        ratios = np.column_stack([column[c] / households for _, c in _CALIFORNIA_RATIOS])

    def too_large(row: int, j: int) -> str:
        feature, numerator = _CALIFORNIA_RATIOS[j]
        return (
            f"{feature} = {numerator} / households = {column[numerator][row]:g} / "
            f"{households[row]:g} = {ratios[row, j]:g} is beyond float32's range"
        )

    refuse_first_bad(record, path, unusable(ratios), too_large, expected, header_lines=0)
    # The same derived features as sklearn.datasets.fetch_california_housing.
    ave_rooms, ave_bedrooms, ave_occupancy = ratios.T
    X = np.column_stack(
        [
            column["medianIncome"],
            column["housingMedianAge"],
            ave_rooms,
            ave_bedrooms,
            column["population"],
            ave_occupancy,
            column["latitude"],
            column["longitude"],
        ]
    )
    names = ["MedInc", "HouseAge", "AveRooms", "AveBedrms", "Population", "AveOccup",
             "Latitude", "Longitude"]  # fmt: skip
    return Table(X, column["medianHouseValue"] / 100000.0, names, np.ones(8, bool))


_CHURN_NUMERIC = ("CreditScore", "Age", "Tenure", "Balance", "NumOfProducts", "HasCrCard",
                  "IsActiveMember", "EstimatedSalary")  # fmt: skip
_CHURN_CATEGORICAL = ("Geography", "Gender")
_CHURN_DROPPED = ("RowNumber", "CustomerId", "Surname")


def read_churn(record: DatasetRecord, data_dir: Path) -> Table:
    """Kaggle's Churn_Modelling.csv: 8 numeric columns, Geography and Gender one-hot."""
    path = data_dir / record.files[0]  # Churn_Modelling.csv
    columns = _CHURN_DROPPED + _CHURN_NUMERIC + _CHURN_CATEGORICAL + ("Exited",)
    expected = f"Kaggle's Churn_Modelling.csv with a header naming the columns {list(columns)}"
    # Churn accepts missing numbers, so pandas' spellings of missing ('nan', 'NA', ...)
    # stay as missing as a blank, as they always were here.
    frame = read_csv(record, path, expected, keep_default_na=True)
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        raise record.malformed(path, f"missing columns {missing}, unexpected columns {extra}", expected)
    # Kaggle's original has no empty cells, but copies with blank Age and Gender cells
    # circulate. Blank numbers stay NaN here and are imputed with the training mean by
    # load_dataset; a blank category gets an all-zero one-hot row, which keeps churn's
    # 13 features.
    numeric = numeric_columns(
        record, path, frame[list(_CHURN_NUMERIC)], expected, header_lines=1,
        missing_as=np.nan,
    )  # fmt: skip
    one_hot, one_hot_names = one_hot_columns(frame[list(_CHURN_CATEGORICAL)])
    y = class_labels(record, path, frame["Exited"], {0: 0, 1: 1, "0": 0, "1": 1}, expected)
    # Binary indicators such as HasCrCard are raw numeric inputs, not one-hot
    # columns we created, so they are standardised like every numeric column.
    X = np.hstack([numeric, one_hot])
    mask = np.r_[np.ones(numeric.shape[1], bool), np.zeros(one_hot.shape[1], bool)]
    return Table(X, y, list(_CHURN_NUMERIC) + one_hot_names, mask)


_ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                  "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                  "hours-per-week", "native-country", "income")  # fmt: skip
_ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
                  "hours-per-week")  # fmt: skip
_ADULT_CATEGORICAL = tuple(c for c in _ADULT_COLUMNS if c not in _ADULT_NUMERIC + ("income",))


def _read_adult_file(record: DatasetRecord, path: Path) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """One UCI adult file: numeric (n, 6) float64, categorical frame (n, 8), labels (n,)."""
    expected = (
        "UCI's adult.data / adult.test: no header, 15 comma-separated columns "
        f"{list(_ADULT_COLUMNS)}; adult.test may start with a '|1x3 Cross validator' line"
    )
    with open(path, "rb") as fh:
        first = fh.readline()
    # adult.test opens with a non-data line; detect it rather than assume it.
    skip = 1 if first.lstrip().startswith(b"|") else 0
    frame = read_csv(
        record, path, expected, header=None, skiprows=skip, dtype=str,
        keep_default_na=False, skipinitialspace=True,
    )  # fmt: skip
    if frame.shape[1] != len(_ADULT_COLUMNS):
        raise record.malformed(path, f"{frame.shape[1]} columns", expected)
    frame.columns = list(_ADULT_COLUMNS)
    # skipinitialspace removes the padding before a value; strip any after it too.
    frame = frame.apply(lambda s: s.str.strip())
    # Rows with too few fields come back with NaN there, which fails the label check.
    income = frame["income"].str.rstrip(".")  # adult.test writes '<=50K.'
    y = class_labels(record, path, income, {"<=50K": 0, ">50K": 1}, expected)
    numeric = numeric_columns(
        record, path, frame[list(_ADULT_NUMERIC)].replace({"?": None, "": None}), expected,
        header_lines=skip, missing_as=0.0,  # the protocol: missing numbers are filled with 0
    )  # fmt: skip
    # the protocol: a missing category ('?') becomes a category of its own.
    missing = {"?": "MissingValue", "": "MissingValue"}
    categorical = frame[list(_ADULT_CATEGORICAL)].replace(missing).fillna("MissingValue")
    return numeric, categorical, y


def read_adult(record: DatasetRecord, data_dir: Path) -> Table:
    """UCI's adult.data then adult.test: 6 numeric columns, 8 categorical ones one-hot."""
    # Both files are pooled and split afresh like every other dataset (docs/protocol.md).
    # adult.data, then adult.test
    parts = [_read_adult_file(record, data_dir / f) for f in record.files]
    numeric = np.vstack([p[0] for p in parts])
    # Encode the pooled categories so both files share one set of columns.
    one_hot, one_hot_names = one_hot_columns(pd.concat([p[1] for p in parts], ignore_index=True))
    y = np.concatenate([p[2] for p in parts])
    X = np.hstack([numeric, one_hot])
    mask = np.r_[np.ones(numeric.shape[1], bool), np.zeros(one_hot.shape[1], bool)]
    return Table(X, y, list(_ADULT_NUMERIC) + one_hot_names, mask)


_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def _read_idx(record: DatasetRecord, path: Path, magic: int) -> np.ndarray:
    """Parse one gzipped IDX file of unsigned bytes into an array of its declared shape."""
    ndim = magic & 0xFF
    expected = (
        f"a gzipped IDX file with magic number {magic:#010x} "
        f"(unsigned bytes, {ndim} dimension{'s' if ndim > 1 else ''}) as published with MNIST"
    )
    try:
        with gzip.open(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise record.malformed(path, f"not readable as gzip ({exc})", expected) from exc
    header = 4 + 4 * ndim
    if len(data) < header:
        raise record.malformed(path, f"only {len(data)} bytes", expected)
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise record.malformed(path, f"magic number {found:#010x}", expected)
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    payload = np.frombuffer(data, np.uint8, offset=header)
    if payload.size != math.prod(shape):
        raise record.malformed(
            path,
            f"header declares shape {shape} ({math.prod(shape)} bytes) but {payload.size} "
            "bytes follow", expected,
        )  # fmt: skip
    return payload.reshape(shape)


def _read_mnist_part(record: DatasetRecord, images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pair of MNIST's IDX files: images (n, 784) uint8, labels (n,) uint8."""
    images = _read_idx(record, images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(record, labels_path, _IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise record.malformed(images_path, f"images of {images.shape[1:]}", "28x28 images")
    if len(images) == 0:  # a valid IDX header, but a pooled table with a part missing
        raise record.malformed(images_path, "the file has no images", "28x28 images")
    if len(images) != len(labels):
        raise record.malformed(
            labels_path, f"{len(labels)} labels for {len(images)} images",
            f"one label per image of {images_path.name}",
        )  # fmt: skip
    if labels.size and labels.max() > 9:
        raise record.malformed(labels_path, f"label {labels.max()}", "digits 0..9")
    return images.reshape(len(images), 28 * 28), labels


def read_mnist(record: DatasetRecord, data_dir: Path) -> Table:
    """MNIST's four IDX files: training images then test images, 784 pixels each."""
    # mnist/train-images, mnist/train-labels, mnist/t10k-images, mnist/t10k-labels
    train_images, train_labels, test_images, test_labels = (data_dir / f for f in record.files)
    train_x, train_y = _read_mnist_part(record, train_images, train_labels)
    test_x, test_y = _read_mnist_part(record, test_images, test_labels)
    # float32 rather than float64: 70,000 x 784 doubles would need 440 MB.
    X = np.concatenate([train_x, test_x]).astype(np.float32)
    y = np.concatenate([train_y, test_y]).astype(np.int64)
    names = [f"pixel{i}" for i in range(1, 785)]  # OpenML mnist_784's names
    return Table(X, y, names, np.ones(784, bool))


_OTTO_FEATURES = tuple(f"feat_{i}" for i in range(1, 94))
_OTTO_CLASSES = {f"Class_{k}": k - 1 for k in range(1, 10)}


def read_otto(record: DatasetRecord, data_dir: Path) -> Table:
    """Kaggle's otto train.csv (gzipped): 93 count features, 9 classes."""
    path = data_dir / record.files[0]  # otto.csv.gz
    expected = (
        "Kaggle's otto train.csv (gzipped): header id, feat_1..feat_93, target; "
        "integer features; targets Class_1..Class_9"
    )
    with open(path, "rb") as fh:
        # Accept an ungzipped train.csv saved under this name rather than fail obscurely.
        compression = "gzip" if fh.read(2) == b"\x1f\x8b" else None
    frame = read_csv(record, path, expected, compression=compression)
    columns = ("id",) + _OTTO_FEATURES + ("target",)
    if tuple(frame.columns) != columns:
        missing = [c for c in columns if c not in frame.columns]
        extra = [c for c in frame.columns if c not in columns]
        raise record.malformed(path, f"missing columns {missing}, unexpected columns {extra}", expected)
    X = numeric_columns(record, path, frame[list(_OTTO_FEATURES)], expected, header_lines=1)
    y = class_labels(record, path, frame["target"], _OTTO_CLASSES, expected)
    return Table(X, y, list(_OTTO_FEATURES), np.ones(93, bool))
