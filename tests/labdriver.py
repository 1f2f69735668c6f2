"""A real JupyterLab driven by a real browser, for the UI tests (``test_jupyterlab.py``).

``JupyterLabServer`` starts ``jupyter lab`` from this environment on 127.0.0.1 with a token,
its settings, workspaces and runtime files in a folder of its own (so a user's JupyterLab
set-up cannot change what the test sees). ``LabPage`` drives Debian's Chromium through
Playwright (the pip package; its own browser downloads are not reachable here): it opens a
notebook, runs all cells the way the Run menu does, waits for the kernel, and reads back what
the page shows. Every request that leaves 127.0.0.1 is refused and recorded, so a chart that
needs a CDN stays blank, as it would for a user with no network.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

#: Chromium's flags for a machine with no display and a closed network (as root, no sandbox).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLabServer:
    """``jupyter lab`` serving ``root`` on 127.0.0.1 until ``stop``; its log in ``root/../lab.log``."""

    def __init__(self, root: Path, *, state: Path, timeout: float = 90) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.token = secrets.token_hex(16)
        state.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(state / "config"),
            "JUPYTERLAB_SETTINGS_DIR": str(state / "settings"),
            "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
            "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
            # One thread per kernel: the notebooks train tiny models on a small machine.
            "OMP_NUM_THREADS": "1",
        }
        command = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.port_retries=0",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            # window.jupyterapp: the page can run the same commands as JupyterLab's menus.
            "--LabApp.expose_app_in_browser=True",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            command.append("--allow-root")
        self.log = state / "lab.log"
        self._log_file = open(self.log, "w")
        self.process = subprocess.Popen(command, stdout=self._log_file, stderr=subprocess.STDOUT, env=env)
        self._wait(timeout)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"jupyter lab exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"{self.base}/api/status?token={self.token}", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"jupyter lab did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}&reset"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


# The page's view of the open notebook, read through JupyterLab's own models.
_NOTEBOOK_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return null;
  const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
  const session = panel.sessionContext.session;
  const errors = [];
  cells.forEach((cell, index) => {
    for (const output of cell.model.outputs.toJSON()) {
      if (output.output_type === 'error') errors.push(`code cell ${index}: ${output.ename}: ${output.evalue}`);
    }
  });
  return {
    errors: errors,
    kernel: session && session.kernel ? session.kernel.status : null,
    pending: cells.filter(cell => cell.promptNode && cell.promptNode.textContent.includes('*')).length,
    unexecuted: cells.filter(cell => cell.model.executionCount === null).length,
    code_cells: cells.length,
  };
}"""

# Every chart output on the page: Altair's divs, each with what it drew (marks or an error).
_CHARTS = """() => Array.from(document.querySelectorAll('.jp-OutputArea-output div[id^="altair-viz-"]')).map(div => ({
  id: div.id,
  drawn: div.querySelector('canvas.marks, svg.marks') !== null,
  text: div.innerText.slice(0, 300),
}))"""


