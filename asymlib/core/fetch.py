"""Where the raw files live, checking they are there, and putting them in place.

``default_data_dir`` is the folder loaders read (``$ASYMLIB_DATA`` or ``<repo>/data``);
``require_files`` refuses a dataset whose files are missing, saying how to get them;
``fetch_datasets`` (``asymlib fetch``) copies the files from a local mirror folder, or
downloads those that need no login (sha256-checked, see the records' ``downloads``).
Loaders never touch the network; only ``fetch_datasets`` does.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import tarfile
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from .data_errors import DataFileError, MalformedDataError
from .dataset_record import DatasetRecord, Download
from .datasets import DATASET_RECORDS, DATASETS, check_names
from .project import project_root

__all__ = ["default_data_dir", "fetch_datasets", "require_files"]

logger = logging.getLogger(__name__)


def default_data_dir() -> Path:
    """Folder holding the raw files: ``$ASYMLIB_DATA`` if set, else ``<repo>/data``."""
    env = os.environ.get("ASYMLIB_DATA")
    if env:
        return Path(env).expanduser()
    return project_root() / "data"


def require_files(record: DatasetRecord, data_dir: Path) -> None:
    """Raise DataFileError naming every raw file of ``record`` missing from ``data_dir``."""
    missing = [data_dir / rel for rel in record.files if not (data_dir / rel).is_file()]
    if missing:
        where = "" if data_dir.is_dir() else f" (the folder {data_dir} does not exist)"
        raise DataFileError(
            f"{record.name}: raw file{'s' if len(missing) > 1 else ''} "
            f"{', '.join(str(p) for p in missing)} not found{where}. " + record.how_to_obtain(data_dir),
            path=missing[0],
        )


def _write_atomically(target: Path, write: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder, so an interrupted copy or
    download never leaves a truncated file that later looks present."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part")
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _download(url: str, sha256: str, *, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        data = response.read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise MalformedDataError(
            f"download from {url} has sha256 {digest}, expected {sha256} (truncated download or a changed file)"
        )
    return data


def _fetch_one(download: Download, target: Path, *, timeout: float) -> None:
    """Download one raw file from its public source (no login needed)."""
    content = _download(download.url, download.sha256, timeout=timeout)
    if download.member is not None:
        # extractfile reads one member's bytes: no paths from the archive reach disk.
        with tarfile.open(fileobj=io.BytesIO(content), mode="r:gz") as tar:
            content = tar.extractfile(download.member).read()
    _write_atomically(target, lambda tmp: tmp.write_bytes(content))


def _copy_from_mirror(source: Path, dest: Path, todo: list[tuple[str, str]], wanted: list[tuple[str, str]]) -> None:
    """Copy the files ``todo`` (name, relative path) from the mirror folder ``source``."""
    # Check the whole mirror first, so a bad mirror leaves dest untouched.
    absent = [source / rel for _, rel in todo if not (source / rel).is_file()]
    if absent:
        raise DataFileError(
            f"the mirror {source} lacks {', '.join(str(p) for p in absent)}; expected the "
            f"layout {sorted({rel for _, rel in wanted})}",
            path=absent[0],
        )
    for name, rel in todo:
        logger.info("copying %s from %s", rel, source)
        # copyfile, not copy2: mirror files are often read-only, and a read-only
        # copy would make a later overwrite awkward.
        _write_atomically(dest / rel, lambda tmp, rel=rel: shutil.copyfile(source / rel, tmp))


def _download_all(dest: Path, todo: list[tuple[str, str]], *, timeout: float) -> None:
    """Download every file of ``todo`` (name, relative path) that needs no login; then
    raise one DataFileError listing each file still missing and why."""
    missing: list[tuple[str, str, str]] = []  # (name, rel, why it could not be fetched)
    for name, rel in todo:
        download = DATASET_RECORDS[name].download(rel)
        if download is None:
            missing.append((name, rel, "needs a Kaggle login, so it is not downloaded"))
            continue
        logger.info("downloading %s for %s", rel, name)
        try:
            _fetch_one(download, dest / rel, timeout=timeout)
        except (OSError, tarfile.TarError, KeyError) as exc:  # URLError is an OSError
            # Go on: one unreachable host must not keep the other files away.
            missing.append((name, rel, f"downloading {download.url} failed: {exc}"))
    if missing:
        fetched = len(todo) - len(missing)
        kept = f" ({fetched} fetched and kept)" if fetched else ""
        raise DataFileError(
            f"{len(missing)} of the {len(todo)} raw files to fetch are missing{kept}. "
            "Save each at the path shown, or copy them all from a local mirror folder with "
            "`asymlib fetch --from /path/to/mirror`:\n"
            + "\n".join(
                f"  {dest / rel} ({name}): {why}. Get it from {DATASET_RECORDS[name].source}"
                for name, rel, why in missing
            ),
            path=dest / missing[0][1],
        )


def fetch_datasets(
    dest: str | os.PathLike | None = None,
    *,
    source: str | os.PathLike | None = None,
    names: str | Iterable[str] = DATASETS,
    overwrite: bool = False,
    timeout: float = 10.0,
) -> list[Path]:
    """Put the raw files of ``names`` into ``dest`` (default ``default_data_dir()``).

    With ``source`` (a local mirror folder laid out like ``RAW_FILES``) every file is
    copied from there. Without it, california, adult and mnist are downloaded from
    their public sources (sha256-checked); churn and otto need a Kaggle login. Every
    file is tried; then one DataFileError lists each file still missing, with the
    path to save it at and where to get it (for a failed download: its URL and the
    reason). The files that could be fetched stay in place. A download with the
    wrong checksum raises MalformedDataError at once. Files already in ``dest`` are
    kept unless ``overwrite``. ``timeout``: seconds each network operation (connect,
    each read) may wait, so that an offline machine fails fast.

    Returns the paths in ``dest`` of all requested raw files.
    """
    names = check_names(names)
    dest = default_data_dir() if dest is None else Path(dest).expanduser()
    wanted = [(name, rel) for name in names for rel in DATASET_RECORDS[name].files]
    todo = [(name, rel) for name, rel in wanted if overwrite or not (dest / rel).is_file()]
    if source is not None:
        _copy_from_mirror(Path(source).expanduser(), dest, todo, wanted)
    else:
        _download_all(dest, todo, timeout=timeout)
    return [dest / rel for _, rel in wanted]
