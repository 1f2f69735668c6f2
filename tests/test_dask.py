"""The runner's tasks on real Dask clusters, and what a profile will cost.

test_runner.py's smoke run already goes through the default path (a LocalCluster of 2
worker processes) and must match the committed fingerprint of the serial notebooks. Here:
a scheduler and two workers started as processes on 127.0.0.1 (as a user would by hand),
a worker killed while it trains a unit, a client killed mid-run and run again, and
``asymlib estimate``. Every run is compared with the same units trained one after the other
in this process by the notebooks' own functions (``run_deep_ensembles``, ``run_mixtures``).

The profile is smoke's, narrowed to churn and made a little longer (more epochs), so that
a task lasts long enough to be killed while it runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fingerprint import table_fingerprint

from asymlib.core.data import RAW_FILES, load_dataset
from asymlib.execution.cli import main
from asymlib.execution.cluster import open_cluster, resources_for
from asymlib.execution.estimate import estimate_profile, unit_seconds, wall_hours
from asymlib.sections.deep_ensembles import DeepEnsembleSettings, run_deep_ensembles
from asymlib.sections.mixtures import MixtureSettings, run_mixtures
from asymlib.sections.units import on_device

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())
DASK = Path(sys.executable).parent / "dask"
TABLES = {"deep_ensembles": ("models", "ensembles"), "mixtures": ("mixtures", "usage")}

#: Smoke narrowed to churn, with epochs enough for a unit to last a second or two.
PROFILE = {
    "deep_ensembles": {
        **SMOKE["deep_ensembles"],
        "datasets": ["churn"],
        "repeats": 2,
        "max_epochs": 60,
        "patience": 60,
    },
    "mixtures": {
        **SMOKE["mixtures"],
        "datasets": ["churn"],
        "gatings": ["standard"],
        "kinds": ["mlp", "wmlp"],
        "max_epochs": 30,
        "patience": 30,
    },
}


def _data_dir() -> Path:
    for candidate in (os.environ.get("ASYMLIB_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and all((Path(candidate) / rel).is_file() for files in RAW_FILES.values() for rel in files):
            return Path(candidate)
    pytest.fail("raw data not found: run `asymlib fetch --from DIR` (make setup does) or set ASYMLIB_DATA")


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv("ASYMLIB_DATA", str(_data_dir()))


def _profile(folder: Path, sections=("deep_ensembles", "mixtures")) -> Path:
    path = folder / "churn.yaml"
    path.write_text(yaml.safe_dump({name: PROFILE[name] for name in sections}))
    return path


def _fingerprints(section_dir: Path, section: str) -> dict[str, str]:
    return {table: table_fingerprint(pd.read_parquet(section_dir / f"{table}.parquet")) for table in TABLES[section]}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Fingerprints of every table of PROFILE, its units trained one after the other in this
    process (one torch thread, tests/conftest.py) by the functions the notebooks call."""
    folder, data = tmp_path_factory.mktemp("serial"), _data_dir()
    where = dict(data_dir=data, progress=False)
    de = DeepEnsembleSettings.from_profile(PROFILE["deep_ensembles"], where="PROFILE")
    models, ensembles = run_deep_ensembles("churn", de, out_dir=folder / "de", **where)
    mx = MixtureSettings.from_profile(PROFILE["mixtures"], where="PROFILE")
    mixtures, usage = run_mixtures("churn", mx, out_dir=folder / "mx", **where)
    frames = {"models": models, "ensembles": ensembles, "mixtures": mixtures, "usage": usage}
    return {section: {t: table_fingerprint(frames[t]) for t in tables} for section, tables in TABLES.items()}


