"""The paper's deep-ensemble figures in Altair, each with the paper's own points beside ours.

Every chart is built from the tidy ``ensembles`` table of ``run_deep_ensembles`` (one row
per dataset, hidden, repeat, type, ensemble_size), aggregated over repeats before it is
drawn, and carries its data inline: a chart holds a few hundred rows at most, and renders
from the notebook file or its HTML copy alone.

- ``figure1``: Figure 1, relative improvement against ensemble size, mean over datasets.
- ``figure3``: Figure 3, test metric against ensemble size per dataset, +-1 std over repeats.
- ``size_slider_chart``: MLP against WMLP per dataset at an ensemble size chosen with a
  slider that lives in the chart (works in the exported HTML, no kernel needed).
- ``improvement_chart``: WMLP - MLP paired over repeats with t intervals (``statistics``).
- ``ensemble_explorer``: the same comparison as ipywidgets (size slider, hidden selector).

Series are told apart by ``source``: "ours" or "paper"; types by colour
(``charts.TYPE_COLORS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import altair as alt
import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..core.statistics import improvement_statistics
from .charts import (
    TYPE_COLORS,
    StaticViewExplorer,
    color_scale,
    dash_legend,
    inline_data,
    interval_tooltip,
    present_scale,
    range_slider,
    save_charts,
    table_and_chart,
)
from .tables import paper_reference

#: Figure 1 of the paper as printed: relative improvement (%) of the ensemble of 64 over its
#: mean single model, averaged over the five datasets; {hidden: {type: value}} (docs/protocol.md).
PAPER_FIGURE1 = {
    64: {"mlp": 1.21, "wmlp": 2.12},
    128: {"mlp": 1.38, "wmlp": 2.33},
    256: {"mlp": 1.59, "wmlp": 2.98},
}
PAPER_FIGURE1_SIZE = 64

_PER_ENSEMBLE = ["dataset", "metric_name", "hidden", "type", "ensemble_size"]


def _color(types: Sequence[str]) -> alt.Color:
    # Every layer encodes colour the same way: one with legend=None would drop the
    # merged legend of all of them. The legend lists the types the chart draws.
    return alt.Color(
        "type:N",
        scale=color_scale(TYPE_COLORS, types),
        legend=alt.Legend(title="type", symbolOpacity=1),  # not the bands' faint colour
    )


def _size_axis(sizes: Sequence[int]) -> alt.X:
    return alt.X(
        "ensemble_size:Q",
        title="ensemble size",
        scale=alt.Scale(type="log", base=2),
        axis=alt.Axis(values=sorted(int(s) for s in sizes)),
    )


# --------------------------------------------------------------------------- one dataset's notebook


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
    points = (
        ensembles.groupby(_PER_ENSEMBLE, sort=True)
        .agg(value=(metric, "mean"), single=("single_mean", "mean"), repeats=("repeat", "nunique"))
        .reset_index()
    )
    points["panel"] = points["dataset"] + " (" + points["metric_name"] + ")"

    sizes = sorted(points["ensemble_size"].unique().tolist())
    color = alt.Color(
        "type:N",
        title="type",
        scale=color_scale(TYPE_COLORS, points["type"]),
    )
    x = alt.X(
        "ensemble_size:Q", title="ensemble size", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=sizes)
    )
    y_title = "interpolated model" if metric == "interpolated_metric" else "ensemble"
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=f"{y_title} test metric", scale=alt.Scale(zero=False)),
            color=color,
            tooltip=["type:N", "ensemble_size:Q", alt.Tooltip("value:Q", format=".4f"), "repeats:Q"],
        )
    )
    single_rules = (
        alt.Chart()
        .mark_rule(strokeDash=[4, 3], opacity=0.8)
        .encode(
            y=alt.Y("mean(single):Q"),
            color=color,
            tooltip=["type:N", alt.Tooltip("mean(single):Q", title="mean single model", format=".4f")],
        )
    )
    return (
        alt.layer(lines, single_rules, data=inline_data(points))
        .properties(width=width, height=height)
        .facet(
            row=alt.Row("panel:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
            column=alt.Column("hidden:O", title="hidden units"),
        )
        .resolve_scale(y="independent")
    )


# --------------------------------------------------------------------------- the paper's points


def paper_points(*, datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Figure 3 (``paper_figures.csv``) as one row per point.

    Returns columns dataset, metric_name, hidden, type, ensemble_size, ensemble_metric,
    single_mean (that type's mean single model, the same at every size) and
    relative_improvement (%, Figure 1's measure: accuracy (ens - single) / single, RMSE
    (single - ens) / single). datasets: keep only these (default: all five).
    """
    reference = paper_reference("deep_ensemble").rename(
        columns={"hidden_dim": "hidden", "metric": "metric_name", "x": "ensemble_size"}
    )
    if datasets is not None:
        reference = reference[reference["dataset"].isin(list(datasets))]
    reference["type"] = reference["series"].str.split("_").str[0]
    reference["what"] = reference["series"].str.split("_", n=1).str[1]
    keys = ["dataset", "metric_name", "hidden", "type"]
    single = reference[reference["what"] == "single_mean"].groupby(keys)["value"].first().rename("single_mean")
    points = (
        reference[reference["what"] == "ensemble"].rename(columns={"value": "ensemble_metric"}).join(single, on=keys)
    )
    sign = np.where(points["metric_name"] == "rmse", -1.0, 1.0)
    gain = sign * (points["ensemble_metric"] - points["single_mean"])
    points["relative_improvement"] = 100 * gain / points["single_mean"]
    columns = keys + ["ensemble_size", "ensemble_metric", "single_mean", "relative_improvement"]
    return points[columns].sort_values(columns[:5]).reset_index(drop=True)


