"""Loaders for the five benchmark datasets of the paper, read from their raw files.

Every loader turns the original files (the ones listed in ``RAW_FILES``) into one
pooled table, splits it into train / validation / test the same way for every
dataset, and standardises the real-valued columns with statistics of the training
part only (docs/protocol.md, "Datasets" and "Split and scaling").

>>> ds = load_dataset("churn")                       # doctest: +SKIP
>>> ds.X_train.shape, ds.y_train.dtype, ds.sizes     # doctest: +SKIP
(torch.Size([6400, 13]), torch.int64, {'raw': 10000, 'used': 10000, ...})

Nothing is cached on disk and the network is never touched by a loader; use
``fetch_datasets`` (or ``asymlib fetch``) to put the raw files in place first.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import logging
import math
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from .project import project_root

__all__ = [
    "DATASETS",
    "DATASET_SHAPES",
    "RAW_FILES",
    "DataFileError",
    "Dataset",
    "MalformedDataError",
    "default_data_dir",
    "fetch_datasets",
    "load_dataset",
]

logger = logging.getLogger(__name__)

DATASETS = ("california", "churn", "adult", "mnist", "otto")

#: (rows, features) of each whole dataset after preprocessing, known without reading it:
#: the runner starts the largest work units first (tests/test_data.py checks these figures
#: against the loaded files).
DATASET_SHAPES: dict[str, tuple[int, int]] = {
    "california": (20640, 8),
    "churn": (10000, 13),
    "adult": (48842, 108),
    "mnist": (70000, 784),
    "otto": (61878, 93),
}

#: Raw files each dataset needs, relative to the data folder.
RAW_FILES: dict[str, tuple[str, ...]] = {
    "california": ("cal_housing.data",),
    "churn": ("Churn_Modelling.csv",),
    "adult": ("adult.data", "adult.test"),
    "mnist": (
        "mnist/train-images-idx3-ubyte.gz",
        "mnist/train-labels-idx1-ubyte.gz",
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
    ),
    "otto": ("otto.csv.gz",),
}

# Where a person can obtain the files by hand; quoted in every error message.
_PUBLIC_SOURCES: dict[str, str] = {
    "california": (
        "scikit-learn's fetch_california_housing archive of StatLib's data, "
        "https://ndownloader.figshare.com/files/5976036 (cal_housing.tgz; "
        "extract CaliforniaHousing/cal_housing.data)"
    ),
    "churn": (
        "Kaggle's churn-modelling dataset, "
        "https://www.kaggle.com/datasets/shrutimechlearn/churn-modelling "
        "(Churn_Modelling.csv)"
    ),
    "adult": (
        "the UCI Adult dataset, https://archive.ics.uci.edu/dataset/2/adult "
        "(adult.data and adult.test, unmodified)"
    ),
    "mnist": (
        "Yann LeCun's MNIST page http://yann.lecun.com/exdb/mnist/ or its mirror "
        "https://ossci-datasets.s3.amazonaws.com/mnist/ (the four *-idx?-ubyte.gz files, "
        "into a mnist/ subfolder); the same images are OpenML's mnist_784"
    ),
    "otto": (
        "Kaggle's otto-group-product-classification-challenge, "
        "https://www.kaggle.com/c/otto-group-product-classification-challenge/data "
        "(train.csv, gzipped and saved as otto.csv.gz: gzip -c train.csv > otto.csv.gz)"
    ),
}

# Files that can be downloaded without a login: url and sha256 of the published file.
# The california entry is an archive; _fetch_one extracts the .data member from it.
_CAL_HOUSING_ARCHIVE = (
    "https://ndownloader.figshare.com/files/5976036",
    "aaa5c9a6afe2225cc2aed2723682ae403280c4a3695a2ddda4ffb5d8215ea681",
    "CaliforniaHousing/cal_housing.data",
)
_MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_UCI_ADULT = "https://archive.ics.uci.edu/ml/machine-learning-databases/adult/"
_DOWNLOADS: dict[str, tuple[str, str]] = {
    "adult.data": (
        _UCI_ADULT + "adult.data",
        "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    ),
    "adult.test": (
        _UCI_ADULT + "adult.test",
        "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
    ),
    "mnist/train-images-idx3-ubyte.gz": (
        _MNIST_MIRROR + "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    "mnist/train-labels-idx1-ubyte.gz": (
        _MNIST_MIRROR + "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    "mnist/t10k-images-idx3-ubyte.gz": (
        _MNIST_MIRROR + "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    "mnist/t10k-labels-idx1-ubyte.gz": (
        _MNIST_MIRROR + "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
}


# --------------------------------------------------------------------------- errors


class DataFileError(FileNotFoundError):
    """A raw data file is missing (or could not be obtained).

    ``path`` is the file that was looked for.
    """

    def __init__(self, message: str, *, path: Path | str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class MalformedDataError(ValueError):
    """A raw data file exists but does not have the expected content.

    ``path`` is the offending file.
    """

    def __init__(self, message: str, *, path: Path | str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


def _how_to_obtain(name: str, data_dir: Path) -> str:
    return (
        f"To obtain it, run `asymlib fetch --from /path/to/mirror` (copies the raw files "
        f"from a local mirror folder into {data_dir}) or download it from "
        f"{_PUBLIC_SOURCES[name]}, then place it under {data_dir} "
        f"(or point ASYMLIB_DATA / data_dir at the folder holding it)."
    )


def _malformed(name: str, path: Path, problem: str, expected: str) -> MalformedDataError:
    return MalformedDataError(
        f"{name}: raw file {path} is malformed: {problem}; expected {expected}. "
        f"It may be truncated or a different version of the data. "
        + _how_to_obtain(name, path.parent),
        path=path,
    )


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True, eq=False)  # eq=False: field-wise == is meaningless on tensors
class Dataset:
    """One dataset, split and standardised, as torch tensors.

    Shapes (n_* = rows of that part, d = ``n_features``):
      X_train (n_train, d), X_val (n_val, d), X_test (n_test, d): float32.
      y_*: (n_*,) float32 targets for regression, int64 class indices in
      ``[0, n_classes)`` for classification.
      row_indices[part]: (n_part,) int64 row numbers in the pooled raw table
      (file order; for adult and mnist the training file comes first).
      feature_mean, feature_scale: (d,) float64, the scaler's statistics
      (0 and 1 for columns left unscaled), so X = (raw - mean) / scale.
      real_valued: (d,) bool, True for the columns the scaler standardises,
      False for one-hot columns (which stay exactly 0/1).
    Columns: the real-valued ones in file order, then one one-hot block per
    categorical column, named 'column=value', categories sorted.
    """

    name: str
    task: str  # "regression" | "binary" | "multiclass"
    n_outputs: int  # width of a model's output layer: 1 for regression
    n_classes: int  # 0 for regression
    feature_names: list[str]
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    n_raw_rows: int  # rows of the pooled raw table, before max_rows
    row_indices: dict[str, torch.Tensor]
    feature_mean: torch.Tensor
    feature_scale: torch.Tensor
    real_valued: torch.Tensor
    split: str = "paper"  # which rule of ``SPLITS`` made the parts

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]

    def test_out_of_range(self) -> torch.Tensor:
        """(n_test,) bool: test rows with a feature beyond anything training saw in it
        (|x| above that column's largest |x| in the training part). A network never fit
        there, and a frozen W-Asymmetric weight cannot shrink to tame it."""
        return (self.X_test.abs() > self.X_train.abs().amax(dim=0)).any(dim=1)

    @property
    def sizes(self) -> dict[str, int]:
        """Row counts: ``raw`` (whole file), ``used`` (after max_rows), and each part."""
        train, val, test = len(self.y_train), len(self.y_val), len(self.y_test)
        return {
            "raw": self.n_raw_rows,
            "used": train + val + test,
            "train": train,
            "val": val,
            "test": test,
        }

    def __repr__(self) -> str:
        s = self.sizes
        return (
            f"Dataset(name={self.name!r}, task={self.task!r}, n_features={self.n_features}, "
            f"n_outputs={self.n_outputs}, train={s['train']}, val={s['val']}, "
            f"test={s['test']}, raw={s['raw']})"
        )


@dataclass(frozen=True)
class _Table:
    """The pooled raw table of one dataset, before splitting and scaling.

    X (n, d) float64 (float32 for mnist, to halve its memory), y (n,),
    real_valued (d,) bool.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    real_valued: np.ndarray
    task: str
    n_classes: int


# --------------------------------------------------------------------------- readers


def _read_csv(name: str, path: Path, expected: str, **kwargs) -> pd.DataFrame:
    """pandas.read_csv, with parser failures and files without data rows reported as
    MalformedDataError.

    Only an empty cell counts as missing (NaN): pandas would also take the texts
    'nan', 'NA', 'null' and so on for missing, which would hide them from the checks
    of ``_numeric_columns``. A caller's own ``keep_default_na`` / ``na_values`` win.
    """
    kwargs.setdefault("keep_default_na", False)
    kwargs.setdefault("na_values", [""])
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as exc:  # nothing, or nothing after the skipped rows
        raise _malformed(name, path, "the file has no data rows", expected) from exc
    except (ValueError, EOFError, OSError) as exc:
        # ParserError, UnicodeDecodeError and bad gzip data all land here.
        raise _malformed(name, path, f"could not be parsed ({exc})", expected) from exc
    if frame.empty:
        # Without this a header-only file fails much later, as a split of 0 rows.
        raise _malformed(name, path, "the file has no data rows, only its header line", expected)
    return frame


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _unusable(values: np.ndarray) -> np.ndarray:
    """Mask of the entries a float32 model cannot take: NaN, +-inf, and |x| beyond
    float32's largest number (finite in float64, inf once cast for training)."""
    with np.errstate(invalid="ignore"):  # NaN compares False, which is what we want
        return ~(np.abs(values) <= _FLOAT32_MAX)


def _where(row: int, header_lines: int) -> str:
    """Data row ``row`` (0-based) as a person counts it in the file: 1-based, with
    its line number. (Blank lines, which pandas skips, are not counted.)"""
    line = row + 1 + header_lines
    counting = {0: "", 1: ", counting the header line"}.get(
        header_lines, f", counting the {header_lines} header lines"
    )
    return f"row {row + 1} of the data (line {line} of the file{counting})"


def _refuse_first_bad(
    name: str,
    path: Path,
    bad: np.ndarray,
    describe: Callable[[int, int], str],
    expected: str,
    *,
    header_lines: int,
) -> None:
    """Raise MalformedDataError for the first row of the file with a bad cell, if any.

    bad: (n, k) bool over the data rows and k columns; describe(row, j) says what is
    wrong with that cell, naming its column. The message gives the row and how many
    more bad values follow, so one run shows the extent of the damage.
    """
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return
    row = int(rows[0])
    j = int(np.flatnonzero(bad[row])[0])
    more = int(bad.sum()) - 1
    problem = f"{_where(row, header_lines)}, {describe(row, j)}"
    if more:
        problem += f" (and {more} more bad value{'s' if more > 1 else ''} after it)"
    raise _malformed(name, path, problem, expected)


def _cell_problem(cell, number: float) -> str:
    """What is wrong with one cell that ``_unusable`` flagged (or that is empty)."""
    if pd.isna(cell):
        return "the cell is empty"
    text = str(cell).strip()
    if math.isnan(number):
        if text.lower().lstrip("+-") == "nan":
            return f"{text!r} is not a number we accept"
        return f"the non-numeric value {text!r}"
    # Numbers come back parsed (pandas reads 'inf' and '1e999' alike as inf), so the
    # value is shown as read rather than quoted as the file's text.
    if math.isinf(number):
        return f"the value is infinite ({text})"
    return (
        f"the value {text} is beyond float32's range (|x| <= {_FLOAT32_MAX:.4g}); "
        "training in float32 would make it inf"
    )


def _numeric_columns(
    name: str,
    path: Path,
    frame: pd.DataFrame,
    expected: str,
    *,
    header_lines: int,
    missing_as: float | None = None,
) -> np.ndarray:
    """Columns of ``frame`` as float64 (n, k), every cell checked before any use.

    frame: (n, k) cells as read (numbers, or text where pandas found no number),
    empty cells NaN; its column names are the ones the messages quote.
    header_lines: lines of the file above its first data row, so that messages
    can give the line of a bad cell.
    A cell is refused, with its column and row, if it holds text, a written-out
    'nan', an infinity, or a number beyond float32's range: models train in
    float32, where such a value turns every prediction NaN or a metric inf.
    With ``missing_as`` set, empty cells get that value instead of failing (NaN
    keeps them missing, for load_dataset to impute from the training part).
    """
    out = np.empty(frame.shape, dtype=np.float64)
    for j, column in enumerate(frame.columns):
        numbers = pd.to_numeric(frame[column], errors="coerce")
        out[:, j] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    empty = frame.isna().to_numpy()
    bad = _unusable(out)
    if missing_as is not None:
        bad &= ~empty

    def describe(row: int, j: int) -> str:
        return f"column {frame.columns[j]!r}: {_cell_problem(frame.iat[row, j], out[row, j])}"

    _refuse_first_bad(name, path, bad, describe, expected, header_lines=header_lines)
    if missing_as is not None:
        out[empty] = missing_as
    return out


def _one_hot(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """One-hot encode every column of ``frame``; categories sorted, names 'column=value'."""
    dummies = pd.get_dummies(frame, prefix_sep="=", dtype=np.float64)
    return dummies.to_numpy(), [str(c) for c in dummies.columns]


_CALIFORNIA_COLUMNS = ("longitude", "latitude", "housingMedianAge", "totalRooms",
                       "totalBedrooms", "population", "households", "medianIncome",
                       "medianHouseValue")  # fmt: skip

# The ratios among sklearn's derived features: (feature, numerator column); each
# divides by households.
_CALIFORNIA_RATIOS = (("AveRooms", "totalRooms"), ("AveBedrms", "totalBedrooms"),
                      ("AveOccup", "population"))  # fmt: skip


def _read_california(data_dir: Path) -> _Table:
    path = data_dir / "cal_housing.data"
    expected = (
        "StatLib's cal_housing.data: no header, 9 comma-separated numeric columns "
        f"({', '.join(_CALIFORNIA_COLUMNS)})"
    )
    frame = _read_csv("california", path, expected, header=None)
    if frame.shape[1] != 9:
        raise _malformed("california", path, f"{frame.shape[1]} columns", expected)
    frame.columns = list(_CALIFORNIA_COLUMNS)  # so that messages name the columns
    raw = _numeric_columns("california", path, frame, expected, header_lines=0)
    column = dict(zip(_CALIFORNIA_COLUMNS, raw.T))
    households = column["households"]

    def not_positive(row: int, _: int) -> str:
        return (
            f"column 'households' is {households[row]:g}, but it counts homes, and "
            "AveRooms, AveBedrms and AveOccup divide totalRooms, totalBedrooms and "
            "population by it"
        )

    _refuse_first_bad(
        "california", path, (households <= 0)[:, None], not_positive, expected, header_lines=0
    )
    # Checked values can still give a ratio beyond float32 (households of 1e-40).
    with np.errstate(over="ignore"):
        ratios = np.column_stack([column[c] / households for _, c in _CALIFORNIA_RATIOS])

    def too_large(row: int, j: int) -> str:
        feature, numerator = _CALIFORNIA_RATIOS[j]
        return (
            f"{feature} = {numerator} / households = {column[numerator][row]:g} / "
            f"{households[row]:g} = {ratios[row, j]:g} is beyond float32's range"
        )

    _refuse_first_bad("california", path, _unusable(ratios), too_large, expected, header_lines=0)
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
    return _Table(
        X, column["medianHouseValue"] / 100000.0, names, np.ones(8, bool), "regression", 0
    )


_CHURN_NUMERIC = ("CreditScore", "Age", "Tenure", "Balance", "NumOfProducts", "HasCrCard",
                  "IsActiveMember", "EstimatedSalary")  # fmt: skip
_CHURN_CATEGORICAL = ("Geography", "Gender")
_CHURN_DROPPED = ("RowNumber", "CustomerId", "Surname")


def _read_churn(data_dir: Path) -> _Table:
    path = data_dir / "Churn_Modelling.csv"
    columns = _CHURN_DROPPED + _CHURN_NUMERIC + _CHURN_CATEGORICAL + ("Exited",)
    expected = f"Kaggle's Churn_Modelling.csv with a header naming the columns {list(columns)}"
    # Churn accepts missing numbers, so pandas' spellings of missing ('nan', 'NA', ...)
    # stay as missing as a blank, as they always were here.
    frame = _read_csv("churn", path, expected, keep_default_na=True)
    missing = [c for c in columns if c not in frame.columns]
    extra = [c for c in frame.columns if c not in columns]
    if missing or extra:
        raise _malformed(
            "churn", path, f"missing columns {missing}, unexpected columns {extra}", expected
        )
    # Kaggle's original has no empty cells, but copies with blank Age and Gender cells
    # circulate. Blank numbers stay NaN here and are imputed with the training mean by
    # load_dataset; a blank category gets an all-zero one-hot row, which keeps churn's
    # 13 features.
    numeric = _numeric_columns(
        "churn", path, frame[list(_CHURN_NUMERIC)], expected, header_lines=1,
        missing_as=np.nan,
    )  # fmt: skip
    one_hot, one_hot_names = _one_hot(frame[list(_CHURN_CATEGORICAL)])
    y = _class_labels("churn", path, frame["Exited"], {0: 0, 1: 1, "0": 0, "1": 1}, expected)
    # Binary indicators such as HasCrCard are raw numeric inputs, not one-hot
    # columns we created, so they are standardised like every numeric column.
    X = np.hstack([numeric, one_hot])
    mask = np.r_[np.ones(numeric.shape[1], bool), np.zeros(one_hot.shape[1], bool)]
    return _Table(X, y, list(_CHURN_NUMERIC) + one_hot_names, mask, "binary", 2)


def _class_labels(
    name: str, path: Path, labels: pd.Series, mapping: dict, expected: str
) -> np.ndarray:
    """Map raw labels to int64 class indices; any label outside ``mapping`` is an error."""
    codes = labels.map(mapping)
    if codes.isna().any():
        unknown = sorted({str(v) for v in labels[codes.isna()]})[:5]
        valid = sorted({str(k) for k in mapping})
        raise _malformed(
            name, path, f"unexpected labels {unknown} (valid: {valid})", expected
        )
    return codes.to_numpy(dtype=np.int64)


_ADULT_COLUMNS = ("age", "workclass", "fnlwgt", "education", "education-num", "marital-status",
                  "occupation", "relationship", "race", "sex", "capital-gain", "capital-loss",
                  "hours-per-week", "native-country", "income")  # fmt: skip
_ADULT_NUMERIC = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss",
                  "hours-per-week")  # fmt: skip


_ADULT_CATEGORICAL = tuple(c for c in _ADULT_COLUMNS if c not in _ADULT_NUMERIC + ("income",))


def _read_adult_file(path: Path) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
    """One UCI adult file: numeric (n, 6) float64, categorical frame (n, 8), labels (n,)."""
    expected = (
        "UCI's adult.data / adult.test: no header, 15 comma-separated columns "
        f"{list(_ADULT_COLUMNS)}; adult.test may start with a '|1x3 Cross validator' line"
    )
    with open(path, "rb") as fh:
        first = fh.readline()
    # adult.test opens with a non-data line; detect it rather than assume it.
    skip = 1 if first.lstrip().startswith(b"|") else 0
    frame = _read_csv(
        "adult", path, expected, header=None, skiprows=skip, dtype=str,
        keep_default_na=False, skipinitialspace=True,
    )  # fmt: skip
    if frame.shape[1] != len(_ADULT_COLUMNS):
        raise _malformed("adult", path, f"{frame.shape[1]} columns", expected)
    frame.columns = list(_ADULT_COLUMNS)
    # skipinitialspace removes the padding before a value; strip any after it too.
    frame = frame.apply(lambda s: s.str.strip())
    # Rows with too few fields come back with NaN there, which fails the label check.
    income = frame["income"].str.rstrip(".")  # adult.test writes '<=50K.'
    y = _class_labels("adult", path, income, {"<=50K": 0, ">50K": 1}, expected)
    numeric = _numeric_columns(
        "adult", path, frame[list(_ADULT_NUMERIC)].replace({"?": None, "": None}), expected,
        header_lines=skip, missing_as=0.0,  # the protocol: missing numbers are filled with 0
    )  # fmt: skip
    # the protocol: a missing category ('?') becomes a category of its own.
    missing = {"?": "MissingValue", "": "MissingValue"}
    categorical = frame[list(_ADULT_CATEGORICAL)].replace(missing).fillna("MissingValue")
    return numeric, categorical, y


def _read_adult(data_dir: Path) -> _Table:
    # Both files are pooled and split afresh like every other dataset (docs/protocol.md).
    parts = [_read_adult_file(data_dir / f) for f in ("adult.data", "adult.test")]
    numeric = np.vstack([p[0] for p in parts])
    # Encode the pooled categories so both files share one set of columns.
    one_hot, one_hot_names = _one_hot(pd.concat([p[1] for p in parts], ignore_index=True))
    y = np.concatenate([p[2] for p in parts])
    X = np.hstack([numeric, one_hot])
    mask = np.r_[np.ones(numeric.shape[1], bool), np.zeros(one_hot.shape[1], bool)]
    return _Table(X, y, list(_ADULT_NUMERIC) + one_hot_names, mask, "binary", 2)


_IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def _read_idx(path: Path, magic: int) -> np.ndarray:
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
        raise _malformed("mnist", path, f"not readable as gzip ({exc})", expected) from exc
    header = 4 + 4 * ndim
    if len(data) < header:
        raise _malformed("mnist", path, f"only {len(data)} bytes", expected)
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise _malformed("mnist", path, f"magic number {found:#010x}", expected)
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    payload = np.frombuffer(data, np.uint8, offset=header)
    if payload.size != math.prod(shape):
        raise _malformed(
            "mnist", path,
            f"header declares shape {shape} ({math.prod(shape)} bytes) but {payload.size} "
            "bytes follow", expected,
        )  # fmt: skip
    return payload.reshape(shape)


def _read_mnist_part(data_dir: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    images_path = data_dir / "mnist" / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = data_dir / "mnist" / f"{prefix}-labels-idx1-ubyte.gz"
    images = _read_idx(images_path, _IDX_IMAGES_MAGIC)
    labels = _read_idx(labels_path, _IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise _malformed("mnist", images_path, f"images of {images.shape[1:]}", "28x28 images")
    if len(images) == 0:  # a valid IDX header, but a pooled table with a part missing
        raise _malformed("mnist", images_path, "the file has no images", "28x28 images")
    if len(images) != len(labels):
        raise _malformed(
            "mnist", labels_path, f"{len(labels)} labels for {len(images)} images",
            f"one label per image of {images_path.name}",
        )  # fmt: skip
    if labels.size and labels.max() > 9:
        raise _malformed("mnist", labels_path, f"label {labels.max()}", "digits 0..9")
    return images.reshape(len(images), 28 * 28), labels


def _read_mnist(data_dir: Path) -> _Table:
    train_x, train_y = _read_mnist_part(data_dir, "train")
    test_x, test_y = _read_mnist_part(data_dir, "t10k")
    # float32 rather than float64: 70,000 x 784 doubles would need 440 MB.
    X = np.concatenate([train_x, test_x]).astype(np.float32)
    y = np.concatenate([train_y, test_y]).astype(np.int64)
    names = [f"pixel{i}" for i in range(1, 785)]  # OpenML mnist_784's names
    return _Table(X, y, names, np.ones(784, bool), "multiclass", 10)


_OTTO_FEATURES = tuple(f"feat_{i}" for i in range(1, 94))
_OTTO_CLASSES = {f"Class_{k}": k - 1 for k in range(1, 10)}


def _read_otto(data_dir: Path) -> _Table:
    path = data_dir / "otto.csv.gz"
    expected = (
        "Kaggle's otto train.csv (gzipped): header id, feat_1..feat_93, target; "
        "integer features; targets Class_1..Class_9"
    )
    with open(path, "rb") as fh:
        # Accept an ungzipped train.csv saved under this name rather than fail obscurely.
        compression = "gzip" if fh.read(2) == b"\x1f\x8b" else None
    frame = _read_csv("otto", path, expected, compression=compression)
    columns = ("id",) + _OTTO_FEATURES + ("target",)
    if tuple(frame.columns) != columns:
        missing = [c for c in columns if c not in frame.columns]
        extra = [c for c in frame.columns if c not in columns]
        raise _malformed(
            "otto", path, f"missing columns {missing}, unexpected columns {extra}", expected
        )
    X = _numeric_columns("otto", path, frame[list(_OTTO_FEATURES)], expected, header_lines=1)
    y = _class_labels("otto", path, frame["target"], _OTTO_CLASSES, expected)
    return _Table(X, y, list(_OTTO_FEATURES), np.ones(93, bool), "multiclass", 9)


_READERS: dict[str, Callable[[Path], _Table]] = {
    "california": _read_california,
    "churn": _read_churn,
    "adult": _read_adult,
    "mnist": _read_mnist,
    "otto": _read_otto,
}


# --------------------------------------------------------------------------- loading


def default_data_dir() -> Path:
    """Folder holding the raw files: ``$ASYMLIB_DATA`` if set, else ``<repo>/data``."""
    env = os.environ.get("ASYMLIB_DATA")
    if env:
        return Path(env).expanduser()
    return project_root() / "data"


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are {', '.join(DATASETS)}")
    return name


def _check_names(names: str | Iterable[str]) -> tuple[str, ...]:
    # A bare string would otherwise be iterated character by character.
    names = (names,) if isinstance(names, str) else tuple(names)
    return tuple(_check_name(n) for n in names)


def _check_fraction(parameter: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{parameter} must be a float in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:  # also rejects NaN
        raise ValueError(f"{parameter} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_files(name: str, data_dir: Path) -> None:
    missing = [data_dir / rel for rel in RAW_FILES[name] if not (data_dir / rel).is_file()]
    if missing:
        where = "" if data_dir.is_dir() else f" (the folder {data_dir} does not exist)"
        raise DataFileError(
            f"{name}: raw file{'s' if len(missing) > 1 else ''} "
            f"{', '.join(str(p) for p in missing)} not found{where}. "
            + _how_to_obtain(name, data_dir),
            path=missing[0],
        )


def _split(
    rows: np.ndarray, y: np.ndarray | None, fraction: float, seed: int, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's train_test_split of row numbers, with a readable error on tiny data."""
    try:
        return train_test_split(
            rows, test_size=fraction, random_state=seed,
            stratify=None if y is None else y[rows],
        )  # fmt: skip
    except ValueError as exc:
        raise ValueError(
            f"cannot split {len(rows)} rows for {what} ({exc}); "
            "use a larger max_rows or other fractions"
        ) from exc


@dataclass(frozen=True)
class SplitRule:
    """How a split cuts the rows: the test share, then the validation share of the rest,
    each with its ``random_state``; and which rows and columns the scaler is fitted on."""

    test_fraction: float
    val_fraction: float
    test_seed: int | None  # None: the caller's split_seed
    val_seed: int | None
    scaler_on_all_rows: tuple[str, ...] = ()  # datasets whose scaler sees every row and column


#: The paper's text: 64 / 16 / 20, one seed for both cuts, the scaler fitted on the
#: training rows' real-valued columns. The code release: 0.2 test, then 0.1 of the rest
#: (72 / 8 / 20), seeds 42 and 43, and for churn, adult and mnist a scaler fitted on all
#: rows and all columns, one-hot included (a leak of val/test statistics that ``release``
#: reproduces on purpose, for a like-for-like comparison with the published figures).
SPLITS: dict[str, SplitRule] = {
    "paper": SplitRule(0.2, 0.2, None, None),
    "release": SplitRule(0.2, 0.1, 42, 43, scaler_on_all_rows=("churn", "adult", "mnist")),
}


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    split: str = "paper",
    test_fraction: float | None = None,
    val_fraction: float | None = None,
    split_seed: int = 0,
    max_rows: int | None = None,
    standardize: bool = True,
) -> Dataset:
    """Load one dataset from its raw files, split and standardised.

    Parameters
    ----------
    name : one of ``DATASETS``.
    data_dir : folder holding the files of ``RAW_FILES[name]``; default
        ``default_data_dir()``.
    split : "paper" (the paper's text: 64 / 16 / 20 with ``split_seed``, scaler fitted
        on the training rows) or "release" (the authors' code: 20 % test with seed 42,
        then 10 % of the rest with seed 43, and its scaler; see ``SPLITS``). Both
        stratify by class for classification, not for california.
    test_fraction : share of the (possibly subsampled) rows held out for test;
        default the split's own (0.2).
    val_fraction : share of the remaining rows used for validation; default the
        split's own (paper 0.2, release 0.1).
    split_seed : ``random_state`` of the ``max_rows`` subsample, and of both cuts of
        the paper split (the release split has its own seeds).
    max_rows : if smaller than the dataset, first draw this many rows (stratified
        by class for classification) - for fast tests and smoke runs.
    standardize : fit a StandardScaler on the training part's real-valued columns
        and apply it to every part (the paper's setting). False keeps raw values.

    Missing real values (blank cells in a churn file) are filled with
    the training part's mean of that column - 0 once standardised.

    Returns
    -------
    Dataset with float32 X of shape (n, d) and y of shape (n,) per part.

    Raises
    ------
    ValueError : unknown name or invalid parameter.
    DataFileError : a raw file is missing (a FileNotFoundError).
    MalformedDataError : a raw file has unexpected content (a ValueError), such as
        a cell that is not a number within float32's range (NaN, inf, 1e44: the
        message names the column and the row), or no data rows.
    """
    name = _check_name(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    rule = SPLITS[split]
    test_fraction = _check_fraction("test_fraction", rule.test_fraction if test_fraction is None else test_fraction)
    val_fraction = _check_fraction("val_fraction", rule.val_fraction if val_fraction is None else val_fraction)
    if not _is_int(split_seed) or not 0 <= split_seed < 2**32:
        raise ValueError(f"split_seed must be an integer in [0, 2**32), got {split_seed!r}")
    if max_rows is not None and (not _is_int(max_rows) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()

    _check_files(name, data_dir)
    table = _READERS[name](data_dir)
    n_raw = len(table.y)
    strata = None if table.task == "regression" else table.y

    rows = np.arange(n_raw)
    if max_rows is not None and max_rows < n_raw:
        try:
            rows, _ = train_test_split(
                rows, train_size=int(max_rows), random_state=split_seed, stratify=strata
            )
        except ValueError as exc:
            raise ValueError(
                f"max_rows={max_rows} is too small to subsample {name} ({exc})"
            ) from exc
        rows = np.sort(rows)
    test_seed = split_seed if rule.test_seed is None else rule.test_seed
    val_seed = split_seed if rule.val_seed is None else rule.val_seed
    rest, test = _split(rows, strata, test_fraction, test_seed, f"{name} test")
    train, val = _split(rest, strata, val_fraction, val_seed, f"{name} validation")

    d = table.X.shape[1]
    mean, scale = np.zeros(d), np.ones(d)
    X_train = table.X[train]
    real_valued = table.real_valued.copy()
    if name in rule.scaler_on_all_rows:
        # The release's handling, reproduced only under split="release": every row and
        # every column (one-hot included) shapes the scaler.
        real_valued[:] = True
    if standardize and real_valued.any():
        # Statistics from the training rows only (but see scaler_on_all_rows): val/test
        # must not leak into them. StandardScaler leaves constant columns (blank mnist
        # pixels) with scale 1 and ignores missing (NaN) cells when fitting.
        fit_rows = table.X[np.sort(rows)] if name in rule.scaler_on_all_rows else X_train
        fit_on = fit_rows if real_valued.all() else fit_rows[:, real_valued]
        scaler = StandardScaler().fit(fit_on)
        mean[real_valued], scale[real_valued] = scaler.mean_, scaler.scale_

    # Missing real values (blank cells, only churn's loader allows them) get the training mean of their
    # column, which is 0 after standardisation; never a statistic of val/test rows.
    gaps = np.flatnonzero(np.isnan(table.X).any(axis=0))
    fill = {j: (mean[j] if standardize else np.nanmean(X_train[:, j])) for j in gaps}

    def transform(X: np.ndarray) -> torch.Tensor:
        for j, value in fill.items():
            X[np.isnan(X[:, j]), j] = value
        # X is a fresh copy (fancy indexing), so scale in place; unscaled columns
        # see (x - 0) / 1, which keeps one-hot entries exactly 0/1.
        X -= mean.astype(X.dtype)
        X /= scale.astype(X.dtype)
        if not np.isfinite(X).all():
            raise MalformedDataError(
                f"{name}: non-finite features after preprocessing the files "
                f"{[str(data_dir / r) for r in RAW_FILES[name]]}",
                path=data_dir / RAW_FILES[name][0],
            )
        return torch.from_numpy(X.astype(np.float32, copy=False))

    y_dtype = np.float32 if table.task == "regression" else np.int64

    def target(part: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(table.y[part].astype(y_dtype))

    return Dataset(
        name=name,
        task=table.task,
        n_outputs=1 if table.task == "regression" else table.n_classes,
        n_classes=table.n_classes,
        feature_names=list(table.feature_names),
        X_train=transform(X_train),
        y_train=target(train),
        X_val=transform(table.X[val]),
        y_val=target(val),
        X_test=transform(table.X[test]),
        y_test=target(test),
        n_raw_rows=n_raw,
        row_indices={
            "train": torch.from_numpy(train.astype(np.int64)),
            "val": torch.from_numpy(val.astype(np.int64)),
            "test": torch.from_numpy(test.astype(np.int64)),
        },
        feature_mean=torch.from_numpy(mean),
        feature_scale=torch.from_numpy(scale),
        real_valued=torch.from_numpy(real_valued),
        split=split,
    )


# --------------------------------------------------------------------------- fetching


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder, so an interrupted copy or
    download never leaves a truncated file that later looks present."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _download(url: str, sha256: str, *, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise MalformedDataError(
            f"download from {url} has sha256 {digest}, expected {sha256} "
            "(truncated download or a changed file)"
        )
    return data


def _fetch_one(name: str, rel: str, target: Path, *, timeout: float) -> None:
    """Download one raw file from its public source (no login needed)."""
    if rel == RAW_FILES["california"][0]:
        url, sha256, member = _CAL_HOUSING_ARCHIVE
        archive = _download(url, sha256, timeout=timeout)
        # extractfile reads one member's bytes: no paths from the archive reach disk.
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            content = tar.extractfile(member).read()
    else:
        url, sha256 = _DOWNLOADS[rel]
        content = _download(url, sha256, timeout=timeout)
    _write_atomically(target, lambda tmp: tmp.write_bytes(content))


def fetch_datasets(
    dest: str | os.PathLike | None = None,
    *,
    source: str | os.PathLike | None = None,
    names: str | Iterable[str] = DATASETS,
    overwrite: bool = False,
    timeout: float = 10.0,
) -> list[Path]:
    """Put the raw files of ``names`` into ``dest`` (default ``default_data_dir()``).

    With ``source`` (a local mirror folder laid out like ``RAW_FILES``) every file is
    copied from there. Without it, california, adult and mnist are downloaded from
    their public sources (sha256-checked); churn and otto need a Kaggle login. Every
    file is tried; then one DataFileError lists each file still missing, with the
    path to save it at and where to get it (for a failed download: its URL and the
    reason). The files that could be fetched stay in place. A download with the
    wrong checksum raises MalformedDataError at once. Files already in ``dest`` are
    kept unless ``overwrite``. ``timeout``: seconds each network operation (connect,
    each read) may wait, so that an offline machine fails fast.

    Returns the paths in ``dest`` of all requested raw files.
    """
    names = _check_names(names)
    dest = default_data_dir() if dest is None else Path(dest).expanduser()
    wanted = [(name, rel) for name in names for rel in RAW_FILES[name]]
    todo = [(name, rel) for name, rel in wanted if overwrite or not (dest / rel).is_file()]

    if source is not None:
        source = Path(source).expanduser()
        # Check the whole mirror first, so a bad mirror leaves dest untouched.
        absent = [source / rel for _, rel in todo if not (source / rel).is_file()]
        if absent:
            raise DataFileError(
                f"the mirror {source} lacks {', '.join(str(p) for p in absent)}; expected the "
                f"layout {sorted({rel for _, rel in wanted})}",
                path=absent[0],
            )
        for name, rel in todo:
            logger.info("copying %s from %s", rel, source)
            # copyfile, not copy2: mirror files are often read-only, and a read-only
            # copy would make a later overwrite awkward.
            _write_atomically(dest / rel, lambda tmp, rel=rel: shutil.copyfile(source / rel, tmp))
        return [dest / rel for _, rel in wanted]

    urls = {rel: url for rel, (url, _) in _DOWNLOADS.items()}
    urls[RAW_FILES["california"][0]] = _CAL_HOUSING_ARCHIVE[0]
    missing: list[tuple[str, str, str]] = []  # (name, rel, why it could not be fetched)
    for name, rel in todo:
        if rel not in urls:
            missing.append((name, rel, "needs a Kaggle login, so it is not downloaded"))
            continue
        logger.info("downloading %s for %s", rel, name)
        try:
            _fetch_one(name, rel, dest / rel, timeout=timeout)
        except (OSError, tarfile.TarError, KeyError) as exc:  # URLError is an OSError
            # Go on: one unreachable host must not keep the other files away.
            missing.append((name, rel, f"downloading {urls[rel]} failed: {exc}"))
    if missing:
        fetched = len(todo) - len(missing)
        kept = f" ({fetched} fetched and kept)" if fetched else ""
        raise DataFileError(
            f"{len(missing)} of the {len(todo)} raw files to fetch are missing{kept}. "
            "Save each at the path shown, or copy them all from a local mirror folder with "
            "`asymlib fetch --from /path/to/mirror`:\n"
            + "\n".join(
                f"  {dest / rel} ({name}): {why}. Get it from {_PUBLIC_SOURCES[name]}"
                for name, rel, why in missing
            ),
            path=dest / missing[0][1],
        )
    return [dest / rel for _, rel in wanted]
