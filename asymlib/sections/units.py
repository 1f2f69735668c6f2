"""What the two sections share about a work unit: its seeds, and its results on disk.

A work unit is the smallest piece of a section that is trained, evaluated and saved at
once (deep ensembles: dataset x hidden x repeat; mixtures: dataset x gating x kind x
experts). Its seeds derive from integers alone (never from Python's ``hash()``), so a unit
gives the same numbers in any process; its tables are written as Parquet shards, the
completion marker last, so a stopped run loses at most the unit in progress. A unit's
data move to its device (CPU or GPU) in one place, ``on_device``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..core.data import Dataset


def derive_seed(*key: int) -> int:
    """A 31-bit seed that depends only on the integers in ``key`` (NumPy SeedSequence)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0] & 0x7FFFFFFF)


def mask_seed(seed: int, repeat: int) -> int:
    """The W-Asymmetric mask seed of a repeat, shared by all its members."""
    return derive_seed(seed, repeat, 2**20)


def on_device(data: Dataset, device: str | torch.device) -> Dataset:
    """``data`` with its six training and scoring tensors (``X_*``, ``y_*``) on ``device``.

    The one place where a unit's data move to its device: a unit calls it once, so its
    models of every type (or its mixtures) train on the same device copy. On the device the
    data already live on (the CPU, for loaded data), it returns ``data`` itself: no copy.
    """
    parts = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
    moved = {name: getattr(data, name).to(device) for name in parts}
    if all(moved[name] is getattr(data, name) for name in parts):
        return data
    return dataclasses.replace(data, **moved)


class ShardStore:
    """Finished work units as Parquet shards under ``root/shards``, one file per table.

    tables: the tables every unit writes, the completion marker last (deep ensembles:
        models, ensembles; mixtures: usage, mixtures).
    Each file is written to a temporary name and renamed, so a kill mid-write leaves no
    partial shard under the real name. A unit is done when every one of its files is there
    and readable as Parquet (its footer checks out), so a shard damaged later (truncated by
    a full disk, say) makes the unit count as not done, and a resume redoes it.
    """

    def __init__(self, root: str | os.PathLike, *, tables: Sequence[str]) -> None:
        if not tables:
            raise ValueError("a ShardStore needs the names of its tables, the completion marker last")
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.tables = tuple(tables)
        self.marker = self.tables[-1]

    def path(self, unit: str, table: str) -> Path:
        return self.shards / f"{unit}-{table}.parquet"

    def done(self, unit: str) -> bool:
        return all(_readable(self.path(unit, table)) for table in self.tables)

    def save(self, unit: str, **tables: pd.DataFrame) -> None:
        """Write the unit's tables, in ``self.tables`` order (the completion marker last)."""
        if tuple(tables) != self.tables:
            raise ValueError(f"save the tables {self.tables} in that order (the marker last), got {tuple(tables)}")
        self.shards.mkdir(parents=True, exist_ok=True)
        for table, frame in tables.items():
            target = self.path(unit, table)
            partial = target.with_suffix(".partial")
            frame.to_parquet(partial, index=False)
            partial.replace(target)

    def read(self, units: Sequence[str], table: str) -> pd.DataFrame:
        """One table of the given finished units, concatenated (empty if there are none)."""
        parts = [pd.read_parquet(self.path(unit, table)) for unit in units if self.done(unit)]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def units(self) -> list[str]:
        """Every finished unit in the store."""
        suffix = f"-{self.marker}.parquet"
        names = sorted(p.name[: -len(suffix)] for p in self.shards.glob(f"*{suffix}"))
        return [name for name in names if self.done(name)]

    def delete(self, unit: str) -> None:
        """Forget a unit (completion marker first, so a crash leaves it 'not done')."""
        for table in reversed(self.tables):
            self.path(unit, table).unlink(missing_ok=True)


def _readable(path: Path) -> bool:
    """Whether ``path`` is a complete Parquet file (its footer parses); reads no data."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException):  # missing, unreadable or not (all) Parquet
        return False
    return True
