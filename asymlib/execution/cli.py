"""The ``asymlib`` command: put the raw data in place, run a profile of experiments.

    asymlib fetch --from /path/to/mirror        # raw files into $ASYMLIB_DATA, else <repo>/data
    asymlib run params/quick.yaml --workers 2   # results under runs/quick/
    asymlib run params/paper.yaml --scheduler tcp://10.0.0.5:8786   # on an existing Dask cluster
    asymlib train params/paper.yaml --device cuda --slots 4   # units only: no Dask, notebooks or reports
    asymlib estimate params/paper.yaml --workers 1 16 128   # CPU-hours and wall time, before running
    asymlib figures runs/quick/deep_ensembles   # Figures 1 and 3 as SVG, into runs/quick/figures/
    asymlib figures runs/quick/mixtures         # Figures 2 and 4, likewise

Exit status (the message says which):
    0    success
    1    a unit, a notebook or a report failed (its traceback is in <dataset>.log or the
         executed notebook)
    2    bad input: a parameter file (also a key written twice, a device or units this
         machine cannot train, a row cap that leaves a part of a split nearly empty), missing or
         malformed data, no usable Jupyter kernel, a section notebook without a cell tagged
         `parameters`, settings that would mix with stored results, an output folder that
         cannot be written or that another run holds (one run at a time per folder), no Dask
         scheduler at the given address (or no worker that can run the tasks)
    3    every notebook ran, but some members or mixtures diverged (non-finite loss): they
         are flagged and left out, and the summary names them
    4    (train) --stop-after left units not started; a re-run trains them
    5    (run) the Dask scheduler was lost mid-run (it stopped, or its machine or the network
         went away); finished units are kept, the cause is in <dataset>.log, a re-run resumes
    130  stopped by Ctrl-C (or SIGTERM); finished units are kept, and a re-run resumes
"""

from __future__ import annotations

# Only the standard library at import: `asymlib --help` and `asymlib <command> --help` start
# in a fraction of a second. Each command imports what it uses (torch, pandas, altair, Dask,
# papermill) when it runs; tests/test_cli.py checks that --help imports none of them.
import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    import pandas as pd

#: core.data.DATASETS, params.SECTIONS and notebooks.DEFAULT_KERNEL, written out so that the
#: parser needs none of those modules (each imports torch); tests/test_cli.py keeps them equal.
DATASETS = ("california", "churn", "adult", "mnist", "otto")
SECTIONS = ("deep_ensembles", "mixtures")
DEFAULT_KERNEL = "python3"

_NAMES = ", ".join(DATASETS)

#: The exceptions that mean bad input (exit status 2), by the module that defines them. Each
#: is looked up only if its module has been imported: one never imported raised nothing.
BAD_INPUT_ERRORS = {
    "asymlib.core.data_errors": ("DataFileError", "MalformedDataError"),
    "asymlib.execution.params": ("ParamsError",),
    "asymlib.execution.notebooks": ("KernelError", "NotebookError"),
    "asymlib.execution.records": ("OutputError",),
    "asymlib.execution.cluster": ("ClusterError",),
}


class CommandError(Exception):
    """Bad input that the command line itself finds, such as a folder of the wrong kind
    (exit status 2, one line)."""


def _bad_input_errors() -> tuple[type[BaseException], ...]:
    loaded = [(sys.modules[module], names) for module, names in BAD_INPUT_ERRORS.items() if module in sys.modules]
    return (CommandError, *(getattr(module, name) for module, names in loaded for name in names))


def _scheduler_lost() -> tuple[type[BaseException], ...]:
    """``cluster.SchedulerLost`` (exit status 5) once its module is imported, else nothing."""
    cluster = sys.modules.get("asymlib.execution.cluster")
    return (cluster.SchedulerLost,) if cluster is not None else ()


def package_version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asymlib")
    except PackageNotFoundError:
        from .. import __version__

        return __version__


