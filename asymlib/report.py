"""Tables and Altair charts of deep-ensemble results, for notebooks and the runner.

Every function takes the tidy ``ensembles`` table that ``run_deep_ensembles`` returns (one
row per dataset, hidden, repeat, type, ensemble_size) and aggregates over repeats first,
so charts carry a few dozen rows, never the raw results.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import altair as alt
import pandas as pd

from .experiments import ShardStore

# Tab10's first two colours, fixed so MLP and WMLP look the same in every chart.
TYPE_COLORS = {"mlp": "#1f77b4", "wmlp": "#ff7f0e"}

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
    store = ShardStore(run_dir)
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
    datasets = at_size["dataset"].nunique()
    table.attrs["title"] = (
        f"relative improvement (%) of the ensemble of {size} over the mean single model, "
        f"mean over {datasets} dataset{'s' if datasets != 1 else ''}"
    )
    return table


def _inline(frame: pd.DataFrame) -> alt.InlineData:
    # Values written into the spec itself, whatever data transformer the session enabled
    # (e.g. "json" would write files next to the notebook); to_json turns NaN into null.
    return alt.InlineData(values=json.loads(frame.to_json(orient="records")))


def ensemble_chart(
    ensembles: pd.DataFrame,
    *,
    metric: str = "ensemble_metric",
    width: int = 220,
    height: int = 160,
) -> alt.FacetChart:
    """Test metric of the ensemble against its size, one line per type, means over repeats.

    A dashed rule per type marks its mean single model. Panels: one row per dataset (its
    metric in the header), one column per hidden size; y scales are independent.
    metric: the column to plot, "ensemble_metric" or "interpolated_metric".
    """
    points = ensembles.groupby(_PER_ENSEMBLE, sort=True).agg(
        value=(metric, "mean"), single=("single_mean", "mean"), repeats=("repeat", "nunique")
    ).reset_index()
    points["panel"] = points["dataset"] + " (" + points["metric_name"] + ")"

    sizes = sorted(points["ensemble_size"].unique().tolist())
    color = alt.Color(
        "type:N", title="type",
        scale=alt.Scale(domain=list(TYPE_COLORS), range=list(TYPE_COLORS.values())),
    )
    x = alt.X(
        "ensemble_size:Q", title="ensemble size", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=sizes)
    )
    y_title = "interpolated model" if metric == "interpolated_metric" else "ensemble"
    lines = alt.Chart().mark_line(point=True).encode(
        x=x,
        y=alt.Y("value:Q", title=f"{y_title} test metric", scale=alt.Scale(zero=False)),
        color=color,
        tooltip=["type:N", "ensemble_size:Q", alt.Tooltip("value:Q", format=".4f"), "repeats:Q"],
    )
    single_rules = alt.Chart().mark_rule(strokeDash=[4, 3], opacity=0.8).encode(
        y=alt.Y("mean(single):Q"),
        color=color,
        tooltip=["type:N", alt.Tooltip("mean(single):Q", title="mean single model", format=".4f")],
    )
    return (
        alt.layer(lines, single_rules, data=_inline(points))
        .properties(width=width, height=height)
        .facet(
            row=alt.Row("panel:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
            column=alt.Column("hidden:O", title="hidden units"),
        )
        .resolve_scale(y="independent")
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
