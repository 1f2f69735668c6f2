"""The main job: run a profile of the paper's grid as tasks on Dask, then one executed
notebook per dataset.

A profile is a YAML file, ``params/<profile>.yaml``, with one section per experiment family
(``SECTIONS``: ``deep_ensembles``, ``mixtures``); by default every section present in the
file runs, in that order. For each section the runner

1. submits every unfinished work unit of the chosen datasets as one Dask task (deep
   ensembles: dataset x hidden x repeat; mixtures: dataset x gating x kind x experts) to a
   ``LocalCluster`` of worker processes on this machine, or to an existing cluster
   (``--scheduler`` / ``scheduler:``); a task trains its unit and returns the tables
   (``tasks.train_unit``), and the runner writes them as the unit's Parquet shards as they
   arrive, so that no filesystem is shared and a stopped run keeps every finished unit;
2. executes the section's notebook once per dataset with papermill, in its own subprocess,
   several at once: it finds every unit done, reads them back, and draws the dataset's
   tables and charts (one executed notebook per dataset, as the report stitches them);
3. combines the shards into one tidy table per kind of result::

    runs/<profile>/<section>/
        <dataset>.ipynb        executed notebook (with the traceback if it failed)
        <dataset>.log          papermill's own output, or the traceback of a failed unit
        shards/                one pair of Parquet files per finished work unit, each recording
                               its unit and the settings that made it (``ShardStore``)
        settings.yaml          the settings each dataset's results were made with
        models.parquet, ensembles.parquet (+ .csv)   deep_ensembles' combined tables
        mixtures.parquet, usage.parquet (+ .csv)     mixtures' combined tables

Re-running is cheap: a dataset whose work units are all done and whose notebook ran to
the end is skipped without starting a cluster or papermill; for a partly done one, only
its missing units are trained.

    python -m asymlib run params/smoke.yaml      # or: asymlib run params/smoke.yaml
    asymlib run params/paper.yaml --scheduler tcp://10.0.0.5:8786
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from ..core.project import notebook_error, notebook_succeeded, project_root
from ..reports.stitch import build_report, dataset_notebooks, report_is_current, report_path
from ..reports.tables import (
    describe_diverged,
    diverged_members,
    improvement_table,
    mixture_improvement_table,
)
from ..sections.settings import SectionSettings
from .cluster import Job, SchedulerLost, TaskFailure, available_cores, open_cluster, resources_for
from .lock import holding
from .machine import check_device, check_machine
from .notebooks import (
    DEFAULT_KERNEL,
    check_kernel,
    check_parameters_cell,
    execute_notebook,
    notebook_parameters,
    stop_running_notebooks,
)
from .params import (
    SECTIONS,
    ParamsError,
    Section,
    choose_datasets,
    load_params,
    load_scheduler,
    positive_int,
    profile_sections,
)
from .records import (
    check_settings,
    check_writable,
    forget,
    unit_priority,
    write_if_changed,
    writing,
)

# --------------------------------------------------------------------------- running


@dataclass
class SectionRun:
    """What ``run_profile`` did in one section.

    executed: datasets whose units were trained or whose notebook papermill ran (or both).
    skipped: datasets already complete, left untouched.
    trained: dataset -> how many of its units were trained in this run.
    failed: dataset -> where its traceback is: the executed notebook, or ``<dataset>.log``
        when a unit failed (``errors`` then says how, and the notebook is not run).
    seconds: dataset -> seconds its units took on their workers, plus its notebook's.
    tables: the combined tables (e.g. models, ensembles) over the section's datasets.
    report: the section's exported HTML report, when one was built.
    report_error: why building the report failed (the results are still complete).
    diverged: one row per diverged member or mixture in ``tables`` (``diverged_members``).
    """

    section: str
    out_dir: Path
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    trained: dict[str, int] = field(default_factory=dict)
    failed: dict[str, Path] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    report: Path | None = None
    report_error: str | None = None
    diverged: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def ok(self) -> bool:
        return not self.failed


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a run; ``units_kept`` finished units are safe on disk."""

    def __init__(self, units_kept: int) -> None:
        super().__init__(units_kept)
        self.units_kept = units_kept


