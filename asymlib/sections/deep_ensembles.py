"""The deep-ensemble section of the paper as resumable work units.

One work unit is (dataset, hidden, repeat): both model types (MLP and WMLP) trained as two
batched ensembles, then evaluated. Each finished unit is written as two Parquet shards, so a
stopped run loses at most the unit in progress and a re-run skips what is done.

Seeds: member e of repeat r uses the same initialisation and data-order seeds for MLP and
WMLP, so the two types differ only by the frozen entries (a paired comparison).
"""

from __future__ import annotations

import os
import time
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..core.data import Dataset, load_dataset
from ..core.evaluation import evaluate_ensemble, metric_name, relative_improvement, score
from ..core.models import KINDS, MLPEnsemble
from ..core.trainer import TrainConfig, fit, predict
from .units import ShardStore, derive_seed, mask_seed, on_device

PAPER_ENSEMBLE_SIZES = (2, 4, 8, 16, 32, 64)
#: The tables a deep-ensemble unit writes, the completion marker last.
DEEP_ENSEMBLE_TABLES = ("models", "ensembles")
PAPER_HIDDEN_SIZES = (64, 128, 256)


def member_seeds(seed: int, repeat: int, members: int) -> tuple[list[int], list[int]]:
    """Initialisation seeds and data-order seeds of the members of one repeat."""
    init = [derive_seed(seed, repeat, e, 0) for e in range(members)]
    order = [derive_seed(seed, repeat, e, 1) for e in range(members)]
    return init, order


