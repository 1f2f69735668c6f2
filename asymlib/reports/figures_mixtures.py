"""The paper's mixture figures in Altair, each with the paper's own points beside ours.

The figures take the tidy ``mixtures`` table of ``run_mixtures`` /
``load_mixture_results`` (one row per dataset, gating, kind, experts, repeat) and the
paper's Figure 4 points (``paper_figures.csv``, section "moe"):

- ``figure2``: Figure 2, gain over the same model with 2 experts against the number of
  experts, mean over datasets, a panel per gating.
- ``figure4``: Figure 4, test metric against the number of experts per dataset and
  gating, +-1 std over repeats.
- ``experts_slider_chart``: the four kinds per dataset at a number of experts chosen with
  a slider in the chart.
- ``mixture_explorer``: the same as ipywidgets (experts slider, gating selector).
- ``save_figures``: Figures 2 and 4 as image files (``asymlib figures``).

Series are told apart by ``source``: "ours" or "paper"; mixture kinds by colour
(``charts.KIND_COLORS``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import altair as alt
import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..core.datasets import dataset_order
from ..core.mixtures import GATINGS, MIXTURE_KINDS
from ..core.statistics import summarize_differences
from ..sections.mixtures import add_relative_to_two
from .charts import (
    KIND_COLORS,
    StaticViewExplorer,
    color_scale,
    dash_legend,
    inline_data,
    range_slider,
    save_charts,
    table_and_chart,
)
from .tables import grid_order, paper_reference

_PER_MIXTURE = ["dataset", "metric_name", "gating", "kind", "experts"]


# --------------------------------------------------------------------------- one dataset's notebook


def mixture_chart(
    mixtures: pd.DataFrame,
    *,
    metric: str = "metric",
    width: int = 220,
    height: int = 160,
) -> alt.FacetChart:
    """Test metric against the number of experts, one line per kind, means over repeats
    with +-1 standard deviation bars (Figure 4); ``metric="relative_to_2"`` gives Figure 2.

    Panels: one row per dataset (its metric in the header), one column per gating; y scales
    are independent.
    """
    points = (
        mixtures.groupby(_PER_MIXTURE, sort=True)
        .agg(value=(metric, "mean"), std=(metric, "std"), repeats=("repeat", "nunique"))
        .reset_index()
    )
    points["std"] = points["std"].fillna(0.0)
    points["low"], points["high"] = points["value"] - points["std"], points["value"] + points["std"]
    points["panel"] = points["dataset"] + " (" + points["metric_name"] + ")"

    experts = sorted(points["experts"].unique().tolist())
    color = alt.Color(
        "kind:N",
        title="experts' kind",
        scale=color_scale(KIND_COLORS, points["kind"]),
    )
    x = alt.X(
        "experts:Q", title="number of experts", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=experts)
    )
    y_title = "gain over 2 experts (%)" if metric == "relative_to_2" else "test metric"
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=color,
            tooltip=[
                "kind:N",
                "experts:Q",
                alt.Tooltip("value:Q", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
                "repeats:Q",
            ],
        )
    )
    spread = alt.Chart().mark_rule(opacity=0.6).encode(x=x, y="low:Q", y2="high:Q", color=color)
    return (
        alt.layer(lines, spread, data=inline_data(points))
        .properties(width=width, height=height)
        .facet(
            row=alt.Row("panel:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left")),
            column=alt.Column("gating:N", title="gating"),
        )
        .resolve_scale(y="independent")
    )


# --------------------------------------------------------------------------- shared by the figures


def _kind_color(kinds: Sequence[str]) -> alt.Color:
    # Every layer encodes colour the same way: one with legend=None would drop the
    # merged legend of all of them. The legend lists the kinds the chart draws.
    return alt.Color(
        "kind:N",
        scale=color_scale(KIND_COLORS, kinds),
        legend=alt.Legend(title="experts' kind", symbolOpacity=1),  # not the bands' faint colour
    )


def _experts_axis(experts: Sequence[int]) -> alt.X:
    return alt.X(
        "experts:Q",
        title="number of experts",
        scale=alt.Scale(type="log", base=2),
        axis=alt.Axis(values=sorted(int(e) for e in experts)),
    )


def paper_mixture_points(*, datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """The paper's Figure 4 (``paper_figures.csv``, section "moe") as one row per point.

    Returns columns dataset, metric_name, gating, kind, experts, metric (the test metric)
    and relative_to_2 (%, Figure 2's measure computed from those points as
    ``add_relative_to_two`` does for ours: the gain over the same model with 2 experts,
    RMSE flipped so that positive is better). datasets: keep only these (default: all five).
    """
    reference = paper_reference("moe").rename(
        columns={"series": "kind", "x": "experts", "metric": "metric_name", "value": "metric"}
    )
    if datasets is not None:
        reference = reference[reference["dataset"].isin(list(datasets))]
    points = add_relative_to_two(reference[_PER_MIXTURE + ["metric"]])
    return points.sort_values(_PER_MIXTURE, key=grid_order).reset_index(drop=True)


def _ours_per_mixture(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Means over repeats: one row per (dataset, metric_name, gating, kind, experts), with
    metric, metric_std (NaN with one repeat), relative_to_2 (recomputed from ``mixtures``)
    and repeats."""
    return (
        add_relative_to_two(mixtures)
        .groupby(_PER_MIXTURE, sort=True)
        .agg(
            metric=("metric", "mean"),
            metric_std=("metric", "std"),
            relative_to_2=("relative_to_2", "mean"),
            repeats=("repeat", "nunique"),
        )
        .reset_index()
    )


