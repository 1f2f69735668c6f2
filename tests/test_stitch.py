"""The stitched reports: built from real (smoke-sized) runs of the runner, executed, and
exported to HTML that needs no network.

One run of the runner per section (two datasets, two repeats, ~30 s each) is shared by this
module and ``test_browser.py`` through ``built_report``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
import yaml

from asymlib.core.project import notebook_error
from asymlib.execution.runner import run_profile
from asymlib.reports import html as offline
from asymlib.reports import stitch

REPO = Path(__file__).resolve().parents[1]
DATASETS = ["california", "churn"]  # one regression, one classification dataset
#: Chart titles of the summary's figures (a substring of each).
FIGURE_TITLES = [
    "Figure 1: relative improvement",
    "Figure 3: test metric",
    "MLP against WMLP at the ensemble size chosen with the slider",  # the one ensemble-size picker
    "WMLP - MLP, relative improvement, paired over repeats",
    "WMLP - MLP, ensemble metric, paired over repeats",
]
#: The same for the mixture section's summary.
MIXTURE_FIGURE_TITLES = [
    "Figure 2: gain of mixtures over the same model with 2 experts",
    "Figure 4: test metric of mixtures against the number of experts",
    "The kinds of experts at the number of experts chosen with the slider",
    "MLP against WMLP and IMLP against IWMLP, 4 experts",  # the ipywidgets explorer's first view
]
#: Tables of the mixture summary (a substring of each one's HTML).
MIXTURE_TABLE_MARKS = [
    "gain (%) of mixtures over the same model with 2 experts, mean over 2 datasets",  # figure2_table
    "effective_experts",  # usage_summary
    ">paper</th>",  # compare_mixtures_with_paper (a column group)
    "4 experts, standard gating: test metrics",  # the explorer's table
]


@dataclass(frozen=True)
class BuiltReport:
    section_dir: Path
    notebook: Path
    html: Path


_BUILT: dict[str, BuiltReport] = {}


def built_report(tmp_path_factory: pytest.TempPathFactory, section: str = "deep_ensembles") -> BuiltReport:
    """Run the smoke profile's ``section`` with two repeats over ``DATASETS`` and build its
    report, once per test session and section (shared with test_browser.py, which cannot
    share a fixture object)."""
    if section not in _BUILT:
        root = tmp_path_factory.mktemp(f"report_run_{section}")
        profile = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())[section]
        profile.update(datasets=DATASETS, repeats=2, workers=2)
        params = root / "smoke2.yaml"
        params.write_text(yaml.safe_dump({section: profile}))
        runs = run_profile(params, out_root=root / "runs", sections=[section], progress=False, report=False)
        run = runs[section]
        assert run.ok, _why_failed(run.failed)
        # The plain-Python entry: stitch_section, execute_report, export_html.
        html = stitch.build_report(run.out_dir, section=section)
        _BUILT[section] = BuiltReport(run.out_dir, html.with_suffix(".ipynb"), html)
    return _BUILT[section]


def _why_failed(failed: dict[str, Path]) -> str:
    """Each failed dataset's error and the end of its papermill log, for the assertion message."""
    lines = []
    for dataset, where in failed.items():
        log = where.with_suffix(".log")
        tail = log.read_text()[-3000:] if log.is_file() else "(no log)"
        lines.append(f"{dataset}: {notebook_error(where)}\n{tail}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> BuiltReport:
    return built_report(tmp_path_factory)


def _html_outputs(cell) -> str:
    return "\n".join("".join(output.get("data", {}).get("text/html", "")) for output in cell.get("outputs", []))


def test_report_sits_beside_the_section_and_lists_every_dataset(report):
    assert report.notebook == report.section_dir.parent / "report_deep_ensembles.ipynb"
    assert report.html == report.notebook.with_suffix(".html") and report.html.stat().st_size > 100_000
    notebook = nbformat.read(report.notebook, as_version=4)
    nbformat.validate(notebook)
    headings = [c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown"]
    assert headings[0].startswith("# Deep ensembles")
    # The header under the title names the profile, the datasets and the section folder.
    header = _header(notebook)
    assert header.startswith("**Profile `smoke2`.** Datasets: california, churn.")
    assert report.section_dir.name in header and "each dataset's executed notebook follows it" in header
    assert "**The verdict of this run.**" in header
    for dataset in DATASETS:
        assert f"## {dataset}" in headings
    # The summary comes first, the datasets after it in the paper's order.
    assert headings.index("# The datasets' notebooks") < headings.index("## california") < headings.index("## churn")
    ids = [cell.id for cell in notebook.cells]
    assert len(ids) == len(set(ids))


def _header(notebook) -> str:
    """The markdown the report's summary displays under its title (``summaries.*_header``)."""
    return next(
        o.data["text/markdown"]
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "display_data" and o.data.get("text/markdown", "").startswith("**Profile")
    )


def _shown_again(cell) -> list:
    """A report cell's outputs as (kind, content) pairs, streams joined as a notebook shows them."""
    shown = []
    for output in cell.outputs:
        if output.output_type == "stream":
            if shown and shown[-1][0] == output.name:
                shown[-1] = (output.name, shown[-1][1] + output.text)
            else:
                shown.append((output.name, output.text))
        else:
            shown.append(("data", dict(output.data)))
    return shown


def test_each_dataset_is_one_cell_that_shows_its_executed_notebook_again(report):
    notebook = nbformat.read(report.notebook, as_version=4)
    executed = nbformat.read(report.section_dir / "churn.ipynb", as_version=4)
    start = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("## churn"))
    stitched = notebook.cells[start:]
    code = [c for c in stitched if c.cell_type == "code"]
    assert len(code) == 1 and "show_executed(" in code[0].source and "churn.ipynb" in code[0].source
    assert not code[0].metadata.get("tags")  # executed like any cell: nothing skipped
    shown = _shown_again(code[0])
    markdown = [content["text/markdown"] for kind, content in shown if kind == "data" and "text/markdown" in content]
    # Its parameters first, then its markdown with headings nested, and its code.
    assert markdown[0].startswith("Parameters of this run") and 'dataset = "churn"' in markdown[0]
    assert any(text.startswith("### Deep ensembles") for text in markdown)
    sources = [
        c.source
        for c in executed.cells
        if c.cell_type == "code" and not {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))
    ]
    assert [text for text in markdown if text.startswith("```python")] == [f"```python\n{s}\n```" for s in sources]
    # Every stored output of the executed notebook, in order, but its vega scripts (the
    # report has its own); nothing computed anew.
    stored = [
        dict(o.data)
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type != "stream" and not o.get("metadata", {}).get("asymlib_vega_scripts")
    ]
    assert (
        stored and [content for kind, content in shown if kind == "data" and "text/markdown" not in content] == stored
    )
    printed = "".join(
        o.text for c in executed.cells for o in c.get("outputs", []) if o.output_type == "stream" and o.name == "stdout"
    )
    assert "".join(content for kind, content in shown if kind == "stdout") == printed