def _fetch(args: argparse.Namespace) -> int:
    from ..core.data import default_data_dir, fetch_datasets

    paths = fetch_datasets(args.dest, source=args.source, names=args.datasets or DATASETS, overwrite=args.overwrite)
    dest = default_data_dir() if args.dest is None else Path(args.dest).expanduser()
    print(f"{len(paths)} raw files in place under {dest}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from ..reports.tables import describe_diverged
    from .runner import run_profile

    runs = run_profile(
        args.params,
        out_root=args.out,
        sections=args.sections,
        datasets=args.datasets,
        workers=args.workers,
        force=args.force,
        progress=not args.no_progress,
        kernel=args.kernel,
        report=not args.no_report,
        scheduler=args.scheduler,
    )
    failed = [f"{section}/{dataset}" for section, run in runs.items() for dataset in run.failed]
    failed += [f"{section} report" for section, run in runs.items() if run.report_error]
    if failed:
        print(f"FAILED: {', '.join(failed)} (the summary above says where each traceback is)", file=sys.stderr)
        return 1
    diverged = [f"{section}: {describe_diverged(run.diverged)}" for section, run in runs.items() if len(run.diverged)]
    if diverged:
        print("DIVERGED: " + "\nDIVERGED: ".join(diverged), file=sys.stderr)
        return 3
    return 0


def _estimate(args: argparse.Namespace) -> int:
    from .estimate import estimate_from_measured, estimate_profile, format_estimate, format_measured_estimate
    from .params import load_params

    if args.measured:
        print(format_measured_estimate(estimate_from_measured(args.params, args.measured, sections=args.sections)))
        return 0
    estimate = estimate_profile(
        args.params, sections=args.sections, datasets=args.datasets, runs=args.runs, progress=not args.no_progress
    )
    sections = list(estimate.units["section"].unique())
    workers = args.workers or sorted({s["workers"] for s in load_params(args.params, sections=sections).values()})
    print(format_estimate(estimate, workers=workers))
    return 0


#: Shipped profiles that may fill a point of the paper, smallest first (``asymlib compare``).
FILLING_PROFILES = ("verdict", "fidelity", "paper")


def _write_csv(table: "pd.DataFrame", out: Path) -> None:
    from .records import replace_atomically, writing

    writing(out.parent, lambda: out.parent.mkdir(parents=True, exist_ok=True))
    writing(out.parent, lambda: replace_atomically(out, lambda partial: table.to_csv(partial, index=False)))


def _compare(args: argparse.Namespace) -> int:
    from ..core.data import DataFileError
    from ..core.project import project_path
    from ..reports.fidelity import fidelity_counts, paper_comparison, profile_points, read_source
    from .params import load_params, profile_sections
    from .records import replace_atomically, writing

    profiles = {}
    for name in FILLING_PROFILES:
        path = project_path(f"params/{name}.yaml")
        if path.exists():
            profiles[name] = profile_points(load_params(path, sections=profile_sections(path)))
    missing = [d for d in args.runs if not Path(d).is_dir()]
    if missing:
        raise DataFileError(f"no such run folder: {missing[0]} (expected a profile folder such as runs/verdict)")
    sources = [read_source(d) for d in args.runs]
    table = paper_comparison(sources, profiles=profiles)
    _write_csv(table, Path(args.out))
    print(f"{fidelity_counts(table)} -> {args.out}")
    if args.architectures:
        from ..reports.fidelity import architecture_comparison

        both = architecture_comparison(sources)
        _write_csv(both, Path(args.architectures))
        print(f"{len(both)} MoIE points run with both networks (the text's and the release's) -> {args.architectures}")
    if args.figure:
        from ..reports.fidelity import comparison_chart

        figure = Path(args.figure)
        chart = comparison_chart(table)
        writing(figure.parent, lambda: figure.parent.mkdir(parents=True, exist_ok=True))
        writing(figure.parent, lambda: replace_atomically(figure, lambda partial: chart.save(str(partial))))
        print(f"figure -> {figure}")
    return 0


#: The table each section's figures are drawn from (``asymlib figures``).
FIGURE_TABLES = {"deep_ensembles": "ensembles", "mixtures": "mixtures"}
_EXPECTED = (
    "expected a section folder such as runs/verdict/deep_ensembles (Figures 1 and 3) or "
    "runs/verdict/mixtures (Figures 2 and 4), or the profile folder above them"
)


def _holds(folder: Path, section: str) -> bool:
    """Whether ``folder`` holds results of ``section``: its combined table (Parquet or CSV) or shards of it."""
    table = FIGURE_TABLES[section]
    combined = any((folder / f"{table}.{extension}").is_file() for extension in ("parquet", "csv"))
    return combined or any((folder / "shards").glob(f"*-{table}.parquet"))


def figure_sections(folder: str | Path) -> tuple[dict[str, Path], Path]:
    """The section folders whose figures ``folder`` gives (section -> folder) and the run
    folder they belong to, where the figures go by default (its ``figures/``).

    A section folder (``runs/<profile>/deep_ensembles`` or ``.../mixtures``, or a copy of its
    combined tables such as ``results/verdict/deep_ensembles``) gives its own section, and its
    run folder is the one above it; a profile folder gives each of its sections with results.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CommandError(f"no such folder: {folder}; {_EXPECTED}")
    own = {section: folder for section in FIGURE_TABLES if _holds(folder, section)}
    if own:
        return own, folder.resolve().parent
    below = {section: folder / section for section in FIGURE_TABLES if _holds(folder / section, section)}
    if below:
        return below, folder
    raise CommandError(
        f"{folder} holds no deep-ensemble or mixture results (no ensembles or mixtures table or shards); {_EXPECTED}"
    )


def _figure_table(folder: Path, section: str) -> pd.DataFrame:
    """The table ``section``'s figures are drawn from, with the paper's settings only (as in
    the section's report: an ablation's other models are left out)."""
    import pandas as pd

    from ..reports.tables import load_mixture_results, load_results, paper_mixtures, paper_types
    from ..sections.mixtures import add_relative_to_two

    if (folder / "shards").is_dir():
        table = load_results(folder).ensembles if section == "deep_ensembles" else load_mixture_results(folder).mixtures
    else:  # a copy of the combined tables only, such as results/verdict/deep_ensembles
        parquet = folder / f"{FIGURE_TABLES[section]}.parquet"
        table = pd.read_parquet(parquet) if parquet.is_file() else pd.read_csv(parquet.with_suffix(".csv"))
        if section == "mixtures":
            table = add_relative_to_two(table)
    table = paper_types(table) if section == "deep_ensembles" else paper_mixtures(table)
    if not len(table):
        raise CommandError(f"{folder} holds no {section.replace('_', '-')} results with the paper's settings")
    return table


def _shown(path: Path) -> Path:
    """``path`` relative to the working folder if it lies inside it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _figures(args: argparse.Namespace) -> int:
    from ..reports import figures_deep_ensembles, figures_mixtures
    from .records import writing

    sections, run_folder = figure_sections(args.section_dir)
    out = Path(args.out) if args.out is not None else run_folder / "figures"
    save = {"deep_ensembles": figures_deep_ensembles.save_figures, "mixtures": figures_mixtures.save_figures}
    for section, folder in sections.items():
        table, paths = _figure_table(folder, section), []
        writing(out, lambda: paths.extend(save[section](table, out, formats=args.formats)))
        for path in paths:
            print(_shown(path))
    return 0


def _train(args: argparse.Namespace) -> int:
    from . import serial

    return serial.run_from_args(args)


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    from . import serial

    serial.add_arguments(parser)


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser that may add its arguments only when it is used (``add_arguments``:
    when it parses or prints its help), so that building the whole parser imports nothing
    heavy: ``asymlib train``'s arguments come from ``serial``, which imports torch."""

    def __init__(self, *args, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._add_arguments = add_arguments

    def _complete(self) -> None:
        add, self._add_arguments = self._add_arguments, None
        if add is not None:
            add(self)

    def parse_known_args(self, args=None, namespace=None):
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._complete()
        return super().format_usage()

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def _add_fetch(commands) -> None:
    fetch = commands.add_parser(
        "fetch",
        help="put the raw dataset files in place",
        description="Copy the raw files from a local mirror (--from), or download the public ones. "
        "Every file is tried and what could be fetched is kept; then one message lists each file "
        "still missing, with the path to save it at and where to get it (churn and otto need a "
        "Kaggle login; a failed download gives its URL and the error), and the exit status is 2. "
        "Files already present are kept.",
    )
    fetch.add_argument("--from", dest="source", metavar="DIR", help="a folder laid out like the data folder")
    fetch.add_argument("--dest", metavar="DIR", help="where the files go (default: $ASYMLIB_DATA, else <repo>/data)")
    fetch.add_argument("--datasets", nargs="+", choices=DATASETS, metavar="NAME", help=f"only these ({_NAMES})")
    fetch.add_argument("--overwrite", action="store_true", help="replace files that are already there")
    fetch.set_defaults(handler=_fetch)


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run",
        help="execute the notebooks of a parameter profile",
        description="For every section of the file (deep_ensembles, mixtures), train every work unit "
        "as a task on Dask (a LocalCluster of --workers processes, or the cluster of --scheduler), "
        "write each unit's shards into OUT/<profile>/<section>/ as it arrives, then execute one "
        "notebook per dataset with papermill and write the combined tables (Parquet and CSV) there. "
        "Finished units and datasets are skipped; a failed unit or notebook does not stop the others "
        "(exit status 1 at the end). Each worker reads the raw data from its $ASYMLIB_DATA, else "
        "<repo>/data. Losing the Dask scheduler mid-run stops the run with exit status 5: the finished "
        "units are kept, the cause is in <dataset>.log, and running again resumes.",
    )
    run.add_argument("params", metavar="PARAMS.yaml", help="a profile such as params/smoke.yaml")
    run.add_argument("--out", default="runs", metavar="DIR", help="output root (default: runs)")
    run.add_argument(
        "--datasets", nargs="+", metavar="NAME", help=f"only these ({_NAMES}, or a user dataset of the profile)"
    )
    run.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes of the LocalCluster, and notebooks at once (default: the profile's)",
    )
    run.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="train the units on the Dask cluster of this scheduler, e.g. tcp://10.0.0.5:8786 "
        "(default: the profile's scheduler:, else a LocalCluster on this machine)",
    )
    run.add_argument("--force", action="store_true", help="delete these datasets' results first and redo them")
    run.add_argument(
        "--sections",
        nargs="+",
        default=None,
        choices=list(SECTIONS),
        help="sections of the profile to run (default: every section in the file)",
    )
    run.add_argument("--kernel", default=DEFAULT_KERNEL, help=f"Jupyter kernel (default: {DEFAULT_KERNEL})")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--no-report", action="store_true", help="do not build the sections' report notebooks and HTML")
    run.set_defaults(handler=_run)


