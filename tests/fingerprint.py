"""The smoke profile's result tables: a SHA-256 per table, and a committed reference.

A refactor must not change what the smoke profile computes. Two checks, for two questions:

- **Same machine, bit for bit**: ``table_fingerprint`` reduces a table to a canonical text
  (timing columns dropped, columns and rows sorted, floats written with ``repr`` precision
  so that any change of a bit shows) and hashes it. ``test_dask.py`` compares the tables
  of a Dask run with those of the same units run serially in the test's own process.
- **Any machine, within float32 rounding**: ``tests/smoke_reference/`` holds the smoke
  run's tables as CSV (floats in full precision); ``test_runner.py`` compares every smoke
  run with them (``reference_mismatches``): the same rows and the same values in every
  column except timing, floats within ``RTOL`` / ``ATOL``. A bit-for-bit hash of a
  committed run cannot serve here: the matrix-multiply and GELU kernels differ between
  CPUs (AVX2 and AVX-512 round differently), and one CI machine's tables never hashed as
  another's.

Regenerate the reference (only when a change of results is intended, and say so in the
commit):

    python tests/fingerprint.py runs/smoke --write tests/smoke_reference
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

#: Wall-clock columns: they differ from run to run by design.
TIMING_COLUMNS = ("train_time", "batch_wall_time")

#: The tables each section writes (``<profile>/<section>/<table>.parquet``).
TABLES = {"deep_ensembles": ("models", "ensembles"), "mixtures": ("mixtures", "usage")}

#: How far a float may move between machines. A change of summation order (the mixtures'
#: hand-written backward pass against autograd, on one machine) moved the smoke tables by
#: at most 2.3e-7 relative (4.4e-6 for a ratio of two small metrics). The absolute
#: tolerance is for discrete metrics: one test row whose prediction flips moves an
#: accuracy or a calibration error by about 1 / (test rows), up to 1e-3 in the smoke
#: run. A real change of results (a seed, a formula, a data row) moves them by far more.
RTOL, ATOL = 2e-3, 2e-3


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    """The table without timing columns, columns and rows sorted, floats as float64."""
    frame = frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
    frame = frame[sorted(frame.columns)]
    frame = frame.astype({c: "float64" for c in frame.columns if frame[c].dtype.kind == "f"})
    return frame.sort_values(list(frame.columns), kind="mergesort").reset_index(drop=True)


def table_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the table's canonical CSV: order of rows and columns does not matter."""
    text = canonical(frame).to_csv(index=False, float_format="%.17g", lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


def _keyed(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by the columns that are not floats (the table's keys), so that two runs'
    rows line up even where floats differ in the last bits."""
    frame = canonical(frame)
    keys = [c for c in frame.columns if frame[c].dtype.kind != "f"]
    for key in keys:  # as text, missing as "": a CSV and a Parquet table then agree
        frame[key] = frame[key].astype(object).where(frame[key].notna(), "").astype(str)
    return frame.sort_values(keys, kind="mergesort").reset_index(drop=True)


def reference_mismatches(
    frame: pd.DataFrame, reference: pd.DataFrame, *, rtol: float = RTOL, atol: float = ATOL
) -> list[str]:
    """What differs between a table and its reference, one line per column; [] if nothing.

    Key columns (not floats) must be equal; float columns equal within rtol / atol, NaN
    where the reference has NaN.
    """
    # a CSV reads a float column of whole numbers as ints: the run's dtypes decide
    floats = {c: "float64" for c in frame.columns if frame[c].dtype.kind == "f" and c in reference.columns}
    frame, reference = _keyed(frame), _keyed(reference.astype(floats))
    if list(frame.columns) != list(reference.columns):
        return [f"columns {list(frame.columns)} != reference {list(reference.columns)}"]
    if len(frame) != len(reference):
        return [f"{len(frame)} rows, reference {len(reference)}"]
    problems = []
    for column in frame.columns:
        got, want = frame[column], reference[column]
        if want.dtype.kind == "f":
            close = np.isclose(got.to_numpy(float), want.to_numpy(float), rtol=rtol, atol=atol, equal_nan=True)
            if not close.all():
                worst = int(np.argmin(close))
                problems.append(
                    f"{column}: {int((~close).sum())} of {len(close)} values differ, "
                    f"e.g. row {worst}: {got.iloc[worst]!r} vs {want.iloc[worst]!r}"
                )
        elif not got.equals(want):
            problems.append(
                f"{column}: {int((got != want).sum())} values differ, e.g. {got[got != want].iloc[0]!r} "
                f"vs {want[got != want].iloc[0]!r}"
            )
    return problems


def reference_path(folder: str | Path, section: str, table: str) -> Path:
    return Path(folder) / f"{section}__{table}.csv"


def read_reference(folder: str | Path, section: str, table: str) -> pd.DataFrame:
    """A committed reference table, with the dtypes its run wrote (keys as strings or ints)."""
    return pd.read_csv(reference_path(folder, section, table), keep_default_na=False, na_values=["NaN"])


def write_reference(profile_dir: str | Path, folder: str | Path) -> list[Path]:
    """Every table of a finished smoke run as ``<section>__<table>.csv`` under ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for section, tables in TABLES.items():
        for table in tables:
            frame = canonical(pd.read_parquet(Path(profile_dir) / section / f"{table}.parquet"))
            path = reference_path(folder, section, table)
            frame.to_csv(path, index=False, float_format="%.17g", na_rep="NaN", lineterminator="\n")
            written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Hash a smoke run's tables, or write them as the reference.")
    parser.add_argument("profile_dir", help="a finished smoke run, e.g. runs/smoke")
    parser.add_argument("--write", metavar="FOLDER", help="write the tables as the reference into FOLDER")
    args = parser.parse_args()
    if args.write:
        for path in write_reference(args.profile_dir, args.write):
            print(f"wrote {path}")
    else:
        for section, tables in TABLES.items():
            for table in tables:
                frame = pd.read_parquet(Path(args.profile_dir) / section / f"{table}.parquet")
                print(f"{section}/{table}: {table_fingerprint(frame)}")
