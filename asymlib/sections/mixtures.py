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
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..core.data import Dataset, load_dataset
from ..core.diversity import ambiguity, pairwise_disagreement
from ..core.evaluation import UNCERTAINTY_SCORES, metric_name, score
from ..core.mixtures import ARCHITECTURES, GATINGS, MIXTURE_KINDS, PAPER_EXPERTS, MixtureEnsemble
from ..core.trainer import TrainConfig, evaluating, fit, predict
from ..core.uncertainty import member_uncertainty, residual_variances
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


def train_mixtures(
    data: Dataset,
    *,
    gating: str,
    kind: str,
    experts: int,
    hidden: int = 64,
    repeats: int = 5,
    seed: int = 0,
    balance_weight: float = 0.0,
    architecture: str = "paper",
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train the ``repeats`` mixtures of one model as one batched model and score them.

    balance_weight: weight of the load-balancing loss (``core.mixtures``; 0: the paper's).
    architecture: "paper" (the text's networks) or "release" (the code release's MoIE;
    ``core.mixtures``), written to both tables.
    Returns two tidy tables, both with ``balance_weight``:
      mixtures: one row per repeat (test metric; NLL, Brier score and ECE of the mixture's
      prediction; the disagreement or ambiguity between its experts, each expert run as
      its own network; epochs, training time, parameters, seeds, whether it diverged and
      why; a diverged mixture's scores are NaN);
      usage: one row per repeat, epoch and expert: the expert's mean gate weight on the
      validation set after that epoch (inference gate).
    """
    seeds = [mixture_seeds(seed, r) for r in range(repeats)]
    init_seeds, order_seeds, noise_seeds = (list(column) for column in zip(*seeds))
    model = MixtureEnsemble(
        data.n_features,
        hidden,
        data.n_outputs,
        members=repeats,
        experts=experts,
        kind=kind,
        gating=gating,
        init_seeds=init_seeds,
        noise_seeds=noise_seeds,
        mask_seed=mask_seed(seed, 0),
        eval_seed=derive_seed(seed, _MIXTURE_SEED_TAG + 3),
        balance_weight=balance_weight,
        architecture=architecture,
    ).to(device)
    to = lambda t: t.to(device)  # noqa: E731
    X_val = to(data.X_val)
    started = time.perf_counter()
    result = fit(
        model,
        to(data.X_train),
        to(data.y_train),
        X_val,
        to(data.y_val),
        task=data.task,
        order_seeds=order_seeds,
        config=config,
        progress=progress,
        monitor=lambda m: m.expert_usage(X_val, batch_size=config.eval_batch_size),
        description=f"{data.name} {gating} {kind} K={experts}",
    )
    wall = time.perf_counter() - started
    X_test, y_test = to(data.X_test), to(data.y_test)
    outputs = predict(model, X_test, batch_size=config.eval_batch_size)
    metric = score(outputs, y_test, task=data.task).cpu().numpy()
    variances = None
    if data.task == "regression":
        variances = residual_variances(predict(model, X_val, batch_size=config.eval_batch_size), to(data.y_val))
    scores = {name: np.full(repeats, np.nan) for name in UNCERTAINTY_SCORES}
    healthy = np.flatnonzero(~result.diverged)
    if len(healthy):  # a diverged mixture's outputs may not be numbers at all
        found = member_uncertainty(
            outputs[healthy], y_test, task=data.task, variances=None if variances is None else variances[healthy]
        )
        for name, values in found.items():
            scores[name][healthy] = values
    diversity = _expert_diversity(model, X_test, task=data.task, batch_size=config.eval_batch_size)
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
        "architecture": architecture,
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
            "hidden": hidden,
            "init_seed": init_seeds,
            "order_seed": order_seeds,
            "noise_seed": noise_seeds,
            "batch_wall_time": wall,
        }
    )
    if result.precision != "float32":  # an opt-in lower matmul precision is part of the result
        mixtures["precision"] = result.precision
    usage = result.monitored  # (epochs, repeats, experts), NaN after a repeat stopped
    epoch, repeat, expert = np.meshgrid(
        np.arange(1, usage.shape[0] + 1), np.arange(repeats), np.arange(experts), indexing="ij"
    )
    usage_table = pd.DataFrame(
        {
            **key,
            "repeat": repeat.ravel(),
            "epoch": epoch.ravel(),
            "expert": expert.ravel(),
            "usage": usage.ravel().astype(np.float32),
        }
    )
    return mixtures, usage_table.dropna(subset=["usage"]).reset_index(drop=True)


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
    *,
    gating: str,
    kind: str,
    experts: int,
    hidden: int = 64,
    repeats: int = 5,
    seed: int = 0,
    balance_weight: float = 0.0,
    architecture: str = "paper",
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """One work unit (dataset, gating, kind, experts): its ``repeats`` mixtures trained together.

    A pure function of the unit and its settings: it writes nothing, so a task that runs it
    on a cluster can be retried anywhere, and whoever holds the ``ShardStore`` saves the
    result. The data are placed on ``device`` once for the whole unit.
    Returns ``{"usage": ..., "mixtures": ...}`` (``MIXTURE_TABLES`` order, the completion
    marker last), the tables of ``train_mixtures``.
    """
    mixtures, usage = train_mixtures(
        on_device(data, device),
        gating=gating,
        kind=kind,
        experts=experts,
        hidden=hidden,
        repeats=repeats,
        seed=seed,
        balance_weight=balance_weight,
        architecture=architecture,
        config=config,
        device=device,
        progress=progress,
    )
    settings = {"seed": seed, "repeats": repeats, "hidden": hidden, **config.as_record()}
    if architecture != "paper":
        settings["architecture"] = architecture
    return {"usage": usage, "mixtures": mixtures.assign(settings=str(settings))}


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
    *,
    out_dir: str | os.PathLike,
    gatings: Sequence[str] = GATINGS,
    kinds: Sequence[str] = MIXTURE_KINDS,
    experts: Sequence[int] = PAPER_EXPERTS,
    hidden: int = 64,
    repeats: int = 5,
    seed: int = 0,
    balance_weights: Sequence[float] = (0.0,),
    architecture: str = "paper",
    config: TrainConfig = TrainConfig(),
    data_dir: str | os.PathLike | None = None,
    max_rows: int | None = None,
    split: str = "paper",
    val_fraction: float | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (gating, kind, experts, balance weight) unit of one dataset, skipping units
    already in ``out_dir``.

    balance_weights: the load-balancing weights to train with (an ablation axis; the paper: 0).
    architecture: "paper" or "release" (whose networks; ``core.mixtures``). It is a setting of
        the output folder, as the split is: the unit names do not carry it.
    split, val_fraction, max_rows: how the data are cut (``load_dataset``).
    Returns the dataset's ``mixtures`` table (one row per gating, kind, experts, repeat,
    with ``relative_to_2``) and its ``usage`` table (finished units, old and new).
    """
    for name, given, valid in (
        ("gatings", gatings, GATINGS),
        ("kinds", kinds, MIXTURE_KINDS),
        ("architecture", [architecture], ARCHITECTURES),
    ):
        unknown = [v for v in given if v not in valid]
        if unknown:
            raise ValueError(f"unknown {name} {unknown}; valid: {', '.join(valid)}")
    store = ShardStore(out_dir, tables=MIXTURE_TABLES)
    # smallest mixtures first: the 2-expert baselines are there early on in a long run
    units = [(g, k, e, w) for e in sorted(experts) for g in gatings for k in kinds for w in balance_weights]
    todo = [u for u in units if not store.done(mixture_unit(dataset, *u))]
    if todo:
        data = load_dataset(dataset, data_dir=data_dir, max_rows=max_rows, split=split, val_fraction=val_fraction)
        for gating, kind, n_experts, weight in todo:
            tables = train_mixture_unit(
                data,
                gating=gating,
                kind=kind,
                experts=n_experts,
                hidden=hidden,
                repeats=repeats,
                seed=seed,
                balance_weight=weight,
                architecture=architecture,
                config=config,
                device=device,
                progress=progress,
            )
            store.save(mixture_unit(dataset, gating, kind, n_experts, weight), **tables)
    names = [mixture_unit(dataset, *u) for u in units]
    mixtures = add_relative_to_two(store.read(names, "mixtures"))
    stored = set(mixtures["architecture"]) if len(mixtures) else set()
    if stored - {architecture}:  # units of the other networks, found done under the same names
        raise ValueError(
            f"{out_dir} holds {dataset} mixtures of architecture {', '.join(sorted(stored - {architecture}))}, "
            f"not {architecture!r}: give each architecture an output folder of its own"
        )
    return mixtures, store.read(names, "usage")
