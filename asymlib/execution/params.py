"""Parameter profiles: what each section of the paper takes, read and checked from YAML.

A profile (``params/<name>.yaml``) has one mapping per section (``SECTIONS``:
``deep_ensembles``, ``mixtures``) and, optionally, ``scheduler:``, the address of a Dask
scheduler whose workers train the units (``PROFILE_KEYS``). Each section here names its
notebook, its keys (with what a good value looks like), its work units (and how one is
trained) and result tables, and which changes of settings may reuse stored results. ``load_params`` returns checked settings or raises a
``ParamsError`` that names the file, the key and what was expected.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import pandas as pd
import yaml

from ..core.data import DATASETS, SPLITS, Dataset
from ..core.mixtures import ARCHITECTURES, GATINGS, MIXTURE_KINDS
from ..core.models import KINDS, MODEL_TYPES
from ..core.steps import PRECISIONS
from ..core.trainer import TrainConfig
from ..sections.deep_ensembles import DEEP_ENSEMBLE_TABLES, deep_ensemble_unit, train_deep_ensemble_unit
from ..sections.mixtures import MIXTURE_TABLES, finish_mixture_tables, mixture_unit, train_mixture_unit
from ..sections.units import ShardStore


class ParamsError(ValueError):
    """A profile file is missing a key, has an unknown one, or a value of the wrong kind."""


@dataclass(frozen=True)
class Key:
    """One setting of a section: how to check its value, and what a good value looks like."""

    check: Callable[[Any], bool]
    expected: str
    required: bool = True
    default: Any = None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any) -> bool:
    return _is_int(value) and value >= 1


def _optional_positive_int(value: Any) -> bool:
    return value is None or positive_int(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, list) and len(value) > 0 and all(check(v) for v in value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(value: Any) -> bool:
    return _number(value) and value > 0


def _fraction(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1


#: Settings every section has: which datasets, and how to share the machine.
RUNNER_KEYS: dict[str, Key] = {
    "datasets": Key(
        _list_of(lambda v: isinstance(v, str)),
        f"a non-empty list of dataset names out of {', '.join(DATASETS)}",
    ),
    "workers": Key(positive_int, "a positive integer (LocalCluster worker processes, and notebooks executed at once)"),
    "threads": Key(
        _optional_positive_int,
        "a positive integer or null (torch threads per task; null: cores // workers, or 1 on an existing cluster)",
    ),
}

DEEP_ENSEMBLE_KEYS: dict[str, Key] = {
    "hidden_sizes": Key(_list_of(positive_int), "a non-empty list of positive integers (hidden widths)"),
    "members": Key(positive_int, "a positive integer (members trained per type)"),
    "ensemble_sizes": Key(_list_of(positive_int), "a non-empty list of positive integers, none above members"),
    "repeats": Key(positive_int, "a positive integer (independent repeats of the whole grid)"),
    "seed": Key(lambda v: _is_int(v) and v >= 0, "a non-negative integer"),
    "max_epochs": Key(positive_int, "a positive integer"),
    "patience": Key(positive_int, "a positive integer (epochs without validation improvement)"),
    "max_rows": Key(_optional_positive_int, "a positive integer or null (null: the full dataset)"),
    "split": Key(
        lambda v: v in SPLITS,
        f"one of {', '.join(SPLITS)} (the paper's text, or its code release)",
        required=False,
        default="paper",
    ),
    "val_fraction": Key(
        lambda v: v is None or _fraction(v),
        "a number strictly between 0 and 1, or null (the split's own)",
        required=False,
        default=None,
    ),
    "device": Key(
        lambda v: isinstance(v, str) and v != "",
        "a torch device such as cpu or cuda",
        required=False,
        default="cpu",
    ),
    "precision": Key(
        lambda v: v in PRECISIONS,
        f"one of {', '.join(PRECISIONS)} (the training steps' matrix multiplies; tf32 needs CUDA)",
        required=False,
        default="float32",
    ),
    "types": Key(
        _list_of(lambda v: v in MODEL_TYPES),
        f"a non-empty list out of {', '.join(MODEL_TYPES)} (smlp: sigma-Asymmetric)",
        required=False,
        default=list(KINDS),
    ),
    "n_fix": Key(
        lambda v: v is None or _list_of(positive_int)(v),
        "null (the paper's frozen entries per unit) or a non-empty list of positive integers "
        "(a WMLP per value: frozen entries per unit after the first layer)",
        required=False,
        default=None,
    ),
    "kappa": Key(
        _list_of(_positive_number),
        "a non-empty list of positive numbers (standard deviations of the frozen values)",
        required=False,
        default=[1.0],
    ),
}


MIXTURE_KEYS: dict[str, Key] = {
    "gatings": Key(_list_of(lambda v: v in GATINGS), f"a non-empty list out of {', '.join(GATINGS)}"),
    "kinds": Key(_list_of(lambda v: v in MIXTURE_KINDS), f"a non-empty list out of {', '.join(MIXTURE_KINDS)}"),
    "experts": Key(_list_of(positive_int), "a non-empty list of positive integers (experts per mixture)"),
    "hidden": Key(positive_int, "a positive integer (every expert's hidden width)"),
    "repeats": Key(positive_int, "a positive integer (mixtures per model, trained together)"),
    "balance_weights": Key(
        _list_of(lambda v: _number(v) and v >= 0),
        "a non-empty list of non-negative numbers (weights of the load-balancing loss; 0: none, the paper's)",
        required=False,
        default=[0.0],
    ),
    "architecture": Key(
        lambda v: v in ARCHITECTURES,
        f"one of {', '.join(ARCHITECTURES)} (the paper's text's networks, or its code release's MoIE)",
        required=False,
        default="paper",
    ),
    # the same meaning as in deep_ensembles
    **{
        k: DEEP_ENSEMBLE_KEYS[k]
        for k in ("seed", "max_epochs", "patience", "max_rows", "split", "val_fraction", "device", "precision")
    },
}


def _scheduler_address(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() != "" and not value[0].isspace())


#: Keys of a profile beside its sections: where the run's tasks go.
PROFILE_KEYS: dict[str, Key] = {
    "scheduler": Key(
        _scheduler_address,
        "a Dask scheduler's address such as tcp://10.0.0.5:8786, or null (a LocalCluster on this machine)",
        required=False,
        default=None,
    ),
}


def _check_deep_ensembles(section: dict) -> list[tuple[str, str]]:
    """Checks across keys: (key, problem) pairs."""
    largest, members = max(section["ensemble_sizes"]), section["members"]
    if largest > members:
        return [("ensemble_sizes", f"has {largest}, more than members = {members}")]
    too_many = [n for n in section["n_fix"] or [] if n > min(section["hidden_sizes"])]
    if too_many:
        # a unit has only `hidden` incoming weights to freeze
        return [("n_fix", f"has {too_many[0]}, more than the smallest hidden size {min(section['hidden_sizes'])}")]
    return []


def _check_mixtures(section: dict) -> list[tuple[str, str]]:
    """Checks across keys: (key, problem) pairs."""
    if 2 not in section["experts"]:
        # Figure 2 and every summary measure the gain over the same model with 2 experts.
        return [("experts", f"must include 2 (gains are measured against 2 experts), got {section['experts']}")]
    return []


def train_config(section: dict) -> TrainConfig:
    """The training settings of a section's values, as its notebook builds them."""
    return TrainConfig(max_epochs=section["max_epochs"], patience=section["patience"], precision=section["precision"])