# --------------------------------------------------------------------------- a cluster by hand


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _cluster_by_hand(folder: Path, *, workers: int = 2):
    """`dask scheduler` and `dask worker` processes on 127.0.0.1, as README tells a user to
    start them; yields (address, {worker address: its process}, a client of the test's)."""
    from distributed import Client

    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "ASYMLIB_DATA": str(_data_dir())}
    log = open(folder / "cluster.log", "w")
    start = lambda *args: subprocess.Popen(  # noqa: E731
        [str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder, start_new_session=True
    )
    processes = [
        start("scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--dashboard-address", ":0")
    ]
    client = None
    try:
        processes += [
            start("worker", address, "--nthreads", "1", "--no-nanny", "--name", f"w{i}") for i in range(workers)
        ]
        client = Client(address, timeout=60)
        client.wait_for_workers(workers, timeout=120)
        pids = client.run(os.getpid)
        by_pid = {p.pid: p for p in processes}
        yield address, {worker: by_pid[pid] for worker, pid in pids.items()}, client
    finally:
        if client is not None:
            client.close()
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        log.close()


def test_a_cluster_started_by_hand_gives_the_serial_tables(serial, data_env, tmp_path, capsys):
    # the mixtures here, the deep ensembles in the next test: both sections go through a cluster by hand
    profile = _profile(tmp_path, sections=["mixtures"])
    with _cluster_by_hand(tmp_path) as (address, workers, _):
        status = main(
            [
                "run",
                str(profile),
                "--scheduler",
                address,
                "--out",
                str(tmp_path / "runs"),
                "--no-progress",
                "--no-report",
            ]
        )
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert f"on the Dask cluster at {address} (2 workers now)" in printed and "dashboard: http://127.0.0.1:" in printed
    assert _fingerprints(tmp_path / "runs" / "churn" / "mixtures", "mixtures") == serial["mixtures"]


def test_a_worker_killed_mid_task_is_replaced_and_the_tables_are_the_same(serial, data_env, tmp_path):
    profile = _profile(tmp_path, sections=["deep_ensembles"])
    with _cluster_by_hand(tmp_path) as (address, workers, client):
        runner = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asymlib",
                "run",
                str(profile),
                "--scheduler",
                address,
                "--out",
                str(tmp_path / "runs"),
                "--no-progress",
                "--no-report",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        deadline, killed = time.monotonic() + 120, None
        while killed is None and time.monotonic() < deadline and runner.poll() is None:
            busy = [worker for worker, tasks in client.processing().items() if tasks]
            if busy:
                killed = workers[busy[0]]
                killed.send_signal(signal.SIGKILL)
            time.sleep(0.05)
        out, err = runner.communicate(timeout=300)
    assert killed is not None, "no task was seen running"
    assert killed.wait(timeout=10) == -signal.SIGKILL
    assert runner.returncode == 0, err
    assert "2 units trained" in out
    assert _fingerprints(tmp_path / "runs" / "churn" / "deep_ensembles", "deep_ensembles") == serial["deep_ensembles"]


def test_a_killed_client_resumes_from_the_shards_it_wrote(serial, data_env, tmp_path, capsys):
    profile = _profile(tmp_path, sections=["mixtures"])
    section = tmp_path / "runs" / "churn" / "mixtures"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asymlib",
            "run",
            str(profile),
            "--out",
            str(tmp_path / "runs"),
            "--workers",
            "1",
            "--no-progress",
            "--no-report",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while len(list(section.glob("shards/*-mixtures.parquet"))) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.kill()  # the client alone: its LocalCluster's workers exit with it
    runner.wait(timeout=30)
    kept = {p.name: p.stat().st_mtime_ns for p in section.glob("shards/*-mixtures.parquet")}
    assert 1 <= len(kept) < 4, "the run was not stopped half-way"
    assert (section / "settings.yaml").exists()  # written before the first shard

    assert main(["run", str(profile), "--out", str(tmp_path / "runs"), "--no-progress", "--no-report"]) == 0
    assert f"({4 - len(kept)} units trained)" in capsys.readouterr().out
    assert {name: (section / "shards" / name).stat().st_mtime_ns for name in kept} == kept
    assert _fingerprints(section, "mixtures") == serial["mixtures"]


def test_losing_the_scheduler_mid_run_keeps_the_finished_units_and_says_so(data_env, tmp_path):
    """The scheduler killed once the first unit is saved: one line naming its address, how far
    the run got and where its units are, exit status 5, and the cause in churn.log (it was a
    raw asyncio.CancelledError traceback, "churn failed with NoneType: None", exit status 1)."""
    from asymlib.execution.params import SECTIONS, load_params

    address = f"tcp://127.0.0.1:{_free_port()}"
    profile = tmp_path / "lost.yaml"
    units = {**PROFILE["deep_ensembles"], "repeats": 4, "max_epochs": 40, "patience": 40}
    profile.write_text(yaml.safe_dump({"scheduler": address, "deep_ensembles": units}))
    section = tmp_path / "runs" / "lost" / "deep_ensembles"
    log = open(tmp_path / "cluster.log", "w")
    start = lambda *args: subprocess.Popen(  # noqa: E731
        [str(DASK), *args], stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True
    )
    scheduler = start(
        "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--dashboard-address", ":0"
    )
    worker = start("worker", address, "--nthreads", "1", "--no-nanny")
    try:
        runs = str(tmp_path / "runs")
        command = [sys.executable, "-m", "asymlib", "run", str(profile), "--out", runs, "--no-progress"]
        runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        deadline = time.monotonic() + 180
        while not list(section.glob("shards/*-ensembles.parquet")) and time.monotonic() < deadline:
            assert runner.poll() is None, runner.communicate()
            time.sleep(0.05)
        scheduler.kill()
        out, err = runner.communicate(timeout=120)
    finally:
        for process in (scheduler, worker):
            process.kill()
            process.wait(timeout=30)
        log.close()

    store = SECTIONS["deep_ensembles"].store(section, load_params(profile)["deep_ensembles"])
    kept = store.units()
    assert 1 <= len(kept) < 4 and all(store.done(unit) for unit in kept), out
    assert runner.returncode == 5, err
    assert err.strip() == (
        f"asymlib run: lost the Dask scheduler at {address} after {len(kept)} of 4 deep_ensembles units; "
        f"the finished units are kept in {section} (the cause is in churn.log there); run again to resume"
    )
    cause = (section / "churn.log").read_text()
    assert f"lost the Dask scheduler at {address} while its units ran: FutureCancelledError: " in cause
    assert "scheduler-connection-lost" in cause and "NoneType" not in cause


# --------------------------------------------------------------------------- devices


def test_local_workers_allocate_without_dasks_malloc_trim_threshold(monkeypatch):
    """Dask's nannies would set MALLOC_TRIM_THRESHOLD_=65536 in every worker (and in this
    process, whose later children, the notebook kernels, inherit it); ours must not have it
    (it made mixture units train 12 % slower). OMP_NUM_THREADS stays as Dask sets it."""
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    with open_cluster(None, workers=1, resources={}) as cluster:
        environs = cluster.client.run(lambda: dict(os.environ))
    (environ,) = environs.values()
    assert "MALLOC_TRIM_THRESHOLD_" not in environ
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ
    assert environ.get("OMP_NUM_THREADS") == "1"


def test_gpu_tasks_ask_for_a_whole_gpu_and_cpu_tasks_for_nothing():
    assert resources_for("cuda") == {"GPU": 1} and resources_for("cuda:1") == {"GPU": 1}
    assert resources_for("cpu") == {}


def test_a_units_data_move_to_its_device_in_one_copy(data_env):
    data = load_dataset("churn", max_rows=300)
    assert on_device(data, "cpu") is data  # loaded data live on the CPU: nothing is copied
    # The "meta" device (shapes without storage) stands in for a GPU: the same code path.
    moved = on_device(data, "meta")
    parts = ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test")
    assert all(
        getattr(moved, p).device.type == "meta" and getattr(moved, p).shape == getattr(data, p).shape for p in parts
    )
    assert all(getattr(data, p).device.type == "cpu" for p in parts) and moved.feature_names == data.feature_names
    assert on_device(moved, "meta") is moved


# --------------------------------------------------------------------------- estimate


def test_estimate_of_the_smoke_profile(data_env, capsys):
    assert (
        main(
            [
                "estimate",
                str(REPO / "params" / "smoke.yaml"),
                "--workers",
                "1",
                "4",
                "--no-progress",
                "--datasets",
                "churn",
                "mnist",
                "--sections",
                "deep_ensembles",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "CPU-hours per section and dataset" in printed and "   4 workers:" in printed

    estimate = estimate_profile(REPO / "params" / "smoke.yaml", datasets=["churn", "mnist"], progress=False)
    units = estimate.units
    assert (units["cpu_hours"] > 0).all() and (estimate.shapes["seconds_per_epoch"] > 0).all()
    assert len(units) == 2 * (1 + 16)  # every unit of the grid: 1 deep-ensemble unit, 16 mixtures
    cost = units.groupby(["section", "dataset"])["cpu_hours"].sum()
    assert cost["deep_ensembles", "mnist"] > cost["deep_ensembles", "churn"]  # 784 features against 13
    assert cost["mixtures", "mnist"] > cost["mixtures", "churn"]
    assert (estimate.shapes["epochs_max"] == 3).all()  # smoke's cap of 3 epochs


def test_estimate_arithmetic():
    # one member: every epoch costs the same; 4 members stopping at 10, 10, 10 and 30 epochs
    assert unit_seconds(2.0, 2.0, 1, 5, 5) == 10.0
    assert unit_seconds(4.0, 1.0, 4, 15.0, 30) == pytest.approx(30 * 1.0 + (4 * 15 - 30) * 1.0)
    assert wall_hours([4, 3, 3, 2], 2) == 6 and wall_hours([5, 1, 1], 4) == 5 and wall_hours([1] * 8, 1) == 8
