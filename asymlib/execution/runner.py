"""The main job: run a profile of the paper's grid as one executed notebook per dataset.

A profile is a YAML file, ``params/<profile>.yaml``, with one section per experiment family
(``SECTIONS``: ``deep_ensembles``, ``mixtures``); by default every section present in the
file runs, in that order. For every dataset of a section the runner executes the section's
notebook with papermill in its own subprocess, several at once, and then combines the
per-unit Parquet shards into one tidy table per kind of result::

    runs/<profile>/<section>/
        <dataset>.ipynb        executed notebook (with the traceback if it failed)
        <dataset>.log          papermill's own output
        shards/                one pair of Parquet files per finished work unit
        settings.yaml          the settings each dataset's results were made with
        models.parquet, ensembles.parquet (+ .csv)   deep_ensembles' combined tables
        mixtures.parquet, usage.parquet (+ .csv)     mixtures' combined tables

Re-running is cheap: a dataset whose work units are all done and whose notebook ran to
the end is skipped without starting papermill; a partly done one re-executes its
notebook, which skips the finished units itself.

    python -m asymlib run params/smoke.yaml      # or: asymlib run params/smoke.yaml
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import yaml

from ..core.data import RAW_FILES, DataFileError, default_data_dir
from ..core.project import notebook_error, notebook_succeeded, project_root
from ..reports.stitch import build_report, dataset_notebooks, report_path
from ..reports.tables import improvement_table, mixture_improvement_table
from .notebooks import (
    DEFAULT_KERNEL,
    check_kernel,
    execute_notebook,
    notebook_parameters,
)
from .params import (
    SECTIONS,
    ParamsError,
    Section,
    check_datasets,
    load_params,
    positive_int,
    profile_sections,
)


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- running


@dataclass
class SectionRun:
    """What ``run_profile`` did in one section.

    executed: datasets whose notebook papermill ran (successfully or not).
    skipped: datasets already complete, left untouched.
    failed: dataset -> its executed notebook, which shows the traceback.
    tables: the combined tables (e.g. models, ensembles) over the section's datasets.
    report: the section's exported HTML report, when one was built.
    report_error: why building the report failed (the results are still complete).
    """

    section: str
    out_dir: Path
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    report: Path | None = None
    report_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed


def check_raw_files(datasets: Iterable[str]) -> None:
    """Fail before starting any notebook if raw files are missing from the data folder."""
    data_dir = default_data_dir()
    missing = [f"{d}: {rel}" for d in datasets for rel in RAW_FILES[d] if not (data_dir / rel).is_file()]
    if missing:
        raise DataFileError(
            f"raw files missing from {data_dir} ({'; '.join(missing)}). Put them there with "
            "`asymlib fetch --from /path/to/mirror` (or `asymlib fetch` to download the public ones), "
            "or point ASYMLIB_DATA at the folder holding them.",
            path=data_dir,
        )


def _forget(section: Section, settings: dict, dataset: str, out_dir: Path) -> None:
    """Delete a dataset's shards and executed notebook, so that it is redone from scratch."""
    store = section.store(out_dir)
    for unit in section.units(settings, dataset):
        store.delete(unit, section.tables)
    (out_dir / f"{dataset}.ipynb").unlink(missing_ok=True)


def _record_settings(
    section: Section, settings: dict, datasets: list[str], out_dir: Path, *, force: bool
) -> None:
    """Refuse to mix results made with different settings; remember the ones used now.

    ``settings.yaml`` maps each dataset to the settings its shards were made with. Growing
    or shrinking the grid (``section.resume_keys``) is fine; anything else needs ``force``.
    """
    path = out_dir / "settings.yaml"
    recorded = yaml.safe_load(path.read_text()) if path.exists() else {}
    compared = [k for k in section.keys if k not in section.resume_keys and k != "device"]
    now = {k: settings[k] for k in compared}
    for dataset in datasets:
        before = recorded.get(dataset)
        if before is not None and not force:
            changed = [f"{k}: {before.get(k)!r} -> {now[k]!r}" for k in compared if before.get(k) != now[k]]
            if changed:
                raise ParamsError(
                    f"{out_dir} holds {dataset} results made with other settings "
                    f"({'; '.join(changed)}); re-run with force=True (--force) to redo them, "
                    "or choose another output folder"
                )
        recorded[dataset] = now
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recorded, sort_keys=False))


def combine(
    section: Section, settings: dict, datasets: Iterable[str], out_dir: Path
) -> dict[str, pd.DataFrame]:
    """The section's tables over the finished units of ``datasets`` (stale shards left out)."""
    store = section.store(out_dir)
    units = [u for d in datasets for u in section.units(settings, d)]
    return section.finish({table: store.read(units, table) for table in section.tables})