def _ours_per_dataset(ensembles: pd.DataFrame) -> pd.DataFrame:
    """Means over repeats: one row per (dataset, metric_name, hidden, type, ensemble_size)."""
    return (
        ensembles.groupby(_PER_ENSEMBLE, sort=True)
        .agg(
            relative_improvement=("relative_improvement", "mean"),
            ensemble_metric=("ensemble_metric", "mean"),
            ensemble_std=("ensemble_metric", "std"),
            single_mean=("single_mean", "mean"),
            repeats=("repeat", "nunique"),
        )
        .reset_index()
    )


# --------------------------------------------------------------------------- Figure 1


def figure1_data(ensembles: pd.DataFrame) -> pd.DataFrame:
    """Figure 1's series: relative improvement (%) per (hidden, type, ensemble_size).

    Columns: source, hidden, type, ensemble_size, relative_improvement, datasets (how many
    were averaged). Sources: "ours" (means over repeats, then over our datasets),
    "paper (Figure 3)" (the paper's points turned into relative improvements, mean over the
    same datasets as ours) and "paper (Figure 1)" (the printed values, size 64, all five
    datasets). Hidden sizes: ours only (the paper's points at a hidden size we did not
    train would fill a panel of their own, with nothing of ours to compare).
    """
    per_dataset = _ours_per_dataset(ensembles)
    datasets = sorted(per_dataset["dataset"].unique())
    hidden = set(per_dataset["hidden"].unique())
    paper = paper_points(datasets=datasets)
    series = []
    for source, points in [("ours", per_dataset), ("paper (Figure 3)", paper[paper["hidden"].isin(hidden)])]:
        averaged = points.groupby(["hidden", "type", "ensemble_size"]).agg(
            relative_improvement=("relative_improvement", "mean"), datasets=("dataset", "nunique")
        )
        series.append(averaged.reset_index().assign(source=source))
    printed = pd.DataFrame(
        [
            {
                "hidden": size,
                "type": kind,
                "ensemble_size": PAPER_FIGURE1_SIZE,
                "relative_improvement": value,
                "datasets": 5,
            }
            for size, by_type in PAPER_FIGURE1.items()
            if size in hidden
            for kind, value in by_type.items()
        ],
        columns=["hidden", "type", "ensemble_size", "relative_improvement", "datasets"],
    )
    series.append(printed.assign(source="paper (Figure 1)"))
    table = pd.concat([part for part in series if len(part)], ignore_index=True)
    return table[["source", "hidden", "type", "ensemble_size", "relative_improvement", "datasets"]]


