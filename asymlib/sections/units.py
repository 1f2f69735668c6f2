"""What the two sections share about a work unit: its seeds, and its results on disk.

A work unit is the smallest piece of a section that is trained, evaluated and saved at
once (deep ensembles: dataset x hidden x repeat; mixtures: dataset x gating x kind x
experts). Its seeds derive from integers alone (never from Python's ``hash()``), so a unit
gives the same numbers in any process; its tables are written as Parquet shards, the
completion marker last, so a stopped run loses at most the unit in progress. A unit's
data move to its device (CPU or GPU) in one place, ``on_device``.

The store owns "which settings made this": every shard records its unit, its table, the
format of its tables and the settings that made it, and a store opened with settings counts
a unit as done only when all of that matches (``ShardStore``).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from ..core.data import Dataset
from ..core.datasets import DATASET_RECORDS
from ..core.evaluation import metric_name, relative_improvement
from ..core.yamlfile import load_yaml
from .settings import ParamsError, SectionSettings


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


#: The key of a shard's record in its Parquet file's metadata.
RECORD_KEY = b"asymlib"
#: Beside the shards: the settings each dataset's units were made with (``ShardStore.summary``).
SUMMARY_NAME = "settings.yaml"


class ShardMismatch(ParamsError):
    """A stored unit is not what the store was asked for: another unit's rows, another
    table format, or other settings. ``problems`` says how, e.g. ``["members: 4 -> 8"]``."""

    def __init__(self, message: str, *, unit: str, problems: list[str]) -> None:
        super().__init__(message)
        self.unit = unit
        self.problems = problems


class ShardStore:
    """Finished work units as Parquet shards under ``root/shards``, one file per table.

    settings: the section's settings (``SectionSettings``) the units are made with; they
        give the tables (``settings.TABLES``, the completion marker last). Without them
        (``tables`` alone) the store reads and writes shards of whatever settings, which is
        what reports reading a finished folder need.
    redo: what ``done`` does with a stored unit that does not match (``problems``): False,
        refuse it (raise ``ShardMismatch``); True, count it as not done, so that it is
        trained again and overwritten.

    Each file is written to a temporary name and renamed, so a kill mid-write leaves no
    partial shard under the real name; its Parquet metadata holds its record (``RECORD_KEY``:
    unit, table, ``settings.SCHEMA``, ``settings.record()``). A unit is complete when every one
    of its files is there and readable as Parquet (its footer checks out), so a shard damaged
    later (truncated by a full disk, say) makes the unit count as not done, and a resume
    redoes it. A complete unit is done, for a store with settings, when each shard's record
    and rows name this unit and table and its settings are these (``problems``). On every
    read, with settings or without, a shard must also hold results: its rows name its unit,
    its metric columns hold the dataset's metric (accuracy 0 to 1, RMSE 0 or more, finite
    unless the row is flagged diverged) and its relative improvements follow from them
    (``SectionSettings.METRIC_COLUMNS``); a problem names the shard's file, and a unit with
    one is refused (or, with ``redo``, trained again), never read.

    ``settings.yaml`` beside the shards says, per dataset, the settings its units were last
    saved with (read by reports and estimates). Shards written before shards carried a record
    are accepted by this rule: such a shard was made with the settings ``settings.yaml``
    records for its dataset (none recorded: unknown, so it does not match), and its rows must
    still name its unit. Before the store changes a dataset's entry there, it writes that
    entry into the dataset's shards that have no record, so the rule never relabels them.
    Where the shards have records, those count: an entry that none of the dataset's shards
    records (``settings.yaml`` edited by hand, or copied from elsewhere) is a problem of
    every unit of the dataset, naming the file.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        tables: Sequence[str] | None = None,
        settings: SectionSettings | None = None,
        redo: bool = False,
    ) -> None:
        if settings is not None:
            if tables is not None and tuple(tables) != settings.tables:
                raise ValueError(f"{type(settings).__name__} writes the tables {settings.tables}, not {tuple(tables)}")
            tables = settings.tables
        if not tables:
            raise ValueError("a ShardStore needs the names of its tables, the completion marker last")
        self.root = Path(root)
        self.shards = self.root / "shards"
        self.tables = tuple(tables)
        self.marker = self.tables[-1]
        self.settings = settings
        # what every unit has, whatever its settings: the tables but the optional ones (a
        # unit made without barriers is complete, and then refused for its settings)
        optional = () if (section := self._section()) is None else section.OPTIONAL_TABLES
        self.required = tuple(t for t in self.tables if t not in optional)
        self.redo = redo
        self._summary: tuple[tuple | None, dict] = (None, {})
        self._checked: dict[str, tuple[tuple, list[str]]] = {}
        self._summary_checked: dict[str, tuple[tuple, list[str]]] = {}

    def path(self, unit: str, table: str) -> Path:
        return self.shards / f"{unit}-{table}.parquet"

    # ----------------------------------------------------------------- state

    def complete(self, unit: str) -> bool:
        """Whether every table of the unit is stored and readable, whatever made it (an
        optional table, such as ``barriers``, only when the settings that made it ask for it:
        ``problems`` says so otherwise)."""
        return all(_metadata(self.path(unit, table)) is not None for table in self.required)

    def problems(self, unit: str) -> list[str]:
        """Why a stored unit is not this store's, e.g. ``["members: 4 -> 8"]``; empty when it
        matches or is not complete. Without settings, only the records' unit and table count."""
        stamps = (*(_stamp(self.path(unit, table)) for table in self.tables), _stamp(self.root / SUMMARY_NAME))
        if unit in self._checked and self._checked[unit][0] == stamps:  # files unchanged since
            return list(self._checked[unit][1])
        found: list[str] = []
        if not self.complete(unit):
            return []
        for table in self.tables:
            metadata = _metadata(self.path(unit, table))
            problems = [f"no {table} shard"] if metadata is None else self._problems(unit, table, metadata)
            for problem in problems:
                if problem not in found:
                    found.append(problem)
        self._checked[unit] = (stamps, found)
        return list(found)

    def done(self, unit: str) -> bool:
        """Whether the unit is finished here: complete and without ``problems``. A complete
        unit with problems raises ``ShardMismatch``, or with ``redo`` is not done."""
        if not self.complete(unit):
            return False
        return self._accepted(unit, self.problems(unit))

    def _accepted(self, unit: str, problems: list[str]) -> bool:
        """True without problems; with them, False under ``redo``, else ``ShardMismatch``."""
        if not problems:
            return True
        if self.redo:
            return False
        raise ShardMismatch(
            f"{self.root} holds a unit {unit} that is not this one ({'; '.join(problems)}); "
            "train it again with redo=True (--force), or choose another output folder",
            unit=unit,
            problems=problems,
        )

    def units(self) -> list[str]:
        """Every complete unit in the store, whatever made it."""
        suffix = f"-{self.marker}.parquet"
        names = sorted(p.name[: -len(suffix)] for p in self.shards.glob(f"*{suffix}"))
        return [name for name in names if self.complete(name)]

    def dataset_units(self, dataset: str) -> list[str]:
        """Every complete unit of ``dataset`` (unit names start with the dataset's)."""
        return [unit for unit in self.units() if unit.startswith(f"{dataset}-")]

    # ----------------------------------------------------------------- writing

    def save(self, unit: str, *, made_with: SectionSettings | None = None, **tables: pd.DataFrame) -> None:
        """Write the unit's tables, in ``self.tables`` order (the completion marker last),
        each with its record.

        made_with: the settings the tables were made with, when someone else made them (a
        Dask task): they must be the store's. A store with settings also refuses tables
        whose rows name another unit. Refused tables raise ``ShardMismatch``; nothing is written.
        """
        if tuple(tables) != self.tables:
            raise ValueError(f"save the tables {self.tables} in that order (the marker last), got {tuple(tables)}")
        problems = self._refusals(unit, tables, made_with)
        if problems:
            raise ShardMismatch(
                f"{self.root}: refused to save {unit}: {'; '.join(problems)}", unit=unit, problems=problems
            )
        self.shards.mkdir(parents=True, exist_ok=True)
        if self.settings is not None:
            self.note_settings(_dataset_of(unit))
        settings = None if self.settings is None else self.settings.record(_dataset_of(unit))
        for table, frame in tables.items():
            record = {"unit": unit, "table": table, "schema": self._schema(), "settings": settings}
            _write(self.path(unit, table), pa.Table.from_pandas(frame, preserve_index=False), record)

    def delete(self, unit: str) -> None:
        """Forget a unit (completion marker first, so a crash leaves it 'not done'), and its
        dataset's entry in ``settings.yaml`` once the dataset has no unit left."""
        section = self._section()
        optional = section.OPTIONAL_TABLES if section is not None else ()
        for table in (*reversed(self.tables), *optional):
            self.path(unit, table).unlink(missing_ok=True)
        dataset, summary = _dataset_of(unit), self.summary()
        if dataset in summary and not self.dataset_units(dataset):
            del summary[dataset]
            if summary:
                write_yaml(self.root / SUMMARY_NAME, summary)
            else:
                (self.root / SUMMARY_NAME).unlink()

    def note_settings(self, dataset: str) -> None:
        """Record the store's settings for ``dataset`` in ``settings.yaml`` (``save`` does, before
        a unit's first shard), first writing the entry they replace into the dataset's shards
        that have no record."""
        if self.settings is None:
            raise ValueError("a ShardStore without settings has no settings to record")
        summary, now = self.summary(), self.settings.record(dataset)
        if summary.get(dataset) == now:
            return
        for unit in self.dataset_units(dataset):
            for table in self.tables:
                path = self.path(unit, table)
                if self.record(unit, table) is None:
                    record = {"unit": unit, "table": table, "schema": self._schema(), "settings": summary.get(dataset)}
                    _write(path, pq.read_table(path), record)
        self.root.mkdir(parents=True, exist_ok=True)
        write_yaml(self.root / SUMMARY_NAME, {**summary, dataset: now})

    # ----------------------------------------------------------------- reading

    def read(self, units: Sequence[str], table: str) -> pd.DataFrame:
        """One table of the given finished units, concatenated (empty if there are none). A
        table that is not one of the store's (an optional one, e.g. ``barriers``) is read
        from the finished units that have it, each such shard checked as ``done`` checks the
        others (ShardMismatch, or with ``redo`` left out)."""
        parts = [
            pd.read_parquet(self.path(unit, table))
            for unit in units
            if self.done(unit) and (table in self.tables or self._optional_shard(unit, table))
        ]
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def _optional_shard(self, unit: str, table: str) -> bool:
        """Whether a finished unit has a readable shard of a table not among the store's, and
        one without problems (it names its unit and table, holds results, its settings match)."""
        metadata = _metadata(self.path(unit, table))
        return metadata is not None and self._accepted(unit, self._problems(unit, table, metadata))

    def summary(self) -> dict:
        """``settings.yaml``: dataset -> the settings its units were last saved with (read
        again only when the file changed)."""
        path = self.root / SUMMARY_NAME
        stamp = _stamp(path)
        if stamp is None:
            return {}
        if self._summary[0] != stamp:
            self._summary = (stamp, load_yaml(path.read_text(), source=str(path)) or {})
        return dict(self._summary[1])

    def record(self, unit: str, table: str) -> dict | None:
        """A shard's record (unit, table, schema, settings), None for a shard from before
        records (or a missing one)."""
        return _record(_metadata(self.path(unit, table)))

    # ----------------------------------------------------------------- inside

    def _schema(self) -> int | None:
        return None if self.settings is None else self.settings.SCHEMA

    def _section(self) -> type[SectionSettings] | None:
        """The settings class whose units this store holds (known from the tables alone too)."""
        return type(self.settings) if self.settings is not None else SectionSettings.for_tables(self.tables)

    def _problems(self, unit: str, table: str, metadata: pq.FileMetaData) -> list[str]:
        path = self.path(unit, table)
        record, name = _record(metadata), f"its {table} shard {path.parent.name}/{path.name}"
        if record is not None:
            if record.get("unit") != unit:
                return [f"{name} was written for unit {record.get('unit')}"]
            if record.get("table") != table:
                return [f"{name} holds the {record.get('table')} table"]
        if (
            self.settings is not None
            and record is not None
            and record.get("schema") not in (None, self.settings.SCHEMA)
        ):
            return [f"{name} has table format {record.get('schema')}, not {self.settings.SCHEMA}"]  # None: not said
        section = self._section()
        if section is not None:  # what the rows themselves say: their unit, and numbers that are results
            rows = _rows(path, [*section.UNIT_COLUMNS, "settings"])
            try:
                named = {section.unit_of(row) for row in rows}
            except KeyError as missing:
                return [f"{name} lacks the column {missing}"]
            if named - {unit}:
                return [f"{name} holds rows of {', '.join(sorted(named - {unit}))}"]
            damaged = _value_problems(path, name, _dataset_of(unit), section, table)
            if damaged:
                return damaged
        found = self._summary_problems(_dataset_of(unit), section) if table == self.marker else []
        if self.settings is None:
            return found
        # a shard from before records: made with what settings.yaml records for its dataset
        made_with = record["settings"] if record is not None else self.summary().get(_dataset_of(unit))
        if made_with is None:
            return ["no record of the settings it was made with"]
        found += type(self.settings).differences(made_with, self.settings.record(_dataset_of(unit)))
        if table == self.marker:  # what the rows themselves say
            column = {row["settings"] for row in rows if "settings" in row}
            found += _column_differences(sorted(column), self.settings.table_settings())
        return found

    def _summary_problems(self, dataset: str, section: type[SectionSettings] | None) -> list[str]:
        """What is wrong with ``settings.yaml``'s entry for ``dataset``: it must be the settings
        that one of the dataset's shards records (the last saved unit's), since the shards'
        records are what count; an entry that none records was edited by hand or belongs to
        other shards. Nothing to check when no shard of the dataset has a record."""
        entry = self.summary().get(dataset)
        if entry is None:
            return []
        markers = sorted(self.shards.glob(f"{dataset}-*-{self.marker}.parquet"))
        key = (_stamp(self.root / SUMMARY_NAME), tuple(_stamp(path) for path in markers))
        if self._summary_checked.get(dataset, (None,))[0] == key:
            return list(self._summary_checked[dataset][1])
        recorded = [
            (path, made_with)
            for path in markers
            if (made_with := (_record(_metadata(path)) or {}).get("settings")) is not None
        ]
        found: list[str] = []
        if recorded and not any(_same_settings(section, made_with, entry) for _, made_with in recorded):
            path, made_with = recorded[-1]
            keys = [k for k in dict.fromkeys([*entry, *made_with]) if entry.get(k) != made_with.get(k)]
            said = ", ".join(f"{k} {entry.get(k)!r}" for k in keys)
            records = ", ".join(f"{k} {made_with.get(k)!r}" for k in keys)
            found = [
                f"{SUMMARY_NAME} says {dataset} was made with {said}, but its shards record {records} "
                f"({path.parent.name}/{path.name}); the shards count: put {SUMMARY_NAME} back to what they record"
            ]
        self._summary_checked[dataset] = (key, found)
        return list(found)

    def _refusals(self, unit: str, tables: Mapping[str, pd.DataFrame], made_with: SectionSettings | None) -> list[str]:
        if self.settings is None:
            return []
        problems = []
        dataset = _dataset_of(unit)
        if made_with is not None and made_with.record(dataset) != self.settings.record(dataset):
            problems += type(self.settings).differences(made_with.record(dataset), self.settings.record(dataset))
        for table, frame in tables.items():
            columns = [c for c in type(self.settings).UNIT_COLUMNS if c in frame]
            try:
                named = {
                    type(self.settings).unit_of(row) for row in frame[columns].drop_duplicates().to_dict("records")
                }
            except KeyError as missing:
                problems.append(f"the {table} table lacks the column {missing}")
                continue
            if named - {unit}:
                problems.append(f"the {table} table holds rows of {', '.join(sorted(named - {unit}))}")
        return problems