def train_deep_ensemble(
    data: Dataset,
    *,
    hidden: int,
    kind: str,
    members: int = 64,
    ensemble_sizes: Sequence[int] = PAPER_ENSEMBLE_SIZES,
    seed: int = 0,
    repeat: int = 0,
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``members`` networks of one type as one batched model and evaluate them.

    Returns two tidy tables:
      models: one row per member (test metric, epochs, training time, seeds, whether it
      diverged and why, a diverged member's metric being NaN; the metric without the test
      rows beyond training's range, and how many there are and the largest |z| among them);
      ensembles: one row per ensemble size (ensemble and interpolated metric, mean pairwise
      L2 distance, the mean single model of this type and repeat, relative improvement,
      and how many of the first k members were left out because they diverged).
    """
    init_seeds, order_seeds = member_seeds(seed, repeat, members)
    model = MLPEnsemble(
        data.n_features, hidden, data.n_outputs, members=members, kind=kind,
        init_seeds=init_seeds, mask_seed=mask_seed(seed, repeat),
    ).to(device)
    to = lambda t: t.to(device)  # noqa: E731
    started = time.perf_counter()
    result = fit(
        model, to(data.X_train), to(data.y_train), to(data.X_val), to(data.y_val),
        task=data.task, order_seeds=order_seeds, config=config, progress=progress,
        description=f"{data.name} h={hidden} r={repeat} {kind}",
    )
    wall = time.perf_counter() - started
    member_metric, ensembles = evaluate_ensemble(
        model, to(data.X_test), to(data.y_test), task=data.task, sizes=ensemble_sizes, exclude=result.diverged
    )
    out_of_range = data.test_out_of_range()
    member_in_range = member_metric.copy()
    if out_of_range.any() and not out_of_range.all():
        kept = ~out_of_range
        outputs = predict(model, to(data.X_test[kept]), batch_size=config.eval_batch_size)
        member_in_range = score(outputs, to(data.y_test[kept]), task=data.task).cpu().numpy()
        member_in_range[result.diverged] = np.nan
    worst = data.X_test.abs().amax(dim=0)
    key = {
        "dataset": data.name, "split": data.split, "hidden": hidden, "repeat": repeat, "type": kind,
        "metric_name": metric_name(data.task),
    }
    models = pd.DataFrame(
        {
            **key,
            "member": np.arange(members),
            "metric": member_metric,
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
            "init_seed": init_seeds,
            "order_seed": order_seeds,
        }
    )
    # Diverged members have a NaN metric: the baseline is the mean of the others.
    single = float(np.nanmean(member_metric)) if not result.diverged.all() else float("nan")
    ensembles = ensembles.assign(**key, single_mean=single, members_trained=members, batch_wall_time=wall)
    ensembles["relative_improvement"] = relative_improvement(ensembles["ensemble_metric"], single, task=data.task)
    ensembles["interpolated_relative_improvement"] = relative_improvement(
        ensembles["interpolated_metric"], single, task=data.task
    )
    if result.precision != "float32":  # an opt-in lower matmul precision is part of the result
        models["precision"] = ensembles["precision"] = result.precision
    front = list(key) + ["ensemble_size"]
    return models, ensembles[front + [c for c in ensembles.columns if c not in front]]


def train_deep_ensemble_unit(
    data: Dataset,
    *,
    hidden: int,
    repeat: int,
    kinds: Sequence[str] = KINDS,
    members: int = 64,
    ensemble_sizes: Sequence[int] = PAPER_ENSEMBLE_SIZES,
    seed: int = 0,
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """One work unit (dataset, hidden, repeat): every type of ``kinds`` trained and scored.

    A pure function of the unit and its settings: it writes nothing, so a task that runs it
    on a cluster can be retried anywhere, and whoever holds the ``ShardStore`` saves the
    result. The data are placed on ``device`` once for the whole unit.
    Returns ``{"models": ..., "ensembles": ...}`` (``DEEP_ENSEMBLE_TABLES`` order), the
    tables of ``train_deep_ensemble`` of every type one below the other.
    """
    data = on_device(data, device)
    tables = [
        train_deep_ensemble(
            data, hidden=hidden, kind=kind, members=members, ensemble_sizes=ensemble_sizes,
            seed=seed, repeat=repeat, config=config, device=device, progress=progress,
        )
        for kind in kinds
    ]
    models = pd.concat([m for m, _ in tables], ignore_index=True)
    ensembles = pd.concat([e for _, e in tables], ignore_index=True)
    settings = {"seed": seed, "members": members, **config.as_record()}
    return {"models": models, "ensembles": ensembles.assign(settings=str(settings))}


def deep_ensemble_unit(dataset: str, hidden: int, repeat: int) -> str:
    return f"{dataset}-h{hidden}-r{repeat}"


def run_deep_ensembles(
    dataset: str,
    *,
    out_dir: str | os.PathLike,
    hidden_sizes: Sequence[int] = PAPER_HIDDEN_SIZES,
    kinds: Sequence[str] = KINDS,
    members: int = 64,
    ensemble_sizes: Sequence[int] = PAPER_ENSEMBLE_SIZES,
    repeats: int = 5,
    seed: int = 0,
    config: TrainConfig = TrainConfig(),
    data_dir: str | os.PathLike | None = None,
    max_rows: int | None = None,
    split: str = "paper",
    val_fraction: float | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (hidden, repeat) unit of one dataset, skipping units already in ``out_dir``.

    split, val_fraction, max_rows: how the data are cut (``load_dataset``).
    Returns the dataset's models and ensembles tables (finished units, old and new).
    """
    store = ShardStore(out_dir, tables=DEEP_ENSEMBLE_TABLES)
    units = [(h, r) for h in hidden_sizes for r in range(repeats)]
    todo = [(h, r) for h, r in units if not store.done(deep_ensemble_unit(dataset, h, r))]
    if todo:
        data = load_dataset(dataset, data_dir=data_dir, max_rows=max_rows, split=split, val_fraction=val_fraction)
        for hidden, repeat in todo:
            tables = train_deep_ensemble_unit(
                data, hidden=hidden, repeat=repeat, kinds=kinds, members=members, ensemble_sizes=ensemble_sizes,
                seed=seed, config=config, device=device, progress=progress,
            )
            store.save(deep_ensemble_unit(dataset, hidden, repeat), **tables)
    names = [deep_ensemble_unit(dataset, h, r) for h, r in units]
    return store.read(names, "models"), store.read(names, "ensembles")
