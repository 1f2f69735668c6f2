"""What a profile will cost before it runs: ``asymlib estimate PARAMS.yaml [--workers N ...]``.

The method, one step per function below:

1. ``time_shape``: for every distinct shape of a section's units (deep ensembles: dataset x
   hidden x type; mixtures: dataset x experts x kind, with the first gating of the profile
   standing for both), build the unit's batched model as the section does and run three
   epochs of ``fit`` on this machine with one torch thread, with the unit's number of
   members M and with a single member. The faster of the second and third epochs counts
   (the first pays for warm-up; the faster one is the least disturbed by other processes).
   The epochs run on the first 512 to 2048 training rows (``TIMING_ROWS``, fewer for larger
   models) and validation rows in proportion: an epoch is a loop over batches of 256 rows
   plus a validation pass, so its time grows linearly with the rows, and is scaled up to
   the unit's real size.
2. ``typical_epochs``: how many epochs the members of such a unit train before early
   stopping stops them (their mean, and the slowest member's), per dataset and type. From
   the recorded epochs of finished runs under the output folder when there are some with
   the same dataset, type, rows and patience and no lower epoch cap; otherwise
   ``TYPICAL_EPOCHS``, measured with the paper's stopping rule (see there). Either is
   capped at the profile's ``max_epochs``.
3. ``unit_seconds``: stopped members leave the batch, so an epoch with m members still
   training costs about t(m) = t1 + (m - 1) * (tM - t1) / (M - 1); summed over the epochs,
   a unit whose members train E_mean epochs on average and E_max at most costs
   E_max * t1 + (M * E_mean - E_max) * (tM - t1) / (M - 1).
4. ``wall_hours``: the units assigned longest first to N one-core workers, each taking the
   next unit when it is free (as Dask does with the runner's priorities): when the last
   worker finishes. Evaluation, data loading and the notebooks are left out (seconds per
   unit or dataset, against minutes to hours of training for the paper profile).

CPU-hours are core-hours of one torch thread per task, the way the runner's tasks run on
a cluster; a task with more threads finishes sooner but not in proportion.
"""

from __future__ import annotations

import dataclasses
import heapq
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..core.data import Dataset, load_dataset
from ..core.mixtures import MixtureEnsemble
from ..core.models import MLPEnsemble
from ..core.trainer import TrainConfig, fit
from ..core.yamlfile import load_yaml
from ..sections.deep_ensembles import wasym_variants
from .params import SECTIONS, check_datasets, load_params, profile_sections

#: Training rows an epoch is timed on: 8 batches of the paper's 256 rows for small models,
#: down to 2 batches for the largest, whose batches take long enough to time on their own:
#: rows x members x experts x hidden is kept near TIMING_WORK (64 members of hidden 64 get
#: 2048 rows, 5 mixtures of 128 experts 512).
TIMING_ROWS = (512, 2048)
TIMING_WORK = 2048 * 64 * 64