def _deep_ensemble_grid(section: dict, dataset: str) -> dict[str, dict]:
    return {
        deep_ensemble_unit(dataset, hidden, repeat): {"hidden": hidden, "repeat": repeat}
        for hidden in section["hidden_sizes"]
        for repeat in range(section["repeats"])
    }


def _train_deep_ensemble_unit(data: Dataset, section: dict, unit: dict) -> dict[str, pd.DataFrame]:
    return train_deep_ensemble_unit(
        data,
        **unit,
        types=section["types"],
        members=section["members"],
        ensemble_sizes=section["ensemble_sizes"],
        seed=section["seed"],
        n_fix=section["n_fix"],
        kappa=section["kappa"],
        config=train_config(section),
        device=section["device"],
        progress=False,
    )


def _mixture_grid(section: dict, dataset: str) -> dict[str, dict]:
    # smallest mixtures first, as the notebook trains them (the 2-expert baselines early)
    return {
        mixture_unit(dataset, gating, kind, experts, weight): {
            "gating": gating,
            "kind": kind,
            "experts": experts,
            "balance_weight": weight,
        }
        for experts in sorted(section["experts"])
        for gating in section["gatings"]
        for kind in section["kinds"]
        for weight in section["balance_weights"]
    }


def _train_mixture_unit(data: Dataset, section: dict, unit: dict) -> dict[str, pd.DataFrame]:
    return train_mixture_unit(
        data,
        **unit,
        hidden=section["hidden"],
        repeats=section["repeats"],
        seed=section["seed"],
        architecture=section["architecture"],
        config=train_config(section),
        device=section["device"],
        progress=False,
    )