class LabPage:
    """A Chromium page on a JupyterLab server, refusing every request that leaves the server."""

    def __init__(self, browser, server: JupyterLabServer) -> None:
        self.server = server
        self.blocked: list[str] = []
        self.console_errors: list[str] = []
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))

    def _route(self, route) -> None:
        if route.request.url.startswith(self.server.base):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort("internetdisconnected")

    def open(self, notebook: str, *, timeout: float = 90) -> None:
        """Open ``notebook`` (relative to the server's root) and wait for its kernel."""
        self.page.goto(self.server.url(notebook))
        self.page.wait_for_function(
            "() => window.jupyterapp && window.jupyterapp.shell.currentWidget", timeout=timeout * 1000
        )
        self.page.wait_for_function(
            f"() => {{ const s = ({_NOTEBOOK_STATE})(); return s && s.kernel === 'idle'; }}", timeout=timeout * 1000
        )

    def run_all(self, *, timeout: float = 300) -> dict:
        """Run every cell (the Run menu's "Run All Cells") and wait until the kernel is idle
        with no cell pending; returns the notebook's state then."""
        self.page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        self.page.wait_for_function(
            f"() => {{ const s = ({_NOTEBOOK_STATE})(); return s && s.pending === 0 && s.kernel === 'idle'; }}",
            timeout=timeout * 1000,
            polling=500,
        )
        # The kernel can be idle between two queued cells: idle twice, a second apart.
        time.sleep(1)
        self.page.wait_for_function(
            f"() => {{ const s = ({_NOTEBOOK_STATE})(); return s && s.pending === 0 && s.kernel === 'idle'; }}",
            timeout=timeout * 1000,
            polling=500,
        )
        return self.page.evaluate(_NOTEBOOK_STATE)

    def save(self) -> None:
        self.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        self.page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty", timeout=30_000)

    def charts(self, *, expected: int, timeout: float = 60) -> list[dict]:
        """The chart outputs once ``expected`` of them are on the page and each has drawn
        (or reported an error), or once ``timeout`` has passed."""
        self._show_every_cell()
        deadline = time.monotonic() + timeout
        while True:
            charts = self.page.evaluate(_CHARTS)
            settled = len(charts) >= expected and all(c["drawn"] or "Error" in c["text"] for c in charts)
            if settled or time.monotonic() > deadline:
                return charts
            time.sleep(0.5)

    def _show_every_cell(self) -> None:
        # JupyterLab draws only the cells near the viewport: scroll through the notebook once.
        height = self.page.evaluate("() => window.jupyterapp.shell.currentWidget.content.node.scrollHeight")
        for top in range(0, int(height) + 1000, 800):
            self.page.evaluate(f"() => window.jupyterapp.shell.currentWidget.content.node.scrollTo(0, {top})")
            time.sleep(0.15)

    def scroll_to_first_chart(self) -> None:
        self.page.evaluate(
            """() => { const chart = document.querySelector('.jp-OutputArea-output div[id^="altair-viz-"]');
                       if (chart) chart.closest('.jp-Cell').scrollIntoView(); }"""
        )
        time.sleep(0.5)

    def scroll_to_heading(self, text: str) -> None:
        """Bring the markdown cell whose rendered heading starts with ``text`` to the top."""
        self.page.evaluate(
            f"""() => {{ const heading = Array.from(document.querySelectorAll('.jp-MarkdownCell h2'))
                         .find(h => h.textContent.trim().startsWith({text!r}));
                       if (heading) heading.closest('.jp-Cell').scrollIntoView(); }}"""
        )
        time.sleep(0.5)

    def move_slider(self, *, cell_containing: str, key: str = "ArrowLeft", timeout: float = 30) -> tuple[str, str]:
        """Press ``key`` on the first ipywidgets slider in the output of the code cell whose
        source contains ``cell_containing``, once that output's Output widget shows something;
        returns the widget's text before and after it changed (or after ``timeout``)."""
        cell = self.page.locator(".jp-CodeCell", has=self.page.locator(".jp-InputArea", has_text=cell_containing))
        cell.scroll_into_view_if_needed()
        view = cell.locator(".jp-OutputArea-output .widget-output").first
        handle = cell.locator(".jp-OutputArea-output .noUi-handle").first
        handle.wait_for(timeout=timeout * 1000)
        # The slider can be drawn before the Output widget receives its first table and
        # chart; reading it then gives "" and any later text would pass for a change.
        deadline = time.monotonic() + timeout
        before = view.inner_text()
        while not before.strip() and time.monotonic() < deadline:
            time.sleep(0.25)
            before = view.inner_text()
        handle.focus()
        handle.press(key)
        deadline = time.monotonic() + timeout
        after = view.inner_text()
        while after == before and time.monotonic() < deadline:
            time.sleep(0.25)
            after = view.inner_text()
        return before, after

    def screenshot(self, path: Path) -> Path:
        self.page.screenshot(path=str(path), full_page=False)
        return path

    def close(self) -> None:
        self.context.close()


def saved_errors(path: Path) -> list[str]:
    """The error outputs stored in a notebook file: "cell N: Name: message"."""
    cells = json.loads(Path(path).read_text())["cells"]
    return [
        f"cell {index}: {output['ename']}: {output['evalue']}"
        for index, cell in enumerate(cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
