"""What a dataset record is: everything the package knows about one dataset, in one place.

A ``DatasetRecord`` names the dataset's raw files, its shape and task, where a person
can get the files, which can be downloaded without a login (``Download``), and the
reader that turns the files into a ``Table`` (the pooled raw table, before splitting
and scaling). The five records themselves are in ``datasets``; adding a dataset takes
one record there and one reader in ``readers``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data_errors import MalformedDataError, how_to_obtain

__all__ = ["DatasetRecord", "Download", "Table"]


@dataclass(frozen=True)
class Table:
    """The pooled raw table of one dataset, before splitting and scaling.

    X (n, d) float64 (float32 for mnist, to halve its memory), y (n,),
    real_valued (d,) bool.
    """

    X: np.ndarray
    y: np.ndarray
    feature_names: list[str]
    real_valued: np.ndarray


@dataclass(frozen=True)
class Download:
    """A raw file that can be downloaded without a login.

    ``sha256`` is the digest of the published bytes at ``url``. With ``member`` set,
    ``url`` is a gzipped tar archive and the file is that member of it.
    """

    file: str  # where it goes, relative to the data folder: one of the record's files
    url: str
    sha256: str
    member: str | None = None


@dataclass(frozen=True)
class DatasetRecord:
    """One dataset: its raw files, shape and task, where to get it, and its reader.

    ``n_rows`` and ``n_features`` are the whole dataset's size after preprocessing,
    known without reading it (the runner starts the largest work units first).
    ``source`` says where a person can obtain the files by hand; every error about
    them quotes it. ``downloads`` lists the files that can be fetched without a
    login (none for the Kaggle datasets).
    """

    name: str
    task: str  # "regression" | "binary" | "multiclass"
    n_rows: int
    n_features: int
    n_classes: int  # 0 for regression
    files: tuple[str, ...]  # relative to the data folder
    source: str
    reader: Callable[[DatasetRecord, Path], Table]
    downloads: tuple[Download, ...] = ()
    #: A user dataset's spec (``user_data.UserDataset``, from a profile); None for a built-in.
    user: object = None
    #: A user classification dataset's rows per class (built-ins: () and the average rule).
    class_counts: tuple[int, ...] = ()

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, features) of the whole dataset after preprocessing."""
        return (self.n_rows, self.n_features)

    def download(self, file: str) -> Download | None:
        """How to download ``file`` (one of ``files``), or None if it needs a login."""
        return next((d for d in self.downloads if d.file == file), None)

    def how_to_obtain(self, data_dir: Path) -> str:
        """The sentence every error about this dataset's files ends with."""
        if self.user is not None:
            return f"It is {self.source}."
        return how_to_obtain(self.source, data_dir)

    def malformed(self, path: Path, problem: str, expected: str) -> MalformedDataError:
        """The error for the raw file ``path`` of this dataset: what is wrong with it
        (``problem``) and what was ``expected``; the caller raises it."""
        return MalformedDataError(
            f"{self.name}: raw file {path} is malformed: {problem}; expected {expected}. "
            f"It may be truncated or a different version of the data. " + self.how_to_obtain(path.parent),
            path=path,
        )
