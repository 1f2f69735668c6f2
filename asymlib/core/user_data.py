"""A dataset of the user's own, from one CSV or Parquet file, registered beside the built-ins.

A ``UserDataset`` is the spec a profile gives for it (``datasets: [{name: credit, file:
credit.csv, target: default}]``): its name, file, target column, task (or None: inferred
from the target) and the columns to one-hot encode whatever their type. ``register``
reads the file once, checks it and puts a ``DatasetRecord`` under the name in the registry
(``datasets.DATASET_RECORDS``, ``DATASET_SHAPES``, ``RAW_FILES``), so that ``load_dataset``
and everything that looks a dataset up by name take it like a built-in one.

The preprocessing is the built-ins' (docs/protocol.md): numeric columns are standardised
with statistics of the training part, a missing number gets the training part's mean of
its column (churn's rule: 0 once standardised); text columns (object, string or category
dtype) and the columns listed in ``categorical`` are one-hot encoded over sorted
categories, a missing category being a category of its own, ``MissingValue`` (adult's
rule). A text column with more than ``MAX_CATEGORIES`` distinct values is refused (free
text or an identifier, not a category) unless listed in ``categorical``; a text column
whose cells are mostly numbers is a numeric column with bad cells and is refused naming
the first. Every error is a MalformedDataError that names the file, the column and,
where there is one, the row.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data_errors import DataFileError, MalformedDataError
from .dataset_record import DatasetRecord, Table
from .datasets import BUILTIN_DATASETS, DATASET_RECORDS, DATASET_SHAPES, RAW_FILES
from .parsing import numeric_columns, one_hot_columns, read_csv
from .splits import MIN_TRAIN_ROWS_PER_CLASS, SPLITS

__all__ = [
    "MAX_CATEGORIES",
    "MAX_INFERRED_CLASSES",
    "TASKS",
    "UserDataset",
    "file_digest",
    "is_user_dataset",
    "record_of",
    "register",
    "user_spec",
]

TASKS = ("regression", "binary", "multiclass")
#: The most distinct values a text column may have to be one-hot encoded unless listed in
#: ``categorical``: more is free text or an identifier, whose one-hot columns would each
#: hold a handful of rows.
MAX_CATEGORIES = 100
#: A numeric target with integer values only is taken for class labels (binary or multiclass)
#: when it has at most this many distinct values, else for a regression target.
MAX_INFERRED_CLASSES = 20
#: Share of a text column's cells that must read as numbers for it to count as a numeric
#: column with bad cells (refused naming the first) rather than as text.
NUMERIC_SHARE = 0.9
MISSING_CATEGORY = "MissingValue"  # adult's name for a missing category
_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")


@dataclass(frozen=True)
class UserDataset:
    """A user's dataset as a profile gives it. ``file`` is absolute once read from a profile
    (a relative one is taken from the profile's folder); ``task`` None: inferred."""

    name: str
    file: str
    target: str
    task: str | None = None
    categorical: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        """The spec as plain values, as a profile writes it (and papermill passes it)."""
        out = {"name": self.name, "file": self.file, "target": self.target}
        if self.task is not None:
            out["task"] = self.task
        if self.categorical:
            out["categorical"] = list(self.categorical)
        return out


#: The keys of a user dataset's mapping in a profile, and what each must be.
SPEC_KEYS = {
    "name": "a dataset name of letters, digits and _ (a unit's name joins it to the unit's coordinates with -), "
    "not one of the built-in datasets",
    "file": "the path of a CSV or Parquet file (relative: from the profile's folder)",
    "target": "the name of the file's target column",
    "task": f"one of {', '.join(TASKS)}, or left out (inferred from the target)",
    "categorical": "a list of column names to one-hot encode",
}


def user_spec(raw, *, base: Path | None = None) -> UserDataset:
    """A ``UserDataset`` from a profile's mapping (or one already made); a ValueError says
    which key is wrong. A relative ``file`` is taken from ``base`` (the profile's folder)."""
    if isinstance(raw, UserDataset):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"must be a dataset name or a mapping with the keys {', '.join(SPEC_KEYS)}, got {raw!r}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"has the unknown key {unknown[0]!r}; a user dataset takes {', '.join(SPEC_KEYS)}")
    for key in ("name", "file", "target"):
        if key not in raw:
            raise ValueError(f"is missing the key {key!r}: {SPEC_KEYS[key]}")
    name, file, target = raw["name"], raw["file"], raw["target"]
    task, categorical = raw.get("task"), raw.get("categorical") or []
    if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
        raise ValueError(f"name must be {SPEC_KEYS['name']}, got {name!r}")
    if name in BUILTIN_DATASETS:
        raise ValueError(f"name {name!r} is a built-in dataset's; give the user dataset another name")
    if not isinstance(file, str) or not file.strip():
        raise ValueError(f"file must be {SPEC_KEYS['file']}, got {file!r}")
    if not isinstance(target, str) or not target:
        raise ValueError(f"target must be {SPEC_KEYS['target']}, got {target!r}")
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be {SPEC_KEYS['task']}, got {task!r}")
    if not isinstance(categorical, (list, tuple)) or not all(isinstance(c, str) for c in categorical):
        raise ValueError(f"categorical must be {SPEC_KEYS['categorical']}, got {categorical!r}")
    if target in categorical:
        raise ValueError(f"categorical lists the target column {target!r}")
    path = Path(file).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return UserDataset(name, str(path.resolve()), target, task, tuple(categorical))


@functools.lru_cache(maxsize=64)
def _digest(path: str, stamp: tuple[int, int]) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def file_digest(path: str) -> str | None:
    """The sha256 of the file at ``path`` (None if it is gone), read again only when its size
    or modification time changed."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _digest(path, (stat.st_mtime_ns, stat.st_size))


def record_of(spec: UserDataset) -> dict:
    """What the shard store records of a user dataset beside its units: what makes its results
    comparable (the file's content, not where it lies; the target; the task; the encoding)."""
    record = DATASET_RECORDS.get(spec.name)
    task = record.task if record is not None and record.user == spec else spec.task
    return {
        "target": spec.target,
        "task": task,
        "categorical": list(spec.categorical),
        "sha256": file_digest(spec.file),
    }


def is_user_dataset(name: str) -> bool:
    """Whether ``name`` is registered as a user dataset."""
    record = DATASET_RECORDS.get(name)
    return record is not None and record.user is not None


def register(spec: UserDataset, *, quiet: bool = False) -> DatasetRecord:
    """Read and check ``spec``'s file and register it under its name (again, if the spec
    changed); returns its record. Says what task it inferred, unless ``quiet``."""
    known = DATASET_RECORDS.get(spec.name)
    if known is not None and known.user == spec:
        return known
    if spec.name in BUILTIN_DATASETS:
        raise ValueError(f"user dataset {spec.name!r}: the name is a built-in dataset's; give it another name")
    probe = _record(spec, task=spec.task or "binary", n_rows=0, n_features=0, n_classes=0)
    table, task, classes = read_user_table(spec, probe)
    record = _record(
        spec,
        task=task,
        n_rows=len(table.y),
        n_features=table.X.shape[1],
        n_classes=len(classes),
        class_counts=tuple(int(n) for n in np.bincount(table.y.astype(np.int64))) if classes else (),
    )
    DATASET_RECORDS[spec.name] = record
    DATASET_SHAPES[spec.name] = record.shape
    RAW_FILES[spec.name] = record.files
    if spec.task is None and not quiet:
        print(f"{spec.name}: task {task} inferred from the target column {spec.target!r} of {spec.file}", flush=True)
    return record


def _record(spec: UserDataset, *, task: str, n_rows: int, n_features: int, n_classes: int, class_counts=()):
    return DatasetRecord(
        name=spec.name,
        task=task,
        n_rows=n_rows,
        n_features=n_features,
        n_classes=n_classes,
        files=(spec.file,),  # absolute: data_dir / file is the file itself
        source=f"the file {spec.file} that a profile names for the user dataset {spec.name!r}",
        reader=functools.partial(_read, spec),
        user=spec,
        class_counts=class_counts,
    )


def _read(spec: UserDataset, record: DatasetRecord, data_dir: Path) -> Table:
    return read_user_table(spec, record)[0]


def _malformed(spec: UserDataset, problem: str) -> MalformedDataError:
    return MalformedDataError(f"{spec.name}: {spec.file}: {problem}", path=spec.file)


def _read_frame(spec: UserDataset, record: DatasetRecord) -> tuple[pd.DataFrame, int]:
    """The file as a frame, and the lines above its first data row (1 for CSV's header)."""
    path = Path(spec.file)
    if not path.is_file():
        raise DataFileError(f"{spec.name}: no such file {path} (the user dataset's file)", path=path)
    name = path.name.lower()
    if not name.endswith(_SUFFIXES):
        raise _malformed(spec, f"not a CSV or Parquet file (its name must end in {', '.join(_SUFFIXES)})")
    if name.endswith((".parquet", ".pq")):
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many kinds
            raise _malformed(spec, f"could not be read as Parquet ({exc})") from exc
        if frame.empty:
            raise _malformed(spec, "the file has no data rows")
        return frame.reset_index(drop=True), 0
    # pandas' spellings of a missing cell ('', 'NA', 'nan', 'null', ...) count as missing.
    expected = "a CSV file with a header line naming the columns"
    return read_csv(record, path, expected, keep_default_na=True), 1


def _where(row: int, header_lines: int) -> str:
    line = f" (line {row + 1 + header_lines} of the file)" if header_lines else ""
    return f"row {row + 1} of the data{line}"


def _is_text(series: pd.Series) -> bool:
    return not (pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series))


def read_user_table(spec: UserDataset, record: DatasetRecord) -> tuple[Table, str, list]:
    """The checked, encoded table of ``spec``'s file, the task, and the class labels in
    the order of their indices (empty for regression)."""
    frame, header_lines = _read_frame(spec, record)
    frame.columns = [str(c) for c in frame.columns]
    columns = list(frame.columns)
    if spec.target not in columns:
        raise _malformed(spec, f"has no target column {spec.target!r}; its columns are {columns}")
    absent = [c for c in spec.categorical if c not in columns]
    if absent:
        raise _malformed(
            spec, f"categorical names the column {absent[0]!r}, which the file lacks; its columns are {columns}"
        )
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise _malformed(spec, f"has the column {repeated[0]!r} more than once")
    y, task, classes = _target(spec, record, frame[spec.target], header_lines)
    features = [c for c in columns if c != spec.target]
    if not features:
        raise _malformed(spec, "has no column besides the target")
    numeric, categorical = [], []
    for column in features:
        series = frame[column]
        if column in spec.categorical:
            categorical.append(column)
        elif pd.api.types.is_datetime64_any_dtype(series) or pd.api.types.is_timedelta64_dtype(series):
            raise _malformed(spec, f"column {column!r} holds dates or times, neither numbers nor categories; "
                             "drop it, or convert it to numbers")  # fmt: skip
        elif not _is_text(series):
            numeric.append(column)
        else:
            present = series.dropna()
            as_numbers = pd.to_numeric(present, errors="coerce")
            if len(present) and as_numbers.notna().mean() >= NUMERIC_SHARE:
                numeric.append(column)  # numbers with a few bad cells: refused below, naming the first
                continue
            distinct = present.astype(str).nunique()
            if distinct > MAX_CATEGORIES:
                values = present.astype(str)
                seen = values.drop_duplicates()
                row = int(seen.index[MAX_CATEGORIES])
                raise _malformed(
                    spec,
                    f"column {column!r} is text with {distinct} distinct values (more than {MAX_CATEGORIES}; "
                    f"the {MAX_CATEGORIES + 1}st, {values[row]!r}, is in {_where(row, header_lines)}), "
                    "neither numbers nor categories; drop it, or list it under categorical to one-hot encode it",
                )
            categorical.append(column)
    expected = "a number within float32's range in every cell of a numeric column (an empty cell is missing)"
    X_num = numeric_columns(
        record, Path(spec.file), frame[numeric], expected, header_lines=header_lines, missing_as=np.nan
    )
    empty = [c for j, c in enumerate(numeric) if np.isnan(X_num[:, j]).all()]
    if empty:
        raise _malformed(spec, f"column {empty[0]!r} has no value in any row")
    cats = frame[categorical].apply(lambda s: s.map(lambda v: MISSING_CATEGORY if pd.isna(v) else str(v)))
    one_hot, one_hot_names = one_hot_columns(cats) if categorical else (np.zeros((len(frame), 0)), [])
    X = np.hstack([X_num, one_hot])
    mask = np.r_[np.ones(len(numeric), bool), np.zeros(one_hot.shape[1], bool)]
    return Table(X, y, numeric + one_hot_names, mask), task, classes


def _target(spec: UserDataset, record: DatasetRecord, series: pd.Series, header_lines: int):
    """(y, task, classes): regression targets float64 or class indices int64."""
    where = f"target column {spec.target!r}"
    missing = np.flatnonzero(series.isna().to_numpy())
    if missing.size:
        raise _malformed(
            spec,
            f"{where}: {_where(int(missing[0]), header_lines)} has no value"
            + (f" (and {missing.size - 1} more rows)" if missing.size > 1 else "")
            + "; a row without a target cannot be trained or scored: drop such rows",
        )
    values = series.to_numpy()
    distinct = pd.unique(series)
    if len(distinct) < 2:
        value = distinct[0].item() if isinstance(distinct[0], np.generic) else distinct[0]  # 1, not np.int64(1)
        raise _malformed(spec, f"{where} is constant ({value!r} in every row): there is nothing to learn")
    numeric = not _is_text(series) and not pd.api.types.is_bool_dtype(series)
    task = spec.task
    if task is None:
        if not numeric:
            task = "binary" if len(distinct) == 2 else "multiclass"
        else:
            as_float = series.to_numpy(dtype=np.float64)
            integral = np.isfinite(as_float).all() and (as_float == np.round(as_float)).all()
            if integral and len(distinct) <= MAX_INFERRED_CLASSES:
                task = "binary" if len(distinct) == 2 else "multiclass"
            else:
                task = "regression"
    if task == "regression":
        expected = "a number within float32's range in every row of the target column"
        y = numeric_columns(record, Path(spec.file), series.to_frame(), expected, header_lines=header_lines)[:, 0]
        return y, task, []
    if task == "binary" and len(distinct) != 2:
        raise _malformed(spec, f"{where} has {len(distinct)} distinct values, but task binary needs exactly 2")
    if task == "multiclass" and len(distinct) == 2:
        raise _malformed(spec, f"{where} has 2 distinct values: give task binary (or leave task out)")
    try:
        classes = sorted(distinct.tolist())
    except TypeError:  # mixed types: order by their text
        classes = sorted(distinct.tolist(), key=str)
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[v] for v in values], dtype=np.int64)
    counts = np.bincount(y, minlength=len(classes))
    # the stratified split puts about (1 - test) (1 - val) of a class's rows in training
    rule = SPLITS["paper"]
    share = (1 - rule.test_fraction) * (1 - rule.val_fraction)
    need = math.ceil(MIN_TRAIN_ROWS_PER_CLASS / share)
    rare = int(np.argmin(counts))
    if counts[rare] < need:
        row = int(np.flatnonzero(y == rare)[0])
        raise _malformed(
            spec,
            f"{where}: class {classes[rare]!r} has {counts[rare]} rows (the first in "
            f"{_where(row, header_lines)}); each class needs at least {need}, so that the 64/16/20 "
            f"split leaves {MIN_TRAIN_ROWS_PER_CLASS} training rows of it",
        )
    return y, task, classes
