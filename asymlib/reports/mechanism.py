"""The mechanism, measured: loss barriers between members, and alignment as the baseline.

The paper's reasoning: fewer parameter symmetries -> members joined by low-loss straight
paths -> better weight averages and ensembles. A run with ``barrier_pairs`` and
``alignment`` (``params/mechanism.yaml``) records, per member paired with the first, the
barrier on the straight path between them (``loss_barrier``, ``metric_barrier``), the same
after weight-matching alignment (``..._aligned``), and the weight-averaged network with and
without alignment (``interpolated_metric[_aligned]``). Here those become conditions:

- a type as trained (``mlp``, ``wmlp``, ``smlp``, ``syre``);
- ``<type> aligned``: the same members after alignment. For ``mlp`` and ``syre`` a
  permutation does not change what a member computes, so their aligned ensemble is their
  ensemble (``ensemble_metric`` carried over); for ``wmlp`` and ``smlp`` it would, so theirs
  is left out.

and every comparison is paired over repeats (same seeds), per dataset, with t intervals and
Holm's correction over the datasets (``core.statistics.improvement_statistics``).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ..core.statistics import improvement_statistics, summarize_differences
from .charts import TYPE_COLORS, color_scale, inline_data, interval_tooltip

#: The per-repeat measures of a condition.
MEASURES = ("loss_barrier", "metric_barrier", "interpolated_metric", "ensemble_metric")
#: Types whose members compute the same function after a permutation of their units.
PERMUTATION_EQUIVARIANT = ("mlp", "syre")
#: The questions, as (better, baseline) conditions: what each symmetry breaking buys over
#: MLP; what alignment buys MLPs; and whether alignment gives MLPs what W-Asymmetry gives.
COMPARISONS = (
    ("wmlp", "mlp"),
    ("smlp", "mlp"),
    ("syre", "mlp"),
    ("mlp aligned", "mlp"),
    ("wmlp", "mlp aligned"),
)
_KEYS = ["dataset", "metric_name", "hidden", "repeat", "type"]


def has_barriers(models: pd.DataFrame) -> bool:
    """Whether a run measured loss barriers (``barrier_pairs`` > 0)."""
    return "loss_barrier" in models and bool(models["loss_barrier"].notna().any())


def conditions(models: pd.DataFrame, ensembles: pd.DataFrame, *, ensemble_size: int | None = None) -> pd.DataFrame:
    """One row per (dataset, metric_name, hidden, repeat, condition) with ``MEASURES``.

    models, ensembles: a run's tables with barrier and alignment columns (the types of
    ``ensembles`` only: pass ``tables.paper_types(...)`` to leave ablation variants out). Barriers are the
    mean over the repeat's pairs; ``interpolated_metric`` and ``ensemble_metric`` are at
    ``ensemble_size`` (default: the largest). ``type`` holds the condition (module
    docstring), ``ensemble_size`` the size, so the table reads like an ensembles table.
    """
    missing = [c for c in ("loss_barrier", "metric_barrier") if c not in models]
    if missing:
        raise ValueError(f"models: no {', '.join(missing)} column: the run measured no barriers (barrier_pairs: 0)")
    models = models[models["type"].isin(set(ensembles["type"]))]  # e.g. without an ablation's other WMLPs
    size = int(ensembles["ensemble_size"].max()) if ensemble_size is None else int(ensemble_size)
    at_size = ensembles[ensembles["ensemble_size"] == size]
    frames = []
    for suffix, label in (("", ""), ("_aligned", " aligned")):
        barrier_columns = [f"loss_barrier{suffix}", f"metric_barrier{suffix}"]
        if not set(barrier_columns) <= set(models):
            continue
        barriers = models.groupby(_KEYS, sort=False)[barrier_columns].mean()
        barriers.columns = ["loss_barrier", "metric_barrier"]
        interpolated = f"interpolated_metric{suffix}"
        scores = at_size.set_index(_KEYS)[[c for c in (interpolated, "ensemble_metric") if c in at_size]]
        frame = barriers.join(scores.rename(columns={interpolated: "interpolated_metric"})).reset_index()
        if suffix:
            frame.loc[~frame["type"].isin(PERMUTATION_EQUIVARIANT), "ensemble_metric"] = np.nan
        frame["type"] = frame["type"] + label
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True).assign(ensemble_size=size)
    return table[[*_KEYS, "ensemble_size", *[m for m in MEASURES if m in table]]]


def comparisons(
    models: pd.DataFrame,
    ensembles: pd.DataFrame,
    *,
    pairs=COMPARISONS,
    measures=MEASURES,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Every comparison of ``pairs`` on every measure, per dataset, paired over repeats.

    Returns improvement_statistics' rows with a ``comparison`` column ("wmlp - mlp"):
    positive ``mean`` = the first condition is better (lower barrier, higher accuracy,
    lower RMSE); ``p_holm`` is Holm-corrected over the datasets of that comparison and measure.
    """
    table = conditions(models, ensembles)
    present = set(table["type"])
    rows = []
    for better, baseline in pairs:
        if better not in present or baseline not in present:
            continue
        stats = improvement_statistics(
            table, measures=list(measures), better=better, baseline=baseline, confidence=confidence
        )
        rows.append(stats.assign(comparison=f"{better} - {baseline}"))
    if not rows:
        return pd.DataFrame()
    result = pd.concat(rows, ignore_index=True)
    front = ["comparison", "measure", "dataset", "n", "mean", "ci_low", "ci_high", "p_holm", "significant"]
    return result[front + [c for c in result.columns if c not in front]]


