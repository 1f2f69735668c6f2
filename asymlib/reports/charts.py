"""What the two sections' figures share: colours, inline data, and explorers with a static view.

Charts carry their data inline, so a notebook or its HTML copy renders them from the file
alone. An explorer is a row of ipywidgets controls over a table and a chart; it saves the
view it shows, so that a page with no kernel (the report's HTML copy) still shows it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import altair as alt
import ipywidgets as widgets
import pandas as pd

from .html import chart_html

# Tab10's first colours, fixed so each type looks the same in every chart; these are also
# the types at the paper's settings (``tables.paper_types``).
TYPE_COLORS = {"mlp": "#1f77b4", "wmlp": "#ff7f0e", "smlp": "#9467bd", "syre": "#8c564b"}

# Tab10's first four colours: MoE kinds as the deep-ensemble types, MoIE kinds after them.
KIND_COLORS = {"mlp": "#1f77b4", "wmlp": "#ff7f0e", "imlp": "#2ca02c", "iwmlp": "#d62728"}


def present_scale(mapping: dict[str, object], present: Iterable[str]) -> alt.Scale:
    """A scale over the keys of ``mapping`` (a colour, a dash, a shape per value) that
    ``present`` holds, in ``mapping``'s order: a legend then lists only what the chart draws
    (no ``smlp`` when no SMLP was trained, no paper's series where the paper has no point).
    All of ``mapping`` when none is present."""
    present = set(present)
    domain = [key for key in mapping if key in present] or list(mapping)
    return alt.Scale(domain=domain, range=[mapping[key] for key in domain])


def color_scale(colors: dict[str, str], present: Iterable[str]) -> alt.Scale:
    """``present_scale`` of a colour table (``TYPE_COLORS``, ``KIND_COLORS``): each type or
    kind keeps its colour in every chart, and the legend lists those the chart draws."""
    return present_scale(colors, present)


def interval_tooltip() -> list[alt.Tooltip]:
    """Tooltips for a mean with its interval (columns mean, ci_low, ci_high), 4 decimals."""
    return [alt.Tooltip(f"{column}:Q", format=".4f") for column in ("mean", "ci_low", "ci_high")]


def inline_data(frame: pd.DataFrame) -> alt.InlineData:
    """``frame`` written into the spec itself, whatever data transformer is enabled (a
    "json" transformer would write files beside the notebook, which the HTML copy lacks);
    NaN becomes null."""
    return alt.InlineData(values=json.loads(frame.to_json(orient="records")))


def dash_legend(title: str) -> alt.Legend:
    # Line dashes read best as strokes, not as the points drawn on the lines.
    return alt.Legend(
        title=title, symbolType="stroke", symbolStrokeColor="black", symbolStrokeWidth=1.5, symbolSize=300
    )


def range_slider(name: str, values: Sequence[int], *, label: str) -> alt.Parameter:
    """A Vega-Lite parameter bound to a slider from min(values) to max(values), starting at
    the largest: it lives in the chart, so it works in exported HTML without a kernel."""
    values = sorted(int(v) for v in values)
    return alt.param(
        name=name, value=values[-1], bind=alt.binding_range(min=values[0], max=values[-1], step=1, name=label)
    )


class StaticViewExplorer(widgets.VBox):
    """Controls above a view that redraws whenever one of them changes.

    The view is written into an Output widget as plain display data, so it exists before
    any front end has drawn it: a saved or exported notebook shows the initial state. Its
    ``_repr_mimebundle_`` adds that view as ``text/html``, which is what a page without a
    widget manager (the report's HTML copy) displays, under ``static_note()``.
    Subclasses define ``current_view`` and ``static_note``.
    """

    def __init__(self, controls: Sequence[widgets.ValueWidget]) -> None:
        self.view = widgets.Output()
        super().__init__([widgets.HBox(list(controls)), self.view])
        for control in controls:
            control.observe(self._update, names="value")
        self._update()

    def current_view(self) -> list[dict[str, str]]:
        """The view at the controls' values, as display bundles (text/html, text/plain)."""
        raise NotImplementedError

    def static_note(self) -> str:
        """What the static copy of the view shows, and that the controls need a kernel."""
        raise NotImplementedError

    def _update(self, change: dict | None = None) -> None:
        self.view.outputs = tuple(
            {"output_type": "display_data", "data": bundle, "metadata": {}} for bundle in self.current_view()
        )

    def _repr_mimebundle_(self, **kwargs):
        bundle = super()._repr_mimebundle_(**kwargs)
        note = (
            f"<p><i>{self.static_note()}: the controls need a running kernel (open the notebook in JupyterLab).</i></p>"
        )
        bundle["text/html"] = note + "\n".join(b["text/html"] for b in self.current_view())
        return bundle


def table_and_chart(table: pd.DataFrame, chart: alt.TopLevelMixin) -> list[dict[str, str]]:
    """Display bundles of a titled table (``table.attrs["title"]``) and a chart."""
    caption = f"<p><b>{table.attrs['title']}</b></p>"
    return [
        {"text/html": caption + table.to_html(float_format=lambda v: f"{v:.4g}"), "text/plain": table.to_string()},
        {"text/html": chart_html(chart), "text/plain": f"<chart: {chart.title}>"},
    ]


def save_charts(
    charts: dict[str, alt.TopLevelMixin], folder: str | os.PathLike, *, formats: Sequence[str]
) -> list[Path]:
    """Each chart as ``<folder>/<name>.<format>`` (SVG or PNG), drawn by ``vl-convert-python``
    without a browser, under a temporary name renamed into place; returns the paths."""
    from ..sections.units import replace_atomically

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chart in charts.items():
        for extension in formats:
            path = folder / f"{name}.{extension}"
            replace_atomically(path, lambda partial, chart=chart: chart.save(str(partial)))
            paths.append(path)
    return paths
