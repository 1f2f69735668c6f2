"""The mixture-of-experts section of the paper (MoE, GG-MoE, MoIE) as resumable work units.

One work unit is (dataset, gating, kind, experts): the ``repeats`` mixtures of that model
trained as the members of one batched ``MixtureEnsemble`` (each its own seeds and early
stopping), then scored on the test set. A unit is written as two Parquet shards, ``usage``
then ``mixtures`` (the completion marker), so a stopped run loses at most the unit in
progress and a re-run skips what is done.

Seeds: repeat r uses the same initialisation, data-order and Gumbel-noise seeds in every
unit, so gatings and kinds are paired comparisons, and the first experts of a larger
mixture start as those of a smaller one (experts are drawn in turn from one generator).
The W-Asymmetric entries are those of the deep-ensemble WMLPs of repeat 0: the protocol wants them
identical for every expert and every mixture, and the mixtures of a unit share one set
anyway (a stacked layer has one mask).

``MixtureSettings`` holds the section's settings (one field per setting, with its check);
the trainers take it whole, and the shard store records it beside every unit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..core.data import Dataset
from ..core.diversity import ambiguity, pairwise_disagreement
from ..core.evaluation import UNCERTAINTY_SCORES, metric_name, score
from ..core.mixtures import ARCHITECTURES, GATINGS, MIXTURE_KINDS, PAPER_EXPERTS, MixtureEnsemble
from ..core.trainer import TrainResult, evaluating, fit, predict
from ..core.uncertainty import member_uncertainty, residual_variances
from .settings import SectionSettings, list_of, number, one_of, positive_int, setting
from .units import ShardStore, derive_seed, mask_seed, on_device

#: Tag mixed into the mixtures' seeds so that they differ from the deep ensembles' members.
_MIXTURE_SEED_TAG = 2**21
#: The tables a mixture unit writes, the completion marker last.
MIXTURE_TABLES = ("usage", "mixtures")


def mixture_seeds(seed: int, repeat: int) -> tuple[int, int, int]:
    """Initialisation, data-order and training Gumbel-noise seeds of one repeat's mixture."""
    init, order, noise = (derive_seed(seed, repeat, _MIXTURE_SEED_TAG + j) for j in range(3))
    return init, order, noise


def mixture_unit(dataset: str, gating: str, kind: str, experts: int, balance_weight: float = 0.0) -> str:
    """A unit's name; a load-balancing weight other than the paper's 0 adds ``-b<weight>``."""
    name = f"{dataset}-{gating}-{kind}-e{experts}"
    return name if not balance_weight else f"{name}-b{balance_weight:g}"


@dataclass(frozen=True, kw_only=True)
class MixtureSettings(SectionSettings):
    """The mixture section's settings (``params/*.yaml``'s ``mixtures:``, the notebook's
    parameters); the defaults are the paper's grid.

    A new setting is one field here (default, check, what a good value looks like, whether a
    profile must give it, whether results made with another value are incomparable) and its
    use in the trainer below.
    """

    SECTION = "mixtures"
    TABLES = MIXTURE_TABLES
    UNIT_COLUMNS = ("dataset", "gating", "kind", "experts", "balance_weight")
    METRIC_COLUMNS = {"mixtures": ("metric",)}

    gatings: tuple[str, ...] = setting(
        GATINGS,
        list_of(one_of(GATINGS)),
        f"a non-empty list out of {', '.join(GATINGS)}",
        required=True,
        compared=False,
    )
    kinds: tuple[str, ...] = setting(
        MIXTURE_KINDS,
        list_of(one_of(MIXTURE_KINDS)),
        f"a non-empty list out of {', '.join(MIXTURE_KINDS)}",
        required=True,
        compared=False,
    )
    experts: tuple[int, ...] = setting(
        PAPER_EXPERTS,
        list_of(positive_int),
        "a non-empty list of positive integers (experts per mixture)",
        required=True,
        compared=False,
    )
    hidden: int = setting(64, positive_int, "a positive integer (every expert's hidden width)", required=True)
    # repeats are the members of a unit, so more repeats means redoing every unit: compared
    repeats: int = setting(5, positive_int, "a positive integer (mixtures per model, trained together)", required=True)
    balance_weights: tuple[float, ...] = setting(
        (0.0,),
        list_of(lambda v: number(v) and v >= 0),
        "a non-empty list of non-negative numbers (weights of the load-balancing loss; 0: none, the paper's)",
        compared=False,
    )
    architecture: str = setting(
        "paper",
        one_of(ARCHITECTURES),
        f"one of {', '.join(ARCHITECTURES)} (the paper's text's networks, or its code release's MoIE)",
    )

    def cross_problems(self) -> list[tuple[str, str]]:
        if 2 not in self.experts:
            # Figure 2 and every summary measure the gain over the same model with 2 experts.
            return [("experts", f"must include 2 (gains are measured against 2 experts), got {list(self.experts)}")]
        return []

    def units(self, dataset: str) -> dict[str, dict]:
        # smallest mixtures first: the 2-expert baselines are there early on in a long run
        return {
            mixture_unit(dataset, gating, kind, experts, weight): {
                "gating": gating,
                "kind": kind,
                "experts": experts,
                "balance_weight": weight,
            }
            for experts in sorted(self.experts)
            for gating in self.gatings
            for kind in self.kinds
            for weight in self.balance_weights
        }

    @classmethod
    def unit_of(cls, row: Mapping[str, Any]) -> str:
        # results from before the load-balancing axis have no balance_weight: the paper's 0
        weight = float(row.get("balance_weight", 0.0))
        return mixture_unit(row["dataset"], row["gating"], row["kind"], int(row["experts"]), weight)

    def table_settings(self) -> str:
        record = {"seed": self.seed, "repeats": self.repeats, "hidden": self.hidden, **self.config.as_record()}
        if self.architecture != "paper":
            record["architecture"] = self.architecture
        return str(record)


