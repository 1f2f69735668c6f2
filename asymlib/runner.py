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

    python -m asymlib.runner params/smoke.yaml      # or: asymlib run params/smoke.yaml
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import yaml

from .data import DATASETS, RAW_FILES, DataFileError, default_data_dir
from .experiments import ShardStore, deep_ensemble_unit
from .mixture_experiments import MIXTURE_TABLES, finish_mixture_tables, mixture_unit
from .mixtures import GATINGS, MIXTURE_KINDS

#: The kernel papermill starts. Jupyter always knows "python3" where ipykernel is installed,
#: and launches it with the interpreter that runs papermill (here ``sys.executable``), so the
#: notebooks see the same environment as the runner without any ``ipykernel install``.
DEFAULT_KERNEL = "python3"


def project_root() -> Path:
    """The checkout holding this package (the folder with pyproject.toml), else the cwd."""
    checkout = Path(__file__).resolve().parents[1]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def project_path(path: str | os.PathLike) -> Path:
    """``path`` itself if absolute, else relative to the project root.

    Notebooks use it for their output folder: nbval starts a notebook's kernel in the
    notebook's own folder, papermill in the caller's; both must write under ``<repo>/runs``.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


# --------------------------------------------------------------------------- parameters


class ParamsError(ValueError):
    """A profile file is missing a key, has an unknown one, or a value of the wrong kind."""


@dataclass(frozen=True)
class Key:
    """One setting of a section: how to check its value, and what a good value looks like."""

    check: Callable[[Any], bool]
    expected: str
    required: bool = True
    default: Any = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _optional_positive_int(value: Any) -> bool:
    return value is None or _positive_int(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and len(value) > 0 and all(check(v) for v in value)


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


#: Settings every section has: which datasets, and how to share the machine.
RUNNER_KEYS: dict[str, Key] = {
    "datasets": Key(
        _list_of(lambda v: isinstance(v, str)),
        f"a non-empty list of dataset names out of {', '.join(DATASETS)}",
    ),
    "workers": Key(_positive_int, "a positive integer (notebooks executed at once)"),
    "threads": Key(_optional_positive_int, "a positive integer or null (null: cores // workers)"),
}

DEEP_ENSEMBLE_KEYS: dict[str, Key] = {
    "hidden_sizes": Key(_list_of(_positive_int), "a non-empty list of positive integers (hidden widths)"),
    "members": Key(_positive_int, "a positive integer (members trained per type)"),
    "ensemble_sizes": Key(
        _list_of(_positive_int), "a non-empty list of positive integers, none above members"
    ),
    "repeats": Key(_positive_int, "a positive integer (independent repeats of the whole grid)"),
    "seed": Key(lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "max_epochs": Key(_positive_int, "a positive integer"),
    "patience": Key(_positive_int, "a positive integer (epochs without validation improvement)"),
    "max_rows": Key(_optional_positive_int, "a positive integer or null (null: the full dataset)"),
    "val_fraction": Key(_fraction, "a number strictly between 0 and 1"),
    "device": Key(
        lambda v: isinstance(v, str) and v != "", "a torch device such as cpu or cuda",
        required=False, default="cpu",
    ),
}


MIXTURE_KEYS: dict[str, Key] = {
    "gatings": Key(_list_of(lambda v: v in GATINGS), f"a non-empty list out of {', '.join(GATINGS)}"),
    "kinds": Key(_list_of(lambda v: v in MIXTURE_KINDS), f"a non-empty list out of {', '.join(MIXTURE_KINDS)}"),
    "experts": Key(_list_of(_positive_int), "a non-empty list of positive integers (experts per mixture)"),
    "hidden": Key(_positive_int, "a positive integer (every expert's hidden width)"),
    "repeats": Key(_positive_int, "a positive integer (mixtures per model, trained together)"),
    # the same meaning as in deep_ensembles
    **{k: DEEP_ENSEMBLE_KEYS[k] for k in ("seed", "max_epochs", "patience", "max_rows", "val_fraction", "device")},
}


def _check_deep_ensembles(section: dict) -> list[tuple[str, str]]:
    """Checks across keys: (key, problem) pairs."""
    largest, members = max(section["ensemble_sizes"]), section["members"]
    if largest > members:
        return [("ensemble_sizes", f"has {largest}, more than members = {members}")]
    return []


def _deep_ensemble_units(section: dict, dataset: str) -> list[str]:
    return [
        deep_ensemble_unit(dataset, hidden, repeat)
        for hidden in section["hidden_sizes"]
        for repeat in range(section["repeats"])
    ]


def _mixture_units(section: dict, dataset: str) -> list[str]:
    return [
        mixture_unit(dataset, gating, kind, experts)
        for experts in sorted(section["experts"])
        for gating in section["gatings"]
        for kind in section["kinds"]
    ]


@dataclass(frozen=True)
class Section:
    """An experiment family: its notebook, its settings and its work units.

    keys: the section's own settings; each is passed to the notebook as a parameter of the
        same name (besides ``dataset``, ``out_dir``, ``threads``, ``progress``).
    units: the work-unit names of one dataset, as the notebook's ShardStore names them.
    tables: the result tables each unit writes as shards; the last marks a unit as done.
    resume_keys: keys whose change may only add or drop units (the grid's size); a change of
        any other key makes the stored results incomparable to new ones.
    """

    name: str
    notebook: str
    keys: dict[str, Key]
    units: Callable[[dict, str], list[str]]
    tables: tuple[str, ...]
    check: Callable[[dict], list[tuple[str, str]]] = lambda section: []
    resume_keys: tuple[str, ...] = ()
    finish: Callable[[dict[str, pd.DataFrame]], dict[str, pd.DataFrame]] = lambda tables: tables

    def store(self, out_dir: Path) -> ShardStore:
        return ShardStore(out_dir, marker=self.tables[-1])


SECTIONS: dict[str, Section] = {
    "deep_ensembles": Section(
        name="deep_ensembles",
        notebook="notebooks/deep_ensembles.ipynb",
        keys=DEEP_ENSEMBLE_KEYS,
        units=_deep_ensemble_units,
        tables=("models", "ensembles"),
        check=_check_deep_ensembles,
        resume_keys=("hidden_sizes", "repeats"),
    ),
    "mixtures": Section(
        name="mixtures",
        notebook="notebooks/mixtures.ipynb",
        keys=MIXTURE_KEYS,
        units=_mixture_units,
        tables=MIXTURE_TABLES,
        # repeats are the members of a unit, so more repeats means redoing every unit
        resume_keys=("gatings", "kinds", "experts"),
        finish=finish_mixture_tables,
    ),
}


def _check_datasets(names: Iterable[str], where: str) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ParamsError(
            f"{where}: unknown dataset{plural} {', '.join(map(repr, unknown))}; valid: {', '.join(DATASETS)}"
        )
    return names


def _read_profile(path: Path, sections: Sequence[str]) -> dict:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such parameter file") from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        got = type(document).__name__
        raise ParamsError(f"{path}: expected a mapping with the sections {', '.join(sections)}, got {got}")
    return document


def profile_sections(path: str | os.PathLike) -> list[str]:
    """The sections of ``SECTIONS`` that a profile file has, in ``SECTIONS`` order."""
    path = Path(path)
    document = _read_profile(path, list(SECTIONS))
    present = [name for name in SECTIONS if name in document]
    if not present:
        raise ParamsError(f"{path}: has none of the sections {', '.join(SECTIONS)}")
    return present


def load_params(path: str | os.PathLike, *, sections: Sequence[str] = ("deep_ensembles",)) -> dict[str, dict]:
    """Read and check a profile file; return ``{section: settings}`` for ``sections``.

    Optional keys get their defaults. Raises ParamsError naming the file, the key and what
    was expected; sections not asked for are not checked (they may belong to a newer
    version of the code).
    """
    path = Path(path)
    document = _read_profile(path, sections)

    checked = {}
    for name in sections:
        if name not in SECTIONS:
            raise ParamsError(f"unknown section {name!r}; known: {', '.join(SECTIONS)}")
        section = SECTIONS[name]
        raw = document.get(name)
        if not isinstance(raw, dict):
            problem = "is missing" if raw is None else f"must be a mapping, got {type(raw).__name__}"
            raise ParamsError(f"{path}: section {name!r} {problem}")
        keys = {**RUNNER_KEYS, **section.keys}
        unknown = sorted(set(raw) - set(keys))
        if unknown:
            raise ParamsError(
                f"{path}: {name}.{unknown[0]} is not a known key; {name} takes {', '.join(keys)}"
            )
        values = {}
        for key, spec in keys.items():
            if key not in raw:
                if spec.required:
                    raise ParamsError(f"{path}: {name}.{key} is missing; expected {spec.expected}")
                values[key] = spec.default
            elif not spec.check(raw[key]):
                raise ParamsError(f"{path}: {name}.{key} must be {spec.expected}, got {raw[key]!r}")
            else:
                values[key] = raw[key]
        _check_datasets(values["datasets"], f"{path}: {name}.datasets")
        for key, problem in section.check(values):
            raise ParamsError(f"{path}: {name}.{key} {problem}")
        checked[name] = values
    return checked


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


def notebook_succeeded(path: Path) -> bool:
    """True if papermill ran ``path`` to the end without an exception."""
    try:
        meta = json.loads(path.read_text())["metadata"].get("papermill", {})
    except (FileNotFoundError, ValueError, KeyError):
        return False
    return meta.get("end_time") is not None and meta.get("exception") is not True


def notebook_error(path: Path) -> str:
    """The exception an executed notebook stopped with, as "Name: message" (one line)."""
    try:
        cells = json.loads(path.read_text())["cells"]
    except (FileNotFoundError, ValueError, KeyError):
        return "no executed notebook (papermill did not start the kernel; see the log)"
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = f"{output['ename']}: {output['evalue']}".splitlines()[0]
                return message if len(message) <= 300 else message[:297] + "..."
    return "no error in the notebook (the kernel may have died; see the log)"


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


class KernelError(RuntimeError):
    """No suitable Jupyter kernel to execute the notebooks with."""


def check_kernel(kernel: str) -> None:
    """Fail early (not once per notebook) if papermill could not start ``kernel`` here."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise KernelError(
            f"no Jupyter kernel named {kernel!r}; install one for this interpreter with "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel}`"
        ) from None
    program = spec.argv[0]
    # jupyter_client replaces a bare "python" with the launching interpreter; an absolute
    # path elsewhere (e.g. a user-wide kernel) would run the notebooks in another Python.
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if program not in bare and Path(program).resolve() != Path(sys.executable).resolve():
        raise KernelError(
            f"the Jupyter kernel {kernel!r} runs {program}, not this interpreter ({sys.executable}); "
            f"install a kernel for it (`{sys.executable} -m ipykernel install --sys-prefix --name asymlib`) "
            "and pass kernel='asymlib' (--kernel asymlib)"
        )


def _notebook_parameters(section: Section, settings: dict, dataset: str, out_dir: Path, threads: int) -> dict:
    own = {key: settings[key] for key in section.keys}
    return {"dataset": dataset, **own, "out_dir": str(out_dir), "threads": threads, "progress": False}


def _execute(
    notebook: Path, output: Path, parameters: dict, *, threads: int, kernel: str
) -> tuple[bool, float]:
    """Run one notebook with papermill in a subprocess; its output goes to ``<output>.log``.

    Returns whether it succeeded and the seconds it took.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [
        sys.executable, "-m", "papermill", str(notebook), str(output),
        "--parameters_yaml", yaml.safe_dump(parameters), "--kernel", kernel,
        "--no-progress-bar", "--cwd", str(project_root()),
    ]
    started = time.perf_counter()
    with open(output.with_suffix(".log"), "w") as log:
        finished = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    return finished.returncode == 0, time.perf_counter() - started


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
                    _execute, notebook, out_dir / f"{d}.ipynb",
                    _notebook_parameters(section, settings, d, out_dir, threads),
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
    if workers is not None and not _positive_int(workers):
        raise ParamsError(f"workers must be a positive integer, got {workers!r}")
    runs = {}
    for name in sections:
        chosen = _check_datasets(datasets, "datasets") if datasets else settings[name]["datasets"]
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
    from .stitch import build_report, dataset_notebooks, report_path

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
    from .report import improvement_table, mixture_improvement_table

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


if __name__ == "__main__":
    from .cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