def figure1(ensembles: pd.DataFrame, *, width: int = 220, height: int = 180) -> alt.FacetChart:
    """Figure 1: relative improvement (%) of the ensemble over its mean single model
    against ensemble size, mean over datasets; one panel per hidden size we trained, MLP
    against WMLP.

    Ours: solid lines. The paper: its Figure 3 points as relative improvements over the
    same datasets (dashed) and its printed Figure 1 values at size 64 (diamonds).
    """
    data = figure1_data(ensembles)
    lines = data[data["source"] != "paper (Figure 1)"]
    color = _color(data["type"].unique())
    sizes = sorted(data["ensemble_size"].unique())
    x = _size_axis(sizes)
    y = alt.Y("relative_improvement:Q", title="relative improvement (%)")
    tooltip = [
        "source:N",
        "type:N",
        "hidden:O",
        "ensemble_size:Q",
        alt.Tooltip("relative_improvement:Q", format=".3f"),
        alt.Tooltip("datasets:Q", title="datasets averaged"),
    ]
    dash = alt.StrokeDash(
        "source:N",
        legend=dash_legend("source"),
        scale=present_scale({"ours": [1, 0], "paper (Figure 3)": [5, 3]}, lines["source"].unique()),
    )
    on_lines = alt.FieldOneOfPredicate(field="source", oneOf=list(lines["source"].unique()))
    # Points as a layer of their own: a line's point overlay would hide the dash legend.
    curves = (
        alt.Chart()
        .mark_line()
        .encode(x=x, y=y, color=color, strokeDash=dash, detail="source:N")
        .transform_filter(on_lines)
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, size=30)
        .encode(x=x, y=y, color=color, tooltip=tooltip)
        .transform_filter(on_lines)
    )
    printed = (
        alt.Chart()
        .mark_point(shape="diamond", size=150, filled=True, stroke="black", strokeWidth=0.8)
        .encode(
            x=x,
            y=y,
            color=color,
            shape=alt.Shape("source:N", title=None, scale=alt.Scale(domain=["paper (Figure 1)"], range=["diamond"])),
            tooltip=tooltip,
        )
        .transform_filter(alt.datum.source == "paper (Figure 1)")
    )
    # Where the paper printed no value (a hidden size it did not have), no diamonds in the legend.
    layers = [curves, points, printed] if (data["source"] == "paper (Figure 1)").any() else [curves, points]
    return (
        alt.layer(*layers, data=inline_data(data))
        .properties(width=width, height=height)
        .facet(column=alt.Column("hidden:O", title="hidden units"))
        .properties(title="Figure 1: relative improvement of deep ensembles over their mean single model")
    )


# --------------------------------------------------------------------------- Figure 3

#: Line dash of each Figure 3 series: ensembles solid (ours) or dashed (paper); mean single
#: models as rules, dashed (ours) or dotted (paper).
_FIGURE3_SERIES = {
    "ours: ensemble": [1, 0],
    "paper: ensemble": [6, 3],
    "ours: mean single model": [4, 3],
    "paper: mean single model": [1, 3],
}