def barrier_levels(models: pd.DataFrame, ensembles: pd.DataFrame, *, confidence: float = 0.95) -> pd.DataFrame:
    """Each condition's mean barrier per dataset over repeats, with its t interval: one row
    per (dataset, metric_name, condition, measure), what ``barrier_chart`` draws."""
    table = conditions(models, ensembles)
    long = table.melt(
        id_vars=["dataset", "metric_name", "type", "repeat"],
        value_vars=["loss_barrier", "metric_barrier"],
        var_name="measure",
    )
    rows = []
    for (dataset, metric, condition, measure), group in long.groupby(
        ["dataset", "metric_name", "type", "measure"], sort=False
    ):
        summary = summarize_differences(group["value"].dropna().to_numpy(), confidence=confidence)
        rows.append(
            {
                "dataset": dataset,
                "metric_name": metric,
                "condition": condition,
                "type": condition.split()[0],
                "aligned": condition.endswith("aligned"),
                "measure": measure,
                "n": summary["n"],
                "mean": summary["mean"],
                "ci_low": summary["ci_low"],
                "ci_high": summary["ci_high"],
            }
        )
    return pd.DataFrame(rows)


def barrier_chart(
    models: pd.DataFrame,
    ensembles: pd.DataFrame,
    *,
    measure: str = "loss_barrier",
    width: int = 120,
    height: int = 130,
) -> alt.FacetChart:
    """The barrier of each type, as trained (filled) and after alignment (open), per
    dataset: means over repeats with 95 % t intervals."""
    if measure not in ("loss_barrier", "metric_barrier"):
        raise ValueError(f"measure: expected 'loss_barrier' or 'metric_barrier', got {measure!r}")
    levels = barrier_levels(models, ensembles)
    levels = levels[levels["measure"] == measure].assign(
        alignment=lambda f: np.where(f["aligned"], "aligned", "as trained")
    )
    types = [t for t in TYPE_COLORS if t in set(levels["type"])]
    title = "loss barrier (test)" if measure == "loss_barrier" else "metric barrier (test; accuracy drop or RMSE rise)"
    x = alt.X("type:N", sort=types, title=None)
    offset = alt.XOffset("alignment:N", sort=["as trained", "aligned"])
    base = alt.Chart(inline_data(levels)).encode(x=x, xOffset=offset)
    points = base.mark_point(size=60, filled=True).encode(
        y=alt.Y("mean:Q", title=title),
        color=alt.Color("type:N", scale=color_scale(TYPE_COLORS, types), legend=None),
        shape=alt.Shape("alignment:N", sort=["as trained", "aligned"], title="members"),
        opacity=alt.condition("datum.aligned", alt.value(0.55), alt.value(1.0)),
        tooltip=["dataset:N", "condition:N", "n:Q", *interval_tooltip()],
    )
    bars = base.mark_rule().encode(y="ci_low:Q", y2="ci_high:Q", color=alt.Color("type:N", legend=None))
    return (
        alt.layer(bars, points)
        .properties(width=width, height=height)
        .facet(column=alt.Column("dataset:N", title=None))
        .resolve_scale(y="independent")
    )


_QUESTIONS = {
    "wmlp - mlp": "Does W-Asymmetry lower the barriers and help interpolation and ensembles?",
    "smlp - mlp": "Does sigma-Asymmetry?",
    "syre - mlp": "Does syre?",
    "mlp aligned - mlp": "What does alignment buy MLPs?",
    "wmlp - mlp aligned": "Does alignment give MLPs what W-Asymmetry gives (WMLP against aligned MLP)?",
}
_MEASURE_WORDS = {
    "loss_barrier": "loss barrier",
    "metric_barrier": "metric barrier",
    "interpolated_metric": "weight average",
    "ensemble_metric": "ensemble",
}


def answers(table: pd.DataFrame) -> list[str]:
    """One line per comparison of ``comparisons``' table: per measure, on how many datasets
    the first condition is significantly better and significantly worse (after Holm), e.g.
    "loss barrier: better on 5 of 5, worse on 0"."""
    lines = []
    for comparison, group in table.groupby("comparison", sort=False):
        parts = []
        for measure, rows in group.groupby("measure", sort=False):
            better = int((rows["significant"] & (rows["mean"] > 0)).sum())
            worse = int((rows["significant"] & (rows["mean"] < 0)).sum())
            parts.append(f"{_MEASURE_WORDS.get(measure, measure)}: better on {better} of {len(rows)}, worse on {worse}")
        question = _QUESTIONS.get(comparison, comparison)
        lines.append(f"{question} {comparison}: " + "; ".join(parts) + ".")
    return lines
