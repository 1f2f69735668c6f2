"""The ``asymlib`` command itself: --version, a --help that imports nothing heavy, and
``asymlib figures`` on either section (its files go under the run's folder by default)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import asymlib
from asymlib.execution import cli
from asymlib.execution.cli import main

REFERENCE = Path(__file__).resolve().parent / "smoke_reference"

#: Modules that take seconds to import; `asymlib --help` needs none of them.
HEAVY = ("torch", "pandas", "numpy", "altair", "sklearn", "scipy", "dask", "distributed", "papermill", "nbformat")


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"asymlib {asymlib.__version__}"


def test_help_imports_nothing_heavy():
    """Top-level and per-command --help (but train's, whose arguments live in ``serial``) in a
    fresh interpreter: none of them imports torch, pandas, altair, Dask or papermill."""
    script = f"""
import sys
from asymlib.execution.cli import main
for argv in ([], ["fetch"], ["run"], ["estimate"], ["compare"], ["figures"]):
    try:
        main(argv + ["--help"])
    except SystemExit as stop:
        assert stop.code == 0, (argv, stop.code)
    heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)
    if heavy:
        sys.exit(f"{{' '.join(argv) or '(top level)'}} --help imported {{', '.join(heavy)}}")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: asymlib figures" in done.stdout


def test_train_help_still_lists_its_arguments(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["train", "--help"])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    assert "--slots" in help_text and "--stop-after" in help_text and "PARAMS.yaml" in help_text


def test_constants_written_out_in_the_cli_match_their_modules():
    from asymlib.core.data import DATASETS
    from asymlib.execution.notebooks import DEFAULT_KERNEL
    from asymlib.execution.params import SECTIONS

    assert cli.DATASETS == tuple(DATASETS)
    assert cli.SECTIONS == tuple(SECTIONS)
    assert cli.DEFAULT_KERNEL == DEFAULT_KERNEL
    for module, names in cli.BAD_INPUT_ERRORS.items():
        for name in names:
            assert issubclass(getattr(importlib.import_module(module), name), Exception), f"{module}.{name}"


def _reference(section: str, table: str) -> pd.DataFrame:
    """A table of the smoke run (tests/smoke_reference): every dataset, a few rows each."""
    return pd.read_csv(REFERENCE / f"{section}__{table}.csv")


def _save_units(section: Path, settings_class, **tables: pd.DataFrame) -> None:
    """Lay tables out as a run leaves them: one unit's rows per shard, under its name."""
    from asymlib.sections.units import ShardStore

    store = ShardStore(section, tables=settings_class.TABLES)
    names = {table: [settings_class.unit_of(row) for row in tables[table].to_dict("records")] for table in tables}
    for unit in sorted({name for column in names.values() for name in column}):
        store.save(unit, **{t: tables[t][[n == unit for n in names[t]]] for t in settings_class.TABLES})


def test_figures_of_a_deep_ensemble_folder_go_under_the_run_folder(tmp_path, monkeypatch, capsys):
    """By default into <run>/figures/, not docs/figures/ (which holds the README's)."""
    from asymlib.sections.deep_ensembles import DeepEnsembleSettings

    models, ensembles = _reference("deep_ensembles", "models"), _reference("deep_ensembles", "ensembles")
    _save_units(tmp_path / "run" / "deep_ensembles", DeepEnsembleSettings, models=models, ensembles=ensembles)
    monkeypatch.chdir(tmp_path)
    assert main(["figures", "run/deep_ensembles"]) == 0
    assert not (tmp_path / "docs").exists()
    for name in ("figure1.svg", "figure3.svg"):
        svg = (tmp_path / "run" / "figures" / name).read_text()
        assert svg.startswith("<svg") and "ensemble size" in svg
    assert capsys.readouterr().out.split() == ["run/figures/figure1.svg", "run/figures/figure3.svg"]


def test_figures_of_a_copy_of_the_combined_tables(tmp_path):
    """A folder with the combined tables only, as CSV, like results/verdict/deep_ensembles."""
    section = tmp_path / "verdict" / "deep_ensembles"
    section.mkdir(parents=True)
    _reference("deep_ensembles", "ensembles").to_csv(section / "ensembles.csv", index=False)
    assert main(["figures", str(section), "--out", str(tmp_path / "out"), "--formats", "png"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["figure1.png", "figure3.png"]


def test_figures_of_a_mixture_folder_are_figures_2_and_4(tmp_path):
    from asymlib.sections.mixtures import MixtureSettings

    section = tmp_path / "run" / "mixtures"
    mixtures, usage = _reference("mixtures", "mixtures"), _reference("mixtures", "usage")
    _save_units(section, MixtureSettings, usage=usage, mixtures=mixtures)
    assert main(["figures", str(section)]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "figures").iterdir()) == ["figure2.svg", "figure4.svg"]
    assert "number of experts" in (tmp_path / "run" / "figures" / "figure2.svg").read_text()
    # The profile folder above gives the figures of each of its sections; --out chooses the folder.
    assert main(["figures", str(tmp_path / "run"), "--out", str(tmp_path / "elsewhere")]) == 0
    assert sorted(p.name for p in (tmp_path / "elsewhere").iterdir()) == ["figure2.svg", "figure4.svg"]


def test_figures_of_a_folder_of_neither_section_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    assert main(["figures", str(tmp_path / "notes")]) == 2
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1
    assert str(tmp_path / "notes") in message and "runs/verdict/mixtures" in message
    assert main(["figures", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err
