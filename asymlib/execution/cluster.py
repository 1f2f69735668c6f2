"""Where the runner's tasks run: a Dask ``LocalCluster`` on this machine, or a Dask cluster
that is already running, given by its scheduler's address.

    with open_cluster(None, workers=2, resources={}) as cluster:      # a LocalCluster
        for job, outcome in cluster.run(jobs, settings=..., threads=1, resources={}):
            ...                                                      # as tasks finish

A task is one work unit (``Job``) trained by ``tasks.train_unit`` on a worker; ``run``
submits them all, largest first, and yields each outcome (a ``UnitResult``, or a
``TaskFailure`` with the worker's traceback) as it arrives, under one progress bar with an
ETA. Dask runs a task again on another worker when its worker dies (up to
``distributed.scheduler.allowed-failures`` times, then the task fails with ``KilledWorker``).

Threads: each Dask worker runs one task at a time; the task sets its own torch threads.
Devices: a task whose device is a GPU asks for the worker resource ``GPU=1`` (``resources_for``),
so a GPU worker (``dask worker ADDRESS --resources GPU=1``) runs one unit at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch

from ..core.data import DataFileError
from ..sections.settings import SectionSettings
from .tasks import UnitResult, missing_raw_files, train_unit

#: Seconds to wait for an existing scheduler to answer before giving up.
CONNECT_SECONDS = 30
#: The Dask setting that would put MALLOC_TRIM_THRESHOLD_ into a LocalCluster's workers.
_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
#: Why Dask cancels every task of a client that lost its scheduler.
LOST = "scheduler-connection-lost"
#: Where a LocalCluster's dashboard listens (another port if that one is taken).
LOCAL_DASHBOARD = ":8787"


class ClusterError(RuntimeError):
    """No Dask scheduler at the given address, or no worker that could run the tasks."""


class SchedulerLost(RuntimeError):
    """The connection to the Dask scheduler was lost while its tasks ran (it stopped, or its
    machine or the network went away); the tasks not yet finished are lost with it.

    address: the scheduler's; cause: what the client said, "Name: message" on one line.
    message: what to tell the user (default: the address and the cause), which the runner
    gives with what it kept.
    """

    def __init__(self, address: str, cause: str, message: str | None = None) -> None:
        super().__init__(message or f"lost the Dask scheduler at {address} ({cause})")
        self.address = address
        self.cause = cause


@dataclass(frozen=True)
class Job:
    """One task: a work unit of a section.

    unit: its name in the ShardStore; coordinates: what picks it (``Section.grid``);
    priority: larger runs first (units that take longest, so that none starts last).
    """

    section: str
    dataset: str
    unit: str
    coordinates: dict = field(hash=False)
    priority: int = 0


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised (or whose workers kept dying): "Name: message" and the traceback."""

    error: str
    traceback: str


def resources_for(device: str) -> dict[str, int]:
    """The Dask worker resources a task on ``device`` needs: a whole GPU for CUDA devices
    (one unit per GPU at a time), nothing for the CPU.

    The one place where the runner distinguishes devices; the unit itself places its data
    with ``sections.units.on_device``.
    """
    return {"GPU": 1} if torch.device(device).type == "cuda" else {}


