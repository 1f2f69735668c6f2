"""``asymlib train``: a profile's units in this machine's own processes (no Dask, notebooks or
reports). Units at once give the tables of one at a time; a run stopped early resumes; what
it writes is what ``asymlib run`` writes, so a run afterwards only executes the notebooks;
``benchmarks/gpu_paper.sh`` packs a run and resumes from it. Real data, the smoke profile.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from asymlib.core.data import DataFileError
from asymlib.execution import serial
from asymlib.execution.cli import main
from asymlib.execution.estimate import estimate_from_measured, format_measured_estimate
from asymlib.execution.params import ParamsError
from asymlib.execution.runner import run_profile

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "params" / "smoke.yaml"


@pytest.fixture
def churn_profile(tmp_path):
    """The smoke profile on churn alone, one torch thread per unit: 17 units (1 deep-ensemble unit, 16 mixtures)."""
    profile = yaml.safe_load(SMOKE.read_text())
    for section in ("deep_ensembles", "mixtures"):
        profile[section].update(datasets=["churn"], threads=1)
    path = tmp_path / "churn.yaml"
    path.write_text(yaml.safe_dump(profile))
    return path


def _shards(profile_dir: Path) -> dict[str, pd.DataFrame]:
    tables = {}
    for path in sorted(profile_dir.glob("*/shards/*.parquet")):
        frame = pd.read_parquet(path)
        tables[path.name] = frame.drop(columns=[c for c in frame.columns if "time" in c])
    return tables


def test_units_at_once_give_the_tables_of_one_at_a_time(churn_profile, tmp_path):
    one = serial.train_units(churn_profile, out_root=tmp_path / "one", progress=False)
    two = serial.train_units(churn_profile, out_root=tmp_path / "two", slots=2, progress=False)
    assert len(one.trained) == len(two.trained) == 17 and not one.failed and not two.failed
    first, second = _shards(tmp_path / "one" / "churn"), _shards(tmp_path / "two" / "churn")
    assert first.keys() == second.keys() and len(first) == 2 * 17
    for name in first:
        pd.testing.assert_frame_equal(first[name], second[name], check_exact=True)
    log = pd.read_csv(tmp_path / "two" / "churn" / "mixtures" / serial.LOG_NAME)
    assert len(log) == 16 and set(log["slots"]) == {2} and (log["seconds"] > 0).all()
    assert len({w.split(":")[1] for w in log["worker"]}) > 1  # two processes did the work


def test_a_stopped_run_resumes_with_the_units_left(churn_profile, tmp_path, monkeypatch):
    clock = itertools.count(start=1_000_000.0, step=1.0)  # every look at the clock: one second later
    monkeypatch.setattr(serial.time, "time", lambda: next(clock))
    stopped = serial.train_units(churn_profile, out_root=tmp_path, stop_after=4, progress=False)
    assert 1 <= len(stopped.trained) < 17 and len(stopped.trained) + len(stopped.not_started) == 17
    monkeypatch.undo()
    resumed = serial.train_units(churn_profile, out_root=tmp_path, progress=False)
    assert sorted(resumed.trained) == sorted(stopped.not_started)
    assert resumed.already_done == len(stopped.trained)
    again = serial.train_units(churn_profile, out_root=tmp_path, progress=False)
    assert again.trained == [] and again.already_done == 17


def test_cli_exit_status_says_units_were_left(churn_profile, tmp_path, capsys, monkeypatch):
    clock = itertools.count(start=1_000_000.0, step=1.0)
    monkeypatch.setattr(serial.time, "time", lambda: next(clock))
    status = main(
        [
            "train",
            str(churn_profile),
            "--out",
            str(tmp_path),
            "--stop-after",
            "3",
            "--no-progress",
            "--sections",
            "mixtures",
        ]
    )
    assert status == 4
    assert "re-run the same command" in capsys.readouterr().out


def test_a_notebook_run_after_training_trains_nothing(churn_profile, tmp_path, monkeypatch):
    serial.train_units(churn_profile, out_root=tmp_path, sections=["deep_ensembles"], progress=False)
    runs = run_profile(
        churn_profile, out_root=tmp_path, sections=["deep_ensembles"], workers=1, progress=False, report=False
    )
    run = runs["deep_ensembles"]
    assert run.ok and run.trained == {} and run.executed == ["churn"]
    assert len(run.tables["models"]) == 8  # smoke: 4 MLPs and 4 WMLPs


def test_a_unit_that_is_not_what_its_name_says_is_not_done(churn_profile, tmp_path):
    """A unit's shards replaced by another unit's (copied under its name) do not count as
    done: ``asymlib train`` refuses the folder before training anything."""
    profile = yaml.safe_load(churn_profile.read_text())
    profile["deep_ensembles"]["repeats"] = 2
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(profile))
    assert len(serial.train_units(path, out_root=tmp_path, sections=["deep_ensembles"], progress=False).trained) == 2
    shards = tmp_path / "two" / "deep_ensembles" / "shards"
    for table in ("models", "ensembles"):
        shutil.copyfile(shards / f"churn-h8-r0-{table}.parquet", shards / f"churn-h8-r1-{table}.parquet")
    words = (
        r"holds churn results that are not what their names say "
        r"\(its models shard shards/churn-h8-r1-models\.parquet was written for unit churn-h8-r0"
    )
    with pytest.raises(ParamsError, match=words):
        serial.train_units(path, out_root=tmp_path, sections=["deep_ensembles"], progress=False)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"slots": 0}, "slots must be a positive integer"),
        ({"stop_after": -1}, "stop_after must be a positive number"),
        ({"datasets": ["iris"]}, "unknown dataset 'iris'"),
        ({"device": "gpu0"}, "'gpu0' is not a torch device"),
    ]
    + ([] if torch.cuda.is_available() else [({"device": "cuda"}, "sees no CUDA device")]),
)
def test_bad_arguments_name_what_was_expected(churn_profile, tmp_path, kwargs, words):
    with pytest.raises(ParamsError, match=words):
        serial.train_units(churn_profile, out_root=tmp_path, progress=False, **kwargs)


def test_missing_raw_files_are_named_before_training(churn_profile, tmp_path, monkeypatch):
    monkeypatch.setenv("ASYMLIB_DATA", str(tmp_path / "empty"))
    with pytest.raises(DataFileError, match="Churn_Modelling.csv"):
        serial.train_units(churn_profile, out_root=tmp_path, progress=False)
    assert not list(tmp_path.glob("churn/*/shards"))


def test_gpu_paper_script_packs_a_run_and_resumes_from_it(churn_profile, tmp_path):
    """The GPU script on the CPU: it trains, packs runs/<profile> into one archive, and a second
    call on a checkout holding the unpacked archive trains only what the archive lacked."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("asymlib", "benchmarks"):
        (checkout / name).symlink_to(REPO / name)
    env = {
        **os.environ,
        "PROFILE": str(churn_profile),
        "DEVICE": "cpu",
        "PYTHON": os.sys.executable,
        "ASYMLIB_DATA": os.environ.get("ASYMLIB_DATA", str(REPO / "data")),
    }
    script = ["bash", "benchmarks/gpu_paper.sh"]
    done = subprocess.run(
        [*script, str(tmp_path / "out1"), "120", "2"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "exit status 0" in done.stdout, done.stdout + done.stderr
    archive = tmp_path / "out1" / "paper_runs.tar.gz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert sum(n.endswith("-mixtures.parquet") for n in names) == 16 and "runs/churn/mixtures/settings.yaml" in names

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    for name in ("asymlib", "benchmarks"):
        (fresh / name).symlink_to(REPO / name)
    with tarfile.open(archive) as tar:
        tar.extractall(fresh, filter="data")
    for shard in (fresh / "runs" / "churn" / "deep_ensembles" / "shards").glob("*"):
        shard.unlink()  # as if the first call had been stopped before the deep ensembles
    again = subprocess.run(
        [*script, str(tmp_path / "out2"), "120", "1"], cwd=fresh, env=env, capture_output=True, text=True, timeout=300
    )
    assert "exit status 0" in again.stdout, again.stdout + again.stderr
    assert "trained 1 unit in" in again.stdout and "(16 were done already)" in again.stdout


def test_estimate_learns_from_measured_units(tmp_path):
    """``asymlib estimate --measured``: units trained by ``asymlib train`` count with their
    logged seconds (divided by the units sharing the device), the rest of the grid is
    predicted by the cost model fitted to them."""
    profile = yaml.safe_load(SMOKE.read_text())
    for section in ("deep_ensembles", "mixtures"):
        profile[section].update(datasets=["churn", "california"], threads=1)
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump(profile))
    with pytest.raises(ParamsError, match="at least 3"):
        estimate_from_measured(path, tmp_path / "two")  # nothing measured yet
    serial.train_units(path, out_root=tmp_path, datasets=["churn"], slots=2, progress=False)

    estimate = estimate_from_measured(path, tmp_path / "two")
    units = estimate.units.set_index("unit")
    assert len(units) == 34 and units["measured"].sum() == 17
    assert units.loc[[u for u in units.index if u.startswith("churn")], "measured"].all()
    log = pd.read_csv(tmp_path / "two" / "mixtures" / serial.LOG_NAME).set_index("unit")
    measured = units.loc[log.index, "seconds"]
    assert (measured == log["seconds"] / 2).all()  # two slots shared the device
    predicted = units[~units["measured"]]
    assert (predicted["seconds"] > 0).all() and set(predicted["mode"]) == {"graph", "eager"}
    # california has more rows than churn: more steps, more work, so no cheaper a prediction
    pair = units.loc[["california-gumbel-mlp-e4", "churn-gumbel-mlp-e4"]]
    assert pair["steps"].iloc[0] > pair["steps"].iloc[1]
    text = format_measured_estimate(estimate)
    assert "17 of 34 units measured" in text and "whole grid on one device" in text
