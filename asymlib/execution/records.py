"""What a run checks and writes in an output folder beside the shard store: whether its
combined tables would mix settings (``check_settings``, from what the store records of each
unit), logs and combined tables, and how writes into the folder fail.

Shared by every way of training a section's units (``runner``: Dask tasks and notebooks;
``serial``: one process, no Dask), so that results made either way can be combined, resumed
and checked the same way. Which settings made each unit is the shard store's to record
(``sections.units.ShardStore``, with ``settings.yaml`` beside the shards). It imports
nothing beyond the sections and the parameter files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Mapping

import pandas as pd

from ..core.data import DATASET_SHAPES
from ..sections.settings import SectionSettings
from ..sections.units import SUMMARY_NAME, replace_atomically
from .params import ParamsError, Section

__all__ = [
    "OutputError",
    "append_row",
    "check_settings",
    "check_writable",
    "forget",
    "replace_atomically",
    "unit_priority",
    "write_if_changed",
    "writing",
]


class OutputError(OSError):
    """The output folder cannot be written (read-only, a file in the way, no space)."""


def forget(section: Section, dataset: str, out_dir: Path) -> None:
    """Delete a dataset's shards and executed notebook, so that it is redone from scratch."""
    store = section.store(out_dir)
    for unit in store.dataset_units(dataset):
        store.delete(unit)
    (out_dir / f"{dataset}.ipynb").unlink(missing_ok=True)


def check_settings(
    section: Section,
    settings: SectionSettings,
    *,
    out_dir: Path,
    datasets: list[str],
    in_tables: list[str],
    force: bool,
) -> None:
    """Refuse any run whose combined tables would hold results of different settings.

    The shard store says which stored units do not match today's settings
    (``ShardStore.problems``: other settings, another unit's rows, no record of their
    settings). ``datasets`` are about to run: with ``force`` they are redone, without it
    their units must match. The other datasets in the tables (``in_tables``) must match as
    well, since they are combined with the new results.
    """
    store = section.store(out_dir, settings)
    for dataset in in_tables:
        if force and dataset in datasets:
            continue
        changed = []
        for unit in store.dataset_units(dataset):
            changed += [problem for problem in store.problems(unit) if problem not in changed]
        if not changed:
            continue
        # problems of a shard itself (another unit's rows, another table, values that are no
        # results) start with "its"; those of settings.yaml with its name
        if changed[0].startswith("its "):
            made, were = "that are not what their names say", "were not what their names say"
        elif changed[0].startswith(SUMMARY_NAME):
            made, were = f"whose {SUMMARY_NAME} does not match them", f"had a {SUMMARY_NAME} that did not match them"
        else:
            made, were = "made with other settings", "were made with other settings"
        if dataset in datasets:
            raise ParamsError(
                f"{out_dir} holds {dataset} results {made} ({'; '.join(changed)}); "
                "re-run with force=True (--force) to redo them, or choose another output folder"
            )
        stale = [d for d in in_tables if d not in datasets and store.dataset_units(d)]
        raise ParamsError(
            f"{out_dir}: the combined tables would mix settings: {dataset} results {were} "
            f"({'; '.join(changed)}). Redo every dataset of the section with --force "
            f"(without --datasets), or add {', '.join(stale)} to --datasets with --force, "
            "or choose another output folder"
        )


def append_row(row: pd.DataFrame, path: Path) -> None:
    """Add ``row`` to the CSV log at ``path`` (created with its header), atomically."""
    old = pd.read_csv(path) if path.exists() else None
    frame = row if old is None else pd.concat([old, row], ignore_index=True)
    replace_atomically(path, lambda partial: frame.to_csv(partial, index=False))


def writing(folder: Path, write) -> None:
    """Run ``write``, which writes under ``folder``; an OSError becomes a one-line
    OutputError that names the folder."""
    try:
        write()
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from None


def check_writable(folder: Path) -> None:
    """Fail early, naming the folder, if results cannot be written under ``folder``."""

    def probe() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass

    writing(folder, probe)


def write_if_changed(frame: pd.DataFrame, path: Path) -> None:
    """Write a combined table as Parquet and CSV (``path`` and the ``.csv`` beside it), each
    only where the file does not already hold it, so that re-summarising a finished run
    writes nothing and a damaged or truncated copy of either is written again. Each file is
    written under a temporary name and renamed into place (``replace_atomically``)."""
    try:
        holds = pd.read_parquet(path).equals(frame)
    except (OSError, ValueError):  # missing or unreadable: write it again
        holds = False
    if not holds:
        writing(path.parent, lambda: replace_atomically(path, lambda partial: frame.to_parquet(partial, index=False)))
    csv, text = path.with_suffix(".csv"), frame.to_csv(index=False).encode()
    try:
        holds = csv.read_bytes() == text
    except OSError:
        holds = False
    if not holds:
        writing(path.parent, lambda: replace_atomically(csv, lambda partial: partial.write_bytes(text)))


def unit_priority(dataset: str, coordinates: dict, settings: Mapping) -> int:
    """Larger units first, so that no long unit starts last while the other workers idle:
    the matrix-multiply work of one epoch of one member (a mixture's experts all count),
    in millions of multiply-adds, from the dataset's rows and features and the unit's
    hidden size and experts (epochs to early stopping are not known in advance)."""
    rows, features = DATASET_SHAPES[dataset]
    hidden = coordinates.get("hidden", settings.get("hidden", 64))
    experts = coordinates.get("experts", 1)
    return int(rows * experts * (features * hidden + 2 * hidden * hidden) / 1e6)
