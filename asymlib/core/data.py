"""Loading a dataset: ``load_dataset`` and the split, standardised ``Dataset`` it returns.

``load_dataset`` reads one of the paper's five benchmark datasets from its raw files
(the ones listed in ``RAW_FILES``) into one pooled table, splits it into train /
validation / test the same way for every dataset, and standardises the real-valued
columns with statistics of the training part only (docs/protocol.md, "Datasets" and
"Split and scaling"). Its steps live in their own modules: ``datasets`` (one record
per dataset), ``readers`` and ``parsing`` (raw files to a checked table), ``splits``
(rows and scaling), ``fetch`` (the data folder, ``fetch_datasets``) and ``data_errors``.
This module re-exports their public names, so ``from asymlib.core.data import X``
serves every one of them.

>>> ds = load_dataset("churn")                       # doctest: +SKIP
>>> ds.X_train.shape, ds.y_train.dtype, ds.sizes     # doctest: +SKIP
(torch.Size([6400, 13]), torch.int64, {'raw': 10000, 'used': 10000, ...})

Nothing is cached on disk and the network is never touched by a loader; use
``fetch_datasets`` (or ``asymlib fetch``) to put the raw files in place first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data_errors import DataFileError, MalformedDataError
from .dataset_record import DatasetRecord, Table
from .datasets import DATASET_RECORDS, DATASET_SHAPES, DATASETS, RAW_FILES, check_name
from .fetch import default_data_dir, fetch_datasets, require_files
from .splits import (
    MIN_PART_ROWS,
    MIN_TRAIN_ROWS_PER_CLASS,
    RELEASE_SPLIT_USER,
    SPLITS,
    Scaling,
    SplitRule,
    apply_scaling,
    fit_scaling,
    part_sizes,
    split_rows,
    subsample,
)

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
    "smallest_max_rows",
    "too_few_rows",
]


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


def _check_fraction(parameter: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise ValueError(f"{parameter} must be a float in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:  # also rejects NaN
        raise ValueError(f"{parameter} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_options(
    split: str,
    test_fraction: float | None,
    val_fraction: float | None,
    split_seed: int,
    max_rows: int | None,
) -> tuple[SplitRule, float, float]:
    """load_dataset's options checked: the split's rule and both fractions (the rule's
    own where None), or a ValueError naming the bad option."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")
    rule = SPLITS[split]
    test_fraction = _check_fraction("test_fraction", rule.test_fraction if test_fraction is None else test_fraction)
    val_fraction = _check_fraction("val_fraction", rule.val_fraction if val_fraction is None else val_fraction)
    if not _is_int(split_seed) or not 0 <= split_seed < 2**32:
        raise ValueError(f"split_seed must be an integer in [0, 2**32), got {split_seed!r}")
    if max_rows is not None and (not _is_int(max_rows) or max_rows < 1):
        raise ValueError(f"max_rows must be a positive integer or None, got {max_rows!r}")
    return rule, test_fraction, val_fraction


def too_few_rows(
    name: str,
    max_rows: int | None,
    *,
    split: str = "paper",
    test_fraction: float | None = None,
    val_fraction: float | None = None,
    suggest: bool = True,
) -> str | None:
    """Why ``load_dataset(name, max_rows=..., split=..., ...)`` would leave a part of the split
    too small to give a result (``splits.MIN_PART_ROWS`` rows a part, and for classification
    ``MIN_TRAIN_ROWS_PER_CLASS`` training rows per class), or None; with ``suggest``, the
    message ends with the smallest row cap that is enough (``smallest_max_rows``). Known from
    the dataset's record and the split's fractions alone, before any file is read, so that a
    run can refuse a row cap before it trains anything."""
    record = DATASET_RECORDS[check_name(name)]
    test_fraction, val_fraction = _fractions(split, test_fraction, val_fraction)
    train, val, test = part_sizes(record.n_rows, max_rows, test_fraction, val_fraction)
    if not _too_few(record, train, val, test):
        return None
    need = f"each part needs at least {MIN_PART_ROWS} rows"
    if record.n_classes:
        least = MIN_TRAIN_ROWS_PER_CLASS * record.n_classes
        need += f", and training {MIN_TRAIN_ROWS_PER_CLASS} per class ({least} for {name}'s {record.n_classes} classes)"
        if record.class_counts:
            need += f"; its rarest class has {min(record.class_counts)} of its {record.n_rows} rows"
    enough = smallest_max_rows(name, split=split, test_fraction=test_fraction, val_fraction=val_fraction)
    fix = "" if enough is None or not suggest else f"; the smallest max_rows that does is {enough}"
    return f"leaves {name} {train} training, {val} validation and {test} test rows; {need}{fix}"


def smallest_max_rows(
    name: str, *, split: str = "paper", test_fraction: float | None = None, val_fraction: float | None = None
) -> int | None:
    """The smallest ``max_rows`` that leaves every part of ``name``'s split big enough (see
    ``too_few_rows``), or None if not even the whole dataset does."""
    record = DATASET_RECORDS[check_name(name)]
    test_fraction, val_fraction = _fractions(split, test_fraction, val_fraction)
    for rows in range(1, record.n_rows + 1):
        if not _too_few(record, *part_sizes(record.n_rows, rows, test_fraction, val_fraction)):
            return rows
    return None


