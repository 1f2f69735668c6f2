"""An executed notebook shown again from its file: its cells with the outputs they made.

A report holds each dataset's executed notebook as one code cell that calls
``show_executed``. Running that cell reads the notebook file and displays its markdown, its
code and its stored outputs (tables, charts, printed text) in the cell's output; nothing is
trained or computed again, and nothing in the report's kernel is overwritten. So executing
the report, in any order and as often as a user likes (JupyterLab's Run All, nbclient,
``pytest --nbval-lax``), shows the same results it was built with.

    show_executed("runs/quick/deep_ensembles/california.ipynb", section="deep_ensembles")
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat

from ..core.project import project_path
from .html import CODE_OUTPUT, VEGA_OUTPUT
from .tables import holds_results

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def demote_headings(markdown: str, levels: int = 2) -> str:
    """Headings ``# x`` become ``### x``, so a notebook shown inside another nests under its
    heading; fenced code is left alone."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and re.match(r"#{1,6}\s", line):
            line = "#" * levels + line
        lines.append(line)
    return "\n".join(lines)


def locate_notebook(path: str | os.PathLike, *, section: str) -> Path | None:
    """The executed notebook ``path`` as written in a report, from the folder the report's
    summary reads (``summaries.locate_section``): the report's own section folder, where its
    kernel starts (``./<section>/``, or ``.``), when that holds results; else ``path`` as
    written, relative to the repository root or absolute. So a moved runs folder shows its
    own notebooks, not those of a new run written where it was. None if it is not there."""
    name = Path(path).name
    for own in (Path.cwd() / section, Path.cwd()):
        if holds_results(own, section):
            return own / name if (own / name).is_file() else None
    recorded = project_path(path)
    return recorded if recorded.is_file() else None


def parameters_markdown(notebook: nbformat.NotebookNode) -> str | None:
    """The parameters the notebook ran with, as markdown: papermill's injected cell if it
    has one, else the defaults cell; None without either."""
    for tag in ("injected-parameters", "parameters"):
        for cell in notebook.cells:
            if tag in cell.metadata.get("tags", []):
                source = cell.source.removeprefix("# Parameters\n").strip()
                return f"Parameters of this run:\n\n```python\n{source}\n```"
    return None


def _shown_outputs(outputs: list) -> list[dict]:
    """The outputs worth showing again, as display bundles ({"data", "metadata"}) or
    streams ({"stream", "text"}): not the notebook's own vega scripts (the report has its
    own), nor live widget views, which belonged to a kernel that is gone (their static
    view, when they saved one, stays)."""
    shown = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            shown.append({"stream": output.get("name", "stdout"), "text": output.get("text", "")})
        elif kind in ("display_data", "execute_result"):
            if output.get("metadata", {}).get(VEGA_OUTPUT):
                continue
            data = {key: value for key, value in output.get("data", {}).items() if key != _WIDGET_VIEW}
            if data:
                shown.append({"data": data, "metadata": dict(output.get("metadata", {}))})
        elif kind == "error":
            traceback = _ANSI.sub("", "\n".join(output.get("traceback", [])))
            text = traceback or f"{output.get('ename')}: {output.get('evalue')}"
            shown.append({"data": {"text/plain": text}, "metadata": {}})
    return shown


def show_executed(path: str | os.PathLike, *, section: str = "deep_ensembles") -> None:
    """Display the executed notebook at ``path`` (``locate_notebook``): its parameters, its
    markdown with headings nested two levels down, and each code cell's source followed by
    the outputs stored with it. A missing file is said, not raised."""
    from IPython.display import Markdown, display, publish_display_data

    found = locate_notebook(path, section=section)
    if found is None:
        display(
            Markdown(
                f"**The executed notebook `{path}` is not here** (in the section folder beside this "
                f"report, `./{section}/` or `.`, or where it was): run the profile again, or open this "
                "report beside its runs folder."
            )
        )
        return
    notebook = nbformat.read(found, as_version=4)
    parameters = parameters_markdown(notebook)
    if parameters:
        display(Markdown(parameters))
    for cell in notebook.cells:
        tags = set(cell.metadata.get("tags", []))
        if {"parameters", "injected-parameters"} & tags:
            continue
        if cell.cell_type == "markdown":
            display(Markdown(demote_headings(cell.source)))
        elif cell.cell_type == "code" and cell.source.strip():
            # The HTML copy folds it away like the report's own code (html.CODE_OUTPUT).
            display(Markdown(f"```python\n{cell.source}\n```"), metadata={CODE_OUTPUT: True})
            for shown in _shown_outputs(cell.get("outputs", [])):
                if "stream" in shown:
                    stream = sys.stderr if shown["stream"] == "stderr" else sys.stdout
                    stream.write(shown["text"])
                    stream.flush()
                else:
                    publish_display_data(data=shown["data"], metadata=shown["metadata"])
