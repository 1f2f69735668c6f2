"""Tidy tables of both sections' results, and the paper's published points beside them.

For notebooks, reports and the runner's summary. The deep-ensemble functions take the
``ensembles`` table that ``run_deep_ensembles`` returns (one row per dataset, hidden,
repeat, type, ensemble_size); the mixture functions take the ``mixtures`` table of
``run_mixtures`` (one row per dataset, gating, kind, experts, repeat) or its ``usage``
table. Every summary is a mean over repeats, one row per model or ensemble. Charts of
these tables are in ``figures_deep_ensembles`` and ``figures_mixtures``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from ..core.data import DATASETS
from ..core.mixtures import GATINGS, MIXTURE_KINDS
from ..sections.deep_ensembles import DEEP_ENSEMBLE_TABLES
from ..sections.mixtures import MIXTURE_TABLES, add_relative_to_two
from ..sections.units import ShardStore

_PER_ENSEMBLE = ["dataset", "metric_name", "hidden", "type", "ensemble_size"]


class Results(NamedTuple):
    """The tidy tables of a deep-ensemble run: one row per member, one per ensemble size."""

    models: pd.DataFrame
    ensembles: pd.DataFrame


def load_results(run_dir: str | os.PathLike, *, section: str = "deep_ensembles") -> Results:
    """The tables of a run folder, as ``models, ensembles``.

    run_dir: a section folder (``runs/<profile>/deep_ensembles``, or a notebook's
    ``out_dir``) or the profile folder above it. The runner's combined
    ``models.parquet`` / ``ensembles.parquet`` are used when present (they hold just the
    profile's grid); otherwise every shard in the folder is concatenated.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "shards").is_dir() and (run_dir / section / "shards").is_dir():
        run_dir = run_dir / section
    if not (run_dir / "shards").is_dir():
        raise FileNotFoundError(f"{run_dir} holds no results (no shards/ folder)")
    store = ShardStore(run_dir, tables=DEEP_ENSEMBLE_TABLES)
    tables = []
    for table in Results._fields:
        combined = run_dir / f"{table}.parquet"
        tables.append(pd.read_parquet(combined) if combined.exists() else store.read(store.units(), table))
    return Results(*tables)


def summary_table(ensembles: pd.DataFrame, *, decimals: int = 4) -> pd.DataFrame:
    """Means over repeats, one row per (dataset, hidden, type, ensemble_size).

    Columns: single_mean (the mean single model), ensemble_metric, interpolated_metric,
    relative_improvement (%, Figure 1's measure), repeats (how many were averaged).
    """
    grouped = ensembles.groupby(_PER_ENSEMBLE, sort=True)
    table = grouped[["single_mean", "ensemble_metric", "interpolated_metric", "relative_improvement"]].mean()
    table["repeats"] = grouped["repeat"].nunique()
    return table.round(decimals).reset_index()


def improvement_table(ensembles: pd.DataFrame, *, ensemble_size: int | None = None) -> pd.DataFrame:
    """Figure 1's numbers: relative improvement (%) of the ensemble of ``ensemble_size``
    (default: the largest) over its mean single model, averaged over repeats and then over
    datasets (each dataset counts once). Index: hidden; columns: type. The title is in
    ``.attrs["title"]``.
    """
    size = int(ensembles["ensemble_size"].max()) if ensemble_size is None else ensemble_size
    at_size = ensembles[ensembles["ensemble_size"] == size]
    per_dataset = at_size.groupby(["dataset", "hidden", "type"])["relative_improvement"].mean()
    table = per_dataset.groupby(["hidden", "type"]).mean().unstack("type")
    table.columns.name = None
    table.attrs["title"] = (
        f"relative improvement (%) of the ensemble of {size} over the mean single model, {_over_datasets(per_dataset)}"
    )
    return table


def _over_datasets(per_dataset: pd.Series) -> str:
    """How a mean over datasets was taken, naming the datasets it had to leave out: a
    dataset without a finite value (all its members diverged, say) must not shrink the
    mean silently."""
    datasets = per_dataset.index.get_level_values("dataset")
    count = datasets.nunique()
    phrase = f"mean over {count} dataset{'s' if count != 1 else ''}"
    missing = [d for d in DATASETS if d in set(datasets[per_dataset.isna().to_numpy()])]
    if missing:
        phrase += (
            f"; {', '.join(missing)} without a finite value in some cells, which are means over the other datasets"
        )
    return phrase


def diverged_members(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The rows of a section's per-model table (``models`` or ``mixtures``) whose member
    diverged (non-finite loss), with their reason; empty if none did."""
    for name in ("models", "mixtures"):
        frame = tables.get(name)
        if frame is not None and "diverged" in frame.columns:
            return frame[frame["diverged"].astype(bool)].reset_index(drop=True)
    return pd.DataFrame()


def describe_diverged(diverged: pd.DataFrame) -> str:
    """One line for a warning: how many diverged, and which (dataset, model, repeat, members)."""
    member = "member" if "member" in diverged.columns else "repeat"
    keys = [c for c in ("dataset", "hidden", "type", "gating", "kind", "experts", "repeat") if c in diverged.columns]
    keys = [k for k in keys if k != member]
    parts = []
    for values, group in diverged.groupby(keys, sort=False):
        label = " ".join(f"{k}={v}" if k in ("hidden", "experts", "repeat") else str(v) for k, v in zip(keys, values))
        reasons = "; ".join(dict.fromkeys(group["diverged_reason"]))
        parts.append(f"{label} {member}s {', '.join(map(str, group[member]))} ({reasons})")
    noun = "members" if member == "member" else "mixtures"
    return (
        f"{len(diverged)} {noun} diverged (non-finite loss) and are left out of every ensemble and "
        f"mean: {'; '.join(parts)}"
    )


PAPER_FIGURES = Path(__file__).resolve().parent / "reference" / "paper_figures.csv"


def paper_reference(section: str = "deep_ensemble") -> pd.DataFrame:
    """The paper's published points of Figures 3 and 4 (see ``reference/README.md``).

    Columns: section, dataset, hidden_dim, gating, series, x, metric, value.
    """
    reference = pd.read_csv(PAPER_FIGURES)
    return reference[reference["section"] == section].reset_index(drop=True)


def compare_with_paper(ensembles: pd.DataFrame, *, sizes: tuple[int, ...] | None = None) -> pd.DataFrame:
    """Our deep-ensemble results next to the paper's Figure 3, one row per (dataset, hidden,
    type). Columns per size k: ``ours_k`` and ``paper_k``, plus ``ours_single`` and
    ``paper_single`` (mean single model). Means over our repeats; ``sizes`` defaults to 2
    and our largest ensemble.
    """
    ours = summary_table(ensembles, decimals=6)
    if sizes is None:
        sizes = (2, int(ours["ensemble_size"].max()))
    paper = paper_reference("deep_ensemble").rename(columns={"hidden_dim": "hidden"})
    paper["type"] = paper["series"].str.split("_").str[0]
    paper["what"] = paper["series"].str.split("_", n=1).str[1]
    keys = ["dataset", "hidden", "type"]
    table = ours.groupby(keys)["single_mean"].first().rename("ours_single").to_frame()
    single = paper[paper["what"] == "single_mean"].groupby(keys)["value"].first()
    table["paper_single"] = single.reindex(table.index)
    for k in sizes:
        at_k = ours[ours["ensemble_size"] == k].set_index(keys)["ensemble_metric"]
        table[f"ours_{k}"] = at_k.reindex(table.index)
        theirs = paper[(paper["what"] == "ensemble") & (paper["x"] == k)].set_index(keys)["value"]
        table[f"paper_{k}"] = theirs.reindex(table.index)
    return table.round(4).reset_index()


# ---------------------------------------------------------------------------- mixtures

_PER_MIXTURE = ["dataset", "metric_name", "gating", "kind", "experts"]


def grid_order(column: pd.Series) -> pd.Series:
    """Sort key: datasets, gatings and kinds in the paper's order, anything else as is."""
    orders = {"dataset": DATASETS, "gating": GATINGS, "kind": MIXTURE_KINDS}
    if column.name not in orders:
        return column
    return column.map({value: i for i, value in enumerate(orders[column.name])})


def _in_grid_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of the paper's grid (datasets, gatings, kinds as listed), not alphabetical."""
    by = [c for c in ("dataset", "gating", "kind", "experts") if c in table.columns]
    return table.sort_values(by, key=grid_order, kind="stable").reset_index(drop=True)


class MixtureResults(NamedTuple):
    """The tidy tables of a mixture run: one row per mixture, one per (mixture, epoch, expert)."""

    mixtures: pd.DataFrame
    usage: pd.DataFrame


def load_mixture_results(run_dir: str | os.PathLike) -> MixtureResults:
    """The tables of a mixture run folder (``runs/<profile>/mixtures``, a notebook's
    ``out_dir``, or the profile folder above it), as ``mixtures, usage``; like
    ``load_results``, the runner's combined tables when present, else every shard."""
    run_dir = Path(run_dir)
    if not (run_dir / "shards").is_dir() and (run_dir / "mixtures" / "shards").is_dir():
        run_dir = run_dir / "mixtures"
    if not (run_dir / "shards").is_dir():
        raise FileNotFoundError(f"{run_dir} holds no results (no shards/ folder)")
    store = ShardStore(run_dir, tables=MIXTURE_TABLES)
    tables = {}
    for table in MIXTURE_TABLES:
        combined = run_dir / f"{table}.parquet"
        tables[table] = pd.read_parquet(combined) if combined.exists() else store.read(store.units(), table)
    return MixtureResults(mixtures=add_relative_to_two(tables["mixtures"]), usage=tables["usage"])


def mixture_summary(mixtures: pd.DataFrame, *, decimals: int = 4) -> pd.DataFrame:
    """Means over repeats, one row per (dataset, gating, kind, experts).

    Columns: metric and metric_std (test metric, its standard deviation over repeats),
    relative_to_2 (%, Figure 2's gain over the 2-expert model), epochs, train_time (s),
    parameters (per mixture), repeats.
    """
    grouped = mixtures.groupby(_PER_MIXTURE, sort=True)
    table = grouped.agg(
        metric=("metric", "mean"),
        metric_std=("metric", "std"),
        relative_to_2=("relative_to_2", "mean"),
        epochs=("epochs", "mean"),
        train_time=("train_time", "mean"),
        parameters=("parameters", "first"),
        repeats=("repeat", "nunique"),
    )
    return _in_grid_order(table.round(decimals).reset_index())


def mixture_improvement_table(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's numbers: gain (%) over the same model with 2 experts, averaged over repeats
    and then over datasets. Index: (gating, kind); columns: experts. Title in ``.attrs``."""
    per_dataset = mixtures.groupby(["dataset", "gating", "kind", "experts"])["relative_to_2"].mean()
    table = per_dataset.groupby(["gating", "kind", "experts"]).mean().unstack("experts")
    table.columns.name = "experts"
    order = [(g, k) for g in GATINGS for k in MIXTURE_KINDS if (g, k) in table.index]
    table = table.loc[order]
    table.attrs["title"] = (
        f"relative improvement (%) of mixtures over the same model with 2 experts, {_over_datasets(per_dataset)}"
    )
    return table


def usage_summary(usage: pd.DataFrame, *, decimals: int = 3) -> pd.DataFrame:
    """How evenly the trained gates use their experts, one row per (dataset, gating, kind, experts).

    From each repeat's last epoch (the model kept): effective_experts = exp(entropy) of the
    mean gate weights (K when all are used equally, 1 when one expert takes everything),
    top_share (the largest mean gate weight) and unused (experts with a mean gate weight
    below 1 / (10 K)); means over repeats.
    """
    keys = ["dataset", "gating", "kind", "experts", "repeat"]
    last = usage[usage["epoch"] == usage.groupby(keys)["epoch"].transform("max")]

    def describe(group: pd.DataFrame) -> pd.Series:
        weights = group["usage"].to_numpy(dtype=float)
        weights = weights / weights.sum()
        entropy = -np.sum(np.where(weights > 0, weights * np.log(np.where(weights > 0, weights, 1.0)), 0.0))
        k = len(weights)
        unused = float(np.sum(weights < 0.1 / k))
        return pd.Series({"effective_experts": np.exp(entropy), "top_share": weights.max(), "unused": unused})

    per_repeat = last.groupby(keys)[["usage"]].apply(describe).reset_index()
    table = per_repeat.groupby(keys[:-1], sort=True)[["effective_experts", "top_share", "unused"]].mean()
    return _in_grid_order(table.round(decimals).reset_index())


def compare_mixtures_with_paper(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Our mixtures next to the paper's Figure 4, one row per (dataset, gating, kind,
    experts) of our grid: ``ours`` (mean over repeats) and ``paper``."""
    ours = mixture_summary(mixtures, decimals=6)[["dataset", "gating", "kind", "experts", "metric"]]
    paper = paper_reference("moe").rename(columns={"series": "kind", "x": "experts", "value": "paper"})
    keys = ["dataset", "gating", "kind", "experts"]
    table = ours.rename(columns={"metric": "ours"}).merge(paper[keys + ["paper"]], how="left", on=keys)
    return table.round(4)
