"""One run at a time per output folder: a second ``asymlib run`` or ``asymlib train`` into a
folder that another run is working on stops at once (exit status 2, one line naming the
folder and the run that holds it), before it reads or trains anything; a run killed with
SIGKILL leaves a lock file that blocks nothing. The holder is a real second process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import asymlib
from asymlib.execution.cli import main

REPO = Path(__file__).resolve().parents[1]
CODE = Path(asymlib.__file__).resolve().parents[1]  # the checkout whose asymlib this test imported
SMOKE = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
LOCK = ".asymlib.lock"


def _data_dir() -> Path:
    for candidate in (os.environ.get("ASYMLIB_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "Churn_Modelling.csv").is_file():
            return Path(candidate)
    pytest.fail("raw data not found: run `asymlib fetch --from DIR` (make setup does) or set ASYMLIB_DATA")


@pytest.fixture
def data_env(monkeypatch) -> Path:
    data = _data_dir()
    monkeypatch.setenv("ASYMLIB_DATA", str(data))
    return data


def _profile(folder: Path, **deep_ensembles) -> Path:
    """``folder/locked.yaml``: the smoke deep-ensemble section with ``deep_ensembles`` changed.
    Profiles in two folders share their output folder, ``<out>/locked``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "locked.yaml"
    path.write_text(yaml.safe_dump({"deep_ensembles": {**SMOKE["deep_ensembles"], **deep_ensembles}}))
    return path


def _start_holder(profile: Path, out: Path) -> subprocess.Popen:
    """``python -m asymlib train PROFILE --out OUT`` on a unit of minutes, once it holds the lock."""
    holder = subprocess.Popen(
        [sys.executable, "-m", "asymlib", "train", str(profile), "--out", str(out), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=CODE,  # the holder runs the code under test
    )
    lock = out / profile.stem / LOCK
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and holder.poll() is None:
        try:
            if json.loads(lock.read_text())["pid"] == holder.pid:
                return holder
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.1)
    holder.kill()
    pytest.fail(f"the first run never held the lock: {holder.communicate()[0]}")


def test_a_second_run_stops_at_once_and_a_killed_run_blocks_nothing(tmp_path, data_env, capsys):
    out = tmp_path / "runs"
    folder = out / "locked"
    # minutes of mnist: the holder is still training while the test acts
    long = _profile(tmp_path / "a", datasets=["mnist"], max_epochs=1000, patience=1000, max_rows=5000)
    other = _profile(tmp_path / "b", datasets=["churn"])  # other settings, the same output folder
    holder = _start_holder(long, out)
    try:
        command = f"asymlib train {long} --out {out} --no-progress"
        for attempt in ("train", "run"):
            extra = ["--no-report"] if attempt == "run" else []
            assert main([attempt, str(other), "--out", str(out), "--no-progress", *extra]) == 2
            lines = capsys.readouterr().err.strip().splitlines()
            assert lines == [
                f"asymlib {attempt}: {folder.resolve()} is in use by another run (pid {holder.pid} on "
                f"{socket.gethostname()}, `{command}`, running since {_record(folder)['started']}); "
                "wait until it ends, or write to another output folder (--out)"
            ]
        assert not list(folder.glob("deep_ensembles/shards/churn-*"))  # nothing trained, nothing written
        assert holder.poll() is None  # the holder was not disturbed
    finally:
        holder.kill()  # SIGKILL: the run cannot clean up after itself
        holder.communicate(timeout=60)
    assert _record(folder)["pid"] == holder.pid  # its lock file is still there...
    assert main(["train", str(other), "--out", str(out), "--no-progress"]) == 0  # ...and blocks nothing
    assert "trained 1 unit" in capsys.readouterr().out
    assert not (folder / LOCK).exists()  # a run that ends removes its lock file


def _record(folder: Path) -> dict:
    return json.loads((folder / LOCK).read_text())


def test_the_lock_records_its_holder_and_leaves_nothing_behind(tmp_path):
    from asymlib.execution.lock import FolderBusy, holding

    folder = tmp_path / "runs" / "p"
    with holding(folder):
        record = _record(folder)
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert set(record) == {"pid", "host", "command", "started"}
        with pytest.raises(FolderBusy, match=rf"^{folder} is in use by another run \(pid {os.getpid()} on "):
            with holding(folder):
                pass
    assert not (tmp_path / "runs").exists()  # the folders it made for the lock alone are gone
    folder.mkdir(parents=True)
    (folder / "kept").write_text("")
    with holding(folder):
        pass
    assert sorted(p.name for p in folder.iterdir()) == ["kept"]