@dataclass
class TrainedMixtures:
    """One model's ``repeats`` mixtures of a unit after training: the batched model, what
    ``fit`` recorded (expert usage per epoch in ``monitored``), the wall seconds and seeds."""

    model: MixtureEnsemble
    result: TrainResult
    wall: float
    init_seeds: list[int]
    order_seeds: list[int]
    noise_seeds: list[int]


def fit_mixtures(
    data: Dataset,
    settings: MixtureSettings,
    *,
    gating: str,
    kind: str,
    experts: int,
    balance_weight: float = 0.0,
    progress: bool = True,
) -> TrainedMixtures:
    """Train the ``settings.repeats`` mixtures of one model as one batched model (no scoring)."""
    repeats, device = settings.repeats, settings.device
    seeds = [mixture_seeds(settings.seed, r) for r in range(repeats)]
    init_seeds, order_seeds, noise_seeds = (list(column) for column in zip(*seeds))
    model = MixtureEnsemble(
        data.n_features,
        settings.hidden,
        data.n_outputs,
        members=repeats,
        experts=experts,
        kind=kind,
        gating=gating,
        init_seeds=init_seeds,
        noise_seeds=noise_seeds,
        mask_seed=mask_seed(settings.seed, 0),
        eval_seed=derive_seed(settings.seed, _MIXTURE_SEED_TAG + 3),
        balance_weight=balance_weight,
        architecture=settings.architecture,
    ).to(device)
    to = lambda t: t.to(device)  # noqa: E731
    X_val = to(data.X_val)
    batch_size = settings.config.eval_batch_size
    started = time.perf_counter()
    result = fit(
        model,
        to(data.X_train),
        to(data.y_train),
        X_val,
        to(data.y_val),
        task=data.task,
        order_seeds=order_seeds,
        config=settings.config,
        progress=progress,
        monitor=lambda m: m.expert_usage(X_val, batch_size=batch_size),
        description=f"{data.name} {gating} {kind} K={experts}",
    )
    wall = time.perf_counter() - started
    return TrainedMixtures(model, result, wall, init_seeds, order_seeds, noise_seeds)