def _add_train(commands) -> None:
    train = commands.add_parser(
        "train",
        add_arguments=_train_arguments,
        help="train a profile's units in this machine's processes (no Dask, notebooks or reports)",
        description="Train every unfinished work unit of the profile in this machine's own processes and write "
        "its shards where `asymlib run` would, largest units first; `asymlib run` later (on any machine) finds "
        "them done and only executes the notebooks and reports. Needs torch, pandas, pyarrow, scikit-learn and "
        "PyYAML only, e.g. on a GPU machine: asymlib train params/paper.yaml --device cuda --slots 4. "
        "Exit status 4 when --stop-after left units not started (re-run to train them).",
    )
    train.set_defaults(handler=_train)


def _add_estimate(commands) -> None:
    estimate = commands.add_parser(
        "estimate",
        help="time a couple of epochs per unit shape and print what a profile will cost",
        description="Time two epochs (after one of warm-up) of every distinct unit shape of the profile on this machine "
        "(deep ensembles: dataset x hidden x type; mixtures: dataset x experts x kind), on one thread, "
        "multiply by the grid and the typical epochs to early stopping (recorded in finished runs "
        "under --runs, else measured once with the paper's stopping rule), and print CPU-hours per "
        "section and dataset and the wall time for N workers. Trains nothing for real, writes nothing.",
    )
    estimate.add_argument("params", metavar="PARAMS.yaml", help="a profile such as params/paper.yaml")
    estimate.add_argument(
        "--workers",
        type=int,
        nargs="+",
        metavar="N",
        help="worker counts to give the wall time for (default: the profile's)",
    )
    estimate.add_argument(
        "--datasets", nargs="+", metavar="NAME", help=f"only these ({_NAMES}, or a user dataset of the profile)"
    )
    estimate.add_argument("--sections", nargs="+", default=None, choices=list(SECTIONS), help="only these sections")
    estimate.add_argument(
        "--runs", default="runs", metavar="DIR", help="finished runs with recorded epochs (default: runs)"
    )
    estimate.add_argument(
        "--measured",
        metavar="DIR",
        help="instead of timing epochs here: fit a cost model to the units measured in DIR (a profile folder such as "
        "runs/paper written by `asymlib train --device cuda`) and predict the rest of the grid on that device",
    )
    estimate.add_argument("--no-progress", action="store_true", help="no progress bar")
    estimate.set_defaults(handler=_estimate)


