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


FLAKY_KERNEL = """
import os, runpy, sys
marker = sys.argv.pop(1)
if not os.path.exists(marker):  # the first start dies, as a kernel that lost a port race does
    open(marker, "w").close()
    sys.exit(1)
sys.argv[0] = "ipykernel_launcher"
runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
"""


def test_a_kernel_that_dies_starting_is_tried_once_more(tmp_path, monkeypatch):
    import json
    import sys

    import nbformat

    from asymlib.execution.notebooks import execute_notebook

    script = tmp_path / "flaky_kernel.py"
    script.write_text(FLAKY_KERNEL)
    spec = tmp_path / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    argv = [sys.executable, str(script), str(tmp_path / "started_once"), "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "flaky", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("x * 6"),
        ],
        metadata={"kernelspec": {"name": "flaky", "language": "python", "display_name": "flaky"}},
    )
    nbformat.write(notebook, tmp_path / "in.ipynb")

    succeeded, _ = execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {"x": 7}, threads=1, kernel="flaky")

    log = (tmp_path / "out.log").read_text()
    assert succeeded, log
    assert "the kernel ran no cell" in log and "trying once more" in log
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["data"]["text/plain"] == "42"


def test_the_executed_notebook_takes_its_name_only_when_papermill_ends(tmp_path):
    """papermill writes the executed notebook as it goes, under a temporary name: the real
    name never holds a notebook half run, and a failed one is there with its traceback."""
    import nbformat

    from asymlib.core.project import notebook_error
    from asymlib.execution.notebooks import execute_notebook

    output = tmp_path / "out.ipynb"
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("output = None", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("from pathlib import Path\n\nassert not Path(output).exists(), 'half run'"),
            nbformat.v4.new_code_cell("raise ValueError('boom')"),
        ],
        metadata={"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
    )
    nbformat.write(notebook, tmp_path / "in.ipynb")

    succeeded, _ = execute_notebook(tmp_path / "in.ipynb", output, {"output": str(output)}, threads=1, kernel="python3")

    assert not succeeded and notebook_error(output) == "ValueError: boom"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ipynb", "out.ipynb", "out.log"]


def test_a_section_notebook_without_its_parameters_cell_is_refused_before_anything_runs(tmp_path, monkeypatch, capsys):
    """Without the cell tagged `parameters`, papermill would only warn in each dataset's log
    and run the notebook's own default dataset (california) for every dataset, exit status 0."""
    import dataclasses
    import os

    import nbformat

    from asymlib.execution.cli import main

    notebook = nbformat.read(REPO / SECTIONS["deep_ensembles"].notebook, as_version=4)
    for cell in notebook.cells:
        cell.metadata.pop("tags", None)
    untagged = tmp_path / "deep_ensembles.ipynb"
    nbformat.write(notebook, untagged)
    monkeypatch.setitem(SECTIONS, "deep_ensembles", dataclasses.replace(SECTIONS["deep_ensembles"], notebook=untagged))
    monkeypatch.setenv("ASYMLIB_DATA", os.environ.get("ASYMLIB_DATA", str(REPO / "data")))
    smoke = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
    profile = tmp_path / "churn.yaml"
    profile.write_text(yaml.safe_dump({"deep_ensembles": {**smoke["deep_ensembles"], "datasets": ["churn"]}}))

    assert main(["run", str(profile), "--out", str(tmp_path / "runs"), "--no-progress", "--no-report"]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert f"{untagged} has no cell tagged 'parameters'" in message and "as `parameters`" in message
    assert not (tmp_path / "runs" / "churn" / "deep_ensembles" / "shards").exists()  # refused before training
