"""One report notebook per section and profile: a template, parameterised, with every
dataset's executed notebook after it; executed and exported to HTML.

The runner leaves one executed notebook per dataset in ``runs/<profile>/<section>/``. The
report puts them under a summary::

    runs/<profile>/report_<section>.ipynb     the report (opens in JupyterLab)
    runs/<profile>/report_<section>.html      its HTML copy: charts render with no network

The summary is the section's template notebook, ``notebooks/report_<section>.ipynb``
(markdown and code cells that import asymlib, load the section's combined tables and draw
the paper's figures next to the paper's points, sliders and the WMLP - MLP statistics;
its helpers are in ``summaries``). papermill writes the section folder and the profile
into it, after its ``parameters`` cell. Then each dataset's executed notebook, under a
heading, as one code cell that shows it again from its file (``replay.show_executed``): its
parameters, markdown, code and stored outputs. Executing the report in any way
(JupyterLab's Run All, nbclient, ``pytest --nbval-lax``) redraws the summary from the tables
and the datasets from their notebooks; nothing is trained again and no stored result is
lost.

    from asymlib.reports.stitch import build_report
    build_report("runs/quick/deep_ensembles")      # -> runs/quick/report_deep_ensembles.html

The HTML copy renders with no network (``html.export_html``).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..core.data import DATASETS
from ..core.project import notebook_error, notebook_succeeded
from ..sections.units import replace_atomically
from .html import BUILT_FROM, ReportError, export_html, html_built_from, trust_notebook
from .replay import show_executed
from .summaries import TEMPLATES as TEMPLATES  # where the report templates are
from .summaries import dataset_notebooks, displayed_path
from .summaries import locate_section as locate_section  # where reports made before the templates import it
from .tables import describe_diverged, diverged_members, load_mixture_results, load_results, table_sources


def report_path(section_dir: str | os.PathLike, *, section: str) -> Path:
    """Where ``stitch_section`` writes the report of a section folder by default."""
    return Path(section_dir).resolve().parent / f"report_{section}.ipynb"


def template_path(section: str) -> Path:
    """The template notebook of ``section``'s report summary (it may not exist)."""
    return TEMPLATES / f"report_{section}.ipynb"


def summary_notebook(section_dir: Path, *, section: str, profile: str) -> nbformat.NotebookNode:
    """The section's template (``template_path``) with papermill's cell of parameters after
    its ``parameters`` cell: the section folder (relative to the repository root if inside
    it) and the profile. A section without a template gets a title cell only."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    template = template_path(section)
    if not template.is_file():
        title = new_markdown_cell(
            f"# {section_dir.name}: profile `{profile}`\n\n"
            f"No summary figures for this section yet (no {displayed_path(template)}). "
            f"Results in `{displayed_path(section_dir)}`."
        )
        return new_notebook(cells=[title])
    notebook = load_notebook_node(str(template))
    notebook.metadata.papermill["input_path"] = displayed_path(template)
    parameters = {"section_dir": displayed_path(section_dir), "profile": profile}
    return parameterize_notebook(notebook, parameters, kernel_name="python3", language="python")


# --------------------------------------------------------------------------- what a report shows


def report_fingerprint(section_dir: str | os.PathLike, *, section: str) -> str:
    """A SHA-256 of everything a section's report is built from: the contents of the files
    its tables are read from (``tables.table_sources``: the combined tables, or the shards),
    of each dataset's executed notebook and of the section's template. Any change of a
    result, a dataset added or dropped, or a notebook run again changes it; a file written
    again with the same contents does not."""
    section_dir = Path(section_dir).resolve()
    files = {f"template:{section}": template_path(section)}
    files.update({str(path.relative_to(section_dir)): path for path in table_sources(section_dir, section)})
    files.update({path.name: path for path in dataset_notebooks(section_dir).values()})
    digest = hashlib.sha256()
    for name, path in files.items():
        try:
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        except FileNotFoundError:
            content = None
        digest.update(json.dumps([name, content]).encode())
    return digest.hexdigest()


def report_is_current(section_dir: str | os.PathLike, *, section: str, output: str | os.PathLike | None = None) -> bool:
    """Whether the section's report (notebook ``output``, default ``report_path``, and its
    HTML beside it) was built from what the section folder holds now (``report_fingerprint``,
    recorded in both), and its HTML is whole. A missing, unreadable or truncated notebook or
    page, or one from before reports recorded what they were built from, is not current."""
    notebook = Path(output) if output is not None else report_path(section_dir, section=section)
    try:
        recorded = nbformat.read(notebook, as_version=4).metadata.get(BUILT_FROM, {}).get("built_from")
    except (OSError, ValueError, KeyError, AttributeError):  # missing, or not (all) a notebook
        return False
    now = report_fingerprint(section_dir, section=section)
    return recorded == now and html_built_from(notebook.with_suffix(".html")) == now


# --------------------------------------------------------------------------- stitching


def call_source(function: Callable, *args, **kwargs) -> str:
    """The source of a code cell that imports ``function`` (from its module) and calls it
    with these arguments, written as Python literals: the cell is made from the function
    itself, so renaming or moving it cannot leave a stale string behind."""
    arguments = [repr(value) for value in args] + [f"{name}={value!r}" for name, value in kwargs.items()]
    name = function.__name__
    return f"from {function.__module__} import {name}\n\n{name}({', '.join(arguments)})"


def _dataset_cells(dataset: str, notebook_path: Path, *, section: str) -> list:
    """A heading and the cell that shows the dataset's executed notebook again."""
    run = nbformat.read(notebook_path, as_version=4).metadata.get("papermill", {})
    heading = [
        f"## {dataset}\n",
        f"The executed notebook `{notebook_path.name}` ({displayed_path(notebook_path)}), as it ran"
        + (f", {run['duration']:.0f} s" if run.get("duration") else "")
        + ". The cell below shows its parameters, code and outputs from that file: running it"
        " reads the file again and trains nothing.",
    ]
    if not notebook_succeeded(notebook_path):
        heading.append(f"\n\n**This notebook did not finish:** {notebook_error(notebook_path)}")
    show = new_code_cell(call_source(show_executed, displayed_path(notebook_path), section=section))
    # Cell ids are unique within a notebook; the dataset names are.
    show.id = f"{dataset}-executed"
    return [new_markdown_cell("\n".join(heading)), show]


