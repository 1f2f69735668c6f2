"""Parameter profiles: which sections a profile runs, read and checked from YAML.

A profile (``params/<name>.yaml``) has one mapping per section (``SECTIONS``:
``deep_ensembles``, ``mixtures``) and, optionally, ``scheduler:``, the address of a Dask
scheduler whose workers train the units (``PROFILE_KEYS``). Each section here names its
notebook, its settings class (``sections``: ``DeepEnsembleSettings``, ``MixtureSettings``,
which own the keys, their checks and defaults, the work units and which changes of settings
make stored results incomparable), how one unit is trained, and how its tables are finished.
``load_params`` returns each section's settings object or raises a ``ParamsError`` that names
the file, the key and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import yaml

from ..core.yamlfile import DuplicateKeyError, load_yaml
from ..sections.deep_ensembles import DeepEnsembleSettings, train_deep_ensemble_unit
from ..sections.mixtures import MixtureSettings, finish_mixture_tables, train_mixture_unit
from ..sections.settings import ParamsError, SectionSettings, check_datasets, positive_int
from ..sections.units import ShardStore

__all__ = [
    "PROFILE_KEYS",
    "SECTIONS",
    "ParamsError",
    "Section",
    "check_datasets",
    "choose_datasets",
    "load_params",
    "load_scheduler",
    "positive_int",
    "profile_sections",
]


def _scheduler_address(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() != "" and not value[0].isspace())


#: Keys of a profile beside its sections: where the run's tasks go, as (check, what a good value is).
PROFILE_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "scheduler": (
        _scheduler_address,
        "a Dask scheduler's address such as tcp://10.0.0.5:8786, or null (a LocalCluster on this machine)",
    ),
}


@dataclass(frozen=True)
class Section:
    """An experiment family: its notebook, its settings and how a unit of it is trained.

    settings: the section's settings class; each setting but the runner's (datasets,
        workers, threads) is passed to the notebook as a parameter of the same name (besides
        ``dataset``, ``out_dir``, ``threads``, ``progress``). It names the work units
        (``SectionSettings.units``) as the notebook's ShardStore names them.
    train: ``train(data, settings, **coordinates, progress=False) -> {table: frame}``, one
        unit trained and scored exactly as the notebook does it, writing nothing (what a
        runner's task runs).
    finish: columns of the combined tables that need several units.
    """

    name: str
    notebook: str
    settings: type[SectionSettings]
    train: Callable[..., dict[str, pd.DataFrame]]
    finish: Callable[[dict[str, pd.DataFrame]], dict[str, pd.DataFrame]] = lambda tables: tables

    @property
    def tables(self) -> tuple[str, ...]:
        """The result tables each unit writes as shards; the last marks a unit as done."""
        return self.settings.TABLES

    @property
    def keys(self) -> list[str]:
        """The section's own settings: the notebook's parameters besides dataset, out_dir, ..."""
        return self.settings.section_keys()

    def store(self, out_dir: Path, settings: SectionSettings | None = None, *, redo: bool = False) -> ShardStore:
        """The section's shards in ``out_dir``: made with ``settings`` (``ShardStore``), or
        without them, read whatever made them."""
        if settings is None:
            return ShardStore(out_dir, tables=self.tables)
        return ShardStore(out_dir, settings=settings, redo=redo)

    def grid(self, settings: SectionSettings, dataset: str) -> dict[str, dict]:
        """The work units of one dataset: ``{unit name: its coordinates}``."""
        return settings.units(dataset)

    def units(self, settings: SectionSettings, dataset: str) -> list[str]:
        """The work-unit names of one dataset, in the order the notebook trains them."""
        return list(settings.units(dataset))


SECTIONS: dict[str, Section] = {
    "deep_ensembles": Section(
        name="deep_ensembles",
        notebook="notebooks/deep_ensembles.ipynb",
        settings=DeepEnsembleSettings,
        train=train_deep_ensemble_unit,
    ),
    "mixtures": Section(
        name="mixtures",
        notebook="notebooks/mixtures.ipynb",
        settings=MixtureSettings,
        train=train_mixture_unit,
        finish=finish_mixture_tables,
    ),
}


def _read_profile(path: Path, sections: Sequence[str]) -> dict:
    try:
        document = load_yaml(path.read_text(), source=str(path))
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such parameter file") from None
    except DuplicateKeyError as exc:  # the last of two equal keys would silently win
        raise ParamsError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict):
        got = type(document).__name__
        raise ParamsError(f"{path}: expected a mapping with the sections {', '.join(sections)}, got {got}")
    return document


def profile_sections(path: str | os.PathLike) -> list[str]:
    """The sections of ``SECTIONS`` that a profile file has, in ``SECTIONS`` order."""
    path = Path(path)
    document = _read_profile(path, list(SECTIONS))
    present = [name for name in SECTIONS if name in document]
    if not present:
        raise ParamsError(f"{path}: has none of the sections {', '.join(SECTIONS)}")
    return present


def load_scheduler(path: str | os.PathLike) -> str | None:
    """The profile's ``scheduler:`` (a Dask scheduler's address), or None when it has none.

    Raises ParamsError naming the file and key if the value is not an address.
    """
    path = Path(path)
    document = _read_profile(path, list(SECTIONS))
    check, expected = PROFILE_KEYS["scheduler"]
    value = document.get("scheduler")
    if not check(value):
        raise ParamsError(f"{path}: scheduler must be {expected}, got {value!r}")
    return value


def load_params(
    path: str | os.PathLike, *, sections: Sequence[str] = ("deep_ensembles",)
) -> dict[str, SectionSettings]:
    """Read and check a profile file; return ``{section: its settings object}`` for ``sections``.

    Optional keys get their defaults. Raises ParamsError naming the file, the key and what
    was expected; sections not asked for are not checked (they may belong to a newer
    version of the code).
    """
    path = Path(path)
    document = _read_profile(path, sections)
    checked = {}
    for name in sections:
        if name not in SECTIONS:
            raise ParamsError(f"unknown section {name!r}; known: {', '.join(SECTIONS)}")
        checked[name] = SECTIONS[name].settings.from_profile(document.get(name), where=str(path))
    return checked


def choose_datasets(settings: SectionSettings, datasets: Sequence[str] | None, *, where: str) -> list[str]:
    """The datasets a run of the section works on: ``datasets`` (``--datasets``, each a known
    name given once) or else the profile's; each with rows enough for every part of its split
    (``SectionSettings.check_rows``: ``--datasets`` may name one the profile does not).
    Raises ParamsError starting with ``where`` (the profile file)."""
    chosen = check_datasets(datasets, "datasets") if datasets else list(settings.datasets)
    try:
        settings.check_rows(chosen)
    except ParamsError as error:
        raise ParamsError(f"{where}: {error}") from None
    return chosen