def _add_compare(commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="every published point of the paper's Figures 3 and 4 beside finished runs, with a verdict",
        description="Write one row per published point of the paper's Figures 3 and 4 (640): the paper's value, "
        "our mean, standard deviation and repeats from the first of the run folders that has the point, the "
        "difference, and whether it is within repeat noise, outside it, or not run (naming the shipped profile "
        "that would run it). Only runs made with the paper's stopping rule on full data count.",
    )
    compare.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="profile folders such as runs/verdict, preferred first"
    )
    compare.add_argument(
        "--out",
        default="results/paper_comparison.csv",
        metavar="FILE",
        help="where the table goes (default: results/paper_comparison.csv)",
    )
    compare.add_argument(
        "--figure",
        metavar="FILE.svg",
        help="also draw every panel, ours against the paper's, into this SVG (or .png) file",
    )
    compare.add_argument(
        "--architectures",
        metavar="FILE.csv",
        help="also write the MoIE points trained with both networks, the text's and the release's, "
        "side by side (runs of each architecture among RUN_DIR)",
    )
    compare.set_defaults(handler=_compare)


def _add_figures(commands) -> None:
    figures = commands.add_parser(
        "figures",
        help="save the paper's figures of a finished run as image files",
        description="Draw the paper's figures (ours beside the paper's points) from a section folder and save "
        "them as SVG (or PNG) files, without a browser: Figures 1 and 3 (figure1.svg, figure3.svg) from a "
        "deep-ensemble folder, Figures 2 and 4 (figure2.svg, figure4.svg) from a mixture folder; from a "
        "profile folder, those of each of its sections. Only the paper's settings are drawn (as in the "
        "section's report). The files go into the run folder's figures/ (runs/<profile>/figures/ for "
        "runs/<profile>/<section>) unless --out says otherwise.",
    )
    figures.add_argument(
        "section_dir",
        metavar="SECTION_DIR",
        help="e.g. runs/verdict/deep_ensembles, runs/verdict/mixtures, or the profile folder runs/verdict",
    )
    figures.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="where the files go (default: figures/ in the folder above SECTION_DIR, e.g. runs/verdict/figures; "
        "for a profile folder, its figures/)",
    )
    figures.add_argument(
        "--formats", nargs="+", default=["svg"], choices=["svg", "png"], help="file types (default: svg)"
    )
    figures.set_defaults(handler=_figures)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asymlib",
        description="Deep ensembles and mixtures of MLPs and W-Asymmetric MLPs "
        "(a reproduction of Chernov & Novitskij, 2025).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_SubcommandParser)

    _add_fetch(commands)
    _add_run(commands)
    _add_train(commands)
    _add_estimate(commands)
    _add_compare(commands)
    _add_figures(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Signal handlers can only be set in the main thread (not, say, from a notebook's worker).
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if main_thread else None
    try:
        return args.handler(args)
    except Exception as exc:
        if isinstance(exc, _scheduler_lost()):
            print(f"asymlib {args.command}: {exc}", file=sys.stderr)
            return 5
        if not isinstance(exc, _bad_input_errors()):
            raise
        print(f"asymlib {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        kept = getattr(exc, "units_kept", None)
        kept = "" if kept is None else f"; {kept} finished unit{'s' if kept != 1 else ''} kept, re-run to resume"
        print(f"asymlib {args.command}: stopped{kept}", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum, frame) -> None:
    # SIGTERM (a scheduler's or `kill`'s stop) takes the same path as Ctrl-C.
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