def combine(
    section: Section, settings: SectionSettings, datasets: Iterable[str], out_dir: Path
) -> dict[str, pd.DataFrame]:
    """The section's tables over the finished units of ``datasets`` (stale shards left out)."""
    store = section.store(out_dir, settings)
    units = [u for d in datasets for u in section.units(settings, d)]
    return section.finish({table: store.read(units, table) for table in settings.tables})


def _run_section(
    section: Section,
    settings: SectionSettings,
    *,
    out_dir: Path,
    datasets: list[str],
    workers: int,
    force: bool,
    progress: bool,
    kernel: str,
    scheduler: str | None = None,
) -> SectionRun:
    run = SectionRun(section.name, out_dir)
    in_tables = list(dict.fromkeys([*settings.datasets, *datasets]))
    check_settings(section, settings, out_dir=out_dir, datasets=datasets, in_tables=in_tables, force=force)

    # with force, the chosen datasets' units that do not match are redone (they are forgotten below)
    store = section.store(out_dir, settings, redo=force)
    todo = []
    for dataset in datasets:
        complete = all(store.done(u) for u in section.units(settings, dataset))
        if complete and notebook_succeeded(out_dir / f"{dataset}.ipynb") and not force:
            run.skipped.append(dataset)
        else:
            todo.append(dataset)

    if todo:
        check_writable(out_dir)
        check_kernel(kernel)
        check_parameters_cell(project_root() / section.notebook)
        if force:
            for dataset in todo:
                forget(section, dataset, out_dir)
        jobs = [
            Job(section.name, dataset, unit, coordinates, priority=unit_priority(dataset, coordinates, settings))
            for dataset in todo
            for unit, coordinates in section.grid(settings, dataset).items()
            if not store.done(unit)
        ]
        if jobs:
            _train_units(
                run,
                section,
                settings,
                jobs,
                out_dir=out_dir,
                workers=min(workers, len(jobs)),
                scheduler=scheduler,
                progress=progress,
            )
        _execute_notebooks(
            run,
            section,
            settings,
            [d for d in todo if d not in run.failed],
            out_dir=out_dir,
            workers=workers,
            progress=progress,
            kernel=kernel,
        )

    run.tables = combine(section, settings, in_tables, out_dir)
    for table, frame in run.tables.items():
        if len(frame):
            write_if_changed(frame, out_dir / f"{table}.parquet")
    run.diverged = diverged_members(run.tables)
    return run


def _train_units(
    run: SectionRun,
    section: Section,
    settings: SectionSettings,
    jobs: list[Job],
    *,
    out_dir: Path,
    workers: int,
    scheduler: str | None,
    progress: bool,
) -> None:
    """Train ``jobs`` as Dask tasks and write each unit's shards as its tables arrive.

    Each shard records its unit and settings (the store checks that the task's tables are
    that unit's, made with these settings), so that a run killed at any moment leaves only
    shards whose settings are known and resumes from them. A failed unit marks its dataset
    failed, with the worker's traceback in ``<dataset>.log``; the dataset's other units still run.
    """
    store = section.store(out_dir, settings)
    resources = resources_for(settings.device)
    datasets = list(dict.fromkeys(job.dataset for job in jobs))
    with open_cluster(scheduler, workers=workers, resources=resources) as cluster:
        user_files = tuple(s.file for s in settings.user_datasets if s.name in datasets)
        cluster.check_workers(datasets, resources, user_files)
        threads = cluster.threads(settings.threads)
        print(
            f"{section.name}: {len(jobs)} units of {', '.join(datasets)} on {cluster.describe()}, "
            f"{threads} torch thread{'s' if threads > 1 else ''} per task; dashboard: {cluster.dashboard}",
            flush=True,
        )
        outcomes = cluster.run(
            jobs,
            settings=settings,
            threads=threads,
            resources=resources,
            progress=progress,
            description=f"{section.name} units",
        )
        try:
            for job, outcome in outcomes:
                _record_outcome(run, store, job, outcome, out_dir=out_dir)
        except SchedulerLost as lost:
            raise _scheduler_lost(run, jobs, lost, out_dir=out_dir) from None


