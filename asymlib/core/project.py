"""The project on disk: the checkout's root, paths under it, and executed notebooks' status.

Every layer needs these facts: notebooks write their results under ``<repo>/runs`` whatever
folder their kernel starts in, the data loaders default to ``<repo>/data``, the runner
decides what to re-run from an executed notebook's papermill metadata, and the reports show
which per-dataset notebooks did not finish. They live here, at the bottom, so that the
layers above can share them without importing one another.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def project_root() -> Path:
    """The checkout holding this package (the folder with pyproject.toml), else the cwd."""
    checkout = Path(__file__).resolve().parents[2]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def project_path(path: str | os.PathLike) -> Path:
    """``path`` itself if absolute, else relative to the project root.

    Notebooks use it for their output folder: nbval starts a notebook's kernel in the
    notebook's own folder, papermill in the caller's; both must write under ``<repo>/runs``.
    """
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def notebook_succeeded(path: Path) -> bool:
    """True if papermill ran ``path`` to the end without an exception."""
    try:
        meta = json.loads(path.read_text())["metadata"].get("papermill", {})
    except (FileNotFoundError, ValueError, KeyError):
        return False
    return meta.get("end_time") is not None and meta.get("exception") is not True


def notebook_error(path: Path) -> str:
    """The exception an executed notebook stopped with, as "Name: message" (one line)."""
    try:
        cells = json.loads(path.read_text())["cells"]
    except (FileNotFoundError, ValueError, KeyError):
        return "no executed notebook (papermill did not start the kernel; see the log)"
    for cell in cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                message = f"{output['ename']}: {output['evalue']}".splitlines()[0]
                return message if len(message) <= 300 else message[:297] + "..."
    return "no error in the notebook (the kernel may have died; see the log)"
