"""Checked parsing of raw files: CSV reading, numeric cells, one-hot columns, class labels.

The pieces every reader in ``readers`` is built from. Each refuses what a float32 model
cannot take (text, a written-out 'nan', an infinity, a number beyond float32's range)
with a MalformedDataError that names the file, the column and the first bad row as a
person finds it in the file, and what was expected there.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .dataset_record import DatasetRecord

__all__ = [
    "FLOAT32_MAX",
    "class_labels",
    "numeric_columns",
    "one_hot_columns",
    "read_csv",
    "refuse_first_bad",
    "unusable",
]

#: The largest float32: a value beyond it would become inf once cast for training.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def read_csv(record: DatasetRecord, path: Path, expected: str, **kwargs) -> pd.DataFrame:
    """pandas.read_csv, with parser failures and files without data rows reported as
    MalformedDataError.

    Only an empty cell counts as missing (NaN): pandas would also take the texts
    'nan', 'NA', 'null' and so on for missing, which would hide them from the checks
    of ``numeric_columns``. A caller's own ``keep_default_na`` / ``na_values`` win.
    """
    kwargs.setdefault("keep_default_na", False)
    kwargs.setdefault("na_values", [""])
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as exc:  # nothing, or nothing after the skipped rows
        raise record.malformed(path, "the file has no data rows", expected) from exc
    except (ValueError, EOFError, OSError) as exc:
        # ParserError, UnicodeDecodeError and bad gzip data all land here.
        raise record.malformed(path, f"could not be parsed ({exc})", expected) from exc
    if frame.empty:
        # Without this a header-only file fails much later, as a split of 0 rows.
        raise record.malformed(path, "the file has no data rows, only its header line", expected)
    return frame


def unusable(values: np.ndarray) -> np.ndarray:
    """Mask of the entries a float32 model cannot take: NaN, +-inf, and |x| beyond
    float32's largest number (finite in float64, inf once cast for training)."""
    with np.errstate(invalid="ignore"):  # NaN compares False, which is what we want
        return ~(np.abs(values) <= FLOAT32_MAX)


def _where(row: int, header_lines: int) -> str:
    """Data row ``row`` (0-based) as a person counts it in the file: 1-based, with
    its line number. (Blank lines, which pandas skips, are not counted.)"""
    line = row + 1 + header_lines
    counting = {0: "", 1: ", counting the header line"}.get(header_lines, f", counting the {header_lines} header lines")
    return f"row {row + 1} of the data (line {line} of the file{counting})"


def refuse_first_bad(
    record: DatasetRecord,
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
    raise record.malformed(path, problem, expected)


def _cell_problem(cell, number: float) -> str:
    """What is wrong with one cell that ``unusable`` flagged (or that is empty)."""
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
        f"the value {text} is beyond float32's range (|x| <= {FLOAT32_MAX:.4g}); training in float32 would make it inf"
    )


def numeric_columns(
    record: DatasetRecord,
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
    bad = unusable(out)
    if missing_as is not None:
        bad &= ~empty

    def describe(row: int, j: int) -> str:
        return f"column {frame.columns[j]!r}: {_cell_problem(frame.iat[row, j], out[row, j])}"

    refuse_first_bad(record, path, bad, describe, expected, header_lines=header_lines)
    if missing_as is not None:
        out[empty] = missing_as
    return out


def one_hot_columns(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """One-hot encode every column of ``frame``; categories sorted, names 'column=value'."""
    dummies = pd.get_dummies(frame, prefix_sep="=", dtype=np.float64)
    return dummies.to_numpy(), [str(c) for c in dummies.columns]


def class_labels(record: DatasetRecord, path: Path, labels: pd.Series, mapping: dict, expected: str) -> np.ndarray:
    """Map raw labels to int64 class indices; any label outside ``mapping`` is an error."""
    codes = labels.map(mapping)
    if codes.isna().any():
        unknown = sorted({str(v) for v in labels[codes.isna()]})[:5]
        valid = sorted({str(k) for k in mapping})
        raise record.malformed(path, f"unexpected labels {unknown} (valid: {valid})", expected)
    return codes.to_numpy(dtype=np.int64)