def _diverged_warning(section_dir: Path, section: str) -> list:
    """A warning cell for the top of the report when any member or mixture diverged."""
    loaders = {
        "deep_ensembles": lambda: load_results(section_dir),
        "mixtures": lambda: load_mixture_results(section_dir),
    }
    if section not in loaders:
        return []
    try:
        diverged = diverged_members(loaders[section]()._asdict())
    except FileNotFoundError:  # no results yet: nothing to warn about
        return []
    if not len(diverged):
        return []
    return [
        new_markdown_cell(
            f"> **Warning: some results are not results.** {describe_diverged(diverged)}. "
            "Their rows in the tables below say `diverged = True` with the reason; every figure and "
            "summary leaves them out."
        )
    ]


def stitch_section(
    section_dir: str | os.PathLike,
    *,
    section: str = "deep_ensembles",
    profile: str | None = None,
    output: str | os.PathLike | None = None,
) -> Path:
    """Write the (not yet executed) report notebook of a section folder; returns its path.

    The section's template with its parameters (``summary_notebook``), a warning under its
    title if any member or mixture diverged, then one heading and one cell per dataset.
    section_dir: ``runs/<profile>/<section>``, holding ``<dataset>.ipynb`` per dataset and
        the combined tables (or shards).
    profile: shown in the header; default the name of the folder above ``section_dir``.
    output: the notebook to write; default ``runs/<profile>/report_<section>.ipynb``.
    Raises ReportError if the folder holds no executed dataset notebook.
    """
    section_dir = Path(section_dir).resolve()
    profile = profile or section_dir.parent.name
    notebooks = dataset_notebooks(section_dir)
    if not notebooks:
        raise ReportError(f"{section_dir} holds no executed dataset notebook ({', '.join(DATASETS)}.ipynb)")
    report = summary_notebook(section_dir, section=section, profile=profile)
    report.cells[1:1] = _diverged_warning(section_dir, section)
    report.cells.append(new_markdown_cell("# The datasets' notebooks"))
    for dataset, path in notebooks.items():
        report.cells.extend(_dataset_cells(dataset, path, section=section))
    report.metadata.update(
        kernelspec={"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
        title=f"{section.replace('_', ' ')}: {profile}",
    )
    report.metadata.setdefault("language_info", {"name": "python"})
    report.metadata[BUILT_FROM] = {
        "built_from": report_fingerprint(section_dir, section=section),
        "datasets": list(notebooks),
    }
    output = Path(output) if output is not None else report_path(section_dir, section=section)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(report)
    replace_atomically(output, lambda partial: nbformat.write(report, partial))
    return output


def execute_report(path: str | os.PathLike, *, kernel: str = "python3", timeout: int = 600, trust: bool = True) -> Path:
    """Execute the report in place with nbclient, the kernel started in its own folder.

    Widget state is saved with the notebook. trust: sign the executed notebook
    (``html.trust_notebook``), so that JupyterLab runs the scripts of its chart outputs. If
    a cell fails,
    the notebook is still written, with the traceback, and the error raised.
    """
    from nbclient import NotebookClient

    path = Path(path)
    report = nbformat.read(path, as_version=4)
    client = NotebookClient(
        report,
        kernel_name=kernel,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    try:
        client.execute()
    finally:
        replace_atomically(path, lambda partial: nbformat.write(report, partial))
    if trust:
        trust_notebook(path)
    return path


def build_report(
    section_dir: str | os.PathLike,
    *,
    section: str = "deep_ensembles",
    profile: str | None = None,
    output: str | os.PathLike | None = None,
    kernel: str = "python3",
) -> Path:
    """Stitch, execute and export a section's report; returns the HTML path.

    The notebook goes to ``output`` (default ``runs/<profile>/report_<section>.ipynb``),
    the HTML beside it.
    """
    notebook = stitch_section(section_dir, section=section, profile=profile, output=output)
    execute_report(notebook, kernel=kernel)
    return export_html(notebook)
