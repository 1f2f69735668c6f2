"""Runs never report a wrong result as success: divergence, settings that would mix, output
folders that cannot be written, interrupts, damaged shards, grids that count twice.

Every test drives the real command (``asymlib run`` through ``main`` or as a process) on
the real raw files, with the smoke profile narrowed to a dataset or two so that a run takes
seconds; none replaces our own code with a mock.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from asymlib.core.data import RAW_FILES, load_dataset
from asymlib.execution.cli import main
from asymlib.execution.params import ParamsError, load_params
from asymlib.reports.tables import load_results
from asymlib.sections.units import ShardMismatch

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "params" / "smoke.yaml").read_text())


def _data_dir() -> Path:
    for candidate in (os.environ.get("ASYMLIB_DATA"), REPO / "data", REPO.parent / "shared" / "data"):
        if candidate and all((Path(candidate) / rel).is_file() for files in RAW_FILES.values() for rel in files):
            return Path(candidate)
    pytest.fail("raw data not found: run `asymlib fetch --from DIR` (make setup does) or set ASYMLIB_DATA")


def _profile(folder: Path, name: str, *, mixtures: dict | None = None, **deep_ensembles) -> Path:
    """A smoke profile file with the deep-ensemble settings changed (and a mixture section
    only when asked for): ``folder/<name>.yaml``."""
    document = {"deep_ensembles": {**SMOKE["deep_ensembles"], **deep_ensembles}}
    if mixtures is not None:
        document["mixtures"] = {**SMOKE["mixtures"], **mixtures}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv("ASYMLIB_DATA", str(_data_dir()))


def _run(*args: str | Path) -> int:
    return main(["run", *map(str, args), "--no-progress"])


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- one finished run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished deep-ensemble run of churn and california, report included: (profile, out)."""
    folder = tmp_path_factory.mktemp("finished")
    profile = _profile(folder, "pair", datasets=["churn", "california"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ASYMLIB_DATA", str(_data_dir()))
        assert _run(profile, "--out", folder / "runs") == 0
    return profile, folder / "runs"


def _copy_of(finished, tmp_path) -> tuple[Path, Path]:
    profile, out = finished
    shutil.copytree(out, tmp_path / "runs")
    return profile, tmp_path / "runs"


def test_a_finished_run_is_resummarised_without_writing(finished, data_env, capsys):
    profile, out = finished
    before = _files(out)
    assert _run(profile, "--out", out) == 0
    assert _files(out) == before
    assert "skipped (already complete): churn, california" in capsys.readouterr().out


def test_a_truncated_shard_is_redone(finished, data_env, tmp_path):
    profile, out = _copy_of(finished, tmp_path)
    shard = out / "pair" / "deep_ensembles" / "shards" / "churn-h8-r0-models.parquet"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    assert _run(profile, "--out", out, "--no-report") == 0
    models = pd.read_parquet(shard)  # whole again
    assert sorted(models["type"].unique()) == ["mlp", "wmlp"]
    combined = pd.read_parquet(out / "pair" / "deep_ensembles" / "models.parquet")
    assert sorted(combined["dataset"].unique()) == ["california", "churn"]


def test_a_forced_subset_with_other_settings_refuses_to_mix(finished, data_env, tmp_path, capsys):
    profile, out = _copy_of(finished, tmp_path)
    changed = _profile(tmp_path, "pair", datasets=["churn", "california"], max_epochs=2)
    section = out / "pair" / "deep_ensembles"
    before = _files(section)
    assert _run(changed, "--out", out, "--datasets", "churn", "--force") == 2
    message = capsys.readouterr().err
    assert "would mix settings" in message and "california" in message and "max_epochs: 3 -> 2" in message
    assert "--force" in message and len(message.strip().splitlines()) == 1
    assert _files(section) == before  # refused before anything was deleted or written


def test_other_settings_are_refused_for_the_dataset_itself(finished, data_env, tmp_path, capsys):
    profile, out = _copy_of(finished, tmp_path)
    changed = _profile(tmp_path, "pair", datasets=["churn", "california"], patience=1)
    assert _run(changed, "--out", out, "--datasets", "churn") == 2
    assert "holds churn results made with other settings (patience: 2 -> 1)" in capsys.readouterr().err


def test_a_shard_of_another_unit_is_refused_then_redone_with_force(finished, data_env, tmp_path, capsys):
    profile, out = _copy_of(finished, tmp_path)
    shards = out / "pair" / "deep_ensembles" / "shards"
    for table in ("models", "ensembles"):  # california's unit under churn's name
        shutil.copyfile(shards / f"california-h8-r0-{table}.parquet", shards / f"churn-h8-r0-{table}.parquet")
    assert _run(profile, "--out", out, "--no-report") == 2
    message = capsys.readouterr().err
    assert "holds churn results that are not what their names say" in message
    assert "its models shard shards/churn-h8-r0-models.parquet was written for unit california-h8-r0" in message
    assert _run(profile, "--out", out, "--datasets", "churn", "--force", "--no-report") == 0
    assert set(pd.read_parquet(shards / "churn-h8-r0-models.parquet")["dataset"]) == {"churn"}


# --------------------------------------------------------------------------- what a run writes


def test_a_truncated_csv_table_is_written_again(finished, data_env, tmp_path):
    profile, out = _copy_of(finished, tmp_path)
    table = out / "pair" / "deep_ensembles" / "models.csv"
    whole = table.read_bytes()
    table.write_bytes(whole[: len(whole) // 2])  # the Parquet copy beside it is intact
    assert _run(profile, "--out", out, "--no-report") == 0
    assert table.read_bytes() == whole


@contextlib.contextmanager
def _file_size_limit(size: int):
    """Writes beyond ``size`` bytes fail part-way for the block, as on a full disk (Python
    ignores SIGXFSZ, so the write raises OSError: File too large)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_combined_table_is_never_half_written(tmp_path):
    from asymlib.execution.records import OutputError, write_if_changed

    path = tmp_path / "models.parquet"
    write_if_changed(pd.DataFrame({"a": range(10), "b": 0.5}), path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    big = pd.DataFrame({"a": range(300_000), "b": 0.5})
    with _file_size_limit(100_000), pytest.raises(OutputError, match=f"cannot write to {tmp_path}"):
        write_if_changed(big, path)
    # the old Parquet and CSV files are whole under their names, and no partial file is left
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_if_changed(big, path)
    assert pd.read_parquet(path).equals(big) and len(pd.read_csv(path.with_suffix(".csv"))) == len(big)


def test_a_report_cut_short_is_never_taken_for_one(finished, data_env, tmp_path, monkeypatch, capsys):
    import errno

    profile, out = _copy_of(finished, tmp_path)
    html = out / "pair" / "report_deep_ensembles.html"
    html.write_bytes(html.read_bytes()[: html.stat().st_size // 2])  # a page cut short is not a report
    write_text = Path.write_text

    def full_disk(path, data, *args, **kwargs):  # the page's write stops half-way, the disk full
        if path.suffix != ".html":
            return write_text(path, data, *args, **kwargs)
        write_text(path, data[: len(data) // 2], *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", full_disk)
    assert _run(profile, "--out", out) == 1
    assert "report NOT built: OSError: [Errno 28] No space left on device" in capsys.readouterr().out
    assert not html.exists() and not list(html.parent.glob("*.partial*"))  # no page rather than half of one
    monkeypatch.setattr(Path, "write_text", write_text)
    assert _run(profile, "--out", out) == 0  # the next run builds it
    page = html.read_text(encoding="utf-8")
    assert page.rstrip().endswith("</html>") and "Datasets: california, churn." in page


def test_a_report_is_rebuilt_when_its_tables_changed(finished, data_env, tmp_path, capsys):
    profile, out = _copy_of(finished, tmp_path)
    assert _run(profile, "--out", out, "--datasets", "adult", "--no-report") == 0
    html = out / "pair" / "report_deep_ensembles.html"
    assert "Datasets: california, churn." in html.read_text(encoding="utf-8")  # built before adult
    capsys.readouterr()
    assert _run(profile, "--out", out, "--datasets", "adult") == 0  # trains nothing
    assert "skipped (already complete): adult" in capsys.readouterr().out
    assert "Datasets: california, churn, adult." in html.read_text(encoding="utf-8")


def test_a_moved_report_reads_its_own_folder_first(finished, tmp_path, monkeypatch, capsys):
    """``mv runs/pair runs/pair_old`` and a new ``runs/pair``: the old report draws from
    ``runs/pair_old``, not from the folder written into it, which now holds other results."""
    from asymlib.reports.replay import locate_notebook
    from asymlib.reports.summaries import locate_section

    _, out = _copy_of(finished, tmp_path)
    moved = out / "pair"
    report = nbformat.read(moved / "report_deep_ensembles.ipynb", as_version=4)
    (injected,) = [c for c in report.cells if "injected-parameters" in c.metadata.get("tags", [])]
    values = {}
    exec(injected.source, {}, values)
    recorded = Path(values["section_dir"])
    assert recorded == finished[1] / "pair" / "deep_ensembles"  # the "new" run, elsewhere
    monkeypatch.chdir(moved)  # where JupyterLab starts the moved report's kernel
    assert locate_section(values["section_dir"]) == moved / "deep_ensembles"
    assert (
        locate_notebook(recorded / "churn.ipynb", section="deep_ensembles") == moved / "deep_ensembles" / "churn.ipynb"
    )
    assert capsys.readouterr().out == ""
    shutil.rmtree(moved / "deep_ensembles")  # its own folder gone: the recorded one, and it says so
    assert locate_section(values["section_dir"]) == recorded
    assert locate_notebook(recorded / "churn.ipynb", section="deep_ensembles") == recorded / "churn.ipynb"
    assert capsys.readouterr().out.startswith(
        f"Note: no results in {moved / 'deep_ensembles'}, this report's own folder if its kernel started beside it"
    )


def _rewrite(shard: Path, **columns) -> None:
    """Change columns of a shard in place (``column=function of the old column``), keeping its
    Parquet metadata, the record of its unit and settings: as a hand edit or a bug would."""
    table = pq.read_table(shard)
    frame = table.to_pandas()
    for column, change in columns.items():
        frame[column] = change(frame[column])
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(table.schema.metadata), shard
    )


def _nan_in_first_row(column: pd.Series) -> pd.Series:
    return column.where(column.index != 0, float("nan"))


@pytest.mark.parametrize(
    "shard, columns, words",
    [
        (  # an accuracy multiplied by 1000: "22879 %" improvement in the summary
            "churn-h8-r0-ensembles",
            {c: (lambda x: x * 1000) for c in ("ensemble_metric", "interpolated_metric", "single_mean")},
            "has ensemble_metric 796.667, interpolated_metric 796.667, single_mean 648.333: not an accuracy (0 to 1)",
        ),
        ("california-h8-r0-models", {"metric": lambda x: -x}, ": not an RMSE (0 or more)"),
        ("churn-h8-r0-models", {"metric": _nan_in_first_row}, "has metric nan in rows not flagged diverged"),
        ("churn-h8-r0-ensembles", {"relative_improvement": lambda x: x * 1000}, "has relative_improvement 22879.2"),
        ("churn-h8-r0-models", {"dataset": lambda x: "adult"}, "holds rows of adult-h8-r0"),
        ("churn-h8-r0-ensembles", {"hidden": lambda x: x * 2}, "holds rows of churn-h16-r0"),
    ],
    ids=["accuracy-x1000", "negative-rmse", "unflagged-nan", "improvement", "other-dataset", "other-hidden"],
)
def test_a_shard_whose_rows_are_no_results_of_its_unit_is_refused_naming_it(
    finished, data_env, tmp_path, capsys, shard, columns, words
):
    profile, out = _copy_of(finished, tmp_path)
    section = out / "pair" / "deep_ensembles"
    _rewrite(section / "shards" / f"{shard}.parquet", **columns)
    (section / "ensembles.parquet").unlink()  # what a report reads from the shards then
    assert _run(profile, "--out", out, "--no-report") == 2
    message = capsys.readouterr().err
    assert f"its {shard.rsplit('-', 1)[1]} shard shards/{shard}.parquet " in message and words in message
    assert len(message.strip().splitlines()) == 1 and "--force" in message
    with pytest.raises(ShardMismatch, match=re.escape(f"shards/{shard}.parquet")):  # nor read by a report
        load_results(section)


def test_a_hand_edited_settings_yaml_is_refused_naming_it(finished, data_env, tmp_path, capsys):
    profile, out = _copy_of(finished, tmp_path)
    summary = out / "pair" / "deep_ensembles" / "settings.yaml"
    recorded = yaml.safe_load(summary.read_text())
    edited = {**recorded, "churn": {**recorded["churn"], "patience": 16}}  # as if it ran the paper's rule
    summary.write_text(yaml.safe_dump(edited, sort_keys=False))
    assert _run(profile, "--out", out, "--no-report") == 2
    message = capsys.readouterr().err
    assert "holds churn results whose settings.yaml does not match them" in message
    assert "settings.yaml says churn was made with patience 16, but its shards record patience 2" in message
    summary.write_text(yaml.safe_dump(recorded, sort_keys=False))  # put back: the run is whole again
    assert _run(profile, "--out", out, "--no-report") == 0


# --------------------------------------------------------------------------- failed runs


def test_a_run_that_trained_nothing_leaves_nothing_that_blocks(tmp_path, monkeypatch, capsys):
    # churn's file is its header only: every check before training passes, its unit fails.
    data = tmp_path / "data"
    data.mkdir()
    header = (_data_dir() / "Churn_Modelling.csv").read_text().splitlines()[0]
    (data / "Churn_Modelling.csv").write_text(header + "\n")
    monkeypatch.setenv("ASYMLIB_DATA", str(data))
    failing = _profile(tmp_path, "tiny", datasets=["churn"])
    out = tmp_path / "runs"
    assert _run(failing, "--out", out, "--no-report") == 1
    assert not (out / "tiny" / "deep_ensembles" / "settings.yaml").exists()
    other = _profile(tmp_path, "tiny", datasets=["churn"], max_epochs=2)
    capsys.readouterr()
    assert _run(other, "--out", out, "--no-report") == 1  # fails the same way; not refused
    assert "other settings" not in capsys.readouterr().err


# --------------------------------------------------------------------------- divergence


def _california_with_a_huge_target(tmp_path: Path) -> Path:
    """A copy of the raw data whose california has one training row with a target of 1e30
    (1e35 dollars): finite in float32, but its squared error is not, so every member that
    trains on it diverges in its first epoch."""
    source, data = _data_dir(), tmp_path / "data"
    shutil.copytree(source, data)
    rows = load_dataset("california", data_dir=source, max_rows=SMOKE["deep_ensembles"]["max_rows"])
    row = int(rows.row_indices["train"][0])
    lines = (source / "cal_housing.data").read_text().splitlines()
    fields = lines[row].split(",")
    fields[-1] = "1e35"
    lines[row] = ",".join(fields)
    (data / "cal_housing.data").write_text("\n".join(lines) + "\n")
    return data


def test_diverged_members_are_flagged_left_out_and_named(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ASYMLIB_DATA", str(_california_with_a_huge_target(tmp_path)))
    profile = _profile(
        tmp_path,
        "diverging",
        datasets=["california"],
        mixtures={"datasets": ["california"], "gatings": ["standard"], "kinds": ["mlp"], "experts": [2]},
    )
    out = tmp_path / "runs"
    assert _run(profile, "--out", out) == 3
    printed = capsys.readouterr()
    assert "DIVERGED: deep_ensembles: 8 members diverged" in printed.err
    assert "california hidden=8 mlp repeat=0 members 0, 1, 2, 3 (non-finite training loss in epoch 1)" in printed.err
    assert "DIVERGED: mixtures: 1 mixtures diverged" in printed.err
    assert "california without a finite value" in printed.out  # the summary names what it left out

    section = out / "diverging" / "deep_ensembles"
    models = pd.read_parquet(section / "models.parquet")
    assert models["diverged"].all() and models["metric"].isna().all()
    assert (models["diverged_reason"] == "non-finite training loss in epoch 1").all()
    ensembles = pd.read_parquet(section / "ensembles.parquet")
    assert (ensembles["excluded_members"] == ensembles["ensemble_size"]).all()
    assert ensembles["ensemble_metric"].isna().all()
    mixtures = pd.read_parquet(out / "diverging" / "mixtures" / "mixtures.parquet")
    assert mixtures["diverged"].all() and mixtures["metric"].isna().all()

    for section in ("deep_ensembles", "mixtures"):  # the warning comes right under the title
        report = nbformat.read(out / "diverging" / f"report_{section}.ipynb", as_version=4)
        assert report.cells[1].source.startswith("> **Warning: some results are not results.**")
        assert "california" in report.cells[1].source


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("deep_ensembles", "hidden_sizes", [8, 8], "deep_ensembles.hidden_sizes lists 8 more than once"),
        ("deep_ensembles", "datasets", ["churn", "churn"], "deep_ensembles.datasets lists 'churn' more than once"),
        ("mixtures", "kinds", ["mlp", "wmlp", "mlp"], "mixtures.kinds lists 'mlp' more than once"),
        ("mixtures", "experts", [1, 4], "mixtures.experts must include 2"),
    ],
)
def test_grids_that_would_count_twice_or_have_no_baseline_are_refused(tmp_path, capsys, section, key, value, expected):
    document = {name: dict(settings) for name, settings in SMOKE.items() if isinstance(settings, dict)}
    document[section][key] = value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(ParamsError, match=expected):
        load_params(path, sections=[section])
    assert main(["run", str(path), "--out", str(tmp_path / "runs")]) == 2
    message = capsys.readouterr().err
    assert str(path) in message and expected in message
    assert not (tmp_path / "runs").exists()


def test_a_dataset_named_twice_on_the_command_line_is_refused(tmp_path, capsys):
    path = _profile(tmp_path, "p")
    assert main(["run", str(path), "--datasets", "adult", "adult", "--out", str(tmp_path / "runs")]) == 2
    assert "lists 'adult' more than once" in capsys.readouterr().err


# --------------------------------------------------------------------------- output folders


@contextlib.contextmanager
def _read_only(folder: Path):
    """``folder`` and all below it cannot be written for the block. Root ignores file
    permissions, so as root the folder becomes a read-only bind mount of itself (the
    mount namespace of a container allows it); anyone else gets the write bits removed."""
    if os.geteuid() == 0:
        mounted = subprocess.run(
            ["mount", "--bind", "-o", "ro", str(folder), str(folder)], capture_output=True, text=True
        )
        if mounted.returncode != 0:
            pytest.fail(f"cannot make a read-only folder as root here (mount: {mounted.stderr.strip()})")
        try:
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
    else:
        paths = [folder, *folder.rglob("*")]
        for path in paths:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path in paths:
                path.chmod(0o755 if path.is_dir() else 0o644)


def test_output_folders_that_cannot_be_written(finished, data_env, tmp_path, capsys):
    profile, out = finished
    folder = tmp_path / "read-only"
    shutil.copytree(out, folder / "runs")
    (folder / "empty").mkdir()
    with _read_only(folder):
        assert _run(profile, "--out", folder / "empty") == 2
        message = capsys.readouterr().err.strip().splitlines()
        assert message == [
            f"asymlib run: cannot write to {folder / 'empty' / 'pair' / 'deep_ensembles'}: "
            f"{'Read-only file system' if os.geteuid() == 0 else 'Permission denied'}"
        ]

        assert _run(profile, "--out", folder / "runs") == 0  # re-summarising writes nothing
        assert "skipped (already complete): churn, california" in capsys.readouterr().out


# --------------------------------------------------------------------------- interrupts


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _kernels_of(pids: list[int]) -> list[int]:
    """Jupyter kernels launched by any of ``pids`` (they run in sessions of their own)."""
    kernels = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0") if entry.name.isdigit() else []
        except OSError:
            continue
        if any(f"JPY_PARENT_PID={pid}".encode() in environ for pid in pids):
            kernels.append(int(entry.name))
    return kernels


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def _training(pid: int) -> bool:
    """Whether process ``pid`` is a Dask worker that has started a unit: it loaded torch,
    which a worker imports only for its first task."""
    try:
        command = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        maps = (Path("/proc") / str(pid) / "maps").read_text()
    except OSError:
        return False
    return b"spawn_main" in command and "libtorch" in maps


def _start_runner(tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """``python -m asymlib run`` on two datasets, in a session of its own (like a terminal's
    job); returns it with its child processes once both workers of its LocalCluster are
    training a unit (units of a few minutes, so they are still at it when the test acts)."""
    profile = _profile(tmp_path, "stoppable", datasets=["mnist", "otto"], max_epochs=1000, patience=1000, max_rows=5000)
    runner = subprocess.Popen(
        [sys.executable, "-m", "asymlib", "run", str(profile), "--out", str(tmp_path / "runs"), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        start_new_session=True,
        env={**os.environ, "ASYMLIB_DATA": str(_data_dir())},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        children = _children(runner.pid)
        if len([pid for pid in children if _training(pid)]) == 2:
            return runner, children
        time.sleep(0.2)
    runner.kill()
    pytest.fail(f"the runner did not start its workers: {runner.communicate()}")


def _wait_gone(pids: list[int], seconds: float = 20) -> list[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return _alive(pids)


def test_ctrl_c_stops_with_one_line_and_status_130(tmp_path):
    runner, children = _start_runner(tmp_path)
    os.killpg(runner.pid, signal.SIGINT)  # what a terminal sends to its foreground job
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("asymlib run: stopped; ")
    assert err.strip().splitlines()[-1].endswith(" kept, re-run to resume")
    assert "Traceback" not in err
    assert _wait_gone(children) == []


def test_killing_the_runner_alone_stops_its_workers(tmp_path):
    runner, children = _start_runner(tmp_path)
    runner.kill()  # SIGKILL: the runner cannot pass anything on
    runner.communicate(timeout=60)
    assert _wait_gone(children) == []


def test_sigterm_stops_like_ctrl_c(tmp_path):
    runner, children = _start_runner(tmp_path)
    runner.terminate()  # the runner alone, as a batch scheduler would
    _, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, err
    assert "stopped; " in err and "Traceback" not in err
    assert _wait_gone(children) == []


def test_a_notebook_stops_with_the_runner(tmp_path, data_env):
    """After its units, a dataset's notebook runs in a papermill process with a kernel of its
    own; killing the runner then stops them too."""
    profile = _profile(tmp_path, "notebooks", datasets=["churn"])
    runner = subprocess.Popen(
        [sys.executable, "-m", "asymlib", "run", str(profile), "--out", str(tmp_path / "runs"), "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        children = _children(runner.pid)
        kernels = _kernels_of(children)
        if len(kernels) == 1:
            break
        time.sleep(0.2)
    else:
        runner.kill()
        pytest.fail("the runner did not start the notebook")
    runner.kill()
    runner.wait(timeout=60)
    assert _wait_gone(children + kernels) == []
