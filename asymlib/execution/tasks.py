"""What a Dask worker runs: one work unit of a section, a pure function of the unit and its
settings.

``train_unit`` loads the unit's dataset from the worker's own raw files (``$ASYMLIB_DATA``,
else ``<repo>/data`` of the worker's installation), trains and scores the unit exactly as the
section's notebook would (``Section.train``), and returns its result tables. It writes
nothing: the client that submitted it writes the shards, so no filesystem needs to be shared
and a task that lost its worker can run again anywhere with the same result.

Everything here is imported by the worker processes, so it imports no report or notebook code.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass

import pandas as pd
import torch

from ..core.data import RAW_FILES, Dataset, default_data_dir, load_dataset
from ..sections.settings import SectionSettings
from .params import SECTIONS


@dataclass(frozen=True)
class UnitResult:
    """What a task sends back: the unit's tables (``Section.tables`` order), the seconds its
    training and scoring took, where it ran (``host:pid``), and the settings it was trained
    with (the store that saves the tables checks them: ``ShardStore.save(made_with=...)``)."""

    tables: dict[str, pd.DataFrame]
    seconds: float
    worker: str
    made_with: SectionSettings | None = None


def train_unit(section: str, settings: SectionSettings, dataset: str, unit: dict, *, threads: int) -> UnitResult:
    """Train and score one work unit of ``section`` (a name of ``SECTIONS``).

    settings: the section's settings (``load_params``); unit: the unit's coordinates
    (``SectionSettings.units``, e.g. ``{"hidden": 64, "repeat": 0}``); threads: torch threads
    for the task. The same unit and settings give the same tables bit for bit on any worker
    with the same ``threads`` (a sum split over another number of threads rounds otherwise).
    """
    torch.set_num_threads(threads)
    settings.register_user_datasets()  # done on unpickling too; a no-op once registered
    data = _dataset(
        dataset,
        user=next((s for s in settings.user_datasets if s.name == dataset), None),
        max_rows=settings.max_rows,
        split=settings.split,
        val_fraction=settings.val_fraction,
        data_dir=str(default_data_dir()),
    )
    started = time.perf_counter()
    tables = SECTIONS[section].train(data, settings, **unit, progress=False)
    return UnitResult(tables, time.perf_counter() - started, f"{socket.gethostname()}:{os.getpid()}", settings)


@functools.lru_cache(maxsize=2)
def _dataset(
    name: str, *, user=None, max_rows: int | None, split: str, val_fraction: float | None, data_dir: str
) -> Dataset:
    """The dataset as the notebook loads it. A worker keeps the last two it loaded, since its
    next units are mostly of the same dataset (mnist takes seconds to read and split); the
    units never modify their data, as in a notebook, which trains all its units on one load.
    ``user``: a user dataset's spec, so that a changed spec under the same name is loaded afresh."""
    return load_dataset(name, data_dir=data_dir, max_rows=max_rows, split=split, val_fraction=val_fraction)


def missing_raw_files(datasets: list[str], user_files: tuple[str, ...] = ()) -> list[str]:
    """The raw files of ``datasets`` missing from this process's data folder, as
    ``"<folder>/<file>"``, and the user datasets' files (``user_files``, absolute) missing
    here (run on every worker before any unit is submitted). Names with no raw files known
    here (user datasets) are checked by their ``user_files``."""
    data_dir = default_data_dir()
    builtin = [str(data_dir / rel) for d in datasets for rel in RAW_FILES.get(d, ()) if not (data_dir / rel).is_file()]
    return builtin + [f for f in user_files if not os.path.isfile(f)]
