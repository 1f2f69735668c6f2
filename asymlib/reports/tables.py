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

from ..core.datasets import dataset_order
from ..core.mixtures import GATINGS, MIXTURE_KINDS
from ..core.statistics import across_datasets, holm, improvement_statistics, summarize_differences
from ..sections.deep_ensembles import DEEP_ENSEMBLE_TABLES
from ..sections.mixtures import MIXTURE_TABLES, add_relative_to_two
from ..sections.units import ShardStore

_PER_ENSEMBLE = ["dataset", "metric_name", "hidden", "type", "ensemble_size"]


class Results(NamedTuple):
    """The tidy tables of a deep-ensemble run: one row per member, one per ensemble size."""

    models: pd.DataFrame
    ensembles: pd.DataFrame


#: Each section's tables, the first being the one a folder must hold to count as results.
SECTION_TABLES = {"deep_ensembles": ("ensembles", "models"), "mixtures": ("mixtures", "usage")}


def holds_results(folder: str | os.PathLike, section: str = "deep_ensembles") -> bool:
    """Whether ``folder`` holds ``section``'s results: a ``shards/`` folder, or its combined
    table as Parquet or CSV (a copy without shards, such as ``results/verdict/deep_ensembles``)."""
    folder = Path(folder)
    table = SECTION_TABLES[section][0]
    return (folder / "shards").is_dir() or any((folder / f"{table}.{ext}").is_file() for ext in ("parquet", "csv"))


def _results_folder(run_dir: str | os.PathLike, section: str) -> Path:
    """``run_dir`` if it holds ``section``'s results, else its ``section`` subfolder if that
    does (``run_dir`` is then the profile folder); FileNotFoundError otherwise."""
    run_dir = Path(run_dir)
    if not holds_results(run_dir, section) and holds_results(run_dir / section, section):
        run_dir = run_dir / section
    if not holds_results(run_dir, section):
        raise FileNotFoundError(f"{run_dir} holds no results (no shards/ folder, nor a combined table)")
    return run_dir


def read_combined_csv(path: str | os.PathLike) -> pd.DataFrame:
    """A combined table written as CSV (``results/<profile>/<section>/<table>.csv``), with the
    values the Parquet copy has: empty numbers NaN, an empty ``diverged_reason`` "" (not NaN)."""
    table = pd.read_csv(path, keep_default_na=False, na_values=["", "NaN", "nan"])
    if "diverged_reason" in table:
        reason = table["diverged_reason"]
        table["diverged_reason"] = reason.astype(object).where(reason.notna(), "").astype(str)
    return table