def test_showing_an_executed_notebook_again_gives_the_same_outputs(report, tmp_path):
    copy = tmp_path / report.notebook.name
    copy.write_text(report.notebook.read_text())
    stitch.execute_report(copy, trust=False)
    before, after = (nbformat.read(path, as_version=4) for path in (report.notebook, copy))
    for dataset in DATASETS:
        cell = next(c for c in before.cells if c.cell_type == "code" and f"{dataset}.ipynb" in c.source)
        again = next(c for c in after.cells if c.id == cell.id)
        assert _shown_again(again) == _shown_again(cell)


def test_a_missing_executed_notebook_is_said_not_raised(tmp_path, monkeypatch):
    from asymlib.reports.replay import show_executed

    monkeypatch.chdir(tmp_path)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *objects, **kw: shown.extend(objects))
    show_executed("runs/nowhere/deep_ensembles/adult.ipynb", section="deep_ensembles")
    assert len(shown) == 1 and "is not here" in shown[0].data


def test_summary_cells_ran_without_errors_and_show_every_figure(report):
    notebook = nbformat.read(report.notebook, as_version=4)
    summary = notebook.cells[: next(i for i, c in enumerate(notebook.cells) if c.source.startswith("# The datasets"))]
    code = [c for c in summary if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    html = "\n".join(_html_outputs(c) for c in code)
    for title in FIGURE_TITLES:
        assert title in html, title
    # Our data and the paper's for both datasets reached the figures.
    for dataset in DATASETS:
        assert f'"dataset": "{dataset}"' in html
    # The smoke profile trains hidden 8, at which the paper has no point: its points are
    # left out (no panel of theirs alone), ours are there.
    assert '"source": "ours"' in html and '"hidden": 8' in html
    assert not re.search(r'"hidden": (64|128|256)\b', html)
    # One ensemble-size picker: the slider in the chart (it works in the HTML too), not also
    # an ipywidgets explorer doing the same.
    assert html.count('"input": "range"') == 1
    assert not [c for c in code if "ensemble_explorer" in c.source]


def test_executed_report_is_trusted_and_carries_vega_for_jupyterlab(report):
    from nbformat.sign import NotebookNotary

    notebook = nbformat.read(report.notebook, as_version=4)
    # JupyterLab strips the scripts of untrusted HTML outputs: the charts would stay blank.
    assert NotebookNotary().check_signature(notebook)
    if offline.vega_script() is not None:
        scripts = [
            o for c in notebook.cells for o in c.get("outputs", []) if o.get("metadata", {}).get("asymlib_vega_scripts")
        ]
        assert len(scripts) == 1 and "window.vegaEmbed=" in scripts[0]["data"]["text/html"].replace(" ", "")


@pytest.mark.parametrize("section", ["deep_ensembles", "mixtures"])
def test_executed_section_notebooks_draw_offline_and_are_trusted(tmp_path_factory, section):
    from nbformat.sign import NotebookNotary

    run = built_report(tmp_path_factory, section)
    for dataset in DATASETS:
        notebook = nbformat.read(run.section_dir / f"{dataset}.ipynb", as_version=4)
        outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
        scripts = [o for o in outputs if o.get("metadata", {}).get("asymlib_vega_scripts")]
        assert len(scripts) == 1 and "window.vegaEmbed=" in scripts[0]["data"]["text/html"].replace(" ", "")
        charts = [
            o["data"]["text/html"] for o in outputs if 'id="altair-viz-' in o.get("data", {}).get("text/html", "")
        ]
        assert charts and all("cdn.jsdelivr" not in html and "window.vegaEmbed(target" in html for html in charts)
        # The runner signed it: JupyterLab runs the scripts of its stored outputs on opening.
        assert NotebookNotary().check_signature(notebook)


def test_a_chart_without_the_set_up_says_what_is_missing():
    import altair as alt

    html = offline.chart_html(alt.Chart(alt.InlineData(values=[{"a": 1}])).mark_point().encode(x="a:Q"))
    assert "cdn.jsdelivr" not in html and "offline_charts()" in html
    # A "</script>" in the data cannot end the chart's script early.
    html = offline.chart_html(alt.Chart(alt.InlineData(values=[{"a": "</script>"}])).mark_point().encode(x="a:N"))
    assert html.count("</script>") == 1


def test_report_runs_under_nbval(report):
    finished = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", str(report.notebook)],
        cwd=report.notebook.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-2000:]
    assert re.search(r"\d+ passed", finished.stdout)