def figure3_data(ensembles: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's points, ours and the paper's, for the datasets and hidden sizes we ran.

    Columns: source ("ours" | "paper"), series (a key of the dash legend), panel
    ("<dataset> (<metric>)"), dataset, metric_name, hidden, type, ensemble_size (missing on
    the mean-single-model rows, one per dataset, hidden and type), value, low, high (our
    mean +-1 std over repeats; equal to value with one repeat or for the paper), repeats.
    """
    ours = _ours_per_dataset(ensembles)
    spread = ours["ensemble_std"].fillna(0.0)
    ours_ensemble = ours.assign(
        source="ours",
        series="ours: ensemble",
        value=ours["ensemble_metric"],
        low=ours["ensemble_metric"] - spread,
        high=ours["ensemble_metric"] + spread,
    )
    keys = ["dataset", "metric_name", "hidden", "type"]
    ours_single = ensembles.groupby(keys).agg(value=("single_mean", "mean"), repeats=("repeat", "nunique"))
    ours_single = ours_single.reset_index()
    ours_single = ours_single.assign(source="ours", series="ours: mean single model")

    # The paper's points at our hidden sizes only: no panel without ours.
    paper = paper_points(datasets=sorted(ours["dataset"].unique()))
    paper = paper[paper["hidden"].isin(ours["hidden"].unique())]
    paper_ensemble = paper.assign(source="paper", series="paper: ensemble", value=paper["ensemble_metric"])
    paper_single = paper.groupby(keys)["single_mean"].first().rename("value").reset_index()
    paper_single = paper_single.assign(source="paper", series="paper: mean single model")

    parts = [ours_ensemble, ours_single, paper_ensemble, paper_single]
    table = pd.concat([part for part in parts if len(part)], ignore_index=True)
    table["low"] = table["low"].fillna(table["value"])
    table["high"] = table["high"].fillna(table["value"])
    table["panel"] = table["dataset"] + " (" + table["metric_name"] + ")"
    columns = [
        "source",
        "series",
        "panel",
        "dataset",
        "metric_name",
        "hidden",
        "type",
        "ensemble_size",
        "value",
        "low",
        "high",
        "repeats",
    ]
    return table[columns]


def figure3(ensembles: pd.DataFrame, *, width: int = 200, height: int = 150) -> alt.FacetChart:
    """Figure 3: test metric of the ensemble against its size, one panel per dataset (rows)
    and hidden size (columns), MLP against WMLP.

    Ours: mean over repeats (solid, filled circles) with a +-1 std band, and our mean
    single models (dashed rules). The paper's points: dashed lines with diamonds, its mean
    single models dotted. Only the hidden sizes we trained have panels (``figure3_data``).
    y scales are independent (accuracy and RMSE differ by dataset).
    """
    data = figure3_data(ensembles)
    sizes = sorted(data["ensemble_size"].dropna().unique())
    color = _color(data["type"].unique())
    x = _size_axis(sizes)
    y = alt.Y("value:Q", title="test metric", scale=alt.Scale(zero=False))
    dash = alt.StrokeDash(
        "series:N",
        legend=dash_legend("series"),
        scale=present_scale(_FIGURE3_SERIES, data["series"].unique()),
    )
    shape = alt.Shape(
        "source:N", title="source", scale=present_scale({"ours": "circle", "paper": "diamond"}, data["source"].unique())
    )
    tooltip = [
        "series:N",
        "type:N",
        "hidden:O",
        "ensemble_size:Q",
        alt.Tooltip("value:Q", format=".4f"),
        alt.Tooltip("low:Q", format=".4f", title="mean - std"),
        alt.Tooltip("high:Q", format=".4f", title="mean + std"),
        "repeats:Q",
    ]
    ensemble_rows = alt.FieldOneOfPredicate(field="series", oneOf=["ours: ensemble", "paper: ensemble"])
    single_rows = alt.FieldOneOfPredicate(field="series", oneOf=["ours: mean single model", "paper: mean single model"])
    band = (
        alt.Chart()
        .mark_area(opacity=0.2)
        .encode(x=x, y="low:Q", y2="high:Q", color=color, detail="source:N")
        .transform_filter(alt.datum.series == "ours: ensemble")
    )
    curves = (
        alt.Chart()
        .mark_line()
        .encode(x=x, y=y, color=color, strokeDash=dash, detail="series:N")
        .transform_filter(ensemble_rows)
    )
    points = (
        alt.Chart()
        .mark_point(filled=True, size=35)
        .encode(x=x, y=y, color=color, shape=shape, tooltip=tooltip)
        .transform_filter(ensemble_rows)
    )
    singles = (
        alt.Chart()
        .mark_rule(opacity=0.8)
        .encode(y="value:Q", color=color, strokeDash=dash, tooltip=tooltip)
        .transform_filter(single_rows)
    )
    return (
        alt.layer(band, curves, points, singles, data=inline_data(data))
        .properties(width=width, height=height)
        .facet(
            row=alt.Row("panel:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
            column=alt.Column("hidden:O", title="hidden units"),
        )
        .resolve_scale(y="independent")
        .properties(title="Figure 3: test metric of deep ensembles against their size, ours and the paper's")
    )


# --------------------------------------------------------------------------- MLP against WMLP at one size


def comparison_data(ensembles: pd.DataFrame) -> pd.DataFrame:
    """Relative improvement (%) per (source, dataset, hidden, type, ensemble_size): ours
    (mean over repeats) and the paper's at our hidden sizes and ensemble sizes only, so
    that both sources answer the same question at every size.

    Columns: source, dataset, metric_name, hidden, type, ensemble_size,
    relative_improvement, ensemble_metric.
    """
    ours = _ours_per_dataset(ensembles).assign(source="ours")
    paper = paper_points(datasets=sorted(ours["dataset"].unique())).assign(source="paper")
    paper = paper[
        paper["hidden"].isin(ours["hidden"].unique()) & paper["ensemble_size"].isin(ours["ensemble_size"].unique())
    ]
    columns = [
        "source",
        "dataset",
        "metric_name",
        "hidden",
        "type",
        "ensemble_size",
        "relative_improvement",
        "ensemble_metric",
    ]
    return pd.concat([ours[columns], paper[columns]], ignore_index=True)


def _comparison_chart(
    data: pd.DataFrame, *, size: alt.Parameter | None, title: str, width: int, height: int
) -> alt.Chart | alt.FacetChart:
    """Bars (ours) and ticks (the paper) of relative improvement per dataset, MLP beside
    WMLP, a panel per hidden size. With ``size``, each bar shows the largest ensemble
    size not above the parameter's value; without, ``data`` must hold one size."""
    tooltip = [
        "source:N",
        "dataset:N",
        "type:N",
        "hidden:O",
        "ensemble_size:Q",
        alt.Tooltip("relative_improvement:Q", format=".3f", title="relative improvement (%)"),
        alt.Tooltip("ensemble_metric:Q", format=".4f", title="ensemble test metric"),
    ]
    encoding = dict(
        x=alt.X("dataset:N", title=None),
        xOffset=alt.XOffset("type:N"),
        y=alt.Y("relative_improvement:Q", title="relative improvement (%)"),
        tooltip=tooltip,
    )
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(color=_color(data["type"].unique()), **encoding)
        .transform_filter(alt.datum.source == "ours")
    )
    # The title says what the ticks are: a tick mark has no legend symbol of its own.
    ticks = (
        alt.Chart()
        .mark_tick(color="black", thickness=2, size=12)
        .encode(**encoding)
        .transform_filter(alt.datum.source == "paper")
    )
    layered = alt.layer(bars, ticks, data=inline_data(data))
    if size is not None:
        # The slider moves in steps of 1; show each bar at the largest size it has that
        # does not exceed the slider, so every position of the slider shows something.
        layered = (
            layered.transform_filter(alt.datum.ensemble_size <= size)
            .transform_joinaggregate(shown_size="max(ensemble_size)", groupby=["source", "dataset", "hidden", "type"])
            .transform_filter(alt.datum.ensemble_size == alt.datum.shown_size)
        )
    chart = layered.properties(width=width, height=height).facet(column=alt.Column("hidden:O", title="hidden units"))
    if size is not None:
        chart = chart.add_params(size)
    return chart.properties(title=title)


