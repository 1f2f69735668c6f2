"""The two errors about raw data files, and the hint on obtaining the files they carry.

``DataFileError``: a raw file is missing (or could not be obtained).
``MalformedDataError``: a raw file exists but does not have the expected content.
Both name the offending file in ``path``. ``how_to_obtain`` is the sentence every
such message ends with: how to put the files in place, and where to get them.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DataFileError", "MalformedDataError", "how_to_obtain"]


class DataFileError(FileNotFoundError):
    """A raw data file is missing (or could not be obtained).

    ``path`` is the file that was looked for.
    """

    def __init__(self, message: str, *, path: Path | str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


class MalformedDataError(ValueError):
    """A raw data file exists but does not have the expected content.

    ``path`` is the offending file.
    """

    def __init__(self, message: str, *, path: Path | str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)


def how_to_obtain(source: str, data_dir: Path) -> str:
    """How to put a dataset's raw files into ``data_dir``; ``source`` says where a
    person can get them by hand (a dataset record's ``source``)."""
    return (
        f"To obtain it, run `asymlib fetch --from /path/to/mirror` (copies the raw files "
        f"from a local mirror folder into {data_dir}) or download it from "
        f"{source}, then place it under {data_dir} "
        f"(or point ASYMLIB_DATA / data_dir at the folder holding it)."
    )
