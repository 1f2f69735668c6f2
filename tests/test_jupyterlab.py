"""JupyterLab as a user meets it: Run All on the section notebooks and on both stitched
reports, in a real JupyterLab driven by a real Chromium with no network.

Each test opens a notebook, runs all its cells as the Run menu does, and asserts: no cell
fails, every chart draws (an SVG or canvas of marks per chart, nothing fetched from a CDN),
and nothing stored is lost. On the mixture report, moving the explorer's number-of-experts
slider changes what the explorer shows. Screenshots are left in the test's temporary folder
(their paths are printed; ``ASYMLIB_SCREENSHOTS=DIR`` copies them there).

Needs Debian's Chromium (``apt-get install -y chromium``) and the ``playwright`` package;
skipped, saying which, without them, except in CI (CI=true), where they fail instead.
``make test`` installs both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from labdriver import CHROMIUM, CHROMIUM_ARGS, JupyterLabServer, LabPage, saved_errors
from test_stitch import BuiltReport, built_report

REPO = Path(__file__).resolve().parents[1]

# Outside CI a missing part skips these tests, saying which; in CI (CI=true) it fails them.
_MISSING = None
try:
    from playwright import sync_api as playwright
except ImportError:
    _MISSING = "needs the playwright package: pip install playwright (make setup installs it)"
if CHROMIUM is None:
    _MISSING = "needs Chromium: `apt-get install -y chromium` (Debian), then re-run"
if _MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the JupyterLab UI test, but it {_MISSING}")
pytestmark = pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")

#: JupyterLab settings for a machine with no network: no news fetched, no update check.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """The folder JupyterLab serves: copies of the section notebooks, writing their results
    under it, and (through ``built_report``) the two reports' runs."""
    root = tmp_path_factory.getbasetemp()
    notebooks = root / "notebooks"
    notebooks.mkdir(exist_ok=True)
    for name in ("deep_ensembles", "mixtures"):
        notebook = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        parameters = next(c for c in notebook.cells if "parameters" in c.metadata.get("tags", []))
        default = next(line for line in parameters.source.splitlines() if line.startswith("out_dir = "))
        parameters.source = parameters.source.replace(default, f"out_dir = {str(notebooks / 'runs' / name)!r}")
        nbformat.write(notebook, notebooks / f"{name}.ipynb")
    return root


@pytest.fixture(scope="module")
def lab(lab_root, tmp_path_factory):
    state = tmp_path_factory.mktemp("jupyterlab_state")
    for name, values in _LAB_SETTINGS.items():
        path = state / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    server = JupyterLabServer(lab_root, state=state)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as driver:
        chromium = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(lab, browser):
    page = LabPage(browser, lab)
    yield page
    page.close()


def _screenshot(page: LabPage, name: str, tmp_path: Path) -> None:
    shot = page.screenshot(tmp_path / f"{name}.png")
    if os.environ.get("ASYMLIB_SCREENSHOTS"):
        target = Path(os.environ["ASYMLIB_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target / shot.name)
    print(f"screenshot: {shot}")


def _chart_outputs(path: Path) -> int:
    """How many charts a notebook file's outputs hold."""
    notebook = nbformat.read(path, as_version=4)
    return sum(
        str(output.get("data", {}).get("text/html", "")).count('<div id="altair-viz-')
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )


def _run_all_and_check(page: LabPage, lab_root: Path, notebook: Path, *, minimum_charts: int) -> list[dict]:
    """Open, Run All, save; then assert what every notebook must satisfy. Returns the charts."""
    page.open(str(notebook.relative_to(lab_root)))
    state = page.run_all()
    assert state["errors"] == [], "cells failed:\n" + "\n".join(state["errors"])
    assert state["unexecuted"] == 0, f"{state['unexecuted']} of {state['code_cells']} code cells did not run"
    page.save()
    assert saved_errors(notebook) == []
    expected = _chart_outputs(notebook)
    assert expected >= minimum_charts
    charts = page.charts(expected=expected)
    assert len(charts) == expected, f"{len(charts)} charts on the page, {expected} in the notebook"
    failed = [f"{chart['id']}: {chart['text']}" for chart in charts if not chart["drawn"]]
    assert not failed, f"{len(failed)} of {expected} charts did not draw:\n" + "\n".join(failed)
    fetched = [url for url in page.blocked if "vega" in url or "jsdelivr" in url or url.endswith(".js")]
    assert not fetched, f"the page tried to load scripts from the network: {fetched}"
    return charts


@pytest.mark.parametrize("section, charts", [("deep_ensembles", 1), ("mixtures", 2)])
def test_run_all_on_a_section_notebook_draws_its_charts_offline(page, lab_root, section, charts, tmp_path):
    notebook = lab_root / "notebooks" / f"{section}.ipynb"
    _run_all_and_check(page, lab_root, notebook, minimum_charts=charts)
    page.scroll_to_first_chart()
    _screenshot(page, f"jupyterlab_{section}", tmp_path)


@pytest.fixture(scope="module", params=["deep_ensembles", "mixtures"])
def report(request, tmp_path_factory, lab_root) -> BuiltReport:
    return built_report(tmp_path_factory, request.param)


def _dataset_outputs(path: Path) -> dict[str, list]:
    """The outputs of every code cell under the report's "The datasets' notebooks" heading."""
    notebook = nbformat.read(path, as_version=4)
    start = next(i for i, c in enumerate(notebook.cells) if c.source.startswith("# The datasets' notebooks"))
    return {
        cell.id: [dict(o.get("data", {})) or o.get("text") for o in cell.outputs]
        for cell in notebook.cells[start:]
        if cell.cell_type == "code"
    }


def test_run_all_on_a_report_draws_every_chart_and_keeps_every_result(page, lab_root, report, tmp_path):
    before = _dataset_outputs(report.notebook)
    assert before and any(before.values())
    section = report.section_dir.name
    _run_all_and_check(page, lab_root, report.notebook, minimum_charts=4)
    # Every dataset's notebook is still shown, as it was stored.
    assert _dataset_outputs(report.notebook) == before
    if section == "mixtures":  # the deep-ensemble report's one size picker is the chart's own slider
        old, new = page.move_slider(cell_containing="figures.mixture_explorer(mixtures)", key="ArrowLeft")
        counts = [re.findall(r"(\d+) experts", text) for text in (old, new)]
        assert counts[0] and counts[1], (old, new)
        assert counts[0] != counts[1], (
            "moving the number-of-experts slider did not change the explorer's table and chart"
        )
        assert page.charts(expected=_chart_outputs(report.notebook))
    page.scroll_to_first_chart()
    _screenshot(page, f"jupyterlab_report_{section}", tmp_path)
    page.scroll_to_heading("california")
    _screenshot(page, f"jupyterlab_report_{section}_california", tmp_path)
