"""The report's HTML copy in a real browser, with the network cut off: every chart draws.

Needs Debian's Chromium (``apt-get install -y chromium``); skipped, saying so, without it.
The screenshot is left beside each report (``runs/<profile>/report_<section>.png`` of the
test run) for a person to look at.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from test_stitch import BuiltReport, built_report

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Chromium: `apt-get install -y chromium` (Debian), then re-run"
)

_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _ChartScanner(HTMLParser):
    """What each Altair output div (``id="altair-viz-..."``) holds once rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, set[str]] = {}
        self._open: list[tuple[str, int]] = []  # (chart id, depth at which its div opened)
        self._depth = 0

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = (attributes.get("class") or "").split()
        for chart, _ in self._open:
            # Vega draws into a canvas (or svg) of class "marks"; the actions menu has an
            # svg icon of its own, which proves nothing.
            self.charts[chart].add(f"{tag}.marks" if "marks" in classes else tag)
            if "error" in classes:
                self.charts[chart].add("error")
        if tag in _VOID:
            return
        self._depth += 1
        if tag == "div" and (attributes.get("id") or "").startswith("altair-viz-"):
            self.charts[attributes["id"]] = set()
            self._open.append((attributes["id"], self._depth))

    def handle_startendtag(self, tag, attrs):
        for chart, _ in self._open:
            self.charts[chart].add(tag)

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if self._open and self._open[-1][1] == self._depth:
            self._open.pop()
        self._depth -= 1


@pytest.fixture(scope="module", params=["deep_ensembles", "mixtures"])
def report(request, tmp_path_factory) -> BuiltReport:
    return built_report(tmp_path_factory, request.param)


def _chromium(html: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        # No name resolves: a script fetched from a CDN would fail, and its chart with it.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--virtual-time-budget=10000",
        "--enable-logging=stderr",
        "--v=0",
        *extra,
        html.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_every_chart_renders_offline_and_a_screenshot_is_saved(report, tmp_path):
    source = report.html.read_text(encoding="utf-8")
    expected = set(re.findall(r'<div id="(altair-viz-[0-9a-f]+)"', source))
    assert expected

    dumped = _chromium(report.html, tmp_path / "profile", "--dump-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    uncaught = [line for line in dumped.stderr.splitlines() if "Uncaught" in line]
    assert not uncaught, "the page raised (vega fetched from a CDN? pip install vl-convert-python):\n" + "\n".join(
        uncaught[:5]
    )
    assert "Error loading script" not in dumped.stderr and "Javascript Error" not in dumped.stderr

    scanner = _ChartScanner()
    scanner.feed(dumped.stdout)
    assert set(scanner.charts) == expected
    blank = sorted(chart for chart, tags in scanner.charts.items() if not {"canvas.marks", "svg.marks"} & tags)
    failed = sorted(chart for chart, tags in scanner.charts.items() if "error" in tags)
    assert not blank, f"{len(blank)} of {len(expected)} charts drew nothing: {blank}"
    assert not failed, f"vega-embed reported an error in {failed}"
    # The chart with the Vega-Lite slider got its input.
    assert 'type="range"' in dumped.stdout

    screenshot = report.notebook.with_suffix(".png")
    shot = _chromium(
        report.html, tmp_path / "profile", "--hide-scrollbars", "--window-size=1400,4000", f"--screenshot={screenshot}"
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    # A blank page compresses to a few kB; charts, tables and code do not.
    assert screenshot.stat().st_size > 50_000
    print(f"screenshot: {screenshot}")