def test_html_carries_vega_inline_and_loads_nothing_from_the_network(report):
    assert offline.vega_script() is not None, (
        "no vega scripts to inline: pip install vl-convert-python (or set ASYMLIB_VEGA_JS)"
    )
    html = report.html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=[\"']?(https?:)?//", html), "a script is loaded from the network"
    assert not re.search(r"<link[^>]*\bhref=[\"']?(https?:)?//", html), "a stylesheet is loaded from the network"
    assert "require.min.js" not in html and "embed-amd.js" not in html
    # The bundle defines the three globals Altair's output calls, at the versions it asks for.
    for assignment in ("window.vegaEmbed=", "window.vega=", "window.vegaLite="):
        assert html.replace(" ", "").count(assignment) == 1  # in the head; not again from the notebook
    assert re.search(
        r'var VEGA_DEBUG = \{"vega_version": "\d+", "vegalite_version": "[\d.]+", "vegaembed_version": "\d+"\}', html
    )
    notebook = nbformat.read(report.notebook, as_version=4)
    charts = sum(_html_outputs(c).count('id="altair-viz-') for c in notebook.cells)
    assert html.count('<div id="altair-viz-') >= charts >= len(FIGURE_TITLES) + len(DATASETS)
    assert "application/vnd.jupyter.widget-view+json" not in html
    assert "Static view at ensemble size" not in html  # no second picker (an explorer's static view)