def size_slider_chart(ensembles: pd.DataFrame, *, width: int = 320, height: int = 200) -> alt.FacetChart:
    """MLP against WMLP per dataset at the ensemble size picked with a slider in the chart
    (a Vega-Lite parameter: it works in the exported HTML without a kernel).

    Bars: our relative improvement (%) over the mean single model, means over repeats;
    black ticks: the paper's, from its Figure 3, at the same size and hidden size.
    """
    data = comparison_data(ensembles)
    size = range_slider(
        "ensemble_size", data["ensemble_size"].unique(), label="ensemble size (largest trained size up to) "
    )
    return _comparison_chart(
        data,
        size=size,
        width=width,
        height=height,
        title="MLP against WMLP at the ensemble size chosen with the slider (bars: ours, ticks: paper)",
    )


def size_comparison_chart(
    ensembles: pd.DataFrame, *, ensemble_size: int, hidden: int | None = None, width: int = 320, height: int = 200
) -> alt.FacetChart:
    """``size_slider_chart`` at one fixed ensemble size (and hidden size, if given)."""
    data = comparison_data(ensembles)
    data = data[data["ensemble_size"] == ensemble_size]
    if hidden is not None:
        data = data[data["hidden"] == hidden]
    return _comparison_chart(
        data,
        size=None,
        width=width,
        height=height,
        title=f"MLP against WMLP, ensembles of {ensemble_size} (bars: ours, ticks: paper)",
    )


