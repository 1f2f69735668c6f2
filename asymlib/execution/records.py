"""What an output folder records beside its shards: the settings each dataset's results were
made with (``settings.yaml``), and how writes into it fail.

Shared by every way of training a section's units (``runner``: Dask tasks and notebooks;
``serial``: one process, no Dask), so that results made either way can be combined, resumed
and checked the same way. It imports nothing beyond the sections and the parameter files.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import yaml

from ..core.data import DATASET_SHAPES
from .params import ParamsError, Section


class OutputError(OSError):
    """The output folder cannot be written (read-only, a file in the way, no space)."""


def dataset_units(store, dataset: str) -> list[str]:
    """Every finished unit of ``dataset`` in the store, of whatever grid made it."""
    return [unit for unit in store.units() if unit.startswith(f"{dataset}-")]


def datasets_with_results(store) -> set[str]:
    """The datasets with at least one finished unit (unit names start with the dataset's)."""
    return {unit.split("-", 1)[0] for unit in store.units()}


def forget(section: Section, dataset: str, out_dir: Path) -> None:
    """Delete a dataset's shards and executed notebook, so that it is redone from scratch."""
    store = section.store(out_dir)
    for unit in dataset_units(store, dataset):
        store.delete(unit)
    (out_dir / f"{dataset}.ipynb").unlink(missing_ok=True)


def compared_settings(section: Section, settings: dict) -> dict:
    """The settings that make results comparable: all the section's keys but those that only
    grow or shrink the grid (``section.resume_keys``) and the device."""
    return {k: settings[k] for k in section.keys if k not in section.resume_keys and k != "device"}


def read_recorded(out_dir: Path) -> dict:
    """``settings.yaml``: dataset -> the settings its results were made with."""
    path = out_dir / "settings.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def differences(section: Section, before: dict, now: dict) -> list[str]:
    """What changed; a key missing from an older record had its default then."""
    was = {k: before.get(k, section.keys[k].default) for k in now}
    return [f"{k}: {was[k]!r} -> {v!r}" for k, v in now.items() if was[k] != v]


def check_settings(
    section: Section, settings: dict, *, out_dir: Path, datasets: list[str], in_tables: list[str], force: bool
) -> None:
    """Refuse any run whose combined tables would hold results of different settings.

    Only datasets with finished results count: a record without results (a run that
    trained nothing) blocks nothing. ``datasets`` are about to run: with ``force`` they
    are redone, without it their results must have been made with today's settings.
    The other datasets in the tables (``in_tables``) must match today's settings as well,
    since they are combined with the new results.
    """
    with_results, recorded = datasets_with_results(section.store(out_dir)), read_recorded(out_dir)
    now = compared_settings(section, settings)
    for dataset in in_tables:
        if (force and dataset in datasets) or dataset not in with_results:
            continue
        before = recorded.get(dataset)
        changed = (
            ["no record of the settings they were made with"] if before is None else differences(section, before, now)
        )
        if not changed:
            continue
        if dataset in datasets:
            raise ParamsError(
                f"{out_dir} holds {dataset} results made with other settings ({'; '.join(changed)}); "
                "re-run with force=True (--force) to redo them, or choose another output folder"
            )
        stale = [d for d in in_tables if d not in datasets and d in with_results]
        raise ParamsError(
            f"{out_dir}: the combined tables would mix settings: {dataset} results were made with other "
            f"settings ({'; '.join(changed)}). Redo every dataset of the section with --force "
            f"(without --datasets), or add {', '.join(stale)} to --datasets with --force, "
            "or choose another output folder"
        )


def save_settings(section: Section, settings: dict, *, out_dir: Path, datasets: list[str]) -> None:
    """Record today's settings for the datasets that now have results, and forget records
    of datasets that have none; ``settings.yaml`` is written only if that changes it (and
    removed when no dataset has results)."""
    with_results, recorded = datasets_with_results(section.store(out_dir)), read_recorded(out_dir)
    updated = {d: values for d, values in recorded.items() if d in with_results}
    updated.update({d: compared_settings(section, settings) for d in datasets if d in with_results})
    if updated == recorded:
        return
    path = out_dir / "settings.yaml"
    writing(out_dir, lambda: write_yaml(path, updated) if updated else path.unlink())


def record_settings(section: Section, settings: dict, *, out_dir: Path, dataset: str) -> None:
    """Record today's settings for ``dataset`` now (before its first shard is written), if
    ``settings.yaml`` does not hold them yet."""
    recorded = read_recorded(out_dir)
    now = compared_settings(section, settings)
    if recorded.get(dataset) != now:
        writing(out_dir, lambda: write_yaml(out_dir / "settings.yaml", {**recorded, dataset: now}))


def write_yaml(path: Path, document: dict) -> None:
    """Write ``path`` atomically (``replace_atomically``)."""
    replace_atomically(path, lambda partial: partial.write_text(yaml.safe_dump(document, sort_keys=False)))


def replace_atomically(path: Path, write) -> None:
    """``write(partial)`` a file beside ``path``, then rename it into place: a reader (or a
    run killed meanwhile) sees the old file or the new one, never half of it. The partial
    name keeps the suffix (``<stem>.partial<suffix>``), for writers that go by it."""
    partial = path.with_name(f"{path.stem}.partial{path.suffix}")
    write(partial)
    partial.replace(path)


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
    """Write a combined table as Parquet and CSV, unless the Parquet file already holds it,
    so that re-summarising a finished run writes nothing."""
    if path.exists():
        try:
            if pd.read_parquet(path).equals(frame):
                return
        except (OSError, ValueError):
            pass  # unreadable: write it again
    writing(
        path.parent, lambda: (frame.to_parquet(path, index=False), frame.to_csv(path.with_suffix(".csv"), index=False))
    )


def unit_priority(dataset: str, coordinates: dict, settings: dict) -> int:
    """Larger units first, so that no long unit starts last while the other workers idle:
    the matrix-multiply work of one epoch of one member (a mixture's experts all count),
    in millions of multiply-adds, from the dataset's rows and features and the unit's
    hidden size and experts (epochs to early stopping are not known in advance)."""
    rows, features = DATASET_SHAPES[dataset]
    hidden = coordinates.get("hidden", settings.get("hidden", 64))
    experts = coordinates.get("experts", 1)
    return int(rows * experts * (features * hidden + 2 * hidden * hidden) / 1e6)
