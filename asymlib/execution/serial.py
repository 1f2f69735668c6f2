"""Train a profile's work units in this machine's own processes, without Dask, notebooks or
reports: ``asymlib train PARAMS.yaml [--device cuda] [--slots N] [--stop-after SECONDS]``.

For a machine where only the training matters, such as a GPU box lent for a few minutes or
a batch node without Jupyter: it needs torch, pandas, pyarrow, scikit-learn and PyYAML, and
imports nothing of Dask, papermill or the reports. It writes what ``asymlib run`` writes,
into the same folders: each unit's shards as it finishes, recording the settings they were
made with (``sections.units.ShardStore``), so that ``asymlib run PARAMS.yaml``
later, on any machine, finds those units done and only executes the notebooks and reports.

- ``slots``: units trained at once, each in a process of its own. On one GPU they share the
  device: while one unit waits for the host (validation, early stopping, recording a new
  CUDA graph), the kernels of the others run. Only the scheduling changes, so every unit's
  tables are the ones it gives alone on the same device, bit for bit.
- ``stop_after``: no unit starts once this many seconds have passed; the units running then
  finish. A run stopped harder than that (Ctrl-C, SIGTERM, a time limit) keeps every unit
  finished so far, and a re-run trains only the rest.
- Units start largest first (``records.unit_priority``), over all the chosen sections.
- ``<section folder>/train_log.csv`` gets one row per unit trained: where, on what device,
  with how many slots, and how many seconds it took.
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch

from ..core.data import DataFileError
from ..sections.settings import DEVICES, SectionSettings, torch_device
from .cluster import available_cores  # no Dask at import: the module imports it where it uses it
from .lock import holding
from .machine import check_machine
from .params import SECTIONS, ParamsError, choose_datasets, load_params, positive_int, profile_sections
from .records import OutputError, append_row, check_settings, check_writable, unit_priority, writing
from .tasks import UnitResult, missing_raw_files, train_unit

LOG_NAME = "train_log.csv"


@dataclass(frozen=True)
class SerialJob:
    """One work unit to train: its section, dataset, name and coordinates (``Section.grid``)."""

    section: str
    dataset: str
    unit: str
    coordinates: dict
    priority: int


@dataclass
class TrainSummary:
    """What ``train_units`` did: units trained, not started (``stop_after``) and failed
    (unit -> the worker's traceback), and the run's wall seconds."""

    trained: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    already_done: int = 0
    seconds: float = 0.0


def _train_job(job: SerialJob, settings: SectionSettings, threads: int, deadline: float) -> tuple[SerialJob, object]:
    """A worker's part: train ``job`` unless the deadline (``time.time()``) has passed.
    Returns the job and its ``UnitResult``, ``None`` (not started) or a traceback string."""
    if time.time() >= deadline:
        return job, None
    try:
        return job, train_unit(job.section, settings, job.dataset, job.coordinates, threads=threads)
    except Exception:  # noqa: BLE001 - the parent records it and goes on with the other units
        return job, traceback.format_exc()


def _pending_jobs(settings: dict[str, SectionSettings], datasets: dict[str, list[str]], out_dirs: dict[str, Path]):
    """Every unit of the chosen datasets not yet done in its store, largest first; and how
    many were done already (units made with other settings were refused before: ``_check_folders``)."""
    jobs, done = [], 0
    for name, section_settings in settings.items():
        store = SECTIONS[name].store(out_dirs[name], section_settings)
        for dataset in datasets[name]:
            for unit, coordinates in SECTIONS[name].grid(section_settings, dataset).items():
                if store.done(unit):
                    done += 1
                    continue
                priority = unit_priority(dataset, coordinates, section_settings)
                jobs.append(SerialJob(name, dataset, unit, coordinates, priority))
    return sorted(jobs, key=lambda job: -job.priority), done


def _loaded(
    params_path: Path, sections: list[str], *, datasets: Sequence[str] | None, device: str | None, slots: int
) -> tuple[dict[str, SectionSettings], dict[str, list[str]]]:
    """The sections' settings (``device`` applied) and chosen datasets, after the checks of
    the profile and of this machine (``machine.check_machine``: the device, units ``slots``
    at a time in its memory), which need nothing of the output folder."""
    if device is not None and not torch_device(device):
        raise ParamsError(f"--device {device!r} is not a torch device this code trains on; expected {DEVICES}")
    settings = load_params(params_path, sections=sections)
    chosen = {}
    for name in sections:
        if device is not None:
            settings[name] = dataclasses.replace(settings[name], device=device)
        chosen[name] = choose_datasets(settings[name], datasets, where=str(params_path))
    check_machine(
        settings,
        chosen,
        where=str(params_path),
        at_once=slots,
        pooled=True,
        device_key=None if device is None else "--device",
    )
    return settings, chosen


def _check_folders(
    settings: dict[str, SectionSettings], chosen: dict[str, list[str]], *, out_dirs: dict[str, Path]
) -> None:
    """The checks that read the output folders (under their lock) and the raw files: stored
    results of other settings (``records.check_settings``), folders that cannot be written,
    raw files missing."""
    for name in settings:
        in_tables = list(dict.fromkeys([*settings[name].datasets, *chosen[name]]))
        check_settings(
            SECTIONS[name],
            settings[name],
            out_dir=out_dirs[name],
            datasets=chosen[name],
            in_tables=in_tables,
            force=False,
        )
        check_writable(out_dirs[name])
    missing = missing_raw_files(sorted({d for names in chosen.values() for d in names}))
    if missing:
        raise DataFileError(
            f"raw files missing: {'; '.join(missing)}; put them in place with `asymlib fetch`",
            path=os.path.dirname(missing[0]),
        )


def train_units(
    params_path: str | os.PathLike,
    *,
    out_root: str | os.PathLike = "runs",
    sections: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    device: str | None = None,
    slots: int = 1,
    stop_after: float | None = None,
    progress: bool = True,
) -> TrainSummary:
    """Train every unfinished unit of a profile; shards under ``out_root/<profile>/<section>/``.

    device: overrides the sections' ``device`` (results of any device may be combined, as in
        ``asymlib run``). slots: units at once, each in its own process. stop_after: seconds
        after which no unit starts. Raises ParamsError (bad profile, a device or units this
        machine cannot train, or stored results of other settings), FolderBusy (another run
        holds the output folder, ``lock.holding``: held for the whole run), OutputError (an
        output folder that cannot be written) or DataFileError (raw files missing) before training.
    """
    from tqdm.auto import tqdm

    if not positive_int(slots):
        raise ParamsError(f"slots must be a positive integer, got {slots!r}")
    if stop_after is not None and not stop_after > 0:
        raise ParamsError(f"stop_after must be a positive number of seconds, got {stop_after!r}")
    params_path = Path(params_path)
    sections = list(sections or profile_sections(params_path))
    profile_dir = Path(out_root).resolve() / params_path.stem
    out_dirs = {name: profile_dir / name for name in sections}
    settings, chosen = _loaded(params_path, sections, datasets=datasets, device=device, slots=slots)
    with holding(profile_dir):  # one run at a time in the folder, from its first read to its last write
        _check_folders(settings, chosen, out_dirs=out_dirs)
        jobs, already_done = _pending_jobs(settings, chosen, out_dirs)
        summary = TrainSummary(already_done=already_done)
        started = time.perf_counter()
        deadline = time.time() + (stop_after if stop_after is not None else float("inf"))
        threads = {name: s.threads or max(1, available_cores() // slots) for name, s in settings.items()}
        calls = [(job, settings[job.section], threads[job.section], deadline) for job in jobs]
        bar = tqdm(total=len(jobs), desc="units", unit="unit", disable=not progress)
        pool = multiprocessing.get_context("spawn").Pool(slots) if slots > 1 and len(jobs) > 1 else None
        try:
            outcomes = pool.imap_unordered(_star_train_job, calls) if pool else map(_star_train_job, calls)
            for job, outcome in outcomes:
                _keep(job, outcome, settings[job.section], out_dirs[job.section], summary, slots=slots)
                bar.set_postfix_str(f"{job.unit} {_status(outcome)}", refresh=False)
                bar.update(1)
        finally:
            bar.close()
            if pool is not None:
                pool.terminate()  # on Ctrl-C: units in flight are lost, finished ones are on disk
        summary.seconds = time.perf_counter() - started
    return summary


def _star_train_job(call: tuple) -> tuple[SerialJob, object]:
    return _train_job(*call)


def _status(outcome: object) -> str:
    return "ok" if isinstance(outcome, UnitResult) else "not started" if outcome is None else "FAILED"


def _keep(
    job: SerialJob, outcome: object, settings: SectionSettings, out_dir: Path, summary: TrainSummary, *, slots: int
) -> None:
    """Write a finished unit's shards (each with its unit and settings) and its line of the log."""
    if outcome is None:
        summary.not_started.append(job.unit)
        return
    if not isinstance(outcome, UnitResult):
        summary.failed[job.unit] = outcome
        return
    store = SECTIONS[job.section].store(out_dir, settings)
    writing(out_dir, lambda: store.save(job.unit, made_with=outcome.made_with, **outcome.tables))
    row = pd.DataFrame(
        [
            {
                # sharing: processes that shared the device with this unit (this run's slots; another
                # run beside it is not seen), for ``asymlib estimate --measured``
                "unit": job.unit,
                "dataset": job.dataset,
                "device": settings.device,
                "slots": slots,
                "sharing": slots,
                "seconds": round(outcome.seconds, 3),
                "worker": outcome.worker,
                "finished": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                "gpu": torch.cuda.get_device_name() if settings.device.startswith("cuda") else "",
            }
        ]
    )
    writing(out_dir, lambda: append_row(row, out_dir / LOG_NAME))
    summary.trained.append(job.unit)


