"""The deep-ensemble section of the paper as resumable work units.

One work unit is (dataset, hidden, repeat): both model types (MLP and WMLP) trained as two
batched ensembles, then evaluated. Each finished unit is written as two Parquet shards, so a
stopped run loses at most the unit in progress and a re-run skips what is done.

Seeds: member e of repeat r uses the same initialisation and data-order seeds for MLP and
WMLP, so the two types differ only by the frozen entries (a paired comparison).

``DeepEnsembleSettings`` holds the section's settings (one field per setting, with its
check); the trainers take it whole, and the shard store records it beside every unit.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..core.alignment import aligned_ensemble, match_members
from ..core.barriers import barrier_curves, barrier_summary
from ..core.data import Dataset
from ..core.evaluation import UNCERTAINTY_SCORES, evaluate_ensemble, metric_name, relative_improvement, score
from ..core.layers import SYRE_ANCHOR_SCALE
from ..core.models import KINDS, MODEL_TYPES, MLPEnsemble, default_n_fix
from ..core.trainer import TrainResult, fit, predict
from ..core.uncertainty import residual_variances
from .settings import SectionSettings, is_int, list_of, positive_int, positive_number, setting
from .units import ShardStore, derive_seed, mask_seed, on_device

PAPER_ENSEMBLE_SIZES = (2, 4, 8, 16, 32, 64)
#: The tables a deep-ensemble unit writes, the completion marker last.
DEEP_ENSEMBLE_TABLES = ("models", "ensembles")
#: The table a unit writes too when it measures loss barriers (``barrier_pairs``).
BARRIER_TABLE = "barriers"
PAPER_HIDDEN_SIZES = (64, 128, 256)


def member_seeds(seed: int, repeat: int, members: int) -> tuple[list[int], list[int]]:
    """Initialisation seeds and data-order seeds of the members of one repeat."""
    init = [derive_seed(seed, repeat, e, 0) for e in range(members)]
    order = [derive_seed(seed, repeat, e, 1) for e in range(members)]
    return init, order


def wasym_n_fix(hidden: int, n_fix: int | None) -> tuple[int, ...]:
    """A WMLP's frozen entries per unit for its 4 layers: the paper's 2 in the first layer,
    then ``n_fix`` in the others (None: the paper's rule, ``default_n_fix``)."""
    paper = default_n_fix(hidden)
    return paper if n_fix is None else (paper[0],) + (int(n_fix),) * (len(paper) - 1)


def model_type(kind: str, *, hidden: int, n_fix: int | None = None, kappa: float = 1.0) -> str:
    """The ``type`` column: the kind itself at the paper's settings; a WMLP with other
    frozen entries also names them, e.g. ``"wmlp n_fix=8 kappa=0.5"`` (an ablation)."""
    if kind != "wmlp":
        return kind
    fixed = wasym_n_fix(hidden, n_fix)[1]
    if fixed == default_n_fix(hidden)[1] and kappa == 1.0:
        return kind
    return f"wmlp n_fix={fixed} kappa={kappa:g}"


def deep_ensemble_unit(dataset: str, hidden: int, repeat: int) -> str:
    return f"{dataset}-h{hidden}-r{repeat}"


@dataclass(frozen=True, kw_only=True)
class DeepEnsembleSettings(SectionSettings):
    """The deep-ensemble section's settings (``params/*.yaml``'s ``deep_ensembles:``, the
    notebook's parameters); the defaults are the paper's grid.

    A new setting is one field here (default, check, what a good value looks like, whether a
    profile must give it, whether results made with another value are incomparable) and its
    use in the trainer below.
    """

    SECTION = "deep_ensembles"
    TABLES = DEEP_ENSEMBLE_TABLES
    UNIT_COLUMNS = ("dataset", "hidden", "repeat")
    OPTIONAL_TABLES = (BARRIER_TABLE,)
    METRIC_COLUMNS = {
        "models": ("metric", "metric_in_range"),
        "ensembles": ("ensemble_metric", "interpolated_metric", "interpolated_metric_aligned", "single_mean"),
        BARRIER_TABLE: ("metric",),
    }
    IMPROVEMENT_COLUMNS = {
        "ensembles": {
            "relative_improvement": ("ensemble_metric", "single_mean"),
            "interpolated_relative_improvement": ("interpolated_metric", "single_mean"),
            "interpolated_relative_improvement_aligned": ("interpolated_metric_aligned", "single_mean"),
        }
    }

    hidden_sizes: tuple[int, ...] = setting(
        PAPER_HIDDEN_SIZES,
        list_of(positive_int),
        "a non-empty list of positive integers (hidden widths)",
        required=True,
        compared=False,
    )
    members: int = setting(64, positive_int, "a positive integer (members trained per type)", required=True)
    ensemble_sizes: tuple[int, ...] = setting(
        PAPER_ENSEMBLE_SIZES,
        list_of(positive_int),
        "a non-empty list of positive integers, none above members",
        required=True,
    )
    repeats: int = setting(
        5, positive_int, "a positive integer (independent repeats of the whole grid)", required=True, compared=False
    )
    types: tuple[str, ...] = setting(
        KINDS,
        list_of(lambda v: v in MODEL_TYPES),
        f"a non-empty list out of {', '.join(MODEL_TYPES)} (smlp: sigma-Asymmetric; syre: decay to a random anchor)",
    )
    syre_scale: float = setting(
        SYRE_ANCHOR_SCALE,
        positive_number,
        "a positive number (syre's anchor: entries of standard deviation syre_scale / sqrt(fan-in))",
    )
    barrier_pairs: int = setting(
        0,
        lambda v: is_int(v) and v >= 0,
        "a non-negative integer (members paired with the first for loss barriers on the test set; 0: none)",
    )
    alignment: bool = setting(
        False,
        lambda v: isinstance(v, bool),
        "true or false (align the members to the first by weight matching: aligned barriers and interpolation)",
    )
    n_fix: tuple[int, ...] | None = setting(
        None,
        lambda v: v is None or list_of(positive_int)(v),
        "null (the paper's frozen entries per unit) or a non-empty list of positive integers "
        "(a WMLP per value: frozen entries per unit after the first layer)",
    )
    kappa: tuple[float, ...] = setting(
        (1.0,),
        list_of(positive_number),
        "a non-empty list of positive numbers (standard deviations of the frozen values)",
    )

    def cross_problems(self) -> list[tuple[str, str]]:
        largest = max(self.ensemble_sizes)
        if largest > self.members:
            return [("ensemble_sizes", f"has {largest}, more than members = {self.members}")]
        if self.barrier_pairs >= self.members:
            others = self.members - 1
            return [
                ("barrier_pairs", f"= {self.barrier_pairs} pairs the first member with more than the other {others}")
            ]
        too_many = [n for n in self.n_fix or () if n > min(self.hidden_sizes)]
        if too_many:  # a unit has only `hidden` incoming weights to freeze
            return [("n_fix", f"has {too_many[0]}, more than the smallest hidden size {min(self.hidden_sizes)}")]
        return []

    @property
    def tables(self) -> tuple[str, ...]:
        """The tables each unit writes: with ``barrier_pairs``, the barrier curves too."""
        if not self.barrier_pairs:
            return self.TABLES
        return (*self.TABLES[:-1], BARRIER_TABLE, self.TABLES[-1])

    def units(self, dataset: str) -> dict[str, dict]:
        return {
            deep_ensemble_unit(dataset, hidden, repeat): {"hidden": hidden, "repeat": repeat}
            for hidden in self.hidden_sizes
            for repeat in range(self.repeats)
        }

    @classmethod
    def unit_of(cls, row: Mapping[str, Any]) -> str:
        return deep_ensemble_unit(row["dataset"], int(row["hidden"]), int(row["repeat"]))

    def table_settings(self) -> str:
        return str({"seed": self.seed, "members": self.members, **self.config.as_record()})

    def variants(self) -> list[tuple[str, int | None, float]]:
        """The models of a unit, (kind, n_fix, kappa): every type of ``types``; a WMLP for
        every (n_fix, kappa) of the two ablation axes (``wasym_variants``)."""
        return [
            (kind, fixed, scale)
            for kind in self.types
            for fixed, scale in (wasym_variants(self.n_fix, self.kappa) if kind == "wmlp" else [(None, 1.0)])
        ]


@dataclass
class TrainedEnsemble:
    """One type's ``members`` networks of a unit after training: the batched model, what
    ``fit`` recorded, the wall seconds it took and the members' seeds."""

    model: MLPEnsemble
    result: TrainResult
    wall: float
    init_seeds: list[int]
    order_seeds: list[int]


def fit_deep_ensemble(
    data: Dataset,
    settings: DeepEnsembleSettings,
    *,
    hidden: int,
    repeat: int,
    kind: str,
    n_fix: int | None = None,
    kappa: float = 1.0,
    progress: bool = True,
) -> TrainedEnsemble:
    """Train ``settings.members`` networks of one type as one batched model (no scoring)."""
    init_seeds, order_seeds = member_seeds(settings.seed, repeat, settings.members)
    device = settings.device
    model = MLPEnsemble(
        data.n_features,
        hidden,
        data.n_outputs,
        members=settings.members,
        kind=kind,
        init_seeds=init_seeds,
        mask_seed=mask_seed(settings.seed, repeat),
        n_fix=wasym_n_fix(hidden, n_fix),
        kappa=kappa,
        anchor_scale=settings.syre_scale,
    ).to(device)
    to = lambda t: t.to(device)  # noqa: E731
    started = time.perf_counter()
    result = fit(
        model,
        to(data.X_train),
        to(data.y_train),
        to(data.X_val),
        to(data.y_val),
        task=data.task,
        order_seeds=order_seeds,
        config=settings.config,
        progress=progress,
        description=f"{data.name} h={hidden} r={repeat} {kind}",
    )
    return TrainedEnsemble(model, result, time.perf_counter() - started, init_seeds, order_seeds)


def deep_ensemble_tables(
    data: Dataset,
    settings: DeepEnsembleSettings,
    trained: TrainedEnsemble,
    *,
    hidden: int,
    repeat: int,
    kind: str,
    n_fix: int | None = None,
    kappa: float = 1.0,
) -> dict[str, pd.DataFrame]:
    """Score a trained type on the test set: its tables (``settings.tables``): ``models``
    and ``ensembles`` (``train_deep_ensemble``), with what ``between_members`` measures
    when ``barrier_pairs`` or ``alignment`` ask for it, and then the ``barriers`` table."""
    model, result, device = trained.model, trained.result, settings.device
    batch_size = settings.config.eval_batch_size
    to = lambda t: t.to(device)  # noqa: E731
    variances = None
    if data.task == "regression":
        variances = residual_variances(predict(model, to(data.X_val), batch_size=batch_size), to(data.y_val))
    member_scores, ensembles = evaluate_ensemble(
        model,
        to(data.X_test),
        to(data.y_test),
        task=data.task,
        sizes=settings.ensemble_sizes,
        exclude=result.diverged,
        variances=variances,
    )
    member_metric = member_scores["metric"].to_numpy()
    out_of_range = data.test_out_of_range()
    member_in_range = member_metric.copy()
    if out_of_range.any() and not out_of_range.all():
        kept = ~out_of_range
        outputs = predict(model, to(data.X_test[kept]), batch_size=batch_size)
        member_in_range = score(outputs, to(data.y_test[kept]), task=data.task).cpu().numpy()
        member_in_range[result.diverged] = np.nan
    worst = data.X_test.abs().amax(dim=0)
    wasym = kind == "wmlp"
    key = {
        "dataset": data.name,
        "split": data.split,
        "hidden": hidden,
        "repeat": repeat,
        "type": model_type(kind, hidden=hidden, n_fix=n_fix, kappa=kappa),
        "metric_name": metric_name(data.task),
        "n_fix": wasym_n_fix(hidden, n_fix)[1] if wasym else 0,
        "kappa": float(kappa) if wasym else 0.0,
    }
    if kind == "syre" and settings.syre_scale != SYRE_ANCHOR_SCALE:  # named where it is not the default
        key["syre_scale"] = float(settings.syre_scale)
    models = pd.DataFrame(
        {
            **key,
            "member": np.arange(settings.members),
            "metric": member_metric,
            **{name: member_scores[name].to_numpy() for name in UNCERTAINTY_SCORES},
            "val_residual_variance": np.nan if variances is None else variances.cpu().numpy(),
            "epochs": result.epochs,
            "train_time": result.train_time,
            "final_val_loss": result.final_val_loss,
            "diverged": result.diverged,
            "diverged_reason": result.diverged_reason,
            # The same member scored without the test rows that lie beyond training's range.
            "metric_in_range": member_in_range,
            "test_rows_out_of_range": int(out_of_range.sum()),
            "worst_test_z": float(worst.max()),
            "worst_test_feature": data.feature_names[int(worst.argmax())],
            "init_seed": trained.init_seeds,
            "order_seed": trained.order_seeds,
        }
    )
    ensembles = _ensembles_table(data, settings, trained, key, member_scores, ensembles)
    tables = {"models": models, "ensembles": ensembles}
    if settings.barrier_pairs or settings.alignment:
        tables = between_members(data, settings, trained, key, **tables)
    if result.precision != "float32":  # an opt-in lower matmul precision is part of the result
        for frame in tables.values():
            frame["precision"] = result.precision
    front = list(key) + ["ensemble_size"]
    ensembles = tables["ensembles"]
    tables["ensembles"] = ensembles[front + [c for c in ensembles.columns if c not in front]]
    return {table: tables[table] for table in settings.tables}


def between_members(
    data: Dataset,
    settings: DeepEnsembleSettings,
    trained: TrainedEnsemble,
    key: dict,
    *,
    models: pd.DataFrame,
    ensembles: pd.DataFrame,
) -> dict[str, pd.DataFrame]:
    """Loss barriers and alignment on the test set (``core.barriers``, ``core.alignment``).

    The reference is the first member that did not diverge; the pairs are it against the
    next ``settings.barrier_pairs`` such members. With ``alignment`` every member is first
    permuted towards the reference by weight matching and given the reference's frozen
    parts (so an aligned WMLP or SMLP member computes what it did only where the matching
    left its units in place; an MLP or syre member always does).
    Adds to ``models`` (members paired with the reference; NaN elsewhere): loss_barrier and
    metric_barrier, and with alignment their ``_aligned`` twins; to ``ensembles``:
    interpolated_metric_aligned and its relative improvement. Returns the tables, with
    ``barriers``: per pair, alignment and alpha, the blend's test loss and metric.
    """
    model, device = trained.model, settings.device
    healthy = np.flatnonzero(~trained.result.diverged)
    X, y = data.X_test.to(device), data.y_test.to(device)
    batch_size = settings.config.eval_batch_size
    models, ensembles = models.copy(), ensembles.copy()
    networks = {"": model}  # column suffix -> the members measured
    if settings.alignment and len(healthy):
        aligned = aligned_ensemble(model, match_members(model, reference=int(healthy[0])))
        aligned.apply_frozen()  # the reference's frozen entries, in every member
        networks["_aligned"] = aligned
        scores = []
        for k in ensembles["ensemble_size"]:
            kept = [int(m) for m in healthy if m < k]
            averaged = predict(aligned.interpolate(kept), X, batch_size=batch_size)[0] if kept else None
            scores.append(np.nan if averaged is None else float(score(averaged, y, task=data.task)))
        ensembles["interpolated_metric_aligned"] = scores
        ensembles["interpolated_relative_improvement_aligned"] = relative_improvement(
            ensembles["interpolated_metric_aligned"], ensembles["single_mean"], task=data.task
        )
    pairs = [(int(healthy[0]), int(b)) for b in healthy[1 : settings.barrier_pairs + 1]]
    curves = []
    for suffix, network in networks.items():
        if not pairs:
            break
        measured = barrier_curves(network, X, y, task=data.task, pairs=pairs, batch_size=batch_size)
        summary = barrier_summary(measured, task=data.task).set_index("pair_b")
        for column in ("loss_barrier", "metric_barrier"):
            models[column + suffix] = models["member"].map(summary[column])
        curves.append(measured.assign(aligned=bool(suffix)))
    barriers = (
        pd.concat(curves, ignore_index=True)
        if curves
        else pd.DataFrame({"pair_a": [], "pair_b": [], "alpha": [], "loss": [], "metric": [], "aligned": []})
    )
    barriers = barriers.assign(**key)[[*key, "aligned", "pair_a", "pair_b", "alpha", "loss", "metric"]]
    return {"models": models, "ensembles": ensembles, BARRIER_TABLE: barriers}


def _ensembles_table(
    data: Dataset,
    settings: DeepEnsembleSettings,
    trained: TrainedEnsemble,
    key: dict,
    member_scores: pd.DataFrame,
    ensembles: pd.DataFrame,
) -> pd.DataFrame:
    """The ensembles beside the mean single model of their type and repeat, and the gain."""
    # Diverged members have NaN scores: the baselines are the means of the others.
    everyone_diverged = bool(trained.result.diverged.all())
    mean = lambda column: float("nan") if everyone_diverged else float(np.nanmean(member_scores[column]))  # noqa: E731
    single = mean("metric")
    singles = {
        f"single_{name}": mean(name) if member_scores[name].notna().any() else np.nan for name in UNCERTAINTY_SCORES
    }
    ensembles = ensembles.assign(
        **key, single_mean=single, **singles, members_trained=settings.members, batch_wall_time=trained.wall
    )
    ensembles["relative_improvement"] = relative_improvement(ensembles["ensemble_metric"], single, task=data.task)
    ensembles["interpolated_relative_improvement"] = relative_improvement(
        ensembles["interpolated_metric"], single, task=data.task
    )
    return ensembles


def train_deep_ensemble(
    data: Dataset,
    settings: DeepEnsembleSettings,
    *,
    hidden: int,
    kind: str,
    repeat: int = 0,
    n_fix: int | None = None,
    kappa: float = 1.0,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``settings.members`` networks of one type as one batched model and evaluate them.

    kind: "mlp", "wmlp" or "smlp" (``core.models``).
    n_fix, kappa: a WMLP's frozen entries per unit after the first layer (None: the
        paper's) and the standard deviation of their values; other kinds ignore them and
        record 0 for both.
    settings: members, ensemble_sizes, seed, the training settings (``settings.config``)
        and the device.
    Returns two tidy tables:
      models: one row per member (test metric; NLL, Brier score and ECE; epochs, training
      time, seeds, whether it diverged and why, a diverged member's scores being NaN; the
      metric without the test rows beyond training's range, and how many there are and
      the largest |z| among them; for regression the residual variance on the validation
      set that its NLL uses);
      ensembles: one row per ensemble size (ensemble and interpolated metric, mean pairwise
      L2 distance, the ensemble's NLL, Brier score and ECE, the members' disagreement or
      ambiguity, the mean single model of this type and repeat and its scores, relative
      improvement, and how many of the first k members were left out because they diverged).
      Both carry ``type`` (``model_type``), ``n_fix`` and ``kappa``.
    """
    model = dict(hidden=hidden, repeat=repeat, kind=kind, n_fix=n_fix, kappa=kappa)
    trained = fit_deep_ensemble(data, settings, **model, progress=progress)
    tables = deep_ensemble_tables(data, settings, trained, **model)
    return tables["models"], tables["ensembles"]


def wasym_variants(n_fix: Sequence[int] | None, kappa: Sequence[float]) -> list[tuple[int | None, float]]:
    """The WMLPs of a unit: every (n_fix, kappa) of the two grid axes; n_fix None: the paper's."""
    return [(fixed, float(scale)) for fixed in (n_fix if n_fix is not None else [None]) for scale in kappa]


def train_deep_ensemble_unit(
    data: Dataset, settings: DeepEnsembleSettings, *, hidden: int, repeat: int, progress: bool = True
) -> dict[str, pd.DataFrame]:
    """One work unit (dataset, hidden, repeat): every model of ``settings.variants()`` trained
    and scored (the types of ``types``; a WMLP for every (n_fix, kappa) of the ablation axes).

    A pure function of the unit and its settings: it writes nothing, so a task that runs it
    on a cluster can be retried anywhere, and whoever holds the ``ShardStore`` saves the
    result. The data are placed on ``settings.device`` once for the whole unit.
    Returns ``{"models": ..., "ensembles": ...}`` (``settings.tables`` order: with
    ``barrier_pairs``, ``barriers`` before ``ensembles``), the tables of every model one
    below the other (``deep_ensemble_tables``).
    """
    data = on_device(data, settings.device)
    parts = []
    for kind, fixed, scale in settings.variants():
        model = dict(hidden=hidden, repeat=repeat, kind=kind, n_fix=fixed, kappa=scale)
        trained = fit_deep_ensemble(data, settings, **model, progress=progress)
        parts.append(deep_ensemble_tables(data, settings, trained, **model))
    tables = {table: pd.concat([part[table] for part in parts], ignore_index=True) for table in settings.tables}
    tables["ensembles"] = tables["ensembles"].assign(settings=settings.table_settings())
    return tables


def run_deep_ensembles(
    dataset: str,
    settings: DeepEnsembleSettings,
    *,
    out_dir: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    redo: bool = False,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (hidden, repeat) unit of one dataset, skipping units already in ``out_dir``.

    settings: what each unit trains (``train_deep_ensemble_unit``) and how the data are cut
        (split, val_fraction, max_rows: ``load_dataset``).
    A unit stored in ``out_dir`` with other settings (or that is not what its name says)
    raises ``ShardMismatch``, or with ``redo`` is trained again (``ShardStore``).
    Returns the dataset's models and ensembles tables (finished units, old and new).
    """
    store = ShardStore(out_dir, settings=settings, redo=redo)
    units = settings.units(dataset)
    todo = {name: unit for name, unit in units.items() if not store.done(name)}
    if todo:
        data = settings.load_data(dataset, data_dir=data_dir)
        for name, unit in todo.items():
            store.save(name, **train_deep_ensemble_unit(data, settings, **unit, progress=progress))
    return store.read(list(units), "models"), store.read(list(units), "ensembles")


def read_barriers(dataset: str, settings: DeepEnsembleSettings, *, out_dir: str | os.PathLike) -> pd.DataFrame:
    """The ``barriers`` table of one dataset's finished units in ``out_dir`` (empty when the
    settings measure no barriers): what ``run_deep_ensembles`` stored beside its tables."""
    store = ShardStore(out_dir, settings=settings)
    return store.read(list(settings.units(dataset)), BARRIER_TABLE)