def _fractions(split: str, test_fraction: float | None, val_fraction: float | None) -> tuple[float, float]:
    rule = SPLITS[split]
    return (
        rule.test_fraction if test_fraction is None else test_fraction,
        rule.val_fraction if val_fraction is None else val_fraction,
    )


def _too_few(record: DatasetRecord, train: int, val: int, test: int) -> bool:
    least_train = max(MIN_PART_ROWS, MIN_TRAIN_ROWS_PER_CLASS * record.n_classes)
    if record.class_counts and min(record.class_counts) * train < MIN_TRAIN_ROWS_PER_CLASS * record.n_rows:
        return True  # a user dataset's rarest class: about its share of the training rows
    return min(val, test) < MIN_PART_ROWS or train < least_train


def _features(X: np.ndarray, scaling: Scaling, record: DatasetRecord, data_dir: Path) -> torch.Tensor:
    """One part's features, scaled in place (``X`` is a fresh copy), as float32."""
    X = apply_scaling(X, scaling)
    if not np.isfinite(X).all():
        raise MalformedDataError(
            f"{record.name}: non-finite features after preprocessing the files "
            f"{[str(data_dir / r) for r in record.files]}",
            path=data_dir / record.files[0],
        )
    return torch.from_numpy(X.astype(np.float32, copy=False))


def _dataset(
    record: DatasetRecord,
    split: str,
    table: Table,
    parts: tuple[np.ndarray, np.ndarray, np.ndarray],
    X_train: np.ndarray,
    scaling: Scaling,
    data_dir: Path,
) -> Dataset:
    """The Dataset of the parts (train, val, test) of ``table``: features scaled (the
    training part's are ``X_train``, scaled in place), targets and row numbers."""
    train, val, test = parts
    y_dtype = np.float32 if record.task == "regression" else np.int64

    def target(part: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(table.y[part].astype(y_dtype))

    return Dataset(
        name=record.name,
        task=record.task,
        n_outputs=1 if record.task == "regression" else record.n_classes,
        n_classes=record.n_classes,
        feature_names=list(table.feature_names),
        X_train=_features(X_train, scaling, record, data_dir),
        y_train=target(train),
        X_val=_features(table.X[val], scaling, record, data_dir),
        y_val=target(val),
        X_test=_features(table.X[test], scaling, record, data_dir),
        y_test=target(test),
        n_raw_rows=len(table.y),
        row_indices={
            "train": torch.from_numpy(train.astype(np.int64)),
            "val": torch.from_numpy(val.astype(np.int64)),
            "test": torch.from_numpy(test.astype(np.int64)),
        },
        feature_mean=torch.from_numpy(scaling.mean),
        feature_scale=torch.from_numpy(scaling.scale),
        real_valued=torch.from_numpy(scaling.real_valued),
        split=split,
    )


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
    name : one of ``DATASETS``, or a user dataset registered by ``user_data.register``
        (from a profile's ``datasets:`` mapping).
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
    TypeError : ``standardize`` is not a bool.
    DataFileError : a raw file is missing (a FileNotFoundError).
    MalformedDataError : a raw file has unexpected content (a ValueError), such as
        a cell that is not a number within float32's range (NaN, inf, 1e44: the
        message names the column and the row), or no data rows.
    """
    record = DATASET_RECORDS[check_name(name)]
    rule, test_fraction, val_fraction = _check_options(split, test_fraction, val_fraction, split_seed, max_rows)
    if record.user is not None and split != "paper":
        raise ValueError(f"{RELEASE_SPLIT_USER} ({name} is a user dataset)")
    short = too_few_rows(name, max_rows, split=split, test_fraction=test_fraction, val_fraction=val_fraction)
    if short is not None:
        raise ValueError(
            f"max_rows={max_rows} {short}" if max_rows is not None else f"val_fraction={val_fraction} {short}"
        )
    if not isinstance(standardize, (bool, np.bool_)):
        raise TypeError(f"standardize: expected True or False, got {type(standardize).__name__} {standardize!r}")
    data_dir = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    require_files(record, data_dir)
    # read -> subsample -> split -> fit the scaling -> scaled tensors
    table = record.reader(record, data_dir)
    strata = None if record.task == "regression" else table.y
    rows = subsample(len(table.y), strata, max_rows, split_seed, record.name)
    parts = split_rows(rows, strata, rule, test_fraction, val_fraction, split_seed, record.name)
    if strata is not None:
        absent = sorted(set(range(record.n_classes)) - set(np.unique(strata[parts[0]]).tolist()))
        if absent:  # scores over classes never trained on would be no result
            raise ValueError(
                f"max_rows={max_rows} leaves {record.name}'s training part without class {absent[0]} "
                f"({len(absent)} class{'es' if len(absent) > 1 else ''} absent); use a larger max_rows"
            )
    X_train = table.X[parts[0]]
    scaling = fit_scaling(
        table, X_train, rows,
        on_all_rows=record.name in rule.scaler_on_all_rows, standardize=standardize,
    )  # fmt: skip
    return _dataset(record, split, table, parts, X_train, scaling, data_dir)
