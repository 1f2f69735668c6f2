"""The notebooks stay in step with the runner and the profiles (executing them is nbval's job:
``pytest --nbval-lax notebooks/``)."""

from __future__ import annotations

import ast
from pathlib import Path

import papermill
import yaml

from asymlib.execution.params import SECTIONS

REPO = Path(__file__).resolve().parents[1]


def _parameters(notebook: Path) -> dict:
    """The notebook's papermill parameters and their default values."""
    found = papermill.inspect_notebook(str(notebook))
    return {name: ast.literal_eval(p["default"]) for name, p in found.items()}


def test_notebook_takes_every_parameter_the_runner_passes():
    for section in SECTIONS.values():
        parameters = _parameters(REPO / section.notebook)
        passed = {"dataset", "out_dir", "threads", "progress", *section.keys}
        assert passed <= set(parameters), f"{section.notebook} lacks {passed - set(parameters)}"


def test_notebook_defaults_are_the_smoke_profile():
    smoke = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    for section in SECTIONS.values():
        defaults = _parameters(REPO / section.notebook)
        profile = smoke[section.name]
        assert defaults["dataset"] in profile["datasets"]
        assert defaults["progress"] is False
        for key in section.keys:
            assert defaults[key] == profile.get(key, section.settings.default(key)), key


def test_committed_notebooks_are_small():
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        assert notebook.stat().st_size < 200_000, f"{notebook} has large outputs; aggregate before charting"