def _dataset_of(unit: str) -> str:
    return unit.split("-", 1)[0]


def _same_settings(section: type[SectionSettings] | None, one: Mapping, other: Mapping) -> bool:
    """Whether two records of settings say the same (a key one lacks had its default then)."""
    if section is None:
        return dict(one) == dict(other)
    return not section.differences(one, other) and not section.differences(other, one)


def _value_problems(path: Path, name: str, dataset: str, section: type[SectionSettings], table: str) -> list[str]:
    """What makes a shard's numbers no results of ``dataset``: a metric column whose values are
    not the dataset's metric (accuracy 0 to 1, RMSE 0 or more: the registry's task says which),
    a metric that is not finite in a row not flagged diverged (``diverged``, or an ensemble
    whose members were all left out), a ``metric_name`` other than the task's, and relative
    improvements that do not follow from the metrics they compare."""
    columns, improvements = section.METRIC_COLUMNS.get(table, ()), section.IMPROVEMENT_COLUMNS.get(table, {})
    if dataset not in DATASET_RECORDS or not (columns or improvements):
        return []
    task = DATASET_RECORDS[dataset].task
    metric = metric_name(task)
    present = pq.ParquetFile(path).schema_arrow.names
    flags = ("metric_name", "diverged", "excluded_members", "ensemble_size")
    wanted = list(
        dict.fromkeys(c for c in (*columns, *flags, *improvements, *sum(improvements.values(), ())) if c in present)
    )
    frame = pq.read_table(path, columns=wanted).to_pandas()
    found = []  # phrases after "has"
    if "metric_name" in frame and set(frame["metric_name"]) - {metric}:
        other = ", ".join(sorted(map(str, set(frame["metric_name"]) - {metric})))
        found.append(f"metric_name {other}, but {dataset} ({task}) is scored by {metric}")
    if "diverged" in frame:
        left_out = frame["diverged"].to_numpy(bool)
    elif {"excluded_members", "ensemble_size"} <= set(frame):
        left_out = (frame["excluded_members"] == frame["ensemble_size"]).to_numpy()
    else:
        left_out = np.zeros(len(frame), bool)
    high = 1.0 if metric == "accuracy" else np.inf
    unflagged, outside = [], []
    for column in (c for c in columns if c in frame):
        values = frame[column].to_numpy(float)
        finite = np.isfinite(values)
        if (~finite & ~left_out).any():
            unflagged.append(f"{column} {values[~finite & ~left_out][0]}")
        wrong = finite & ((values < 0) | (values > high))
        if wrong.any():
            outside.append(f"{column} {values[wrong][np.argmax(np.abs(values[wrong]))]:.6g}")
    if outside:
        found.append(f"{', '.join(outside)}: not {'an accuracy (0 to 1)' if high == 1 else 'an RMSE (0 or more)'}")
    if unflagged:
        found.append(f"{', '.join(unflagged)} in rows not flagged diverged")
    for column, (ensemble, single) in improvements.items():
        if column in frame and ensemble in frame and single in frame:
            stored = frame[column].to_numpy(float)
            with np.errstate(divide="ignore", invalid="ignore"):  # a single model scoring 0: inf or nan
                derived = relative_improvement(
                    frame[ensemble].to_numpy(float), frame[single].to_numpy(float), task=task
                )
            wrong = ~np.isclose(stored, derived, rtol=1e-6, atol=1e-9, equal_nan=True)
            if wrong.any():
                i = int(np.flatnonzero(wrong)[0])
                found.append(f"{column} {stored[i]:.6g} where {ensemble} and {single} give {derived[i]:.6g}")
    return [f"{name} has {' and '.join(found)}"] if found else []