def test_locate_section_falls_back_to_the_report_folder(report, monkeypatch):
    monkeypatch.chdir(report.section_dir.parent)
    assert stitch.locate_section("/nonexistent/deep_ensembles") == report.section_dir
    monkeypatch.chdir(report.section_dir)
    assert stitch.locate_section("/nonexistent/deep_ensembles") == report.section_dir
    monkeypatch.chdir(report.section_dir / "shards")
    with pytest.raises(FileNotFoundError, match="no results"):
        stitch.locate_section("/nonexistent/deep_ensembles")


def test_a_failed_dataset_notebook_is_flagged(report, tmp_path):
    failed = nbformat.read(report.section_dir / "churn.ipynb", as_version=4)
    failed.metadata.papermill["exception"] = True
    failed.cells[-1].outputs = [nbformat.v4.new_output("error", ename="ValueError", evalue="boom", traceback=[])]
    section_dir = tmp_path / "myprofile" / "deep_ensembles"
    section_dir.mkdir(parents=True)
    nbformat.write(failed, section_dir / "adult.ipynb")
    notebook = nbformat.read(stitch.stitch_section(section_dir, output=tmp_path / "r.ipynb"), as_version=4)
    injected = next(c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'profile = "myprofile"' in injected.source and str(section_dir) in injected.source
    heading = next(c.source for c in notebook.cells if c.source.startswith("## adult"))
    assert "did not finish:** ValueError: boom" in heading


def test_stitch_refuses_an_empty_folder(tmp_path):
    with pytest.raises(stitch.ReportError, match="no executed dataset notebook"):
        stitch.stitch_section(tmp_path / "deep_ensembles")


# --------------------------------------------------------------------------- the summaries are templates


def _summary_part(notebook) -> list:
    """The cells above "# The datasets' notebooks"."""
    end = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("# The datasets' notebooks"))
    return notebook.cells[:end]