def size_table(ensembles: pd.DataFrame, *, ensemble_size: int, hidden: int) -> pd.DataFrame:
    """MLP against WMLP per dataset at one ensemble and hidden size.

    Columns: metric (name), mlp, wmlp (ensemble test metric, means over repeats),
    mlp_gain, wmlp_gain (relative improvement over the type's mean single model, %),
    paper_mlp_gain, paper_wmlp_gain (the same from the paper's Figure 3, if it has this
    size), wmlp_better (mean paired WMLP - MLP test metric, > 0: WMLP better), p_value
    (paired t-test over repeats; NaN with one repeat). Index: dataset.
    """
    chosen = ensembles[(ensembles["ensemble_size"] == ensemble_size) & (ensembles["hidden"] == hidden)]
    keys = ["dataset", "metric_name"]
    ours = _ours_per_dataset(chosen)
    paper = paper_points(datasets=sorted(ours["dataset"].unique()))
    paper = paper[(paper["ensemble_size"] == ensemble_size) & (paper["hidden"] == hidden)]
    paired = improvement_statistics(chosen, measures=["ensemble_metric"]).set_index(keys)
    parts = [
        ours.pivot_table(index=keys, columns="type", values="ensemble_metric"),
        ours.pivot_table(index=keys, columns="type", values="relative_improvement").add_suffix("_gain"),
        paper.pivot_table(index=keys, columns="type", values="relative_improvement")
        .add_prefix("paper_")
        .add_suffix("_gain"),
        paired[["mean", "p_value"]].rename(columns={"mean": "wmlp_better"}),
    ]
    columns = ["mlp", "wmlp", "mlp_gain", "wmlp_gain", "paper_mlp_gain", "paper_wmlp_gain", "wmlp_better", "p_value"]
    table = parts[0].join(parts[1:]).reindex(columns=columns)
    table = table.reset_index("metric_name").rename(columns={"metric_name": "metric"})
    table.columns.name = None
    table.attrs["title"] = f"ensembles of {ensemble_size}, hidden {hidden}: gains in % over the mean single model"
    return table


# --------------------------------------------------------------------------- statistics