def format_train_summary(summary: TrainSummary, *, out: Path) -> str:
    trained = len(summary.trained)
    lines = [
        f"trained {trained} unit{'s' if trained != 1 else ''} in {summary.seconds:.1f} s "
        f"({summary.already_done} were done already); "
        f"not started: {len(summary.not_started)}; failed: {len(summary.failed)}  ({out} on {socket.gethostname()})"
    ]
    for unit, error in summary.failed.items():
        lines.append(f"  {unit} FAILED: {error.strip().splitlines()[-1]}")
    if summary.not_started:
        lines.append("  re-run the same command to train the units not started")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``asymlib train`` arguments (also ``python -m asymlib.execution.serial``)."""
    parser.add_argument("params", metavar="PARAMS.yaml", help="a profile such as params/paper.yaml")
    parser.add_argument("--out", default="runs", metavar="DIR", help="output root (default: runs)")
    parser.add_argument(
        "--datasets", nargs="+", metavar="NAME", help="only these datasets (a user dataset of the profile too)"
    )
    parser.add_argument("--sections", nargs="+", default=None, choices=list(SECTIONS), help="only these sections")
    parser.add_argument("--device", default=None, help="train on this torch device (default: the profile's device)")
    parser.add_argument("--slots", type=int, default=1, metavar="N", help="units at once, each in its own process")
    parser.add_argument(
        "--stop-after",
        type=float,
        default=None,
        metavar="SECONDS",
        help="start no unit after this many seconds (units running then finish)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_from_args(args: argparse.Namespace) -> int:
    """0 when every unit chosen is done, 1 when a unit failed, 4 when some were not started."""
    summary = train_units(
        args.params,
        out_root=args.out,
        sections=args.sections,
        datasets=args.datasets,
        device=args.device,
        slots=args.slots,
        stop_after=args.stop_after,
        progress=not args.no_progress,
    )
    print(format_train_summary(summary, out=Path(args.out).resolve() / Path(args.params).stem), flush=True)
    return 1 if summary.failed else 4 if summary.not_started else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m asymlib.execution.serial", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_from_args(args)
    except (ParamsError, OutputError, DataFileError) as exc:
        print(f"asymlib train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asymlib train: stopped; finished units kept, re-run to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