def _read_tables(run_dir: Path, tables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """The combined ``<table>.parquet`` of each table when present (they hold just the
    profile's grid), else every shard, else (a folder without shards) ``<table>.csv``."""
    read = {}
    store = ShardStore(run_dir, tables=tables) if (run_dir / "shards").is_dir() else None
    for table in tables:
        combined = run_dir / f"{table}.parquet"
        if combined.exists():
            read[table] = pd.read_parquet(combined)
        elif store is not None:
            read[table] = store.read(store.units(), table)
        else:
            read[table] = read_combined_csv(run_dir / f"{table}.csv")
    return read


def table_sources(run_dir: str | os.PathLike, section: str) -> list[Path]:
    """The files ``load_results`` / ``load_mixture_results`` read ``section``'s tables from,
    by ``_read_tables``' rule: each combined ``<table>.parquet``, else that table's shards,
    else its ``<table>.csv``. Empty when ``run_dir`` holds no results."""
    if section not in SECTION_TABLES:
        return []
    try:
        run_dir = _results_folder(run_dir, section)
    except FileNotFoundError:
        return []
    sources = []
    for table in SECTION_TABLES[section]:
        combined = run_dir / f"{table}.parquet"
        if combined.exists():
            sources.append(combined)
        elif (run_dir / "shards").is_dir():
            sources += sorted((run_dir / "shards").glob(f"*-{table}.parquet"))
        elif (run_dir / f"{table}.csv").exists():
            sources.append(run_dir / f"{table}.csv")
    return sources


def load_results(run_dir: str | os.PathLike, *, section: str = "deep_ensembles") -> Results:
    """The tables of a run folder, as ``models, ensembles``.

    run_dir: a section folder (``runs/<profile>/deep_ensembles``, or a notebook's
    ``out_dir``), the profile folder above it, or a copy of the combined tables without
    shards (``results/verdict/deep_ensembles``). The runner's combined
    ``models.parquet`` / ``ensembles.parquet`` are used when present (they hold just the
    profile's grid); otherwise every shard in the folder is concatenated, or, without
    shards, the combined CSV tables are read.
    """
    tables = _read_tables(_results_folder(run_dir, section), DEEP_ENSEMBLE_TABLES)
    return Results(*(tables[table] for table in Results._fields))


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
    missing = sorted(set(datasets[per_dataset.isna().to_numpy()]), key=dataset_order)
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
    table = table.round(4).reset_index()
    # Which data cut our numbers come from; the paper's come from the release's split.
    splits = _with_split(ensembles).groupby("dataset")["split"].agg(lambda s: "/".join(sorted(set(s))))
    table.insert(1, "our_split", table["dataset"].map(splits))
    return table


def _with_split(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its ``split`` column complete: results made before tables recorded
    the split (no column, or NaN in their rows) were all made on the paper's split."""
    split = frame["split"].fillna("paper") if "split" in frame.columns else "paper"
    return frame.assign(split=split)


# ---------------------------------------------------------------------------- diagnostics


def out_of_range_table(models: pd.DataFrame) -> pd.DataFrame:
    """Why a dataset's test metric may be off: test rows beyond anything training saw.

    One row per (dataset, split, hidden, type): test_rows_out_of_range and the largest
    |z| in the test part (worst_test_z, in worst_test_feature), then the mean member
    metric with all test rows (``metric``) and without the out-of-range ones
    (``metric_in_range``), means over members and repeats.
    """
    keys = ["dataset", "split", "hidden", "type", "metric_name"]
    diagnostics = ["metric_in_range", "test_rows_out_of_range", "worst_test_z", "worst_test_feature"]
    models = _with_split(models)
    # Results made before these columns existed show NaN there, not an error.
    models = models.reindex(columns=list(models.columns) + [c for c in diagnostics if c not in models.columns])
    table = models.groupby(keys, sort=False).agg(
        test_rows_out_of_range=("test_rows_out_of_range", "first"),
        worst_test_z=("worst_test_z", "first"),
        worst_test_feature=("worst_test_feature", "first"),
        metric=("metric", "mean"),
        metric_in_range=("metric_in_range", "mean"),
    )
    return _in_grid_order(table.reset_index())


def outlier_members(models: pd.DataFrame, *, mads: float = 5.0) -> pd.DataFrame:
    """Members whose test metric lies far on the bad side of their peers': beyond the
    median + ``mads`` x MAD (RMSE) or below the median - ``mads`` x MAD (accuracy) of the
    same dataset, hidden size and type over all repeats; listed with their seeds."""
    keys = ["dataset", "hidden", "type"]
    grouped = models.groupby(keys)["metric"]
    median = grouped.transform("median")
    mad = (models["metric"] - median).abs().groupby([models[k] for k in keys]).transform("median")
    sign = np.where(models["metric_name"] == "rmse", 1.0, -1.0)
    far = sign * (models["metric"] - median) > mads * mad.clip(lower=1e-12)
    columns = keys + ["repeat", "member", "metric", "init_seed", "order_seed"]
    table = models.loc[far, columns].assign(peers_median=median[far])
    return _in_grid_order(table.sort_values(keys + ["repeat", "member"]).reset_index(drop=True))


# ---------------------------------------------------------------------------- the verdict


def verdict(ensembles: pd.DataFrame, *, confidence: float = 0.95) -> tuple[pd.DataFrame, str]:
    """The paper's claim tested on these results: a table and one sentence.

    Table: per dataset (and hidden size), at the largest ensemble, WMLP - MLP of the test
    metric (positive: WMLP better) with its t interval over repeats and whether it is
    significant after Holm's correction over all compared cells; and the same for the
    relative improvement (Figure 1's measure, percentage points). The sentence answers the
    paper's question over datasets (``across_datasets``: mean and median, bootstrap).
    """
    largest = int(ensembles["ensemble_size"].max())
    paired = improvement_statistics(ensembles, confidence=confidence)
    at_largest = paired[paired["ensemble_size"] == largest]
    keys = ["dataset", "metric_name", "hidden"]

    def measure(name: str, prefix: str) -> pd.DataFrame:
        rows = at_largest[at_largest["measure"] == name].set_index(keys)
        return pd.DataFrame(
            {
                f"{prefix}_difference": rows["mean"],
                f"{prefix}_ci_low": rows["ci_low"],
                f"{prefix}_ci_high": rows["ci_high"],
                f"{prefix}_significant": rows["significant"].astype(bool),
            }
        )

    metric = measure("ensemble_metric", "metric")
    gain = measure("relative_improvement", "gain").rename(columns={"gain_difference": "gain_difference_pp"})
    repeats = at_largest[at_largest["measure"] == "ensemble_metric"].set_index(keys)["n"].rename("repeats")
    table = pd.concat([repeats, metric, gain], axis=1).reset_index()
    table = _in_grid_order(table)
    table.attrs["title"] = (
        f"WMLP - MLP at the ensemble of {largest} (positive: WMLP better), {confidence:.0%} t intervals "
        "over repeats, significance after Holm's correction"
    )
    if ensembles.groupby("dataset")["repeat"].nunique().min() < 2:
        return table, (
            "With a single repeat of some dataset there is no spread to measure, so no verdict: "
            "it needs at least two repeats per dataset (params/verdict.yaml has five)."
        )
    overall = across_datasets(ensembles, confidence=confidence)
    sentences = []
    for _, row in overall.iterrows():
        low, high = row["mean_ci_low"], row["mean_ci_high"]
        answer = (
            "supports the paper's claim"
            if low > 0
            else "contradicts the paper's claim"
            if high < 0
            else "does not establish the paper's claim"
        )
        sentences.append(
            f"Over {int(row['datasets'])} datasets at hidden {int(row['hidden'])}, WMLP ensembles of {largest} gain "
            f"{row['wmlp_mean']:.2f} % over their mean single model against MLP's {row['mlp_mean']:.2f} %: "
            f"a difference of {row['difference_mean']:+.2f} points (95 % bootstrap interval "
            f"[{low:+.2f}, {high:+.2f}]; median over datasets {row['difference_median']:+.2f}), which "
            f"{answer}. {int(table['gain_significant'].sum())} of {len(table)} datasets show a significant "
            "difference in gain after correction."
        )
    return table, " ".join(sentences)


# ---------------------------------------------------------------------------- mixtures

_PER_MIXTURE = ["dataset", "metric_name", "gating", "kind", "experts"]


def grid_order(column: pd.Series) -> pd.Series:
    """Sort key: datasets, gatings and kinds in the paper's order, anything else as is."""
    if column.name == "dataset":  # the built-ins in the paper's order, then user datasets by name
        return column.map({value: i for i, value in enumerate(sorted(column.unique(), key=dataset_order))})
    orders = {"gating": GATINGS, "kind": MIXTURE_KINDS}
    if column.name not in orders:
        return column
    return column.map({value: i for i, value in enumerate(orders[column.name])})


def _in_grid_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in the order of the paper's grid (datasets, gatings, kinds as listed), not alphabetical."""
    by = [c for c in ("dataset", "gating", "kind", "experts") if c in table.columns]
    return table.sort_values(by, key=grid_order, kind="stable").reset_index(drop=True)


#: The deep-ensemble types at the paper's settings: every other type is an ablation's
#: WMLP variant (``sections.deep_ensembles.model_type``).
PAPER_TYPES = ("mlp", "wmlp", "smlp", "syre")


def paper_types(ensembles: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's settings (``PAPER_TYPES``), leaving out ablation variants,
    which ``beyond_paper`` shows on their own."""
    return ensembles[ensembles["type"].isin(PAPER_TYPES)]


def paper_mixtures(mixtures: pd.DataFrame) -> pd.DataFrame:
    """The mixtures trained without a load-balancing loss (the paper's), leaving out the
    ablation's others (``beyond_paper``)."""
    if "balance_weight" not in mixtures:
        return mixtures
    return mixtures[mixtures["balance_weight"] == 0]


class MixtureResults(NamedTuple):
    """The tidy tables of a mixture run: one row per mixture, one per (mixture, epoch, expert)."""

    mixtures: pd.DataFrame
    usage: pd.DataFrame


def load_mixture_results(run_dir: str | os.PathLike) -> MixtureResults:
    """The tables of a mixture run folder (``runs/<profile>/mixtures``, a notebook's
    ``out_dir``, the profile folder above it, or a copy of the combined tables), as
    ``mixtures, usage``; like ``load_results``, the runner's combined tables when present,
    else every shard, else the combined CSV tables."""
    tables = _read_tables(_results_folder(run_dir, "mixtures"), MIXTURE_TABLES)
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


#: The paper's second claim, one comparison per mixture family: (name, W-Asymmetric kind, plain kind).
MIXTURE_COMPARISONS = (("MoE", "wmlp", "mlp"), ("MoIE", "iwmlp", "imlp"))


def mixture_verdict(mixtures: pd.DataFrame, *, confidence: float = 0.95) -> tuple[pd.DataFrame, str]:
    """The paper's second claim (W-Asymmetric experts do not clearly help mixtures) tested:
    a table and one sentence.

    Table: per comparison (MoE: WMLP - MLP experts; MoIE: IWMLP - IMLP), dataset, gating and
    number of experts, the test metric's difference paired over repeats (positive: the
    W-Asymmetric kind better; RMSE counts lower as better), its t interval, and whether it is
    significant after Holm's correction over all cells of the table. Repeat r of every kind
    starts from the same seeds, so the pairs are like for like.
    """
    mixtures = paper_mixtures(mixtures)
    keys = ["dataset", "metric_name", "gating", "experts"]
    rows = []
    for comparison, better, baseline in MIXTURE_COMPARISONS:
        pairs = mixtures[mixtures["kind"].isin([better, baseline])].pivot_table(
            index=keys + ["repeat"], columns="kind", values="metric", aggfunc="mean"
        )
        if better not in pairs or baseline not in pairs:
            continue
        pairs = pairs[[baseline, better]].dropna()
        sign = np.where(pairs.index.get_level_values("metric_name") == "rmse", -1.0, 1.0)
        difference = pd.Series(sign * (pairs[better] - pairs[baseline]).to_numpy(), index=pairs.index)
        for key, group in difference.groupby(level=keys, sort=True):
            rows.append(
                {
                    "comparison": comparison,
                    **dict(zip(keys, key)),
                    **summarize_differences(group.to_numpy(), confidence=confidence),
                }
            )
    columns = ["comparison"] + keys + ["n", "mean", "std", "ci_low", "ci_high", "t", "p_value"]
    table = pd.DataFrame(rows, columns=columns)
    table["p_holm"] = holm(table["p_value"].to_numpy())
    table["significant"] = table["p_holm"] < 1 - confidence
    table = _in_grid_order(table)
    table.attrs["title"] = (
        "W-Asymmetric minus plain experts (MoE: WMLP - MLP, MoIE: IWMLP - IMLP; positive: W-Asymmetric better), "
        f"paired over repeats, {confidence:.0%} t intervals, significance after Holm's correction over all cells"
    )
    return table, _mixture_sentence(table)


def _mixture_sentence(table: pd.DataFrame) -> str:
    if not len(table):
        return "No mixture of a W-Asymmetric kind was run beside its plain kind, so no verdict on the paper's second claim."
    tested = table["p_value"].notna()
    if not tested.any():
        return (
            "With a single repeat (or identical differences) in every cell there is no spread to measure, so no "
            "verdict on the paper's second claim: it needs at least two repeats."
        )
    helps = int((table["significant"] & (table["mean"] > 0)).sum())
    hurts = int((table["significant"] & (table["mean"] < 0)).sum())
    sentences = [
        f"Of {len(table)} cells (dataset x gating x experts, MoE and MoIE), W-Asymmetric experts are significantly "
        f"better in {helps} and significantly worse in {hurts} after Holm's correction; the rest decide nothing "
        f"(mean difference {table['mean'].mean():+.4f}, positive in {int((table['mean'] > 0).sum())} cells)."
    ]
    repeats = int(table["n"].max())
    if repeats <= 3:
        sentences.append(
            f"With {repeats} repeats a cell's t interval has {repeats - 1} degree{'s' if repeats > 2 else ''} of "
            "freedom and the correction spans every cell, so only large, consistent differences can show: this "
            "supports the paper's claim only in that it finds no clear help, and could not find a small one."
        )
    return " ".join(sentences)