#: Epochs to early stopping when no finished run says otherwise: (mean over a unit's
#: members, its slowest member's) per section, dataset and type. Measured on the whole of each
#: dataset with the paper's rule (patience 16, at most 1000 epochs, paper split 64/16/20,
#: seed 0) by `asymlib run` of calibration profiles: deep ensembles of 8 MLPs and 8 WMLPs of
#: hidden 64, one repeat; mixtures of hidden-64 experts with a softmax gate, kinds mlp and
#: imlp, 3 repeats trained together, 2 experts on every dataset and also 8 on california,
#: churn and adult (the mean of the two sizes; 8 experts stopped a little sooner, most on
#: california's imlp: 65 epochs against 112). Unmeasured shapes borrow from measured ones:
#: wider networks stop like hidden 64, more experts like 2 and 8, gumbel gates like softmax,
#: wmlp / iwmlp experts like mlp / imlp. A unit of 64 members has a slower slowest member
#: than one of 8, so the slowest member's epochs are on the low side for the paper profile.
TYPICAL_EPOCHS: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "deep_ensembles": {
        "california": {"mlp": (126.5, 158), "wmlp": (82.5, 116)},
        "churn": {"mlp": (41.9, 47), "wmlp": (27.8, 32)},
        "adult": {"mlp": (32.8, 37), "wmlp": (24.9, 28)},
        "mnist": {"mlp": (19.8, 21), "wmlp": (23.1, 37)},
        "otto": {"mlp": (32.8, 37), "wmlp": (30.4, 36)},
    },
    "mixtures": {
        "california": {"mlp": (122.5, 139.5), "imlp": (88.8, 115.5)},
        "churn": {"mlp": (32.7, 37.0), "imlp": (37.5, 44.5)},
        "adult": {"mlp": (29.5, 30.5), "imlp": (29.3, 32.5)},
        "mnist": {"mlp": (20.3, 21), "imlp": (20.0, 21)},
        "otto": {"mlp": (28.7, 30), "imlp": (28.0, 30)},
    },
}
#: The measured type that stands for an unmeasured one.
_MEASURED_AS = {"wmlp": "mlp", "smlp": "mlp", "syre": "mlp", "iwmlp": "imlp"}
TYPICAL_EPOCHS_SOURCE = (
    "TYPICAL_EPOCHS in asymlib/execution/estimate.py (a calibration run with the paper's stopping rule)"
)


@dataclass
class Estimate:
    """The cost of a profile.

    shapes: one row per timed shape (section, dataset, shape, members, seconds_per_epoch
        at the full member count and with one member, epochs_mean, epochs_max, epochs_from).
    units: one row per work unit of the grid (section, dataset, unit, shape, cpu_hours).
    """

    profile: Path
    shapes: pd.DataFrame
    units: pd.DataFrame

    def cpu_hours(self) -> pd.DataFrame:
        """CPU-hours per section and dataset, with the number of units."""
        return self.units.groupby(["section", "dataset"], sort=False).agg(
            units=("unit", "size"), cpu_hours=("cpu_hours", "sum")
        )

    def wall_hours(self, workers: int) -> float:
        return wall_hours(self.units["cpu_hours"].to_numpy(), workers)


def wall_hours(unit_hours: Sequence[float], workers: int) -> float:
    """When the last of ``workers`` finishes, each taking the longest unit left when free."""
    free = [0.0] * workers
    for hours in sorted(unit_hours, reverse=True):
        heapq.heapreplace(free, free[0] + hours)
    return max(free)