def _record_outcome(run: SectionRun, store, job: Job, outcome, *, out_dir: Path) -> None:
    """Save a finished unit's shards, or log a failed one in ``<dataset>.log``."""
    dataset = job.dataset
    if dataset not in run.executed:
        run.executed.append(dataset)
    if isinstance(outcome, TaskFailure):
        if dataset not in run.errors:
            run.errors[dataset] = f"{outcome.error} (unit {job.unit})"
            run.failed[dataset] = out_dir / f"{dataset}.log"
            writing(out_dir, lambda: run.failed[dataset].write_text(""))
            (out_dir / f"{dataset}.ipynb").unlink(missing_ok=True)  # it would show older results
        with open(run.failed[dataset], "a") as log:
            log.write(f"unit {job.unit} failed:\n{outcome.traceback}\n")
        return
    writing(out_dir, lambda: store.save(job.unit, made_with=outcome.made_with, **outcome.tables))
    run.trained[dataset] = run.trained.get(dataset, 0) + 1
    run.seconds[dataset] = run.seconds.get(dataset, 0.0) + outcome.seconds


def _scheduler_lost(run: SectionRun, jobs: list[Job], lost: SchedulerLost, *, out_dir: Path) -> SchedulerLost:
    """What losing the Dask scheduler mid-run leaves: each dataset with units not finished has
    the cause in ``<dataset>.log`` (the finished units' shards are saved already); the error
    returned says how far the run got, where its units are and that a re-run resumes."""
    left: dict[str, list[str]] = {}
    saved = SECTIONS[run.section].store(out_dir)
    for job in jobs:
        if not saved.complete(job.unit):
            left.setdefault(job.dataset, []).append(job.unit)
    for dataset, units in left.items():
        log = out_dir / f"{dataset}.log"
        text = (
            f"lost the Dask scheduler at {lost.address} while its units ran: {lost.cause}\n"
            f"units not finished (a re-run trains them): {', '.join(units)}\n"
        )
        if run.failed.get(dataset) == log:  # a unit of it failed before: keep that traceback too
            writing(out_dir, lambda: log.open("a").write(text))
        else:
            writing(out_dir, lambda: log.write_text(text))
    finished = len(jobs) - sum(map(len, left.values()))
    logs = " and ".join(f"{dataset}.log" for dataset in left) or "the datasets' logs"
    return SchedulerLost(
        lost.address,
        lost.cause,
        f"lost the Dask scheduler at {lost.address} after {finished} of {len(jobs)} {run.section} units; "
        f"the finished units are kept in {out_dir} (the cause is in {logs} there); run again to resume",
    )