def mixture_tables(
    data: Dataset,
    settings: MixtureSettings,
    trained: TrainedMixtures,
    *,
    gating: str,
    kind: str,
    experts: int,
    balance_weight: float = 0.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score trained mixtures on the test set: their ``mixtures`` and ``usage`` tables
    (``train_mixtures``)."""
    model, result, repeats, device = trained.model, trained.result, settings.repeats, settings.device
    batch_size = settings.config.eval_batch_size
    to = lambda t: t.to(device)  # noqa: E731
    X_val, X_test, y_test = to(data.X_val), to(data.X_test), to(data.y_test)
    outputs = predict(model, X_test, batch_size=batch_size)
    metric = score(outputs, y_test, task=data.task).cpu().numpy()
    variances = None
    if data.task == "regression":
        variances = residual_variances(predict(model, X_val, batch_size=batch_size), to(data.y_val))
    scores = {name: np.full(repeats, np.nan) for name in UNCERTAINTY_SCORES}
    healthy = np.flatnonzero(~result.diverged)
    if len(healthy):  # a diverged mixture's outputs may not be numbers at all
        found = member_uncertainty(
            outputs[healthy], y_test, task=data.task, variances=None if variances is None else variances[healthy]
        )
        for name, values in found.items():
            scores[name][healthy] = values
    diversity = _expert_diversity(model, X_test, task=data.task, batch_size=batch_size)
    metric[result.diverged] = np.nan  # a diverged mixture has no result, only its reason
    for values in diversity.values():
        values[result.diverged] = np.nan

    key = {
        "dataset": data.name,
        "split": data.split,
        "gating": gating,
        "kind": kind,
        "experts": experts,
        "balance_weight": float(balance_weight),
        "architecture": settings.architecture,
    }
    mixtures = pd.DataFrame(
        {
            **key,
            "repeat": np.arange(repeats),
            "metric_name": metric_name(data.task),
            "metric": metric,
            **scores,
            "val_residual_variance": np.nan if variances is None else variances.cpu().numpy(),
            **diversity,
            "epochs": result.epochs,
            "train_time": result.train_time,
            "final_val_loss": result.final_val_loss,
            "best_val_loss": result.best_val_loss,
            "diverged": result.diverged,
            "diverged_reason": result.diverged_reason,
            "parameters": model.parameters_per_mixture(),
            "hidden": settings.hidden,
            "init_seed": trained.init_seeds,
            "order_seed": trained.order_seeds,
            "noise_seed": trained.noise_seeds,
            "batch_wall_time": trained.wall,
        }
    )
    if result.precision != "float32":  # an opt-in lower matmul precision is part of the result
        mixtures["precision"] = result.precision
    return mixtures, _usage_table(result.monitored, key)


def _usage_table(usage: np.ndarray, key: dict) -> pd.DataFrame:
    """One row per repeat, epoch and expert from ``fit``'s monitored usage, an array
    (epochs, repeats, experts), NaN after a repeat stopped (those rows are left out)."""
    epochs, repeats, experts = usage.shape
    epoch, repeat, expert = np.meshgrid(np.arange(1, epochs + 1), np.arange(repeats), np.arange(experts), indexing="ij")
    table = pd.DataFrame(
        {
            **key,
            "repeat": repeat.ravel(),
            "epoch": epoch.ravel(),
            "expert": expert.ravel(),
            "usage": usage.ravel().astype(np.float32),
        }
    )
    return table.dropna(subset=["usage"]).reset_index(drop=True)


def train_mixtures(
    data: Dataset,
    settings: MixtureSettings,
    *,
    gating: str,
    kind: str,
    experts: int,
    balance_weight: float = 0.0,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the ``settings.repeats`` mixtures of one model as one batched model and score them.

    balance_weight: weight of the load-balancing loss (``core.mixtures``; 0: the paper's).
    settings: hidden, repeats, seed, architecture ("paper": the text's networks, "release":
    the code release's MoIE; ``core.mixtures``; written to both tables), the training
    settings (``settings.config``) and the device.
    Returns two tidy tables, both with ``balance_weight``:
      mixtures: one row per repeat (test metric; NLL, Brier score and ECE of the mixture's
      prediction; the disagreement or ambiguity between its experts, each expert run as
      its own network; epochs, training time, parameters, seeds, whether it diverged and
      why; a diverged mixture's scores are NaN);
      usage: one row per repeat, epoch and expert: the expert's mean gate weight on the
      validation set after that epoch (inference gate).
    """
    model = dict(gating=gating, kind=kind, experts=experts, balance_weight=balance_weight)
    trained = fit_mixtures(data, settings, **model, progress=progress)
    return mixture_tables(data, settings, trained, **model)


def _expert_diversity(model: MixtureEnsemble, X: Tensor, *, task: str, batch_size: int) -> dict[str, np.ndarray]:
    """How differently each mixture's experts predict on X, each expert run as its own
    network (for MoIE: the network of its parameters alone): pairwise disagreement for
    classification, ambiguity for regression, the other NaN. Returns (repeats,) arrays."""
    with evaluating(model):
        outputs = torch.cat(
            [model.expert_outputs(X[start : start + batch_size]) for start in range(0, len(X), batch_size)], dim=2
        )  # (members, experts, n, out)
    members = outputs.shape[0]
    disagreement, spread = np.full(members, np.nan), np.full(members, np.nan)
    if outputs.shape[1] > 1:
        for m in range(members):
            if task == "regression":
                spread[m] = ambiguity(outputs[m])
            else:
                disagreement[m] = pairwise_disagreement(outputs[m])
    return {"disagreement": disagreement, "ambiguity": spread}


def train_mixture_unit(
    data: Dataset,
    settings: MixtureSettings,
    *,
    gating: str,
    kind: str,
    experts: int,
    balance_weight: float = 0.0,
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """One work unit (dataset, gating, kind, experts, balance weight): its ``repeats``
    mixtures trained together.

    A pure function of the unit and its settings: it writes nothing, so a task that runs it
    on a cluster can be retried anywhere, and whoever holds the ``ShardStore`` saves the
    result. The data are placed on ``settings.device`` once for the whole unit.
    Returns ``{"usage": ..., "mixtures": ...}`` (``MIXTURE_TABLES`` order, the completion
    marker last), the tables of ``train_mixtures``.
    """
    mixtures, usage = train_mixtures(
        on_device(data, settings.device),
        settings,
        gating=gating,
        kind=kind,
        experts=experts,
        balance_weight=balance_weight,
        progress=progress,
    )
    return {"usage": usage, "mixtures": mixtures.assign(settings=settings.table_settings())}


def add_relative_to_two(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's measure as a column ``relative_to_2``: the gain (%) of each mixture over the
    same model (dataset, gating, kind, load-balancing weight) with 2 experts, averaged over
    repeats; accuracy: (m - m2) / m2, RMSE: (m2 - m) / m2. NaN where the grid has no
    2-expert model.
    """
    if not len(mixtures):
        return mixtures.assign(relative_to_2=pd.Series(dtype=float))
    if "balance_weight" not in mixtures:  # results from before the load-balancing axis
        mixtures = mixtures.assign(balance_weight=0.0)
    if "architecture" not in mixtures:  # results from before the release's networks
        mixtures = mixtures.assign(architecture="paper")
    model = ["dataset", "gating", "kind", "balance_weight", "architecture"]
    two = mixtures[mixtures["experts"] == 2].groupby(model)["metric"].mean().rename("_two")
    table = mixtures.drop(columns="relative_to_2", errors="ignore").join(two, on=model)
    higher = table["metric_name"] != "rmse"
    gain = np.where(higher, table["metric"] - table["_two"], table["_two"] - table["metric"])
    table["relative_to_2"] = 100.0 * gain / table["_two"]
    return table.drop(columns="_two")


def finish_mixture_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Columns that need several units (the runner applies it to its combined tables)."""
    return {**tables, "mixtures": add_relative_to_two(tables["mixtures"])}


def run_mixtures(
    dataset: str,
    settings: MixtureSettings,
    *,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    redo: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (gating, kind, experts, balance weight) unit of one dataset, skipping units
    already in ``out_dir``.

    settings: what each unit trains (``train_mixture_unit``) and how the data are cut
        (split, val_fraction, max_rows: ``load_dataset``). The architecture is a setting of
        the output folder, as the split is: the unit names do not carry it.
    A unit stored in ``out_dir`` with other settings (another architecture, say) or that is
    not what its name says raises ``ShardMismatch``, or with ``redo`` is trained again
    (``ShardStore``).
    Returns the dataset's ``mixtures`` table (one row per gating, kind, experts, repeat,
    with ``relative_to_2``) and its ``usage`` table (finished units, old and new).
    """
    store = ShardStore(out_dir, settings=settings, redo=redo)
    units = settings.units(dataset)
    todo = {name: unit for name, unit in units.items() if not store.done(name)}
    if todo:
        data = settings.load_data(dataset, data_dir=data_dir)
        for name, unit in todo.items():
            store.save(name, **train_mixture_unit(data, settings, **unit, progress=progress))
    return add_relative_to_two(store.read(list(units), "mixtures")), store.read(list(units), "usage")