def improvement_chart(
    statistics_table: pd.DataFrame,
    *,
    measure: str = "relative_improvement",
    width: int = 150,
    height: int = 130,
) -> alt.FacetChart:
    """Mean WMLP - MLP difference against ensemble size, with its t interval as error bars.

    statistics_table: the output of ``asymlib.core.statistics.improvement_statistics``. One
    panel per dataset (columns) and hidden size (rows); a dotted rule marks zero. The
    default measure, the difference of relative improvements, is in percentage points on
    every dataset, so panels compare; there are no bars where n = 1.
    """
    points = statistics_table[statistics_table["measure"] == measure].copy()
    points["panel"] = points["dataset"] + " (" + points["metric_name"] + ")"
    x = _size_axis(points["ensemble_size"].unique())
    unit = "percentage points" if measure.endswith("relative_improvement") else "test metric"
    y_title = f"WMLP - MLP ({unit})"
    tooltip = [
        "dataset:N",
        "hidden:O",
        "ensemble_size:Q",
        "n:Q",
        *interval_tooltip(),
        alt.Tooltip("p_value:Q", format=".3g"),
    ]
    zero = alt.Chart().mark_rule(color="grey", strokeDash=[2, 2]).encode(y=alt.datum(0))
    intervals = (
        alt.Chart().mark_rule(color=TYPE_COLORS["wmlp"]).encode(x=x, y=alt.Y("ci_low:Q", title=y_title), y2="ci_high:Q")
    )
    means = (
        alt.Chart()
        .mark_point(filled=True, size=45, color=TYPE_COLORS["wmlp"])
        .encode(x=x, y=alt.Y("mean:Q", title=y_title), tooltip=tooltip)
    )
    return (
        alt.layer(zero, intervals, means, data=inline_data(points))
        .properties(width=width, height=height)
        .facet(column=alt.Column("panel:N", title=None), row=alt.Row("hidden:O", title="hidden units"))
        .resolve_scale(y="independent")
        .properties(
            title=f"WMLP - MLP, {measure.replace('_', ' ')}, paired over repeats: "
            "mean and 95 % t interval (> 0: WMLP better)"
        )
    )


class EnsembleExplorer(StaticViewExplorer):
    """An ensemble-size slider and a hidden-size selector over a table and a chart of MLP
    against WMLP per dataset (``size_table``, ``size_comparison_chart``); its static copy
    is the view it was saved with (``StaticViewExplorer``)."""

    def __init__(self, ensembles: pd.DataFrame, *, ensemble_size: int | None = None, hidden: int | None = None) -> None:
        self.ensembles = ensembles
        sizes = sorted(int(s) for s in ensembles["ensemble_size"].unique())
        hiddens = sorted(int(h) for h in ensembles["hidden"].unique())
        self.size = widgets.SelectionSlider(
            options=sizes,
            value=ensemble_size or sizes[-1],
            description="ensemble size",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.hidden = widgets.Dropdown(
            options=hiddens,
            value=hidden or hiddens[0],
            description="hidden units",
            style={"description_width": "initial"},
        )
        super().__init__([self.size, self.hidden])

    def current_view(self) -> list[dict[str, str]]:
        """The table and chart at the selected sizes, as display bundles."""
        table = size_table(self.ensembles, ensemble_size=self.size.value, hidden=self.hidden.value)
        chart = size_comparison_chart(self.ensembles, ensemble_size=self.size.value, hidden=self.hidden.value)
        return table_and_chart(table, chart)

    def static_note(self) -> str:
        return f"Static view at ensemble size {self.size.value}, hidden {self.hidden.value}"


def ensemble_explorer(
    ensembles: pd.DataFrame, *, ensemble_size: int | None = None, hidden: int | None = None
) -> EnsembleExplorer:
    """ipywidgets over MLP against WMLP per dataset: an ensemble-size slider (the sizes in
    ``ensembles``) and a hidden-size selector; starts at the largest size and the smallest
    hidden size unless told otherwise. See ``EnsembleExplorer``."""
    return EnsembleExplorer(ensembles, ensemble_size=ensemble_size, hidden=hidden)


# --------------------------------------------------------------------------- image files


def save_figures(
    ensembles: pd.DataFrame, folder: str | os.PathLike, *, formats: Sequence[str] = ("svg",)
) -> list[Path]:
    """Figures 1 and 3 as image files (``figure1.svg``, ``figure3.svg``, ...), drawn by
    ``vl-convert-python`` without a browser; returns their paths."""
    return save_charts({"figure1": figure1(ensembles), "figure3": figure3(ensembles)}, folder, formats=formats)
