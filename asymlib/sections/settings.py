"""A section's settings as one typed, frozen dataclass that checks its own values.

Each section declares its settings class (``DeepEnsembleSettings`` in ``deep_ensembles``,
``MixtureSettings`` in ``mixtures``) out of ``setting`` fields: a field is one setting, with
its default, its check and a phrase saying what a good value looks like. That one object is
what a YAML profile is read into (``SectionSettings.from_profile``, used by
``execution/params.py``), what a notebook builds from its papermill parameters
(``from_namespace``), what a Dask task trains with, and what the shard store records beside
every unit it writes (``record``: the settings that make results comparable). A value that
fails its check raises ``ParamsError`` naming the key, and the file when it came from one.

The object also reads like the mapping the profile was (``settings["members"]``), so code
that looks settings up by key works on it and on a recorded ``settings.yaml`` entry alike.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable, Iterator

from ..core.data import DATASET_RECORDS, DATASETS, smallest_max_rows, too_few_rows
from ..core.data_errors import DataFileError, MalformedDataError
from ..core.splits import RELEASE_SPLIT_USER, SPLITS
from ..core.steps import PRECISIONS
from ..core.trainer import TrainConfig
from ..core.user_data import UserDataset, record_of, register, user_spec


class ParamsError(ValueError):
    """A profile file is missing a key, has an unknown one, or a value of the wrong kind."""


# --------------------------------------------------------------------------- checks


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any) -> bool:
    return is_int(value) and value >= 1


def optional_positive_int(value: Any) -> bool:
    return value is None or positive_int(value)


def number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_number(value: Any) -> bool:
    return number(value) and value > 0


def fraction(value: Any) -> bool:
    return number(value) and 0 < value < 1


#: The devices a unit may train on: those this code is tested on (the CPU and CUDA GPUs:
#: CUDA graphs, the GPU worker resource, tf32). torch accepts more (mps, xpu, meta, ...);
#: none of them has been tried, so a profile may not name one.
DEVICES = "cpu, cuda or cuda:N (N: a GPU's index)"


def torch_device(value: Any) -> bool:
    """Whether ``value`` names a device of ``DEVICES`` as torch writes it."""
    return isinstance(value, str) and re.fullmatch(r"cpu|cuda(:[0-9]+)?", value) is not None


def list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A non-empty list (or tuple) whose every item passes ``check``."""
    return lambda value: isinstance(value, (list, tuple)) and len(value) > 0 and all(check(v) for v in value)


def one_of(values: Iterable[Any]) -> Callable[[Any], bool]:
    allowed = tuple(values)
    return lambda value: isinstance(value, str) and value in allowed


def setting(
    default: Any, check: Callable[[Any], bool], expected: str, *, required: bool = False, compared: bool = True
):
    """One setting of a section, as a dataclass field.

    default: its value when not given (a sequence as a tuple). check: value -> whether it is
    good; expected: what a good value looks like, for the error message. required: a profile
    must give it (the class default then only serves callers in Python, such as notebooks and
    tests). compared: whether results made with another value are incomparable; False for
    settings that only grow or shrink the grid or say where and how fast it runs.
    """
    return field(
        default=default, metadata={"check": check, "expected": expected, "required": required, "compared": compared}
    )


def _first_repeat(value: Any) -> Any:
    """The first item that a list value holds twice, else None (also for non-lists)."""
    if not isinstance(value, (list, tuple)):
        return None
    seen = []
    for item in value:
        if item in seen:
            return item
        seen.append(item)
    return None


def check_datasets(names: Iterable[str], where: str) -> list[str]:
    """``names`` if each is a known dataset named once, else ParamsError starting with ``where``."""
    names = list(names)
    unknown = [n for n in names if n not in DATASET_RECORDS]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ParamsError(
            f"{where}: unknown dataset{plural} {', '.join(map(repr, unknown))}; valid: {', '.join(DATASET_RECORDS)}"
        )
    repeated = _first_repeat(names)
    if repeated is not None:
        raise ParamsError(f"{where}: lists {repeated!r} more than once; each dataset may appear once")
    return names


def _plain(value: Any) -> Any:
    """A setting's value as YAML and JSON write it: tuples as lists, a user dataset's spec
    as its mapping."""
    if isinstance(value, UserDataset):
        return value.as_dict()
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


def _dataset_entry(value: Any) -> bool:
    return isinstance(value, (str, dict, UserDataset))