def available_cores() -> int:
    """CPU cores this process may use (respects affinity masks, unlike os.cpu_count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


class Cluster:
    """A connected Dask client, and whether its cluster is a LocalCluster of this run."""

    def __init__(self, client, *, local: bool, address: str) -> None:
        self.client = client
        self.local = local
        self.address = address

    @property
    def dashboard(self) -> str | None:
        return self.client.dashboard_link

    def workers(self) -> dict[str, dict]:
        """The scheduler's record of each worker (its ``resources``, ``host``, ...)."""
        return self.client.scheduler_info(n_workers=-1)["workers"]

    def threads(self, setting: int | None) -> int:
        """Torch threads per task: the section's ``threads`` if set; otherwise this machine's
        cores shared among the LocalCluster's workers, or 1 on an existing cluster, whose
        machines' cores the client cannot see (start one Dask worker per core there)."""
        if setting:
            return setting
        if self.local:
            return max(1, available_cores() // max(1, len(self.workers())))
        return 1

    def describe(self) -> str:
        count = len(self.workers())
        workers = f"{count} worker{'s' if count != 1 else ''}"
        if self.local:
            return f"a LocalCluster of {workers} (processes) on this machine"
        return f"the Dask cluster at {self.address} ({workers} now)"

    def check_workers(self, datasets: list[str], resources: dict[str, int], user_files: tuple[str, ...] = ()) -> None:
        """Fail before submitting anything if no worker offers ``resources`` or a worker
        lacks raw files of ``datasets`` (workers that join later are not checked: their
        tasks fail, naming the missing file)."""
        if not self.workers():
            print(f"no Dask workers at {self.address} yet; waiting for one (`dask worker {self.address}`)", flush=True)
            self.client.wait_for_workers(1)
        if resources:
            offering = [
                a
                for a, w in self.workers().items()
                if all(w.get("resources", {}).get(r, 0) >= n for r, n in resources.items())
            ]
            if not offering:
                wanted = " ".join(f"{r}={n}" for r, n in resources.items())
                raise ClusterError(
                    f"the tasks need the worker resource {wanted} (device: cuda), which no worker of "
                    f"{self.address} offers; start GPU workers with `dask worker {self.address} --nthreads 1 "
                    f"--resources {wanted}`"
                )
        missing = {
            worker: files
            for worker, files in self.client.run(missing_raw_files, datasets, tuple(user_files)).items()
            if files
        }
        if missing:
            worker, files = next(iter(missing.items()))
            raise DataFileError(
                f"raw files missing on {len(missing)} Dask worker(s), e.g. {worker}: {'; '.join(files)}. "
                "Each worker reads its own copy: run `asymlib fetch --from /path/to/mirror` (or `asymlib fetch`) "
                "where the workers run, or start them with ASYMLIB_DATA pointing at a folder holding the files",
                path=os.path.dirname(files[0]),
            )

    def run(
        self,
        jobs: Iterable[Job],
        *,
        settings: SectionSettings,
        threads: int,
        resources: dict[str, int],
        progress: bool = True,
        description: str = "units",
    ) -> Iterator[tuple[Job, UnitResult | TaskFailure]]:
        """Submit every job and yield ``(job, outcome)`` as each finishes.

        Leaving the loop early (an exception, Ctrl-C) cancels the tasks not yet finished.
        Raises ``SchedulerLost`` once the client has lost its scheduler (every unfinished
        task is then cancelled by Dask itself, and none would finish).
        """
        from distributed import as_completed
        from tqdm.auto import tqdm

        futures = {
            self.client.submit(
                train_unit,
                job.section,
                settings,
                job.dataset,
                job.coordinates,
                threads=threads,
                key=f"{job.section}-{job.unit}-{uuid.uuid4().hex}",
                priority=job.priority,
                resources=resources or None,
                pure=False,
            ): job
            # In order of priority: Dask hands the first tasks to idle workers as they arrive,
            # before it has seen the larger ones submitted after them.
            for job in sorted(jobs, key=lambda job: -job.priority)
        }
        bar = tqdm(total=len(futures), desc=description, unit="unit", disable=not progress)
        try:
            for future in as_completed(futures):
                job = futures[future]
                try:
                    outcome = future.result() if future.status == "finished" else _failure(future)
                except Exception as error:  # noqa: BLE001 - fetching a result needs the scheduler too
                    if self.connected():
                        raise
                    outcome = TaskFailure(_one_line(error), "")
                if isinstance(outcome, TaskFailure) and (not self.connected() or LOST in outcome.error):
                    raise SchedulerLost(self.address, outcome.error)
                failed = isinstance(outcome, TaskFailure)
                bar.set_postfix_str(f"{job.unit} {'FAILED' if failed else 'ok'}", refresh=False)
                bar.update(1)
                yield job, outcome
        finally:
            bar.close()
            pending = [f for f in futures if not f.done()]
            if pending and self.connected():  # without a scheduler, Dask has cancelled them
                self.client.cancel(pending)

    def connected(self) -> bool:
        """Whether the client still has its scheduler (Dask cancels every task when it loses
        it, with the reason ``LOST``, and tries to reconnect)."""
        return self.client.status == "running"

    def close(self) -> None:
        """Close the client; one that lost its scheduler stops trying to reconnect, quietly
        (Dask would log the cancelled reconnection as a traceback, and that it failed)."""
        if self.connected():
            self.client.close()
            return
        for name in _RECONNECT_LOGGERS:
            if _quiet_reconnect not in logging.getLogger(name).filters:
                logging.getLogger(name).addFilter(_quiet_reconnect)
        try:
            self.client.close(timeout=CONNECT_SECONDS)
        except Exception:  # noqa: BLE001 - nothing left to close cleanly
            pass


def _quiet_reconnect(record: logging.LogRecord) -> bool:
    """False for what Dask logs when a client that lost its scheduler is closed while it tries
    to reconnect (the runner says it in one line and writes the cause to the datasets' logs)."""
    cancelled = record.exc_info is not None and isinstance(record.exc_info[1], asyncio.CancelledError)
    return not cancelled and not record.getMessage().startswith("Failed to reconnect to scheduler")


#: The loggers that the reconnection's messages come from (the module of the frame that raised).
_RECONNECT_LOGGERS = ("distributed.client", "distributed.utils", "distributed.comm.core", "distributed.core")


def _failure(future) -> TaskFailure:
    """What a failed task raised, with the worker's traceback; for a cancelled task, why Dask
    cancelled it (``FutureCancelledError``, with the reason, e.g. scheduler-connection-lost)."""
    try:
        if future.status == "error":
            error = future.exception()
            lines = traceback.format_exception(type(error), error, future.traceback())
        else:
            future.result()  # a cancelled task's result raises why it was cancelled
            raise RuntimeError(f"task {future.key} ended as {future.status!r}, without a result")
    except Exception as exc:  # noqa: BLE001 - the cancellation (or why the error could not be fetched)
        error, lines = exc, traceback.format_exception(type(exc), exc, None)
    return TaskFailure(_one_line(error), "".join(lines))


def _one_line(error: BaseException) -> str:
    """ "Name: message" on one line, at most 300 characters."""
    message = " ".join(f"{type(error).__name__}: {error}".split())
    return message if len(message) <= 300 else message[:297] + "..."


@contextmanager
def open_cluster(scheduler: str | None, *, workers: int, resources: dict[str, int]) -> Iterator[Cluster]:
    """A client on a new LocalCluster (``scheduler`` None) or on the scheduler at that address.

    workers: the LocalCluster's worker processes, each running one task at a time (ignored
        for an existing cluster, which has its own).
    resources: what each LocalCluster worker offers (``{"GPU": 1}`` for a GPU run).
    A LocalCluster is closed on leaving the block, its workers with it (also when this
    process is killed: Dask's worker processes exit when their parent does).
    """
    from distributed import Client, LocalCluster

    # The in-process scheduler and nannies of a LocalCluster log every connection at INFO;
    # warnings (a worker that died, a task run again) still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if scheduler is None:
        import dask

        # memory_limit=0: no per-worker memory cap that would restart a worker training a large
        # unit (the notebooks this replaces had none either); the machine's memory is shared.
        # No MALLOC_TRIM_THRESHOLD_ in the workers (Dask's nannies set 65536): with it glibc
        # hands freed memory over 64 KiB back to the OS and faults it in afresh (3x the page
        # faults), and the quick profile's california mixtures took 12 % longer to train
        # (benchmarks/README.md).
        # The workers then allocate as a notebook kernel or a plain process does.
        with warnings.catch_warnings(), dask.config.set({_MALLOC_TRIM: None}):
            # another cluster's dashboard on 8787: the link says which port
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            local = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                memory_limit=0,
                # A failed task's traceback goes to <dataset>.log; the workers need not print it too.
                resources=resources or None,
                silence_logs=logging.CRITICAL,
                dashboard_address=LOCAL_DASHBOARD,
            )
        try:
            client = Client(local)
        except BaseException:
            local.close()
            raise
        cluster = Cluster(client, local=True, address=local.scheduler_address)
    else:
        local = None
        try:
            client = Client(scheduler, timeout=CONNECT_SECONDS)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"cannot reach a Dask scheduler at {scheduler} ({type(exc).__name__}: {exc}); start one with "
                "`dask scheduler` and give its address (--scheduler, or scheduler: in the profile)"
            ) from None
        cluster = Cluster(client, local=False, address=scheduler)
    try:
        yield cluster
    finally:
        # A worker that has run torch can take a few seconds to exit; the nanny then kills
        # it, which is what closing asks for anyway, so its warning would only be noise.
        logging.getLogger("distributed.nanny").setLevel(logging.ERROR)
        cluster.close()
        if local is not None:
            local.close()
