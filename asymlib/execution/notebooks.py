"""Executing one section notebook with papermill, in its own process and Jupyter kernel.

The runner calls ``execute_notebook`` once per dataset; each call starts a papermill
subprocess (so a crash or a Ctrl-C stays in that process) with the dataset's parameters and
its share of the machine's threads, and writes papermill's own output beside the executed
notebook. ``check_kernel`` fails once, before anything starts, when the kernel would run
another Python than this one, and ``check_parameters_cell`` when the notebook has no cell
tagged ``parameters`` (papermill would run every dataset with the notebook's defaults).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from ..core.project import project_root
from ..reports.html import trust_notebook
from ..sections.settings import SectionSettings
from ..sections.units import partial_path
from .params import Section

#: The kernel papermill starts. Jupyter always knows "python3" where ipykernel is installed,
#: and launches it with the interpreter that runs papermill (here ``sys.executable``), so the
#: notebooks see the same environment as the runner without any ``ipykernel install``.
DEFAULT_KERNEL = "python3"


class KernelError(RuntimeError):
    """No suitable Jupyter kernel to execute the notebooks with."""


class NotebookError(RuntimeError):
    """A section notebook that papermill cannot give a dataset's parameters to."""


def check_parameters_cell(notebook: Path) -> None:
    """Fail early (not once per dataset) if ``notebook`` has no cell tagged ``parameters``.

    Papermill puts each dataset's parameters in a cell after the one tagged ``parameters``;
    without such a cell it only warns in the dataset's log and runs the notebook with its own
    defaults, so every dataset's notebook would train and show the default dataset.
    """
    from papermill.iorw import load_notebook_node
    from papermill.utils import find_first_tagged_cell_index

    try:
        loaded = load_notebook_node(str(notebook))  # as papermill reads it, every cell's tags in place
    except (OSError, ValueError) as error:
        raise NotebookError(f"cannot read the notebook {notebook}: {error}") from None
    if find_first_tagged_cell_index(loaded, "parameters") < 0:
        raise NotebookError(
            f"{notebook} has no cell tagged 'parameters', so papermill would run every dataset with the "
            "notebook's own defaults; tag the cell that sets dataset, out_dir, ... as `parameters` "
            "(JupyterLab: Property Inspector > Cell Tags)"
        )


def check_kernel(kernel: str) -> None:
    """Fail early (not once per notebook) if papermill could not start ``kernel`` here."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise KernelError(
            f"no Jupyter kernel named {kernel!r}; install one for this interpreter with "
            f"`{sys.executable} -m ipykernel install --sys-prefix --name {kernel}`"
        ) from None
    program = spec.argv[0]
    # jupyter_client replaces a bare "python" with the launching interpreter; an absolute
    # path elsewhere (e.g. a user-wide kernel) would run the notebooks in another Python.
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    if program not in bare and Path(program).resolve() != Path(sys.executable).resolve():
        raise KernelError(
            f"the Jupyter kernel {kernel!r} runs {program}, not this interpreter ({sys.executable}); "
            f"install a kernel for it (`{sys.executable} -m ipykernel install --sys-prefix --name asymlib`) "
            "and pass kernel='asymlib' (--kernel asymlib)"
        )


def notebook_parameters(section: Section, settings: SectionSettings, dataset: str, out_dir: Path, threads: int) -> dict:
    """The notebook's papermill parameters: the section's own settings (plain values) and
    where and how to run; the notebook builds its settings object back from them."""
    values = settings.as_dict()
    own = {key: values[key] for key in section.keys}
    return {"dataset": dataset, **own, "out_dir": str(out_dir), "threads": threads, "progress": False}


#: Seconds papermill waits for a kernel to start (its default, 60, is short on a 2-core
#: machine starting several kernels while others train).
KERNEL_START_SECONDS = 180
#: Tries for a notebook whose kernel ran no cell.
KERNEL_START_TRIES = 2

#: The papermill processes running now, so that an interrupted runner can stop them.
_running: set[subprocess.Popen] = set()
_running_lock = threading.Lock()


def execute_notebook(
    notebook: Path, output: Path, parameters: dict, *, threads: int, kernel: str
) -> tuple[bool, float]:
    """Run one notebook with papermill in a subprocess; its output goes to ``<output>.log``.

    The subprocess exits when this process does, however it ends (``papermill_child``).
    A run whose kernel never executed a cell (it did not start in time, or died starting, as
    happens now and then when several kernels start at once on a busy machine) is tried once
    more; the log keeps both tries. papermill writes the notebook as it goes, under a
    temporary name beside ``output`` (``partial_path``); when it ends, failed or not, that
    file is renamed to ``output``, so ``output`` is never a notebook half written, and a
    failed one still shows its traceback. When papermill wrote none (or half of one), an
    older ``output`` is removed: it would show older results. The executed notebook is signed for this user's
    Jupyter (``trust_notebook``), so that JupyterLab draws its stored charts. Returns whether
    it succeeded and the seconds it took.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    partial = partial_path(output)
    partial.unlink(missing_ok=True)  # left by a run that was killed
    command = [
        sys.executable,
        "-m",
        "asymlib.execution.papermill_child",
        str(notebook),
        str(partial),
        "--parameters_yaml",
        yaml.safe_dump(parameters),
        "--kernel",
        kernel,
        "--start-timeout",
        str(KERNEL_START_SECONDS),
        "--no-progress-bar",
        "--cwd",
        str(project_root()),
    ]
    started = time.perf_counter()
    log_path = output.with_suffix(".log")
    log_path.write_text("")
    for attempt in range(1, KERNEL_START_TRIES + 1):
        returncode = _papermill(command, log_path, env)
        # A signal (negative status) or the parent's exit (143) means stop, not try again.
        if returncode in (0, 143) or returncode < 0 or not _no_cell_ran(partial):
            break
        if attempt < KERNEL_START_TRIES:
            with open(log_path, "a") as log:
                log.write(f"\n[asymlib] the kernel ran no cell (exit status {returncode}); trying once more\n\n")
    if _readable(partial):
        partial.replace(output)
    else:  # none, or half a file (a full disk): neither is this run's notebook
        partial.unlink(missing_ok=True)
        output.unlink(missing_ok=True)
    if output.is_file():
        try:
            trust_notebook(output)
        # Signing only spares the user a "trust" click; it must never fail a run (a truncated
        # notebook of a killed run, a locked or read-only signature database).
        except Exception as error:
            print(f"could not sign {output} as trusted: {error}", file=sys.stderr)
    return returncode == 0, time.perf_counter() - started


def _papermill(command: list[str], log_path: Path, env: dict) -> int:
    with open(log_path, "a") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        with _running_lock:
            _running.add(process)
        try:
            return process.wait()
        finally:
            with _running_lock:
                _running.discard(process)


def _readable(notebook: Path) -> bool:
    """Whether ``notebook`` is there and whole (it parses as JSON)."""
    try:
        json.loads(notebook.read_bytes())
    except (OSError, ValueError):
        return False
    return True


def _no_cell_ran(output: Path) -> bool:
    """Whether papermill's notebook shows no executed code cell (or was never written)."""
    try:
        cells = json.loads(output.read_text())["cells"]
    except (FileNotFoundError, ValueError, KeyError):
        return True
    return all(cell.get("execution_count") is None for cell in cells if cell.get("cell_type") == "code")


def stop_running_notebooks() -> None:
    """Ask every papermill process still running to stop (SIGTERM); their kernels follow."""
    with _running_lock:
        processes = list(_running)
    for process in processes:
        if process.poll() is None:
            process.terminate()