# --------------------------------------------------------------------------- Figure 2


def figure2_data(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Figure 2's series: gain (%) over the same model with 2 experts per (gating, kind, experts).

    Columns: source, gating, kind, experts, relative_to_2, datasets (how many were
    averaged). Sources: "ours" (means over repeats, then over our datasets) and "paper"
    (its Figure 4 points turned into the same measure, mean over the same datasets as ours,
    at every number of experts it has and our gatings: each gating is a panel).
    """
    per_dataset = _ours_per_mixture(mixtures)
    datasets = sorted(per_dataset["dataset"].unique())
    paper = paper_mixture_points(datasets=datasets)
    paper = paper[paper["gating"].isin(per_dataset["gating"].unique())]
    series = []
    for source, points in [("ours", per_dataset), ("paper", paper)]:
        averaged = points.groupby(["gating", "kind", "experts"]).agg(
            relative_to_2=("relative_to_2", "mean"), datasets=("dataset", "nunique")
        )
        series.append(averaged.reset_index().assign(source=source))
    table = pd.concat(series, ignore_index=True)
    columns = ["source", "gating", "kind", "experts", "relative_to_2", "datasets"]
    return table[columns].sort_values(columns[:4], key=grid_order).reset_index(drop=True)


def figure2_table(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Figure 2 in numbers at our numbers of experts: index (gating, kind), columns
    ``ours_<k>`` and ``paper_<k>`` per number of experts k (%, means over repeats, then over
    our datasets). The title is in ``.attrs["title"]``."""
    data = figure2_data(mixtures)
    ours_experts = sorted(data.loc[data["source"] == "ours", "experts"].unique())
    data = data[data["experts"].isin(ours_experts)]
    wide = data.pivot_table(index=["gating", "kind"], columns=["experts", "source"], values="relative_to_2")
    order = [(k, source) for k in ours_experts for source in ("ours", "paper") if (k, source) in wide.columns]
    table = wide[order]
    table.columns = [f"{source}_{k}" for k, source in order]
    table = table.loc[sorted(table.index, key=lambda key: (GATINGS.index(key[0]), MIXTURE_KINDS.index(key[1])))]
    datasets = mixtures["dataset"].nunique()
    table.attrs["title"] = (
        f"gain (%) of mixtures over the same model with 2 experts, mean over {datasets} "
        f"dataset{'s' if datasets != 1 else ''}: ours and the paper's"
    )
    return table


def figure2(mixtures: pd.DataFrame, *, width: int = 260, height: int = 200) -> alt.FacetChart:
    """Figure 2: gain (%) of a mixture over the same model with 2 experts (positive =
    better; RMSE flipped) against the number of experts, mean over repeats and then over
    datasets; one panel per gating, one line per kind of experts.

    Ours: solid lines, circles. The paper: its Figure 4 points turned into the same measure
    over the same datasets, dashed lines with diamonds (up to 128 experts).
    """
    data = figure2_data(mixtures)
    color = _kind_color(data["kind"].unique())
    x = _experts_axis(data["experts"].unique())
    y = alt.Y("relative_to_2:Q", title="gain over 2 experts (%)")
    dash = alt.StrokeDash(
        "source:N", legend=dash_legend("source"), scale=alt.Scale(domain=["ours", "paper"], range=[[1, 0], [5, 3]])
    )
    shape = alt.Shape(
        "source:N", title="source", scale=alt.Scale(domain=["ours", "paper"], range=["circle", "diamond"])
    )
    tooltip = [
        "source:N",
        "gating:N",
        "kind:N",
        "experts:Q",
        alt.Tooltip("relative_to_2:Q", format=".3f", title="gain over 2 experts (%)"),
        alt.Tooltip("datasets:Q", title="datasets averaged"),
    ]
    zero = alt.Chart().mark_rule(color="grey", strokeDash=[2, 2]).encode(y=alt.datum(0))
    curves = alt.Chart().mark_line().encode(x=x, y=y, color=color, strokeDash=dash, detail="source:N")
    points = alt.Chart().mark_point(filled=True, size=35).encode(x=x, y=y, color=color, shape=shape, tooltip=tooltip)
    return (
        alt.layer(zero, curves, points, data=inline_data(data))
        .properties(width=width, height=height)
        .facet(column=alt.Column("gating:N", title="gating", sort=list(GATINGS)))
        .properties(title="Figure 2: gain of mixtures over the same model with 2 experts, mean over datasets")
    )


# --------------------------------------------------------------------------- Figure 4


def figure4_data(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Figure 4's points, ours and the paper's, for the datasets we ran.

    Columns: source ("ours" | "paper"), panel ("<dataset> (<metric>)"), dataset,
    metric_name, gating, kind, experts, value (test metric), low, high (our mean +-1 std
    over repeats; equal to value with one repeat or for the paper), repeats (NaN for the
    paper). The paper's points cover every number of experts it has, at our gatings (each
    gating is a column of panels: none holds the paper's points alone).
    """
    ours = _ours_per_mixture(mixtures)
    spread = ours["metric_std"].fillna(0.0)
    ours = ours.assign(source="ours", value=ours["metric"], low=ours["metric"] - spread, high=ours["metric"] + spread)
    paper = paper_mixture_points(datasets=sorted(ours["dataset"].unique()))
    paper = paper[paper["gating"].isin(ours["gating"].unique())]
    paper = paper.assign(source="paper", value=paper["metric"], low=paper["metric"], high=paper["metric"])
    table = pd.concat([ours, paper], ignore_index=True)
    table["panel"] = table["dataset"] + " (" + table["metric_name"] + ")"
    columns = [
        "source",
        "panel",
        "dataset",
        "metric_name",
        "gating",
        "kind",
        "experts",
        "value",
        "low",
        "high",
        "repeats",
    ]
    return (
        table[columns]
        .sort_values(["source", "dataset", "gating", "kind", "experts"], key=grid_order)
        .reset_index(drop=True)
    )


def figure4(mixtures: pd.DataFrame, *, width: int = 220, height: int = 150) -> alt.FacetChart:
    """Figure 4: test metric of mixtures against the number of experts, one panel per
    dataset (rows) and gating (columns), one line per kind of experts.

    Ours: mean over repeats (solid, circles) with a +-1 std band. The paper's points:
    dashed lines with diamonds. y scales are independent (accuracy and RMSE differ by dataset).
    """
    data = figure4_data(mixtures)
    color = _kind_color(data["kind"].unique())
    x = _experts_axis(data["experts"].unique())
    y = alt.Y("value:Q", title="test metric", scale=alt.Scale(zero=False))
    dash = alt.StrokeDash(
        "source:N", legend=dash_legend("source"), scale=alt.Scale(domain=["ours", "paper"], range=[[1, 0], [6, 3]])
    )
    shape = alt.Shape(
        "source:N", title="source", scale=alt.Scale(domain=["ours", "paper"], range=["circle", "diamond"])
    )
    tooltip = [
        "source:N",
        "dataset:N",
        "gating:N",
        "kind:N",
        "experts:Q",
        alt.Tooltip("value:Q", format=".4f"),
        alt.Tooltip("low:Q", format=".4f", title="mean - std"),
        alt.Tooltip("high:Q", format=".4f", title="mean + std"),
        "repeats:Q",
    ]
    band = (
        alt.Chart()
        .mark_area(opacity=0.15)
        .encode(x=x, y="low:Q", y2="high:Q", color=color)
        .transform_filter(alt.datum.source == "ours")
    )
    curves = alt.Chart().mark_line().encode(x=x, y=y, color=color, strokeDash=dash, detail="source:N")
    points = alt.Chart().mark_point(filled=True, size=30).encode(x=x, y=y, color=color, shape=shape, tooltip=tooltip)
    return (
        alt.layer(band, curves, points, data=inline_data(data))
        .properties(width=width, height=height)
        .facet(
            row=alt.Row(
                "panel:N",
                title=None,
                sort=sorted(data["panel"].unique(), key=lambda p: dataset_order(p.split()[0])),
                header=alt.Header(labelAngle=0, labelAlign="left"),
            ),
            column=alt.Column("gating:N", title="gating", sort=list(GATINGS)),
        )
        .resolve_scale(y="independent")
        .properties(title="Figure 4: test metric of mixtures against the number of experts, ours and the paper's")
    )


# --------------------------------------------------------------------------- the kinds at one number of experts


def kinds_data(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Test metric per (source, dataset, gating, kind, experts): ours (mean over repeats,
    +-1 std) and the paper's at our gatings, kinds and numbers of experts only, so that both
    sources answer the same question at every position of a slider.

    Columns: source, panel, dataset, metric_name, gating, kind, experts, metric, low, high,
    relative_to_2.
    """
    ours = _ours_per_mixture(mixtures)
    spread = ours["metric_std"].fillna(0.0)
    ours = ours.assign(source="ours", low=ours["metric"] - spread, high=ours["metric"] + spread)
    paper = paper_mixture_points(datasets=sorted(ours["dataset"].unique()))
    paper = paper[
        paper["gating"].isin(ours["gating"].unique())
        & paper["kind"].isin(ours["kind"].unique())
        & paper["experts"].isin(ours["experts"].unique())
    ]
    paper = paper.assign(source="paper", low=paper["metric"], high=paper["metric"])
    table = pd.concat([ours, paper], ignore_index=True)
    table["panel"] = table["dataset"] + " (" + table["metric_name"] + ")"
    columns = [
        "source",
        "panel",
        "dataset",
        "metric_name",
        "gating",
        "kind",
        "experts",
        "metric",
        "low",
        "high",
        "relative_to_2",
    ]
    return (
        table[columns]
        .sort_values(["source", "dataset", "gating", "kind", "experts"], key=grid_order)
        .reset_index(drop=True)
    )


def _kinds_chart(
    data: pd.DataFrame, *, experts: alt.Parameter | None, title: str, width: int, height: int
) -> alt.FacetChart:
    """Our test metric (points, +-1 std rules) and the paper's (black ticks) per kind, a
    panel per dataset (columns) and gating (rows), independent y scales. With ``experts``,
    each kind shows the largest number of experts not above the parameter's value;
    without, ``data`` must hold one number of experts."""
    x = alt.X("kind:N", title=None, sort=list(MIXTURE_KINDS), axis=alt.Axis(labelAngle=0))
    color = _kind_color(data["kind"].unique())
    y = alt.Y("metric:Q", title="test metric", scale=alt.Scale(zero=False))
    tooltip = [
        "source:N",
        "dataset:N",
        "gating:N",
        "kind:N",
        "experts:Q",
        alt.Tooltip("metric:Q", format=".4f", title="test metric"),
        alt.Tooltip("low:Q", format=".4f", title="mean - std"),
        alt.Tooltip("high:Q", format=".4f", title="mean + std"),
        alt.Tooltip("relative_to_2:Q", format=".3f", title="gain over 2 experts (%)"),
    ]
    ours = alt.datum.source == "ours"
    spread = (
        alt.Chart().mark_rule(strokeWidth=2).encode(x=x, y="low:Q", y2="high:Q", color=color).transform_filter(ours)
    )
    means = (
        alt.Chart()
        .mark_point(filled=True, size=70, opacity=1)
        .encode(x=x, y=y, color=color, tooltip=tooltip)
        .transform_filter(ours)
    )
    # The title says what the ticks are: a tick mark has no legend symbol of its own.
    paper = (
        alt.Chart()
        .mark_tick(color="black", thickness=2, size=14)
        .encode(x=x, y=y, tooltip=tooltip)
        .transform_filter(alt.datum.source == "paper")
    )
    layered = alt.layer(spread, means, paper, data=inline_data(data))
    if experts is not None:
        # The slider moves in steps of 1: each kind shows the largest number of experts it
        # has that does not exceed the slider, so every position shows something.
        layered = (
            layered.transform_filter(alt.datum.experts <= experts)
            .transform_joinaggregate(shown_experts="max(experts)", groupby=["source", "dataset", "gating", "kind"])
            .transform_filter(alt.datum.experts == alt.datum.shown_experts)
        )
    datasets = sorted(data["panel"].unique(), key=lambda p: dataset_order(p.split()[0]))
    chart = (
        layered.properties(width=width, height=height)
        .facet(
            column=alt.Column("panel:N", title=None, sort=datasets),
            row=alt.Row("gating:N", title="gating", sort=list(GATINGS)),
        )
        .resolve_scale(y="independent")
    )
    if experts is not None:
        chart = chart.add_params(experts)
    return chart.properties(title=title)


def experts_slider_chart(mixtures: pd.DataFrame, *, width: int = 120, height: int = 160) -> alt.FacetChart:
    """The four kinds of experts per dataset and gating at the number of experts picked
    with a slider in the chart (a Vega-Lite parameter named "experts": it works in the
    exported HTML without a kernel).

    Points: our test metric, mean over repeats, with +-1 std; black ticks: the paper's
    Figure 4 at the same number of experts and gating.
    """
    data = kinds_data(mixtures)
    experts = range_slider("experts", data["experts"].unique(), label="number of experts (largest trained up to) ")
    return _kinds_chart(
        data,
        experts=experts,
        width=width,
        height=height,
        title="The kinds of experts at the number of experts chosen with the slider (points: ours +-1 std, ticks: paper)",
    )


def experts_comparison_chart(
    mixtures: pd.DataFrame, *, experts: int, gating: str | None = None, width: int = 120, height: int = 160
) -> alt.FacetChart:
    """``experts_slider_chart`` at one fixed number of experts (and gating, if given)."""
    data = kinds_data(mixtures)
    data = data[data["experts"] == experts]
    if gating is not None:
        data = data[data["gating"] == gating]
    return _kinds_chart(
        data,
        experts=None,
        width=width,
        height=height,
        title=f"MLP against WMLP and IMLP against IWMLP, {experts} experts (points: ours +-1 std, ticks: paper)",
    )


#: The pairs the mixture explorer compares: (W-Asymmetric kind, its ordinary counterpart).
KIND_PAIRS = (("wmlp", "mlp"), ("iwmlp", "imlp"))


def experts_table(mixtures: pd.DataFrame, *, experts: int, gating: str) -> pd.DataFrame:
    """The four kinds per dataset at one number of experts and gating.

    Columns: metric (name); mlp, wmlp, imlp, iwmlp (test metric, means over repeats);
    paper_mlp ... paper_iwmlp (the paper's Figure 4, if it has this point); then per pair of
    ``KIND_PAIRS``, e.g. wmlp_better (mean paired WMLP - MLP test metric over repeats,
    > 0: WMLP better, RMSE flipped) and wmlp_p_value (paired t-test; NaN with one repeat).
    Index: dataset, in the paper's order.
    """
    chosen = mixtures[(mixtures["experts"] == experts) & (mixtures["gating"] == gating)]
    keys = ["dataset", "metric_name"]
    ours = _ours_per_mixture(chosen)
    paper = paper_mixture_points(datasets=sorted(ours["dataset"].unique()))
    paper = paper[(paper["experts"] == experts) & (paper["gating"] == gating)]
    parts = [
        ours.pivot_table(index=keys, columns="kind", values="metric"),
        paper.pivot_table(index=keys, columns="kind", values="metric").add_prefix("paper_"),
    ]
    per_repeat = chosen.pivot_table(index=keys + ["repeat"], columns="kind", values="metric")
    columns = [*MIXTURE_KINDS, *(f"paper_{kind}" for kind in MIXTURE_KINDS)]
    for better, baseline in KIND_PAIRS:
        columns += [f"{better}_better", f"{better}_p_value"]
        if better not in per_repeat or baseline not in per_repeat:
            continue
        pairs = per_repeat[[better, baseline]].dropna()
        sign = np.where(pairs.index.get_level_values("metric_name") == "rmse", -1.0, 1.0)
        # Rounded, so that equal metrics give 0, not a rounding error (nor a spurious t-test).
        differences = pd.Series(np.round(sign * (pairs[better] - pairs[baseline]), 12), index=pairs.index)
        summary = differences.groupby(keys).apply(lambda d: pd.Series(summarize_differences(d.to_numpy())))
        summary = summary.unstack()[["mean", "p_value"]]
        parts.append(summary.set_axis([f"{better}_better", f"{better}_p_value"], axis=1))
    table = parts[0].join(parts[1:], how="outer").reindex(columns=columns)
    table = table.reset_index("metric_name").rename(columns={"metric_name": "metric"})
    table = table.sort_index(key=grid_order)
    table.columns.name = None
    table.attrs["title"] = (
        f"{experts} experts, {gating} gating: test metrics, the paper's, and W-Asymmetric minus ordinary "
        "experts paired over repeats (> 0: W-Asymmetric better)"
    )
    return table


class MixtureExplorer(StaticViewExplorer):
    """A number-of-experts slider and a gating selector over a table and a chart of the four
    kinds of experts per dataset (``experts_table``, ``experts_comparison_chart``); its
    static copy is the view it was saved with (``StaticViewExplorer``)."""

    def __init__(self, mixtures: pd.DataFrame, *, experts: int | None = None, gating: str | None = None) -> None:
        self.mixtures = mixtures
        counts = sorted(int(k) for k in mixtures["experts"].unique())
        gatings = sorted(mixtures["gating"].unique(), key=list(GATINGS).index)
        self.experts = widgets.SelectionSlider(
            options=counts,
            value=experts or counts[-1],
            description="number of experts",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.gating = widgets.Dropdown(
            options=gatings, value=gating or gatings[0], description="gating", style={"description_width": "initial"}
        )
        super().__init__([self.experts, self.gating])

    def current_view(self) -> list[dict[str, str]]:
        """The table and chart at the selected number of experts and gating, as display bundles."""
        table = experts_table(self.mixtures, experts=self.experts.value, gating=self.gating.value)
        chart = experts_comparison_chart(self.mixtures, experts=self.experts.value, gating=self.gating.value)
        return table_and_chart(table, chart)

    def static_note(self) -> str:
        return f"Static view at {self.experts.value} experts, {self.gating.value} gating"


def mixture_explorer(
    mixtures: pd.DataFrame, *, experts: int | None = None, gating: str | None = None
) -> MixtureExplorer:
    """ipywidgets over the four kinds of experts per dataset: a number-of-experts slider
    (the numbers in ``mixtures``) and a gating selector; starts at the largest number of
    experts and the first gating (standard) unless told otherwise. See ``MixtureExplorer``."""
    return MixtureExplorer(mixtures, experts=experts, gating=gating)


# --------------------------------------------------------------------------- image files


def save_figures(mixtures: pd.DataFrame, folder: str | os.PathLike, *, formats: Sequence[str] = ("svg",)) -> list[Path]:
    """Figures 2 and 4 as image files (``figure2.svg``, ``figure4.svg``, ...), drawn by
    ``vl-convert-python`` without a browser; returns their paths."""
    return save_charts({"figure2": figure2(mixtures), "figure4": figure4(mixtures)}, folder, formats=formats)