@pytest.mark.parametrize("section", ["deep_ensembles", "mixtures"])
def test_the_summary_is_the_template_with_its_parameters(tmp_path_factory, section):
    """The report's summary is notebooks/report_<section>.ipynb, cell for cell (after
    execution), with papermill's cell of parameters after its parameters cell; stitch.py
    adds only the diverged-warning cell (none here) and the datasets' cells."""
    built = built_report(tmp_path_factory, section)
    template = nbformat.read(stitch.template_path(section), as_version=4)
    report = nbformat.read(built.notebook, as_version=4)
    summary = _summary_part(report)
    injected = [c for c in summary if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert [(c.id, c.cell_type, c.source) for c in summary if c not in injected] == [
        (c.id, c.cell_type, c.source) for c in template.cells
    ]
    assert summary.index(injected[0]) == 1 + next(
        i for i, c in enumerate(template.cells) if "parameters" in c.metadata.get("tags", [])
    )
    assert f'section_dir = "{built.section_dir}"' in injected[0].source
    assert 'profile = "smoke2"' in injected[0].source
    assert report.metadata.papermill["input_path"] == f"notebooks/report_{section}.ipynb"
    # Every template cell ran in the report, none failed.
    code = [c for c in summary if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    # Below the summary: a heading and one show_executed cell per dataset, nothing else.
    rest = report.cells[len(summary) :]
    assert [c.cell_type for c in rest] == ["markdown"] + ["markdown", "code"] * len(DATASETS)
    assert [c.id for c in rest if c.cell_type == "code"] == [f"{d}-executed" for d in DATASETS]


@pytest.mark.parametrize("section", ["deep_ensembles", "mixtures"])
def test_templates_run_on_the_committed_results_and_carry_no_outputs(section):
    """The template's default section_dir is a folder of the checkout with results (what
    ``pytest --nbval-lax notebooks/`` runs it on); the committed template has no outputs."""
    from asymlib.reports.summaries import locate_section
    from asymlib.reports.tables import holds_results

    template = nbformat.read(stitch.template_path(section), as_version=4)
    nbformat.validate(template)
    (parameters,) = [c for c in template.cells if "parameters" in c.metadata.get("tags", [])]
    values = {}
    exec(parameters.source, {}, values)
    assert set(values) == {"section_dir", "profile"}
    assert not Path(values["section_dir"]).is_absolute() and holds_results(REPO / values["section_dir"], section)
    assert locate_section(values["section_dir"], section=section) == REPO / values["section_dir"]
    assert not [c for c in template.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert stitch.template_path(section).stat().st_size < 30_000


def test_stitch_holds_no_notebook_code_in_strings():
    """The summaries' code lives in the template notebooks and in asymlib functions, not in
    Python strings of stitch.py: no string there (docstrings aside) is code that imports or
    calls anything, and each function stays under 80 lines."""
    import ast
    import textwrap

    source = Path(stitch.__file__).read_text()
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    code = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            try:
                parsed = ast.parse(textwrap.dedent(node.value).strip())
            except SyntaxError:
                continue
            if any(isinstance(n, (ast.Import, ast.ImportFrom, ast.Call)) for n in ast.walk(parsed)):
                code.append(node.value)
    assert code == []
    assert not re.search(r"\b_cells\(", source) and "textwrap" not in source
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    assert max(n.end_lineno - n.lineno + 1 for n in functions) <= 80
    # The one code cell stitch.py writes itself is made from the function it calls.
    from asymlib.reports.replay import show_executed

    assert stitch.call_source(show_executed, "runs/x/deep_ensembles/churn.ipynb", section="deep_ensembles") == (
        "from asymlib.reports.replay import show_executed\n\n"
        "show_executed('runs/x/deep_ensembles/churn.ipynb', section='deep_ensembles')"
    )


# --------------------------------------------------------------------------- the mixtures' report


@pytest.fixture(scope="module")
def mixture_report(tmp_path_factory) -> BuiltReport:
    return built_report(tmp_path_factory, "mixtures")


def _summary_code_cells(notebook) -> list:
    end = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("# The datasets"))
    return [c for c in notebook.cells[:end] if c.cell_type == "code"]


def test_mixture_report_has_its_summary_then_every_dataset(mixture_report):
    assert mixture_report.notebook == mixture_report.section_dir.parent / "report_mixtures.ipynb"
    notebook = nbformat.read(mixture_report.notebook, as_version=4)
    nbformat.validate(notebook)
    headings = [c.source.splitlines()[0] for c in notebook.cells if c.cell_type == "markdown"]
    assert headings[0].startswith("# Mixtures of MLP and W-Asymmetric MLP experts")
    header = _header(notebook)
    assert header.startswith("**Profile `smoke2`.** Datasets: california, churn.")
    assert "**The paper's second claim in this run.**" in header
    assert (
        headings.index("## Figure 2: gain over the same model with 2 experts")
        < headings.index("# The datasets' notebooks")
        < headings.index("## california")
        < headings.index("## churn")
    )
    # The datasets' notebooks are shown again with their outputs: the mixture notebook's headings nest.
    shown = [
        o.data.get("text/markdown", "")
        for c in notebook.cells
        for o in c.get("outputs", [])
        if o.output_type == "display_data"
    ]
    assert any(text.startswith("### Mixtures of experts") for text in shown)
    ids = [cell.id for cell in notebook.cells]
    assert len(ids) == len(set(ids))


def test_mixture_summary_ran_and_shows_every_figure_and_table(mixture_report):
    notebook = nbformat.read(mixture_report.notebook, as_version=4)
    code = _summary_code_cells(notebook)
    assert all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    html = "\n".join(_html_outputs(c) for c in code)
    printed = "\n".join(o.get("text", "") for c in code for o in c.outputs if o.output_type == "stream")
    for mark in MIXTURE_FIGURE_TITLES + MIXTURE_TABLE_MARKS:
        assert mark in html + printed, mark
    for dataset in DATASETS:
        assert f'"dataset": "{dataset}"' in html  # in the charts' data
        assert f"<th>{dataset}</th>" in html  # in the tables
    assert '"source": "ours"' in html and '"source": "paper"' in html
    assert '"name": "experts"' in html  # the slider's parameter
    assert "application/vnd.jupyter.widget-state+json" in notebook.metadata.get("widgets", {})


def test_mixture_html_is_offline_and_shows_the_explorers_static_view(mixture_report):
    html = mixture_report.html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=[\"']?(https?:)?//", html), "a script is loaded from the network"
    assert html.replace(" ", "").count("window.vegaEmbed=") == 1
    notebook = nbformat.read(mixture_report.notebook, as_version=4)
    charts = sum(_html_outputs(c).count('id="altair-viz-') for c in notebook.cells)
    assert html.count('<div id="altair-viz-') >= charts >= len(MIXTURE_FIGURE_TITLES)
    assert "application/vnd.jupyter.widget-view+json" not in html
    assert "Static view at 4 experts, standard gating" in html


# --------------------------------------------------------------------------- vega scripts


@pytest.fixture
def no_vl_convert(monkeypatch):
    """As if vl-convert-python were not installed (and no cached bundle)."""
    monkeypatch.setitem(sys.modules, "vl_convert", None)
    offline.vega_script.cache_clear()
    yield
    offline.vega_script.cache_clear()


def _tiny_notebook(path: Path) -> Path:
    import altair as alt

    chart = alt.Chart(alt.InlineData(values=[{"a": 1}])).mark_point().encode(x="a:Q")
    cell = nbformat.v4.new_code_cell(
        "chart",
        outputs=[
            nbformat.v4.new_output(
                "display_data", data={"text/html": chart.to_html(fullhtml=False, template="universal")}
            )
        ],
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return path


def test_vega_scripts_from_a_folder_without_vl_convert(no_vl_convert, tmp_path, monkeypatch):
    folder = tmp_path / "node_modules"
    for name, marker in [("vega", "VEGA_MARK"), ("vega-lite", "LITE_MARK"), ("vega-embed", "EMBED_MARK")]:
        (folder / name / "build").mkdir(parents=True)
        (folder / name / "build" / f"{name}.min.js").write_text(f"var {marker} = '</script>';")
    monkeypatch.setenv(offline.VEGA_JS_ENV, str(folder))
    html = offline.export_html(_tiny_notebook(tmp_path / "tiny.ipynb")).read_text()
    assert html.index("VEGA_MARK") < html.index("LITE_MARK") < html.index("EMBED_MARK") < html.index("VEGA_DEBUG")
    assert "var VEGA_MARK = '<\\/script>'" in html  # cannot close the inline script early


def test_without_vega_scripts_the_export_warns_and_uses_the_cdn(no_vl_convert, tmp_path, monkeypatch):
    monkeypatch.delenv(offline.VEGA_JS_ENV, raising=False)
    with pytest.warns(UserWarning, match="pip install vl-convert-python"):
        html = offline.export_html(_tiny_notebook(tmp_path / "tiny.ipynb")).read_text()
    assert "VEGA_DEBUG = {" not in html and "cdn.jsdelivr.net/npm/vega@" in html


def test_html_folds_code_away_and_scrolls_wide_outputs(tmp_path):
    """For a reader: each code cell's input (and code a dataset's notebook shows again) sits in
    a closed <details> toggle, one click away; markdown stays open; a wide output scrolls."""
    import pandas as pd

    wide = pd.DataFrame([[1.0] * 30], columns=[f"a_long_column_name_{i}" for i in range(30)])
    cells = [
        nbformat.v4.new_markdown_cell("# A heading"),
        nbformat.v4.new_code_cell(
            "table = 1",
            outputs=[nbformat.v4.new_output("display_data", data={"text/html": wide.to_html(), "text/plain": "t"})],
        ),
        nbformat.v4.new_code_cell(
            "show_executed(...)",
            outputs=[
                nbformat.v4.new_output(
                    "display_data",
                    data={"text/markdown": "```python\nshown_again = 2\n```"},
                    metadata={offline.CODE_OUTPUT: True},
                ),
                nbformat.v4.new_output("display_data", data={"text/markdown": "**shown as it is**"}),
            ],
        ),
    ]
    path = tmp_path / "reader.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    html = offline.export_html(path).read_text()
    folded = re.findall(r'<details class="asymlib-code"><summary>code</summary>(.*?)</details>', html, re.S)
    assert len(folded) == 3  # two inputs, one code shown again
    assert "table" in folded[0] and "show_executed" in folded[1] and "shown_again" in folded[2]
    assert "<details open" not in html
    assert all("A heading" not in part and "shown as it is" not in part for part in folded)
    assert "A heading" in html and "shown as it is" in html and "a_long_column_name_29" in html
    assert "overflow-x: auto" in html and "min-width: 0" in html


def test_demoted_headings_leave_code_alone():
    from asymlib.reports.replay import demote_headings

    text = "# Title\ntext\n```python\n# a comment\n```\n## Part"
    assert demote_headings(text) == "### Title\ntext\n```python\n# a comment\n```\n#### Part"


def test_report_notebook_is_json_with_a_python3_kernel(report):
    metadata = json.loads(report.notebook.read_text())["metadata"]
    assert metadata["kernelspec"]["name"] == "python3"
