"""One run at a time per output folder: ``holding(folder)``, an exclusive lock for a whole run.

Two runs into one profile folder (``runs/<profile>``) would both pass the check of stored
settings before either wrote anything, then write over each other: the last writer wins
and the first may print the other's tables as its own. ``asymlib run`` (``run_profile``) and
``asymlib train`` (``train_units``) therefore hold ``<folder>/.asymlib.lock`` from before
they read what the folder holds until they end. A second run into the folder stops at once
with ``FolderBusy`` (an ``OutputError``: exit status 2), naming the folder and the run that
holds it, as the lock file records it (pid, host, command line, start time). Commands that
only read a finished run (``compare``, ``figures``, ``estimate``) take no lock.

Why ``fcntl.flock`` on an open file, rather than a file whose existence is the lock or the
``filelock`` package (which torch installs): the kernel releases a flock when its process
dies, however it dies (SIGKILL, the OOM killer, a lost node), so a killed run never leaves
a lock that blocks the next one and no guess about stale pids is needed. ``filelock``'s
Unix lock is a flock too, but it opens its file with O_TRUNC, which would wipe the holder's
record that a refused run reads; the dozen lines here keep that record and need nothing
beyond the standard library. The lock file is non-inheritable (Python's default), so the
worker processes, notebooks and kernels a run starts never hold it. On NFS, Linux emulates
flock with the server's byte-range locks.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .records import OutputError

__all__ = ["LOCK_NAME", "FolderBusy", "holder", "holding"]

LOCK_NAME = ".asymlib.lock"

#: Errors of a folder this process may not write (read-only, another user's): a run there
#: goes on without the lock, since it can change nothing: it only re-reads a finished run,
#: or stops at its first write with an OutputError naming the folder (``records.writing``).
_CANNOT_WRITE = (errno.EACCES, errno.EPERM, errno.EROFS)


class FolderBusy(OutputError):
    """Another run holds the output folder's lock."""


def _command() -> str:
    """This process's command line, as a person typed it (``asymlib train ...``)."""
    argv = list(sys.argv) or ["python"]
    if Path(argv[0]).name == "asymlib" or argv[0].endswith(os.path.join("asymlib", "__main__.py")):
        argv[0] = "asymlib"
    return shlex.join(argv)


def holder(folder: str | os.PathLike) -> dict | None:
    """What the lock file of ``folder`` records of the run holding (or that last held) it:
    pid, host, command, started; None when there is no readable record."""
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None


def _describe(record: dict | None) -> str:
    if not record:
        return "a run that has not recorded itself yet"
    return (
        f"pid {record.get('pid')} on {record.get('host')}, `{record.get('command')}`, "
        f"running since {record.get('started')}"
    )


def _created_by_mkdir(folder: Path) -> list[Path]:
    """The folders ``mkdir(parents=True)`` of ``folder`` would create, deepest first."""
    missing = []
    for path in (folder, *folder.parents):
        if path.exists():
            break
        missing.append(path)
    return missing


def _open_locked(folder: Path) -> int | None:
    """A descriptor of ``folder``'s lock file holding its exclusive lock; None where the
    folder cannot be written (``_CANNOT_WRITE``). Raises FolderBusy if another run holds it."""
    path = folder / LOCK_NAME
    while True:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the last holder removed the (empty) folder meanwhile
            continue
        except OSError as exc:
            if exc.errno in _CANNOT_WRITE:
                return None
            raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = None
            for _ in range(20):  # the holder writes its record just after it locks
                record = holder(folder)
                if record:
                    break
                time.sleep(0.05)
            os.close(fd)
            raise FolderBusy(
                f"{folder} is in use by another run ({_describe(record)}); wait until it ends, "
                "or write to another output folder (--out)"
            ) from None
        # The file may have been removed by the run that held it, between our open and our
        # lock: a lock on that removed file locks nothing, so start again.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def holding(folder: str | os.PathLike) -> Iterator[None]:
    """Hold ``folder``'s lock for the block (made if need be); FolderBusy, before the block
    runs, if another run holds it. Leaving the block removes the lock file (and the folders
    made for it, if they are still empty)."""
    folder = Path(folder)
    made = _created_by_mkdir(folder)
    fd = _open_locked(folder)
    if fd is None:
        yield
        return
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _command(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
    try:
        yield
    finally:
        # Removed while still locked: a run that opened the file meanwhile finds it gone
        # once it gets the lock, and starts again on a new file (``_open_locked``).
        try:
            os.unlink(folder / LOCK_NAME)
        except OSError:
            pass
        os.close(fd)
        for path in made:
            try:
                path.rmdir()
            except OSError:  # not empty: results were written
                break