def _run_section(
    section: Section,
    settings: dict,
    *,
    out_dir: Path,
    datasets: list[str],
    workers: int,
    force: bool,
    progress: bool,
    kernel: str,
) -> SectionRun:
    from tqdm.auto import tqdm

    run = SectionRun(section.name, out_dir)
    if force:
        for dataset in datasets:
            _forget(section, settings, dataset, out_dir)
    _record_settings(section, settings, datasets, out_dir, force=force)

    store = section.store(out_dir)
    todo = []
    for dataset in datasets:
        complete = all(store.done(u) for u in section.units(settings, dataset))
        if complete and notebook_succeeded(out_dir / f"{dataset}.ipynb"):
            run.skipped.append(dataset)
        else:
            todo.append(dataset)

    if todo:
        check_raw_files(todo)
        check_kernel(kernel)
        workers = min(workers, len(todo))
        threads = settings["threads"] or max(1, available_cores() // workers)
        notebook = project_root() / section.notebook
        # Threads only wait here: each notebook runs in its own papermill process and kernel.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {
                pool.submit(
                    execute_notebook, notebook, out_dir / f"{d}.ipynb",
                    notebook_parameters(section, settings, d, out_dir, threads),
                    threads=threads, kernel=kernel,
                ): d
                for d in todo
            }
            bar = tqdm(total=len(futures), desc=f"{section.name} notebooks", unit="nb", disable=not progress)
            try:
                for future in as_completed(futures):
                    dataset = futures[future]
                    run.executed.append(dataset)
                    try:
                        succeeded, run.seconds[dataset] = future.result()
                    except OSError:  # papermill could not even be started
                        succeeded, run.seconds[dataset] = False, 0.0
                    if not succeeded:
                        run.failed[dataset] = out_dir / f"{dataset}.ipynb"
                    bar.set_postfix_str(f"{dataset} {'ok' if succeeded else 'FAILED'}")
                    bar.update(1)
            except KeyboardInterrupt:
                # Ctrl-C reaches the running papermill processes too; start no queued ones.
                pool.shutdown(cancel_futures=True)
                raise
            finally:
                bar.close()

    in_tables = list(dict.fromkeys(settings["datasets"] + datasets))
    run.tables = combine(section, settings, in_tables, out_dir)
    for table, frame in run.tables.items():
        if not len(frame):
            continue
        frame.to_parquet(out_dir / f"{table}.parquet", index=False)
        frame.to_csv(out_dir / f"{table}.csv", index=False)
    return run


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
) -> dict[str, SectionRun]:
    """Execute every (section, dataset) notebook of a profile; results under
    ``out_root/<profile>/<section>/`` where ``<profile>`` is the file's stem.

    sections: the sections to run; default: every section the file has (all are checked
        before anything runs).
    datasets, workers: override the file's values (datasets must still be valid names).
    force: delete the chosen datasets' results first and redo them.
    report: stitch each section's executed notebooks into ``out_root/<profile>/report_<section>``
        (.ipynb and offline .html) whenever something new ran or the report is missing.
    A failed notebook does not stop the others; see ``SectionRun.failed``.
    Returns one SectionRun per section, in order; a summary is printed as well.
    """
    params_path = Path(params_path)
    if sections is None:
        sections = profile_sections(params_path)
    settings = load_params(params_path, sections=sections)
    # Absolute, because the notebooks run with the project root as working directory.
    profile_dir = Path(out_root).resolve() / params_path.stem
    if workers is not None and not positive_int(workers):
        raise ParamsError(f"workers must be a positive integer, got {workers!r}")
    runs = {}
    for name in sections:
        chosen = check_datasets(datasets, "datasets") if datasets else settings[name]["datasets"]
        run = _run_section(
            SECTIONS[name], settings[name], out_dir=profile_dir / name, datasets=list(chosen),
            workers=workers or settings[name]["workers"], force=force, progress=progress,
            kernel=kernel,
        )
        if report:
            _build_section_report(run, profile=params_path.stem, kernel=kernel)
        print(format_summary(run), flush=True)
        runs[name] = run
    return runs


def _build_section_report(run: SectionRun, *, profile: str, kernel: str) -> None:
    """Build the section's report if it is out of date; a failure is recorded, not raised,
    because the results it would show are already safe on disk."""
    html = report_path(run.out_dir, section=run.section).with_suffix(".html")
    if not dataset_notebooks(run.out_dir) or (html.exists() and not run.executed):
        run.report = html if html.exists() else None
        return
    try:
        run.report = build_report(run.out_dir, section=run.section, profile=profile, kernel=kernel)
    except Exception as exc:  # noqa: BLE001 - any failure here must not hide the results
        run.report_error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def format_summary(run: SectionRun) -> str:
    """A few lines for the terminal: what ran, what failed and where to look, the tables."""
    counts = f"{len(run.executed)} executed, {len(run.skipped)} skipped, {len(run.failed)} failed"
    lines = [f"{run.section}: {counts}  ({run.out_dir})"]
    for dataset in run.executed:
        status = "FAILED" if dataset in run.failed else "ok"
        lines.append(f"  {dataset:<11} {status:<7} {run.seconds[dataset]:7.1f} s")
    if run.skipped:
        lines.append(f"  skipped (already complete): {', '.join(run.skipped)}")
    for dataset, notebook in run.failed.items():
        lines.append(f"  {dataset} failed with {notebook_error(notebook)}")
        lines.append(f"    traceback: {notebook}  (papermill's log: {notebook.with_suffix('.log')})")
    written = [f"{name} {len(frame)} rows" for name, frame in run.tables.items() if len(frame)]
    if written:
        lines.append(f"  tables: {', '.join(written)} -> {run.out_dir}/<table>.parquet and .csv")
    else:
        lines.append("  no finished results yet")
    if run.report is not None:
        lines.append(f"  report: {run.report} (and .ipynb beside it)")
    if run.report_error is not None:
        lines.append(f"  report NOT built: {run.report_error}")
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