def _timing_part(data: Dataset, size: int) -> tuple[Dataset, float]:
    """The first training rows (``TIMING_ROWS``, fewer the larger ``size``: members x
    experts x hidden) and validation rows in proportion, and the factor from an epoch on them
    to an epoch on the whole training and validation parts."""
    low, high = TIMING_ROWS
    n_train = min(len(data.X_train), max(low, min(high, TIMING_WORK // size)))
    n_val = max(1, round(len(data.X_val) * n_train / len(data.X_train)))
    part = dataclasses.replace(
        data,
        X_train=data.X_train[:n_train],
        y_train=data.y_train[:n_train],
        X_val=data.X_val[:n_val],
        y_val=data.y_val[:n_val],
    )
    return part, len(data.X_train) / n_train


def _epoch_seconds(model: torch.nn.Module, data: Dataset, *, usage: bool) -> float:
    """Seconds of the faster of epochs 2 and 3 of ``fit`` (training, validation and, for a
    mixture, the expert usage that its unit records after every epoch)."""
    stamps: list[float] = []

    def monitor(m: torch.nn.Module) -> torch.Tensor:
        stamps.append(time.perf_counter())
        if usage:
            return m.expert_usage(data.X_val)
        return torch.zeros(next(m.parameters()).shape[0])

    config = TrainConfig(max_epochs=3, patience=3)
    fit(
        model,
        data.X_train,
        data.y_train,
        data.X_val,
        data.y_val,
        task=data.task,
        order_seeds=list(range(model.members)),
        config=config,
        monitor=monitor,
        progress=False,
    )
    return min(stamps[1] - stamps[0], stamps[2] - stamps[1])


def time_shape(data: Dataset, section: str, settings: dict, shape: dict) -> tuple[float, float, int]:
    """(seconds per epoch with M members, with one member, M) of one shape of ``section``
    on the whole of ``data``, timed on a part of it (see the module's docstring)."""
    if section == "deep_ensembles":
        members = settings["members"]
        part, scale = _timing_part(data, members * shape["hidden"])

        def build(m: int) -> torch.nn.Module:
            return MLPEnsemble(data.n_features, shape["hidden"], data.n_outputs, members=m, kind=shape["kind"])
    else:
        members = settings["repeats"]
        part, scale = _timing_part(data, members * shape["experts"] * settings["hidden"])

        def build(m: int) -> torch.nn.Module:
            return MixtureEnsemble(
                data.n_features,
                settings["hidden"],
                data.n_outputs,
                members=m,
                experts=shape["experts"],
                kind=shape["kind"],
                gating=shape["gating"],
                architecture=settings["architecture"],
            )

    usage = section == "mixtures"
    full = _epoch_seconds(build(members), part, usage=usage) * scale
    single = _epoch_seconds(build(1), part, usage=usage) * scale if members > 1 else full
    return full, min(single, full), members


def _shapes(section: str, settings: dict) -> list[dict]:
    """The distinct shapes of a section's units (what their cost depends on)."""
    if section == "deep_ensembles":
        return [{"hidden": h, "kind": k} for h in settings["hidden_sizes"] for k in settings["types"]]
    gating = settings["gatings"][0]
    return [{"experts": e, "kind": k, "gating": gating} for e in sorted(settings["experts"]) for k in settings["kinds"]]


def _shape_of(section: str, settings: dict, unit: dict) -> list[dict]:
    """The shapes one unit trains: a deep-ensemble unit one model of each type, a WMLP once
    per ablation variant (n_fix x kappa), which costs what the paper's WMLP does."""
    if section == "deep_ensembles":
        variants = len(wasym_variants(settings["n_fix"], settings["kappa"]))
        return [
            {"hidden": unit["hidden"], "kind": k}
            for k in settings["types"]
            for _ in range(variants if k == "wmlp" else 1)
        ]
    return [{"experts": unit["experts"], "kind": unit["kind"]}]


def _key(shape: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in shape.items() if k != "gating"))


def typical_epochs(section: str, settings: dict, dataset: str, kind: str, *, runs: Path) -> tuple[float, float, str]:
    """(mean epochs of a unit's members of type ``kind``, the slowest member's, where the
    numbers come from).

    Recorded epochs count when a finished section folder under ``runs`` (``runs/<profile>/
    <section>/``) holds results of ``dataset`` and ``kind`` made with the same rows
    (``max_rows``), split and patience, and an epoch cap no lower than the profile's; else
    ``TYPICAL_EPOCHS`` (for a user dataset, which has none, ``max_epochs``). Either is capped
    at the profile's ``max_epochs``.
    """
    table, column, group = (
        ("models", "type", ["hidden", "repeat"])
        if section == "deep_ensembles"
        else ("mixtures", "kind", ["gating", "experts"])
    )
    cap = settings["max_epochs"]
    same = ("max_rows", "split", "val_fraction", "patience")
    for settings_file in sorted(runs.glob(f"*/{section}/settings.yaml")):
        recorded = (load_yaml(settings_file.read_text(), source=str(settings_file)) or {}).get(dataset)
        if not recorded or any(recorded.get(k) != settings.get(k) for k in same) or recorded.get("max_epochs", 0) < cap:
            continue
        # the shards, not the combined table: a run still going has recorded epochs too
        store = SECTIONS[section].store(settings_file.parent)
        rows = store.read([u for u in store.units() if u.startswith(f"{dataset}-")], table)
        rows = rows[(rows[column] == kind) & ~rows["diverged"]] if len(rows) else rows
        if len(rows):
            per_unit = rows.groupby(group)["epochs"].agg(["mean", "max"])
            source = f"recorded in {settings_file.parent}"
            return min(per_unit["mean"].mean(), cap), min(per_unit["max"].mean(), cap), source
    if dataset not in TYPICAL_EPOCHS[section]:  # a user dataset never run: assume the cap
        return cap, cap, f"max_epochs ({cap}): no recorded run of the user dataset {dataset}"
    measured = TYPICAL_EPOCHS[section][dataset]
    mean, slowest = measured.get(kind) or measured[_MEASURED_AS[kind]]
    return min(mean, cap), min(slowest, cap), TYPICAL_EPOCHS_SOURCE


def unit_seconds(full: float, single: float, members: int, epochs_mean: float, epochs_max: float) -> float:
    """A unit's training seconds: members leave the batch as they stop (module docstring, 3)."""
    if members == 1:
        return full * epochs_max
    slope = (full - single) / (members - 1)
    return epochs_max * single + (members * epochs_mean - epochs_max) * slope


def estimate_profile(
    params_path: str | os.PathLike,
    *,
    sections: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    runs: str | os.PathLike = "runs",
    progress: bool = True,
) -> Estimate:
    """Time every distinct unit shape of a profile and cost its whole grid (module docstring).

    runs: where finished runs may hold recorded epochs to early stopping.
    Uses one torch thread while timing; the previous number is restored afterwards.
    """
    from tqdm.auto import tqdm

    params_path = Path(params_path)
    sections = list(sections or profile_sections(params_path))
    profile = load_params(params_path, sections=sections)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    shapes, units = [], []
    try:
        chosen = check_datasets(datasets, "datasets") if datasets else None  # a user dataset is registered above
        work = [(s, d) for s in sections for d in (chosen or profile[s]["datasets"])]
        bar = tqdm(
            total=sum(len(_shapes(s, profile[s])) for s, _ in work), desc="timing", unit="shape", disable=not progress
        )
        loaded: dict[tuple, Dataset] = {}
        for section, dataset in work:
            settings = profile[section]
            cut = (dataset, settings["max_rows"], settings["split"], settings["val_fraction"])
            if cut not in loaded:
                loaded.clear()  # one dataset in memory at a time
                loaded[cut] = load_dataset(
                    dataset,
                    max_rows=settings["max_rows"],
                    split=settings["split"],
                    val_fraction=settings["val_fraction"],
                )
            data = loaded[cut]
            timed = {}
            for shape in _shapes(section, settings):
                mean, slowest, source = typical_epochs(section, settings, dataset, shape["kind"], runs=Path(runs))
                full, single, members = time_shape(data, section, settings, shape)
                seconds = unit_seconds(full, single, members, mean, slowest)
                timed[_key(shape)] = seconds
                shapes.append(
                    {
                        "section": section,
                        "dataset": dataset,
                        "shape": _describe(shape),
                        "members": members,
                        "seconds_per_epoch": full,
                        "seconds_per_epoch_one_member": single,
                        "epochs_mean": mean,
                        "epochs_max": slowest,
                        "unit_part_hours": seconds / 3600,
                        "epochs_from": source,
                    }
                )
                bar.update(1)
            for unit, coordinates in SECTIONS[section].grid(settings, dataset).items():
                seconds = sum(timed[_key(shape)] for shape in _shape_of(section, settings, coordinates))
                units.append(
                    {
                        "section": section,
                        "dataset": dataset,
                        "unit": unit,
                        "shape": _describe(coordinates),
                        "cpu_hours": seconds / 3600,
                    }
                )
        bar.close()
    finally:
        torch.set_num_threads(threads)
    return Estimate(params_path, pd.DataFrame(shapes), pd.DataFrame(units))


def _describe(shape: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in shape.items() if k not in ("repeat", "gating"))


def _hours(hours: float) -> str:
    """Hours as the most readable unit: seconds, minutes, hours or days."""
    seconds = hours * 3600
    if seconds < 120:
        return f"{seconds:.0f} s"
    if hours < 2:
        return f"{seconds / 60:.0f} min"
    if hours < 72:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def format_estimate(estimate: Estimate, *, workers: Sequence[int]) -> str:
    """The shapes' timings, CPU-hours per section and dataset, and wall time for N workers."""
    lines = [f"Estimate for {estimate.profile} (one torch thread per task, timed on this machine)", ""]
    shapes = estimate.shapes.assign(
        s_per_epoch=estimate.shapes["seconds_per_epoch"].round(3),
        s_one_member=estimate.shapes["seconds_per_epoch_one_member"].round(3),
        epochs=[f"{m:.0f} / {x:.0f}" for m, x in zip(estimate.shapes["epochs_mean"], estimate.shapes["epochs_max"])],
        hours=estimate.shapes["unit_part_hours"].map(_hours),
    )
    columns = ["section", "dataset", "shape", "members", "s_per_epoch", "s_one_member", "epochs", "hours"]
    lines.append("Per shape: seconds per epoch (all members / one), epochs (mean / slowest member), time per unit:")
    lines += ["  " + line for line in shapes[columns].to_string(index=False).splitlines()]
    lines.append("")
    sources = sorted(set(estimate.shapes["epochs_from"]))
    lines.append("Epochs to early stopping: " + "; ".join(sources))
    lines.append("")
    table = estimate.cpu_hours()
    lines.append("CPU-hours per section and dataset:")
    for (section, dataset), row in table.iterrows():
        lines.append(f"  {section:<15} {dataset:<11} {int(row['units']):5d} units  {row['cpu_hours']:10.2f} CPU-h")
    for section, part in table.groupby(level=0, sort=False):
        lines.append(
            f"  {section:<15} {'all':<11} {int(part['units'].sum()):5d} units  {part['cpu_hours'].sum():10.2f} CPU-h"
        )
    total = table["cpu_hours"].sum()
    lines.append(f"  total: {total:.2f} CPU-hours ({_hours(total)} on one core)")
    lines.append("")
    longest = estimate.units.loc[estimate.units["cpu_hours"].idxmax()]
    lines.append(f"Wall time (longest unit: {longest['unit']}, {_hours(longest['cpu_hours'])}):")
    for n in workers:
        lines.append(f"  {n:4d} worker{'s' if n > 1 else ' '}: {_hours(estimate.wall_hours(n))}")
    return "\n".join(lines)


# ----------------------------------------------------------------- from measured units (a GPU)
#
# Timing a few epochs says little on a GPU, where a small unit's time goes to launching
# kernels, validating and recording CUDA graphs rather than to arithmetic. There the units
# that a run (`asymlib train --device cuda`) has measured teach the estimate instead:
#
#     seconds of a unit = b * epochs + c[mode] * steps + flops / R
#
# epochs: epochs its batched models run (each validates, reads back to the host once and,
# on a GPU, records a new CUDA graph when members stop); steps: training steps the unit's batched models take (epochs of their slowest member x
# batches per epoch), each a graph replay (deep ensembles, softmax-gated mixtures) or eager
# kernel launches (Gumbel-gated mixtures, whose noise is drawn per step); flops: the matrix
# work of every member's epochs; b, c[graph], c[eager] and the rate R are fitted by non-negative
# least squares (relative errors) to the measured units' seconds, each divided by the units
# that shared the device with it (``sharing`` in train_log.csv). The units not measured are
# predicted from their shapes and typical epochs (``typical_epochs``).


#: Rows per training step (``TrainConfig``'s batch size, the paper's).
STEP_ROWS = TrainConfig().batch_size


@dataclass
class MeasuredEstimate:
    """A profile's cost from measured units: one row per unit of the grid (section, dataset,
    unit, mode, epochs, steps, flops, seconds, measured) and the fitted constants (epoch_ms
    per epoch, c_graph_ms and c_eager_ms per step, rate_tflops)."""

    profile: Path
    source: Path
    units: pd.DataFrame
    constants: dict[str, float]

    def hours(self, measured: bool | None = None) -> float:
        rows = self.units if measured is None else self.units[self.units["measured"] == measured]
        return rows["seconds"].sum() / 3600


def _split_rows(dataset: str, settings: dict) -> tuple[int, int]:
    """Training and validation rows of ``dataset`` under the section's split."""
    from ..core.data import DATASET_SHAPES, SPLITS

    rule = SPLITS[settings["split"]]
    rest = DATASET_SHAPES[dataset][0] * (1 - rule.test_fraction)
    val_fraction = settings["val_fraction"] or rule.val_fraction
    return round(rest * (1 - val_fraction)), round(rest * val_fraction)


def _member_epoch_flops(dataset: str, settings: dict, hidden: int, experts: int, *, square_layers: int = 2) -> float:
    """Matrix-multiply FLOPs of one member's epoch: forward and backward (3x the forward) on
    the training rows, forward on the validation rows; a mixture's K experts and gate.
    ``square_layers``: hidden-to-hidden layers (2; 3 in the code release's MoIE). The output
    layer (under 1 % of the work) is left out."""
    from ..core.data import DATASET_SHAPES

    n_train, n_val = _split_rows(dataset, settings)
    features = DATASET_SHAPES[dataset][1]
    macs = experts * (features * hidden + square_layers * hidden * hidden) + (features * experts if experts > 1 else 0)
    return 2.0 * macs * (3 * n_train + n_val)


def _fits(
    section: str, settings: dict, dataset: str, unit: str, coordinates: dict, measured: Path | None, runs: Path
) -> list[tuple[str, int, float, float]]:
    """The batched fits of a unit: (mode, members, epochs mean, epochs of the slowest member),
    from the unit's shards where it was measured, else typical epochs."""
    table, column = ("models", "type") if section == "deep_ensembles" else ("mixtures", "kind")
    recorded = None
    if measured is not None:
        store = SECTIONS[section].store(measured)
        if store.done(unit):
            recorded = store.read([unit], table)
    if section == "deep_ensembles":
        shapes = [(shape["kind"], settings["members"]) for shape in _shape_of(section, settings, coordinates)]
        mode = "graph"
    else:
        shapes = [(coordinates["kind"], settings["repeats"])]
        mode = "eager" if coordinates["gating"] == "gumbel" else "graph"
    fits = []
    for kind, members in shapes:
        if recorded is not None:
            epochs = recorded[recorded[column] == kind]["epochs"]
            mean, slowest = float(epochs.mean()), float(epochs.max())
        else:
            mean, slowest, _ = typical_epochs(section, settings, dataset, kind, runs=runs)
        fits.append((mode, members, mean, slowest))
    return fits


def _unit_rows(profile: dict, measured_root: Path, runs: Path) -> pd.DataFrame:
    """One row per unit of every section: mode, epochs, steps, flops, and the measured seconds of
    the device per unit where ``train_log.csv`` has them (divided by ``sharing``)."""
    rows = []
    for section, settings in profile.items():
        folder = measured_root / section
        log = pd.read_csv(folder / "train_log.csv") if (folder / "train_log.csv").exists() else pd.DataFrame()
        occupancy = {} if log.empty else dict(zip(log["unit"], log["seconds"] / log.get("sharing", log["slots"])))
        for dataset in settings["datasets"]:
            batches = -(-_split_rows(dataset, settings)[0] // STEP_ROWS)
            for unit, coordinates in SECTIONS[section].grid(settings, dataset).items():
                hidden = coordinates.get("hidden", settings.get("hidden"))
                release_moie = settings.get("architecture") == "release" and coordinates.get("kind") in (
                    "imlp",
                    "iwmlp",
                )
                flops_per_epoch = _member_epoch_flops(
                    dataset, settings, hidden, coordinates.get("experts", 1), square_layers=3 if release_moie else 2
                )
                fits = _fits(section, settings, dataset, unit, coordinates, folder if unit in occupancy else None, runs)
                rows.append(
                    {
                        "section": section,
                        "dataset": dataset,
                        "unit": unit,
                        "mode": fits[0][0],
                        "epochs": sum(slowest for _, _, _, slowest in fits),
                        "steps": sum(slowest * batches for _, _, _, slowest in fits),
                        "flops": sum(members * mean * flops_per_epoch for _, members, mean, _ in fits),
                        "measured": unit in occupancy,
                        "seconds": occupancy.get(unit, float("nan")),
                    }
                )
    return pd.DataFrame(rows)


def estimate_from_measured(
    params_path: str | os.PathLike, measured: str | os.PathLike, *, sections: Sequence[str] | None = None
) -> MeasuredEstimate:
    """The profile's cost on the device that trained the units under ``measured`` (a profile
    folder such as ``runs/paper``, holding ``<section>/train_log.csv`` and shards): measured
    units count as measured, the rest are predicted by the model above, fitted to them.

    Raises ParamsError when fewer than 3 units, or no unit of a mode the grid needs, were measured.
    """
    from scipy.optimize import nnls

    from .params import ParamsError

    params_path, measured = Path(params_path), Path(measured)
    sections = list(sections or profile_sections(params_path))
    profile = load_params(params_path, sections=sections)
    units = _unit_rows(profile, measured, runs=measured.parent)
    fit = units[units["measured"]]
    needed = set(units["mode"])
    if len(fit) < 3 or not needed <= set(fit["mode"]):
        raise ParamsError(
            f"{measured}: {len(fit)} measured units of modes {sorted(set(fit['mode']))}; the estimate needs at least 3, "
            f"of every mode the grid has ({', '.join(sorted(needed))}): train some with `asymlib train --device cuda`"
        )
    design = _design(fit) / fit["seconds"].to_numpy()[:, None]
    theta, _ = nnls(design, np.ones(len(fit)))
    units["seconds"] = units["seconds"].where(units["measured"], _design(units) @ theta)
    per_epoch, c_graph, c_eager, inverse_rate = theta
    constants = {
        "epoch_ms": 1e3 * per_epoch,
        "c_graph_ms": 1e3 * c_graph,
        "c_eager_ms": 1e3 * c_eager,
        "rate_tflops": 1e-12 / inverse_rate if inverse_rate > 0 else float("inf"),
        "fit_median_error": float(np.median(np.abs(design @ theta - 1))),
    }
    return MeasuredEstimate(params_path, measured, units, constants)


def _design(units: pd.DataFrame) -> np.ndarray:
    """The model's terms per unit: epochs, replayed steps, eager steps, FLOPs."""
    graph = (units["mode"] == "graph").to_numpy()
    steps = units["steps"].to_numpy(dtype=float)
    return np.column_stack(
        [units["epochs"].to_numpy(dtype=float), steps * graph, steps * ~graph, units["flops"].to_numpy(dtype=float)]
    )


def format_measured_estimate(estimate: MeasuredEstimate) -> str:
    units, c = estimate.units, estimate.constants
    measured = units[units["measured"]]
    lines = [
        f"Estimate for {estimate.profile} on the device of {estimate.source} "
        f"({len(measured)} of {len(units)} units measured there)",
        f"  fitted: {c['epoch_ms']:.1f} ms per epoch, {c['c_graph_ms']:.3f} ms per replayed step, {c['c_eager_ms']:.3f} ms per eager step, "
        f"{c['rate_tflops']:.1f} TFLOP/s of matrix work; median error on the measured units {100 * c['fit_median_error']:.0f} %",
        "",
        "Hours per section and dataset (measured + predicted):",
    ]
    table = units.groupby(["section", "dataset"], sort=False).agg(
        units=("unit", "size"), measured=("measured", "sum"), hours=("seconds", lambda s: s.sum() / 3600)
    )
    for (section, dataset), row in table.iterrows():
        lines.append(
            f"  {section:<15} {dataset:<11} {int(row['units']):4d} units ({int(row['measured']):3d} measured)"
            f"  {row['hours']:7.3f} h"
        )
    lines.append(
        f"  measured units: {_hours(estimate.hours(True))}; the others, predicted: {_hours(estimate.hours(False))}"
    )
    lines.append(f"  whole grid on one device: {_hours(estimate.hours())}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- memory
#
# What one unit holds at once, counted before anything runs so that a profile whose units
# cannot fit is refused up front (``machine.check_memory``) rather than failing (or
# swapping for hours) on its workers. Rough but on the low side: only the large items,
# float32 (4 bytes) unless said otherwise, for the largest model a unit trains at a time (a
# deep-ensemble unit trains its types one after the other; a mixture unit one model):
#
# - parameters, their gradients, AdamW's two moments and the copy of each member's
#   parameters set aside when it stops (``trainer``): 5 x 4 bytes per parameter;
# - a training batch's activations kept for the backward pass: members (x experts) x batch
#   rows x 3 hidden layers x 2 (before and after the activation function) x hidden;
# - the epoch's row orders, one int64 permutation of the training rows per member, and the
#   block of gathered rows (``steps.EpochBatches``, at most ``BLOCK_BYTES``);
# - every member's outputs on the test part, which scoring holds at once;
# - the dataset's tensors (train, validation and test rows x (features + 1)).
#
# The Python process itself, torch's libraries and the allocator's slack come on top.

#: Bytes per trained parameter: the value, its gradient, AdamW's two moments, the stopped copy.
BYTES_PER_PARAMETER = 5 * 4


def unit_memory_bytes(section: str, settings, dataset: str, coordinates: dict) -> int:
    """About how many bytes one unit of ``section`` needs while it trains (see above)."""
    from ..core.data import DATASET_RECORDS, SPLITS, part_sizes
    from ..core.steps import BLOCK_BYTES

    record = DATASET_RECORDS[dataset]
    rule = SPLITS[settings["split"]]
    val_fraction = settings["val_fraction"] or rule.val_fraction
    n_train, n_val, n_test = part_sizes(record.n_rows, settings["max_rows"], rule.test_fraction, val_fraction)
    d, out = record.n_features, max(1, record.n_classes)
    batch = TrainConfig().batch_size
    if section == "deep_ensembles":
        members, experts, hidden, square = settings["members"], 1, coordinates["hidden"], 2
    else:
        members, experts, hidden = settings["repeats"], coordinates["experts"], settings["hidden"]
        release_moie = settings["architecture"] == "release" and coordinates["kind"] in ("imlp", "iwmlp")
        square = 3 if release_moie else 2
    expert = d * hidden + hidden + square * (hidden * hidden + hidden) + hidden * out + out
    gate = d * experts + experts if experts > 1 else 0
    parameters = members * (experts * expert + gate)
    activations = members * experts * batch * 3 * 2 * hidden * 4
    orders = members * n_train * 8 + min(BLOCK_BYTES, members * n_train * (d * 4 + 8))
    outputs = members * n_test * out * 4
    data = (n_train + n_val + n_test) * (d + 1) * 4
    return parameters * BYTES_PER_PARAMETER + activations + orders + outputs + data