def _metadata(path: Path) -> pq.FileMetaData | None:
    """A complete Parquet file's footer (it parses), else None; reads no data."""
    try:
        return pq.read_metadata(path)
    except (OSError, pa.ArrowException):  # missing, unreadable or not (all) Parquet
        return None


def _record(metadata: pq.FileMetaData | None) -> dict | None:
    raw = (metadata.metadata or {}).get(RECORD_KEY) if metadata is not None else None
    return json.loads(raw) if raw is not None else None


def _rows(path: Path, columns: Sequence[str]) -> list[dict]:
    """The distinct rows of those of ``columns`` that the shard has."""
    shard = pq.ParquetFile(path)
    present = [c for c in columns if c in shard.schema_arrow.names]
    return shard.read(columns=present).group_by(present).aggregate([]).to_pylist() if present else []


def _stamp(path: Path) -> tuple | None:
    """What changes when a file is written again (None: no file)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def _column_differences(column: Sequence[str], expected: str) -> list[str]:
    """How a marker table's ``settings`` column (its distinct values) differs from what
    these settings write."""
    found = []
    for value in column:
        try:
            was, now = ast.literal_eval(value), ast.literal_eval(expected)
        except (ValueError, SyntaxError):
            was, now = {"settings": value}, {"settings": expected}
        keys = list(dict.fromkeys([*now, *was]))
        found += [f"{k}: {was.get(k)!r} -> {now.get(k)!r}" for k in keys if was.get(k) != now.get(k)]
    return found


def _write(path: Path, table: pa.Table, record: dict) -> None:
    """Write a shard with ``record`` in its metadata under a temporary name (``.partial``, which
    no glob for shards matches), then rename it into place."""
    metadata = {**(table.schema.metadata or {}), RECORD_KEY: json.dumps(record).encode()}
    partial = path.with_suffix(".partial")
    pq.write_table(table.replace_schema_metadata(metadata), partial)
    partial.replace(path)


def write_yaml(path: Path, document: dict) -> None:
    """Write ``path`` atomically (``replace_atomically``)."""
    replace_atomically(path, lambda partial: partial.write_text(yaml.safe_dump(document, sort_keys=False)))


def replace_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(partial)`` a file beside ``path``, then rename it into place: a reader (or a
    run killed meanwhile) sees the old file or the new one, never half of it. The partial
    name keeps the suffix (``<stem>.partial<suffix>``), for writers that go by it. If
    ``write`` fails (a full disk, say), the partial file is removed and ``path`` is left as
    it was."""
    partial = partial_path(path)
    try:
        write(partial)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def partial_path(path: Path) -> Path:
    """The temporary name ``replace_atomically`` writes ``path`` under, beside it."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")