def _execute_notebooks(
    run: SectionRun,
    section: Section,
    settings: SectionSettings,
    datasets: list[str],
    *,
    out_dir: Path,
    workers: int,
    progress: bool,
    kernel: str,
) -> None:
    """One papermill run of the section's notebook per dataset, ``workers`` at once: with
    every unit done, each only reads the shards back and draws its tables and charts."""
    from tqdm.auto import tqdm

    if not datasets:
        return
    workers = min(workers, len(datasets))
    threads = settings.threads or max(1, available_cores() // workers)
    notebook = project_root() / section.notebook
    # Threads only wait here: each notebook runs in its own papermill process and kernel.
    pool = ThreadPoolExecutor(max_workers=workers)
    futures = {
        pool.submit(
            execute_notebook,
            notebook,
            out_dir / f"{d}.ipynb",
            notebook_parameters(section, settings, d, out_dir, threads),
            threads=threads,
            kernel=kernel,
        ): d
        for d in datasets
    }
    bar = tqdm(total=len(futures), desc=f"{section.name} notebooks", unit="nb", disable=not progress)
    try:
        for future in as_completed(futures):
            dataset = futures[future]
            if dataset not in run.executed:
                run.executed.append(dataset)
            try:
                succeeded, seconds = future.result()
            except OSError:  # papermill could not even be started
                succeeded, seconds = False, 0.0
            run.seconds[dataset] = run.seconds.get(dataset, 0.0) + seconds
            if not succeeded:
                run.failed[dataset] = out_dir / f"{dataset}.ipynb"
            bar.set_postfix_str(f"{dataset} {'ok' if succeeded else 'FAILED'}")
            bar.update(1)
    except BaseException:
        stop_running_notebooks()
        raise
    finally:
        # On Ctrl-C, start no queued notebook; the running ones were told to stop.
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()


def _units_kept(sections: Sequence[str], profile_dir: Path) -> int:
    return sum(len(SECTIONS[name].store(profile_dir / name).units()) for name in sections)


def run_profile(
    params_path: str | os.PathLike,
    *,
    out_root: str | os.PathLike = "runs",
    sections: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: bool = True,
    kernel: str = DEFAULT_KERNEL,
    report: bool = True,
    scheduler: str | None = None,
) -> dict[str, SectionRun]:
    """Execute every (section, dataset) notebook of a profile; results under
    ``out_root/<profile>/<section>/`` where ``<profile>`` is the file's stem.

    sections: the sections to run; default: every section the file has (all are checked
        before anything runs).
    datasets, workers: override the file's values (datasets must still be valid names).
        ``workers`` is the size of the LocalCluster that trains the units (and how many
        notebooks run at once afterwards).
    scheduler: the address of an existing Dask scheduler whose workers train the units
        (e.g. ``tcp://10.0.0.5:8786``); default the file's ``scheduler:``, else a LocalCluster.
    force: delete the chosen datasets' results first and redo them.
    Raises ParamsError before anything runs if the combined tables would mix results of
    different settings, or if this machine cannot train the units (``machine.check_machine``:
    a CUDA device it lacks, units far beyond its memory; skipped on a Dask cluster),
    FolderBusy (an OutputError) if another run holds the output folder (``lock.holding``,
    held for the whole run), OutputError if the output folder cannot be written, and
    RunInterrupted (a KeyboardInterrupt) on Ctrl-C, with the number of finished units kept.
    report: stitch each section's executed notebooks into ``out_root/<profile>/report_<section>``
        (.ipynb and offline .html) unless the report there was built from the tables and
        notebooks the section folder holds now (``stitch.report_is_current``).
    A failed notebook does not stop the others; see ``SectionRun.failed``.
    Returns one SectionRun per section, in order; a summary is printed as well.
    """
    params_path = Path(params_path)
    if sections is None:
        sections = profile_sections(params_path)
    settings = load_params(params_path, sections=sections)
    scheduler = scheduler or load_scheduler(params_path)
    # Absolute, because the notebooks run with the project root as working directory.
    profile_dir = Path(out_root).resolve() / params_path.stem
    if workers is not None and not positive_int(workers):
        raise ParamsError(f"workers must be a positive integer, got {workers!r}")
    chosen = {name: choose_datasets(settings[name], datasets, where=str(params_path)) for name in sections}
    for name in sections:  # before any worker starts; a Dask cluster's workers are checked when it opens
        if scheduler is None:
            at_once = workers or settings[name].workers
            check_machine({name: settings[name]}, {name: chosen[name]}, where=str(params_path), at_once=at_once)
        else:
            check_device(settings[name], where=str(params_path), here=False)
    runs = {}
    with holding(profile_dir):  # one run at a time in the folder, from its first read to its last write
        for name in sections:
            try:
                run = _run_section(
                    SECTIONS[name],
                    settings[name],
                    out_dir=profile_dir / name,
                    datasets=chosen[name],
                    workers=workers or settings[name].workers,
                    force=force,
                    progress=progress,
                    kernel=kernel,
                    scheduler=scheduler,
                )
            except KeyboardInterrupt:
                raise RunInterrupted(_units_kept(sections, profile_dir)) from None
            if report:
                _build_section_report(run, profile=params_path.stem, kernel=kernel)
            print(format_summary(run), flush=True)
            runs[name] = run
    return runs


def _build_section_report(run: SectionRun, *, profile: str, kernel: str) -> None:
    """Build the section's report unless it is current: built from the tables and notebooks
    the folder holds now, its notebook and HTML whole (``report_is_current``). A failure is
    recorded, not raised, because the results it would show are already safe on disk; the
    out-of-date HTML is removed then, so that no stale page passes for the report."""
    html = report_path(run.out_dir, section=run.section).with_suffix(".html")
    if report_is_current(run.out_dir, section=run.section):
        run.report = html
        return
    if not dataset_notebooks(run.out_dir):  # nothing to build a report from
        return
    try:
        run.report = build_report(run.out_dir, section=run.section, profile=profile, kernel=kernel)
    except Exception as exc:  # noqa: BLE001 - any failure here must not hide the results
        run.report_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        try:
            html.unlink(missing_ok=True)
        except OSError:
            pass


def format_summary(run: SectionRun) -> str:
    """A few lines for the terminal: what ran, what failed and where to look, the tables."""
    counts = f"{len(run.executed)} executed, {len(run.skipped)} skipped, {len(run.failed)} failed"
    lines = [f"{run.section}: {counts}  ({run.out_dir})"]
    for dataset in run.executed:
        status = "FAILED" if dataset in run.failed else "ok"
        trained = run.trained.get(dataset, 0)
        units = f"  ({trained} unit{'s' if trained != 1 else ''} trained)" if trained else ""
        lines.append(f"  {dataset:<11} {status:<7} {run.seconds.get(dataset, 0.0):7.1f} s{units}")
    if run.skipped:
        lines.append(f"  skipped (already complete): {', '.join(run.skipped)}")
    for dataset, where in run.failed.items():
        if dataset in run.errors:
            lines.append(f"  {dataset} failed with {run.errors[dataset]}")
            lines.append(f"    traceback: {where}  (its notebook was not run)")
        else:
            lines.append(f"  {dataset} failed with {notebook_error(where)}")
            lines.append(f"    traceback: {where}  (papermill's log: {where.with_suffix('.log')})")
    written = [f"{name} {len(frame)} rows" for name, frame in run.tables.items() if len(frame)]
    if written:
        lines.append(f"  tables: {', '.join(written)} -> {run.out_dir}/<table>.parquet and .csv")
    else:
        lines.append("  no finished results yet")
    if run.report is not None:
        lines.append(f"  report: {run.report} (and .ipynb beside it)")
    if run.report_error is not None:
        lines.append(f"  report NOT built: {run.report_error}")
    if len(run.diverged):
        lines.append(f"  WARNING: {describe_diverged(run.diverged)}")
    ensembles = run.tables.get("ensembles")
    if ensembles is not None and len(ensembles):
        table = improvement_table(ensembles)
        lines.append(f"  {table.attrs['title']}:")
        lines += ["    " + line for line in table.round(2).to_string().splitlines()]
    mixtures = run.tables.get("mixtures")
    if mixtures is not None and len(mixtures):
        table = mixture_improvement_table(mixtures)
        lines.append(f"  {table.attrs['title']}:")
        lines += ["    " + line for line in table.round(2).to_string().splitlines()]
    return "\n".join(lines)
