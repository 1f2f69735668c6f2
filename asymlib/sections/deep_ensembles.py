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
from ..core.evaluation import UNCERTAINTY_SCORES, evaluate_ensemble, metric_name, relative_improvement, score
from ..core.models import KINDS, MLPEnsemble, default_n_fix
from ..core.trainer import TrainConfig, fit, predict
from ..core.uncertainty import residual_variances
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


def train_deep_ensemble(
    data: Dataset,
    *,
    hidden: int,
    kind: str,
    members: int = 64,
    ensemble_sizes: Sequence[int] = PAPER_ENSEMBLE_SIZES,
    seed: int = 0,
    repeat: int = 0,
    n_fix: int | None = None,
    kappa: float = 1.0,
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train ``members`` networks of one type as one batched model and evaluate them.

    kind: "mlp", "wmlp" or "smlp" (``core.models``).
    n_fix, kappa: a WMLP's frozen entries per unit after the first layer (None: the
        paper's) and the standard deviation of their values; other kinds ignore them and
        record 0 for both.
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
    init_seeds, order_seeds = member_seeds(seed, repeat, members)
    wasym = kind == "wmlp"
    model = MLPEnsemble(
        data.n_features,
        hidden,
        data.n_outputs,
        members=members,
        kind=kind,
        init_seeds=init_seeds,
        mask_seed=mask_seed(seed, repeat),
        n_fix=wasym_n_fix(hidden, n_fix),
        kappa=kappa,
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
        config=config,
        progress=progress,
        description=f"{data.name} h={hidden} r={repeat} {kind}",
    )
    wall = time.perf_counter() - started
    variances = None
    if data.task == "regression":
        val_outputs = predict(model, to(data.X_val), batch_size=config.eval_batch_size)
        variances = residual_variances(val_outputs, to(data.y_val))
    member_scores, ensembles = evaluate_ensemble(
        model,
        to(data.X_test),
        to(data.y_test),
        task=data.task,
        sizes=ensemble_sizes,
        exclude=result.diverged,
        variances=variances,
    )
    member_metric = member_scores["metric"].to_numpy()
    out_of_range = data.test_out_of_range()
    member_in_range = member_metric.copy()
    if out_of_range.any() and not out_of_range.all():
        kept = ~out_of_range
        outputs = predict(model, to(data.X_test[kept]), batch_size=config.eval_batch_size)
        member_in_range = score(outputs, to(data.y_test[kept]), task=data.task).cpu().numpy()
        member_in_range[result.diverged] = np.nan
    worst = data.X_test.abs().amax(dim=0)
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
    models = pd.DataFrame(
        {
            **key,
            "member": np.arange(members),
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
            "init_seed": init_seeds,
            "order_seed": order_seeds,
        }
    )
    # Diverged members have NaN scores: the baselines are the means of the others.
    everyone_diverged = bool(result.diverged.all())
    mean = lambda column: float("nan") if everyone_diverged else float(np.nanmean(member_scores[column]))  # noqa: E731
    single = mean("metric")
    singles = {
        f"single_{name}": mean(name) if member_scores[name].notna().any() else np.nan for name in UNCERTAINTY_SCORES
    }
    ensembles = ensembles.assign(**key, single_mean=single, **singles, members_trained=members, batch_wall_time=wall)
    ensembles["relative_improvement"] = relative_improvement(ensembles["ensemble_metric"], single, task=data.task)
    ensembles["interpolated_relative_improvement"] = relative_improvement(
        ensembles["interpolated_metric"], single, task=data.task
    )
    if result.precision != "float32":  # an opt-in lower matmul precision is part of the result
        models["precision"] = ensembles["precision"] = result.precision
    front = list(key) + ["ensemble_size"]
    return models, ensembles[front + [c for c in ensembles.columns if c not in front]]


def wasym_variants(n_fix: Sequence[int] | None, kappa: Sequence[float]) -> list[tuple[int | None, float]]:
    """The WMLPs of a unit: every (n_fix, kappa) of the two grid axes; n_fix None: the paper's."""
    return [(fixed, float(scale)) for fixed in (n_fix if n_fix is not None else [None]) for scale in kappa]


def train_deep_ensemble_unit(
    data: Dataset,
    *,
    hidden: int,
    repeat: int,
    types: Sequence[str] = KINDS,
    members: int = 64,
    ensemble_sizes: Sequence[int] = PAPER_ENSEMBLE_SIZES,
    seed: int = 0,
    n_fix: Sequence[int] | None = None,
    kappa: Sequence[float] = (1.0,),
    config: TrainConfig = TrainConfig(),
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> dict[str, pd.DataFrame]:
    """One work unit (dataset, hidden, repeat): every type of ``types`` trained and scored.

    types: out of "mlp", "wmlp", "smlp"; a WMLP is trained for every (n_fix, kappa) of the
        ablation axes ``n_fix`` (frozen entries per unit after the first layer; None: the
        paper's) and ``kappa`` (``wasym_variants``), an MLP or sigma-Asymmetric MLP once.
    A pure function of the unit and its settings: it writes nothing, so a task that runs it
    on a cluster can be retried anywhere, and whoever holds the ``ShardStore`` saves the
    result. The data are placed on ``device`` once for the whole unit.
    Returns ``{"models": ..., "ensembles": ...}`` (``DEEP_ENSEMBLE_TABLES`` order), the
    tables of ``train_deep_ensemble`` of every type one below the other.
    """
    data = on_device(data, device)
    trained = [
        (kind, fixed, scale)
        for kind in types
        for fixed, scale in (wasym_variants(n_fix, kappa) if kind == "wmlp" else [(None, 1.0)])
    ]
    tables = [
        train_deep_ensemble(
            data,
            hidden=hidden,
            kind=kind,
            members=members,
            ensemble_sizes=ensemble_sizes,
            seed=seed,
            repeat=repeat,
            n_fix=fixed,
            kappa=scale,
            config=config,
            device=device,
            progress=progress,
        )
        for kind, fixed, scale in trained
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
    types: Sequence[str] = KINDS,
    members: int = 64,
    ensemble_sizes: Sequence[int] = PAPER_ENSEMBLE_SIZES,
    repeats: int = 5,
    seed: int = 0,
    n_fix: Sequence[int] | None = None,
    kappa: Sequence[float] = (1.0,),
    config: TrainConfig = TrainConfig(),
    data_dir: str | os.PathLike | None = None,
    max_rows: int | None = None,
    split: str = "paper",
    val_fraction: float | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (hidden, repeat) unit of one dataset, skipping units already in ``out_dir``.

    types, n_fix, kappa: what each unit trains (``train_deep_ensemble_unit``).
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
                data,
                hidden=hidden,
                repeat=repeat,
                types=types,
                members=members,
                ensemble_sizes=ensemble_sizes,
                seed=seed,
                n_fix=n_fix,
                kappa=kappa,
                config=config,
                device=device,
                progress=progress,
            )
            store.save(deep_ensemble_unit(dataset, hidden, repeat), **tables)
    names = [deep_ensemble_unit(dataset, h, r) for h, r in units]
    return store.read(names, "models"), store.read(names, "ensembles")
