"""What the two sections share about a work unit: its seeds, and its results on disk.

A work unit is the smallest piece of a section that is trained, evaluated and saved at
once (deep ensembles: dataset x hidden x repeat; mixtures: dataset x gating x kind x
experts). Its seeds derive from integers alone (never from Python's ``hash()``), so a unit
gives the same numbers in any process; its tables are written as Parquet shards, the
completion marker last, so a stopped run loses at most the unit in progress.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd


def derive_seed(*key: int) -> int:
    """A 31-bit seed that depends only on the integers in ``key`` (NumPy SeedSequence)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0] & 0x7FFFFFFF)


def mask_seed(seed: int, repeat: int) -> int:
    """The W-Asymmetric mask seed of a repeat, shared by all its members."""
    return derive_seed(seed, repeat, 2**20)


class ShardStore:
    """Finished work units as Parquet shards under ``root/shards``.

    A unit is done when its ``marker`` table (``*-ensembles.parquet`` for deep ensembles,
    ``*-mixtures.parquet`` for mixtures) exists; that file is written last and atomically
    (write to a temporary name, then rename), so an interrupted unit is redone.
    """

    def __init__(self, root: str | os.PathLike, *, marker: str = "ensembles") -> None:
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.marker = marker

    def path(self, unit: str, table: str) -> Path:
        return self.shards / f"{unit}-{table}.parquet"

    def done(self, unit: str) -> bool:
        return self.path(unit, self.marker).exists()

    def save(self, unit: str, **tables: pd.DataFrame) -> None:
        """Write the unit's tables; pass the one that marks completion (``marker``) last."""
        if list(tables)[-1:] != [self.marker]:
            raise ValueError(f"save the completion marker table {self.marker!r} last, got {list(tables)}")
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
        return sorted(p.name[: -len(suffix)] for p in self.shards.glob(f"*{suffix}"))

    def delete(self, unit: str, tables: Sequence[str]) -> None:
        """Forget a unit (completion marker first, so a crash leaves it 'not done')."""
        for table in sorted(tables, key=lambda t: t != self.marker):
            self.path(unit, table).unlink(missing_ok=True)