def _user_entries(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(isinstance(v, (dict, UserDataset)) for v in value)


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, kw_only=True)
class SectionSettings(Mapping):
    """What every section takes: which datasets, how to share the machine, how to train.

    A subclass adds its section's settings as ``setting`` fields, names its section
    (``SECTION``) and its result tables (``TABLES``, the completion marker last), says which
    columns of its tables name the unit a row belongs to (``unit_of``), and may add checks
    across settings (``cross_problems``). ``SCHEMA``: the version of the tables' format,
    recorded in every shard; raise it when stored shards can no longer be read as new ones.
    """

    SECTION: ClassVar[str] = "section"
    TABLES: ClassVar[tuple[str, ...]] = ()
    #: Tables a unit writes only under some settings (``tables``), before the marker.
    OPTIONAL_TABLES: ClassVar[tuple[str, ...]] = ()
    SCHEMA: ClassVar[int] = 1
    #: Settings of the run, not of the results: neither recorded nor passed to a notebook.
    RUNNER_KEYS: ClassVar[tuple[str, ...]] = ("datasets", "workers", "threads")

    datasets: tuple[str, ...] = setting(
        DATASETS,
        list_of(_dataset_entry),
        f"a non-empty list of dataset names out of {', '.join(DATASETS)}, or of user datasets "
        "({name: ..., file: ..., target: ...}: docs/usage.md, 'Your own data in a profile')",
        required=True,
        compared=False,
    )
    #: The user datasets' specs (``core.user_data.UserDataset``): filled from the mappings of
    #: ``datasets`` (which keeps their names), passed to notebooks and carried to workers, which
    #: register them under their names on arrival. Not compared: each file is read afresh.
    user_datasets: tuple[UserDataset, ...] = setting(
        (),
        _user_entries,
        "a list of user datasets' mappings ({name: ..., file: ..., target: ...})",
        compared=False,
    )
    workers: int = setting(
        1,
        positive_int,
        "a positive integer (LocalCluster worker processes, and notebooks executed at once)",
        required=True,
        compared=False,
    )
    threads: int | None = setting(
        None,
        optional_positive_int,
        "a positive integer or null (torch threads per task; null: cores // workers, or 1 on an existing cluster)",
        required=True,
        compared=False,
    )
    seed: int = setting(0, lambda v: is_int(v) and v >= 0, "a non-negative integer", required=True)
    max_epochs: int = setting(1000, positive_int, "a positive integer", required=True)
    patience: int = setting(
        16, positive_int, "a positive integer (epochs without validation improvement)", required=True
    )
    max_rows: int | None = setting(
        None, optional_positive_int, "a positive integer or null (null: the full dataset)", required=True
    )
    split: str = setting("paper", one_of(SPLITS), f"one of {', '.join(SPLITS)} (the paper's text, or its code release)")
    val_fraction: float | None = setting(
        None, lambda v: v is None or fraction(v), "a number strictly between 0 and 1, or null (the split's own)"
    )
    device: str = setting("cpu", torch_device, DEVICES, compared=False)
    precision: str = setting(
        "float32",
        one_of(PRECISIONS),
        f"one of {', '.join(PRECISIONS)} (the training steps' matrix multiplies; tf32 needs CUDA)",
    )

    # ----------------------------------------------------------------- checking

    def __post_init__(self) -> None:
        self._take_user_datasets()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata["check"](value):
                raise ParamsError(f"{self.SECTION}.{f.name} must be {f.metadata['expected']}, got {value!r}")
            repeated = _first_repeat(value)
            if repeated is not None:
                raise ParamsError(
                    f"{self.SECTION}.{f.name} lists {repeated!r} more than once; each value may appear once "
                    "(a repeated grid value would count its results twice)"
                )
            if isinstance(value, list):
                object.__setattr__(self, f.name, tuple(value))
        self.register_user_datasets(quiet=False)
        unknown = [n for n in self.datasets if n not in DATASET_RECORDS]
        if unknown:
            plural = "s" if len(unknown) > 1 else ""
            raise ParamsError(
                f"{self.SECTION}.datasets has unknown dataset{plural} {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(DATASET_RECORDS)}, or a user dataset's mapping (name, file, target)"
            )
        if self.user_datasets and self.split != "paper":
            users = ", ".join(s.name for s in self.user_datasets)
            raise ParamsError(f"{self.SECTION}.split = {self.split}: {RELEASE_SPLIT_USER} (user datasets: {users})")
        for key, problem in self.cross_problems():
            raise ParamsError(f"{self.SECTION}.{key} {problem}")
        self.check_rows(self.datasets)

    def _take_user_datasets(self) -> None:
        """The mappings among ``datasets`` become their names there and specs in
        ``user_datasets`` (with those already given); ParamsError naming the entry if one is
        malformed, or if two specs share a name."""
        if not isinstance(self.datasets, (list, tuple)) or not _user_entries(self.user_datasets):
            return  # the checks of the fields say what is wrong
        names, specs = [], {}
        entries = [(f"user_datasets[{i}]", e, False) for i, e in enumerate(self.user_datasets)]
        entries += [(f"datasets[{i}]", e, True) for i, e in enumerate(self.datasets)]
        for key, entry, listed in entries:
            if isinstance(entry, str):
                names.append(entry)
                continue
            try:
                spec = user_spec(entry)
            except ValueError as error:
                raise ParamsError(f"{self.SECTION}.{key} {error}") from None
            if spec.name in specs and specs[spec.name] != spec:
                raise ParamsError(f"{self.SECTION}.{key}: two user datasets are named {spec.name!r}")
            specs[spec.name] = spec
            if listed:
                names.append(spec.name)
        object.__setattr__(self, "datasets", tuple(names))
        object.__setattr__(self, "user_datasets", tuple(specs.values()))

    def register_user_datasets(self, *, quiet: bool = True) -> None:
        """Register the user datasets in this process's dataset registry (``core.user_data``),
        reading and checking their files; ParamsError naming the file, column and row."""
        for spec in self.user_datasets:
            try:
                register(spec, quiet=quiet)
            except (DataFileError, MalformedDataError, ValueError) as error:
                raise ParamsError(f"{self.SECTION}.datasets: {error}") from None

    def __setstate__(self, state: dict) -> None:
        # Unpickled on a Dask worker (or anywhere else): register the user datasets there too.
        self.__dict__.update(state)
        self.register_user_datasets()

    def check_rows(self, datasets: Iterable[str]) -> None:
        """Refuse, naming the key, a row cap (or validation fraction) that would leave a part
        of a dataset's split too small to give a result (``core.data.too_few_rows``); a row
        cap's message gives the smallest one that is enough for every dataset checked."""
        datasets = list(datasets)
        for dataset in datasets:
            problem = too_few_rows(
                dataset, self.max_rows, split=self.split, val_fraction=self.val_fraction, suggest=False
            )
            if problem is None:
                continue
            if self.max_rows is None:
                raise ParamsError(f"{self.SECTION}.val_fraction = {self.val_fraction} {problem}")
            enough = [smallest_max_rows(d, split=self.split, val_fraction=self.val_fraction) for d in datasets]
            if None not in enough:
                which = f" for {', '.join(datasets)}" if len(datasets) > 1 else ""
                problem += f"; the smallest max_rows that does{which} is {max(enough)}"
            raise ParamsError(f"{self.SECTION}.max_rows = {self.max_rows} {problem}")

    def cross_problems(self) -> list[tuple[str, str]]:
        """Checks across settings, as (key, problem) pairs; none here."""
        return []

    # ----------------------------------------------------------------- building

    @classmethod
    def from_profile(cls, raw: Any, *, where: str) -> SectionSettings:
        """The settings of a profile's section mapping ``raw``; optional keys get their
        defaults. A ParamsError starts with ``where`` (the file) and names the key."""
        name = cls.SECTION
        if not isinstance(raw, dict):
            problem = "is missing" if raw is None else f"must be a mapping, got {type(raw).__name__}"
            raise ParamsError(f"{where}: section {name!r} {problem}")
        keys = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(keys))
        if unknown:
            raise ParamsError(f"{where}: {name}.{unknown[0]} is not a known key; {name} takes {', '.join(keys)}")
        for f in dataclasses.fields(cls):
            if f.metadata["required"] and f.name not in raw:
                raise ParamsError(f"{where}: {name}.{f.name} is missing; expected {f.metadata['expected']}")
        raw = dict(raw)
        if isinstance(raw.get("datasets"), (list, tuple)):  # a relative file is from the profile's folder
            base = Path(where).resolve().parent
            entries = []
            for i, entry in enumerate(raw["datasets"]):
                try:
                    entries.append(user_spec(entry, base=base) if isinstance(entry, dict) else entry)
                except ValueError as error:
                    raise ParamsError(f"{where}: {name}.datasets[{i}] {error}") from None
            raw["datasets"] = entries
        try:
            return cls(**raw)
        except ParamsError as error:
            raise ParamsError(f"{where}: {error}") from None

    @classmethod
    def from_namespace(cls, namespace: Mapping[str, Any], **given: Any) -> SectionSettings:
        """The settings named in ``namespace`` (a notebook's ``globals()``, holding its
        papermill parameters), other names ignored; ``given`` adds or overrides some."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{**{k: v for k, v in namespace.items() if k in names}, **given})

    # ----------------------------------------------------------------- reading

    @property
    def config(self) -> TrainConfig:
        """The training settings of a unit (``core.trainer``)."""
        return TrainConfig(max_epochs=self.max_epochs, patience=self.patience, precision=self.precision)

    def load_data(self, dataset: str, *, data_dir=None):
        """``dataset`` loaded as these settings say (row cap, split, validation fraction)."""
        from ..core.data import load_dataset

        return load_dataset(
            dataset, data_dir=data_dir, max_rows=self.max_rows, split=self.split, val_fraction=self.val_fraction
        )

    @classmethod
    def section_keys(cls) -> list[str]:
        """The section's own settings, those a notebook takes as parameters (not the runner's)."""
        return [f.name for f in dataclasses.fields(cls) if f.name not in cls.RUNNER_KEYS]

    @classmethod
    def default(cls, key: str) -> Any:
        """A setting's default, as a profile would write it (a list, not a tuple)."""
        return _plain(next(f for f in dataclasses.fields(cls) if f.name == key).default)

    def as_dict(self) -> dict[str, Any]:
        """Every setting as plain values (lists, not tuples), as YAML and papermill take them."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def record(self, dataset: str | None = None) -> dict[str, Any]:
        """The settings that make results comparable, as plain values: what the shard store
        records beside each unit and ``settings.yaml`` beside each dataset. Settings that
        only grow or shrink the grid and where it runs (``compared=False``) are left out.
        For a user dataset's units (``dataset``), ``user_dataset`` adds its target, task,
        categorical columns and the sha256 of its file (``core.user_data.record_of``), so that
        units made from another file or target are not taken for today's."""
        out = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata["compared"]}
        spec = next((s for s in self.user_datasets if s.name == dataset), None)
        if spec is not None:
            out["user_dataset"] = record_of(spec)
        return out

    @classmethod
    def differences(cls, recorded: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
        """What changed between two records, e.g. ``["members: 4 -> 8"]``; a key missing
        from an older record had its default then."""
        fields = {f.name for f in dataclasses.fields(cls)}
        was = {k: recorded.get(k, cls.default(k) if k in fields else None) for k in now}
        return [f"{k}: {was[k]!r} -> {v!r}" for k, v in now.items() if was[k] != v]

    # ----------------------------------------------------------------- units

    def units(self, dataset: str) -> dict[str, dict]:
        """The work units of one dataset, ``{unit name: its coordinates}``, in training order."""
        raise NotImplementedError

    @classmethod
    def unit_of(cls, rows: Mapping[str, Any]) -> str:
        """The name of the unit that a row of any of the section's tables belongs to."""
        raise NotImplementedError

    #: The columns ``unit_of`` reads, those a shard has (a shard without one it needs
    #: cannot be a unit's).
    UNIT_COLUMNS: ClassVar[tuple[str, ...]] = ()
    #: Per table, the columns that hold the dataset's metric: accuracy (0 to 1) for a
    #: classification dataset, RMSE (0 or more) for regression, as the dataset registry's task
    #: says (``core.evaluation.metric_name``); the shard store refuses a shard whose values are
    #: no such metric, or are not finite in a row that is not flagged diverged.
    METRIC_COLUMNS: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Per table, columns that are relative improvements of one metric column over another,
    #: ``{column: (ensemble, single)}`` (``core.evaluation.relative_improvement``): the store
    #: refuses a shard where they do not follow from the two.
    IMPROVEMENT_COLUMNS: ClassVar[dict[str, dict[str, tuple[str, str]]]] = {}

    @classmethod
    def for_tables(cls, tables: Iterable[str]) -> type[SectionSettings] | None:
        """The section whose units write ``tables`` (the first declared), None if none does:
        what a shard store opened without settings checks its shards' rows and values by."""
        tables, found = tuple(tables), list(SectionSettings.__subclasses__())
        while found:
            section = found.pop(0)
            if section.TABLES == tuple(t for t in tables if t not in section.OPTIONAL_TABLES):
                return section
            found += section.__subclasses__()
        return None

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables each unit writes under these settings (``TABLES``, and those of
        ``OPTIONAL_TABLES`` that the settings ask for), the completion marker last."""
        return self.TABLES

    def table_settings(self) -> str:
        """The ``settings`` column the completion-marker table carries (a unit's own record
        of the settings that made it, kept as it has always been written)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- mapping

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(f.name for f in dataclasses.fields(self))

    def __len__(self) -> int:
        return len(dataclasses.fields(self))