@dataclass(frozen=True)
class Section:
    """An experiment family: its notebook, its settings and its work units.

    keys: the section's own settings; each is passed to the notebook as a parameter of the
        same name (besides ``dataset``, ``out_dir``, ``threads``, ``progress``).
    grid: the work units of one dataset: ``{unit name: its coordinates}``, named as the
        notebook's ShardStore names them (e.g. ``{"adult-h64-r0": {"hidden": 64, "repeat": 0}}``).
    train: ``train(data, settings, coordinates) -> {table: frame}``, one unit trained and
        scored exactly as the notebook does it, writing nothing (what a runner's task runs).
    tables: the result tables each unit writes as shards; the last marks a unit as done.
    resume_keys: keys whose change may only add or drop units (the grid's size); a change of
        any other key makes the stored results incomparable to new ones.
    """

    name: str
    notebook: str
    keys: dict[str, Key]
    grid: Callable[[dict, str], dict[str, dict]]
    train: Callable[[Dataset, dict, dict], dict[str, pd.DataFrame]]
    tables: tuple[str, ...]
    check: Callable[[dict], list[tuple[str, str]]] = lambda section: []
    resume_keys: tuple[str, ...] = ()
    finish: Callable[[dict[str, pd.DataFrame]], dict[str, pd.DataFrame]] = lambda tables: tables

    def store(self, out_dir: Path) -> ShardStore:
        return ShardStore(out_dir, tables=self.tables)

    def units(self, settings: dict, dataset: str) -> list[str]:
        """The work-unit names of one dataset, in the order the notebook trains them."""
        return list(self.grid(settings, dataset))


SECTIONS: dict[str, Section] = {
    "deep_ensembles": Section(
        name="deep_ensembles",
        notebook="notebooks/deep_ensembles.ipynb",
        keys=DEEP_ENSEMBLE_KEYS,
        grid=_deep_ensemble_grid,
        train=_train_deep_ensemble_unit,
        tables=DEEP_ENSEMBLE_TABLES,
        check=_check_deep_ensembles,
        resume_keys=("hidden_sizes", "repeats"),
    ),
    "mixtures": Section(
        name="mixtures",
        notebook="notebooks/mixtures.ipynb",
        keys=MIXTURE_KEYS,
        grid=_mixture_grid,
        train=_train_mixture_unit,
        tables=MIXTURE_TABLES,
        check=_check_mixtures,
        # repeats are the members of a unit, so more repeats means redoing every unit
        resume_keys=("gatings", "kinds", "experts", "balance_weights"),
        finish=finish_mixture_tables,
    ),
}


def _first_repeat(value: Any) -> Any:
    """The first item that a list value holds twice, else None (also for non-lists)."""
    if not isinstance(value, list):
        return None
    seen = []
    for item in value:
        if item in seen:
            return item
        seen.append(item)
    return None


def check_datasets(names: Iterable[str], where: str) -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ParamsError(
            f"{where}: unknown dataset{plural} {', '.join(map(repr, unknown))}; valid: {', '.join(DATASETS)}"
        )
    repeated = _first_repeat(names)
    if repeated is not None:
        raise ParamsError(f"{where}: lists {repeated!r} more than once; each dataset may appear once")
    return names


def _read_profile(path: Path, sections: Sequence[str]) -> dict:
    try:
        document = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such parameter file") from None
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
    key = PROFILE_KEYS["scheduler"]
    value = document.get("scheduler", key.default)
    if not key.check(value):
        raise ParamsError(f"{path}: scheduler must be {key.expected}, got {value!r}")
    return value


def load_params(path: str | os.PathLike, *, sections: Sequence[str] = ("deep_ensembles",)) -> dict[str, dict]:
    """Read and check a profile file; return ``{section: settings}`` for ``sections``.

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
        section = SECTIONS[name]
        raw = document.get(name)
        if not isinstance(raw, dict):
            problem = "is missing" if raw is None else f"must be a mapping, got {type(raw).__name__}"
            raise ParamsError(f"{path}: section {name!r} {problem}")
        keys = {**RUNNER_KEYS, **section.keys}
        unknown = sorted(set(raw) - set(keys))
        if unknown:
            raise ParamsError(f"{path}: {name}.{unknown[0]} is not a known key; {name} takes {', '.join(keys)}")
        values = {}
        for key, spec in keys.items():
            if key not in raw:
                if spec.required:
                    raise ParamsError(f"{path}: {name}.{key} is missing; expected {spec.expected}")
                values[key] = spec.default
            elif not spec.check(raw[key]):
                raise ParamsError(f"{path}: {name}.{key} must be {spec.expected}, got {raw[key]!r}")
            else:
                values[key] = raw[key]
            repeated = _first_repeat(values[key])
            if repeated is not None:
                raise ParamsError(
                    f"{path}: {name}.{key} lists {repeated!r} more than once; each value may appear once "
                    "(a repeated grid value would count its results twice)"
                )
        check_datasets(values["datasets"], f"{path}: {name}.datasets")
        for key, problem in section.check(values):
            raise ParamsError(f"{path}: {name}.{key} {problem}")
        checked[name] = values
    return checked
