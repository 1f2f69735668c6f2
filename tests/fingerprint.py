"""Fingerprints of the smoke profile's result tables: one SHA-256 per table.

A refactor must not change what the smoke profile computes. Each table is reduced to a
canonical text (timing columns dropped, columns and rows sorted, floats written with
``repr`` precision so that any change of a bit shows) and hashed. The committed
``smoke_fingerprint.json`` was first made from the code before the package's layout
changed, and made again only when columns were added (the divergence flags; the
uncertainty, diversity and ablation columns), after checking that every earlier column
hashed as before, and once when the hand-written training step changed results within
float32 rounding; ``test_runner.py`` compares every smoke run against it.

Regenerate it (only when a change of results is intended, and say so in the commit):

    python tests/fingerprint.py runs/smoke > tests/smoke_fingerprint.json
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pandas as pd

#: Wall-clock columns: they differ from run to run by design.
TIMING_COLUMNS = ("train_time", "batch_wall_time")

#: The tables each section writes (``<profile>/<section>/<table>.parquet``).
TABLES = {"deep_ensembles": ("models", "ensembles"), "mixtures": ("mixtures", "usage")}


def table_fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of the table's canonical CSV: order of rows and columns does not matter."""
    frame = frame.drop(columns=[c for c in TIMING_COLUMNS if c in frame.columns])
    frame = frame[sorted(frame.columns)]
    frame = frame.astype({c: "float64" for c in frame.columns if frame[c].dtype.kind == "f"})
    frame = frame.sort_values(list(frame.columns), kind="mergesort").reset_index(drop=True)
    text = frame.to_csv(index=False, float_format="%.17g", lineterminator="\n")
    return hashlib.sha256(text.encode()).hexdigest()


def profile_fingerprint(profile_dir: str | Path) -> dict[str, str]:
    """``{"<section>/<table>": sha256}`` for every table of a finished smoke run."""
    profile_dir = Path(profile_dir)
    return {
        f"{section}/{table}": table_fingerprint(pd.read_parquet(profile_dir / section / f"{table}.parquet"))
        for section, tables in TABLES.items()
        for table in tables
    }


if __name__ == "__main__":
    print(json.dumps(profile_fingerprint(sys.argv[1]), indent=2, sort_keys=True))
