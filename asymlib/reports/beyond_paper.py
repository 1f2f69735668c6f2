"""Beyond the paper: uncertainty, diversity, ablations and sigma-Asymmetric MLPs, in tables and charts.

The paper judges ensembles and mixtures by accuracy and RMSE. Here, for both sections:

- ``uncertainty_table`` / ``uncertainty_chart``: NLL, Brier score and expected calibration
  error of single models and ensembles (``core/uncertainty.py``); ``mixture_uncertainty_table``
  the same for mixtures.
- ``diversity_chart``: how differently the members predict (disagreement, or the ambiguity
  of the ensemble decomposition, ``core/diversity.py``) against the ensemble's gain, one
  point per repeat; ``mixture_diversity_chart`` the same for a mixture's experts against
  its gain over 2 experts.
- ``ablation_table`` / ``ablation_chart``: WMLPs with other numbers of frozen weights per
  unit (``n_fix``) and other scales of the frozen values (``kappa``) against the MLPs of
  the same repeats.
- ``balance_table`` / ``balance_chart``: mixtures trained with a load-balancing loss of
  weight w against the same mixtures without it (w = 0, the paper's).

Every function takes the tidy tables of ``load_results`` / ``load_mixture_results``; the
paper's own figures (``figures_deep_ensembles``, ``figures_mixtures``) take the rows at the
paper's settings (``tables.paper_types``, ``tables.paper_mixtures``).
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ..core.statistics import holm, improvement_statistics, summarize_differences
from .charts import KIND_COLORS, TYPE_COLORS, color_scale, inline_data
from .tables import grid_order, paper_mixtures, paper_types, usage_summary

#: The uncertainty scores, as the tables name them, and how the charts call them.
SCORES = {"nll": "NLL", "brier": "Brier score", "ece": "ECE (15 bins)"}


def _at_largest(ensembles: pd.DataFrame, ensemble_size: int | None) -> tuple[pd.DataFrame, int]:
    size = int(ensembles["ensemble_size"].max()) if ensemble_size is None else int(ensemble_size)
    return ensembles[ensembles["ensemble_size"] == size], size


def _diversity(frame: pd.DataFrame) -> pd.DataFrame:
    """``diversity`` and ``diversity_name``: disagreement (classification) or ambiguity (regression)."""
    regression = frame["metric_name"] == "rmse"
    return frame.assign(
        diversity=np.where(regression, frame["ambiguity"], frame["disagreement"]),
        diversity_name=np.where(regression, "ambiguity", "disagreement"),
    )


def _require(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} needs the columns {missing}, which results made before asymlib recorded them lack; "
            "train them again: `asymlib run PROFILE --force`, or a notebook with a fresh out_dir"
        )


# --------------------------------------------------------------------------- uncertainty


def uncertainty_table(ensembles: pd.DataFrame, *, ensemble_size: int | None = None, decimals: int = 4) -> pd.DataFrame:
    """Single models against the ensemble of ``ensemble_size`` (default: the largest), means
    over repeats, one row per (dataset, hidden, type) of the paper's settings.

    Columns: single_ / ensemble_ nll, brier, ece (brier and ece empty for regression), the
    members' diversity (disagreement or ambiguity) and the test metric's relative
    improvement (%).
    """
    _require(ensembles, ["ensemble_nll", "single_nll", "disagreement"], "uncertainty_table")
    at_size, size = _at_largest(paper_types(ensembles), ensemble_size)
    at_size = _diversity(at_size)
    columns = [f"{which}_{score}" for score in SCORES for which in ("single", "ensemble")]
    table = (
        at_size.groupby(["dataset", "metric_name", "hidden", "type", "diversity_name"], sort=False)[
            columns + ["diversity", "relative_improvement"]
        ]
        .mean()
        .reset_index()
    )
    table = table.sort_values(["dataset", "hidden", "type"], key=grid_order, kind="stable")
    table.attrs["title"] = (
        f"single models against ensembles of {size}: NLL, Brier score, ECE (lower is better), "
        "the members' diversity and the relative improvement (%); means over repeats"
    )
    return table.round(decimals).reset_index(drop=True)


def uncertainty_chart(ensembles: pd.DataFrame, *, width: int = 170, height: int = 130) -> alt.VConcatChart:
    """Each score of the ensemble against its size, one line per type; dashed: the mean
    single model. One row of panels per dataset and hidden size: NLL, Brier score, ECE
    (regression: NLL only)."""
    _require(ensembles, ["ensemble_nll", "single_nll"], "uncertainty_chart")
    main = paper_types(ensembles)
    long = []
    for order, (score, label) in enumerate(SCORES.items()):
        part = (
            main.groupby(["dataset", "metric_name", "hidden", "type", "ensemble_size"], sort=True)
            .agg(value=(f"ensemble_{score}", "mean"), single=(f"single_{score}", "mean"))
            .reset_index()
            .assign(score=label, order=order)
        )
        long.append(part.dropna(subset=["value"]))
    points = pd.concat(long, ignore_index=True)
    points["panel"] = points["dataset"] + " h=" + points["hidden"].astype(str)
    color = alt.Color("type:N", title="type", scale=color_scale(TYPE_COLORS, points["type"]))
    sizes = sorted(points["ensemble_size"].unique().tolist())
    x = alt.X(
        "ensemble_size:Q", title="ensemble size", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=sizes)
    )
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
            color=color,
            tooltip=["type:N", "ensemble_size:Q", "score:N", alt.Tooltip("value:Q", format=".4f")],
        )
    )
    rules = alt.Chart().mark_rule(strokeDash=[4, 3], opacity=0.8).encode(y="mean(single):Q", color=color)
    # One facet chart per dataset: regression rows have NLL only, and a facet grid with
    # empty cells can draw a panel under another's header.
    rows = [
        alt.layer(lines, rules, data=inline_data(part))
        .properties(width=width, height=height)
        .facet(column=alt.Column("score:N", title=panel, sort=alt.EncodingSortField("order", op="min")))
        .resolve_scale(y="independent")
        for panel, part in points.groupby("panel", sort=False)
    ]
    return alt.vconcat(*rows).properties(
        title="Uncertainty of ensembles against their size (lower is better; dashed: mean single model)"
    )


def mixture_uncertainty_table(mixtures: pd.DataFrame, *, decimals: int = 4) -> pd.DataFrame:
    """NLL, Brier score, ECE and the experts' diversity of the mixtures at the paper's
    settings, means over repeats, one row per (dataset, gating, kind, experts)."""
    _require(mixtures, ["nll", "disagreement"], "mixture_uncertainty_table")
    table = (
        _diversity(paper_mixtures(mixtures))
        .groupby(["dataset", "metric_name", "gating", "kind", "experts", "diversity_name"], sort=False)[
            ["metric", *SCORES, "diversity", "relative_to_2"]
        ]
        .mean()
        .reset_index()
    )
    table = table.sort_values(["dataset", "gating", "kind", "experts"], key=grid_order, kind="stable")
    table.attrs["title"] = (
        "mixtures: test metric, NLL, Brier score, ECE (lower is better), the experts' diversity and the "
        "gain (%) over 2 experts; means over repeats"
    )
    return table.round(decimals).reset_index(drop=True)


# --------------------------------------------------------------------------- diversity


def _scatter(
    points: pd.DataFrame, *, y: str, y_title: str, color: alt.Color, title: str, width: int, height: int
) -> alt.FacetChart:
    points = points.dropna(subset=["diversity", y])
    points = points.assign(panel=points["dataset"] + " (" + points["diversity_name"] + ")")
    dots = (
        alt.Chart()
        .mark_point(filled=True, size=40, opacity=0.8)
        .encode(
            x=alt.X("diversity:Q", title="diversity", scale=alt.Scale(zero=False)),
            y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
            color=color,
            tooltip=[c for c in ("type:N", "kind:N", "gating:N", "experts:Q", "repeat:Q") if c.split(":")[0] in points]
            + [alt.Tooltip("diversity:Q", format=".4g"), alt.Tooltip(f"{y}:Q", format=".3f")],
        )
    )
    return (
        alt.layer(dots, data=inline_data(points))
        .properties(width=width, height=height)
        .facet(column=alt.Column("panel:N", title=None))
        .resolve_scale(x="independent", y="independent")
        .properties(title=title)
    )


def diversity_chart(
    ensembles: pd.DataFrame, *, ensemble_size: int | None = None, width: int = 170, height: int = 150
) -> alt.FacetChart:
    """Diversity of the members against the ensemble's relative improvement (%), one point
    per (hidden, type, repeat), at ``ensemble_size`` (default: the largest)."""
    _require(ensembles, ["disagreement", "ambiguity"], "diversity_chart")
    at_size, size = _at_largest(paper_types(ensembles), ensemble_size)
    color = alt.Color("type:N", title="type", scale=color_scale(TYPE_COLORS, at_size["type"]))
    return _scatter(
        _diversity(at_size),
        y="relative_improvement",
        y_title="relative improvement (%)",
        color=color,
        title=f"Diversity of the members against the gain of the ensemble of {size} (one point per repeat)",
        width=width,
        height=height,
    )


def mixture_diversity_chart(mixtures: pd.DataFrame, *, width: int = 170, height: int = 150) -> alt.FacetChart:
    """Diversity of each mixture's experts against its gain over the same model with 2
    experts (%), one point per (gating, kind, experts > 2, repeat)."""
    _require(mixtures, ["disagreement", "ambiguity"], "mixture_diversity_chart")
    points = _diversity(paper_mixtures(mixtures))
    points = points[points["experts"] > 2]
    color = alt.Color("kind:N", title="experts' kind", scale=color_scale(KIND_COLORS, points["kind"]))
    return _scatter(
        points,
        y="relative_to_2",
        y_title="gain over 2 experts (%)",
        color=color,
        title="Diversity of a mixture's experts against its gain over 2 experts (one point per repeat)",
        width=width,
        height=height,
    )


# --------------------------------------------------------------------------- ablations


def ablation_variants(ensembles: pd.DataFrame) -> pd.DataFrame:
    """The WMLP types of a table with their (n_fix, kappa): one row per type."""
    if "n_fix" not in ensembles:
        return pd.DataFrame(columns=["type", "n_fix", "kappa"])
    wasym = ensembles[ensembles["type"].str.startswith("wmlp")]
    return wasym[["type", "n_fix", "kappa"]].drop_duplicates().sort_values(["n_fix", "kappa"]).reset_index(drop=True)


def has_ablations(ensembles: pd.DataFrame) -> bool:
    """Whether the table holds WMLPs at more than one (n_fix, kappa)."""
    return len(ablation_variants(ensembles)) > 1


def ablation_table(
    ensembles: pd.DataFrame,
    *,
    measures: tuple[str, ...] = ("relative_improvement", "ensemble_metric"),
    ensemble_size: int | None = None,
) -> pd.DataFrame:
    """Every WMLP variant against the MLPs of the same repeats, at ``ensemble_size``
    (default: the largest): one row per (dataset, hidden, n_fix, kappa, measure) with the
    paired mean difference (positive: the variant is better), its 95 % t interval, the
    paired t-test's p-value, Holm-corrected over every row of that measure, and both
    types' means."""
    at_size, size = _at_largest(ensembles, ensemble_size)
    parts = []
    for variant in ablation_variants(at_size).itertuples():
        stats = improvement_statistics(at_size, measures=list(measures), better=variant.type, baseline="mlp")
        parts.append(stats.assign(n_fix=variant.n_fix, kappa=variant.kappa))
    table = pd.concat(parts, ignore_index=True)
    # One family per measure over every variant, not per variant as each call above did.
    table["p_holm"] = table.groupby("measure")["p_value"].transform(lambda p: holm(p.to_numpy()))
    table["significant"] = table["p_holm"] < 0.05
    columns = [
        "dataset",
        "metric_name",
        "hidden",
        "n_fix",
        "kappa",
        "measure",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "p_value",
        "p_holm",
        "significant",
        "baseline_mean",
        "better_mean",
    ]
    table = table[columns].rename(
        columns={"mean": "variant_minus_mlp", "baseline_mean": "mlp_mean", "better_mean": "variant_mean"}
    )
    table.attrs["title"] = (
        f"WMLP variants (n_fix frozen weights per unit after the first layer, frozen values N(0, kappa^2)) "
        f"- MLP, ensembles of {size}, paired over repeats (positive: the variant better); Holm over each measure"
    )
    return table.sort_values(
        ["measure", "dataset", "hidden", "n_fix", "kappa"], key=grid_order, kind="stable"
    ).reset_index(drop=True)


def ablation_chart(
    ensembles: pd.DataFrame,
    *,
    axis: str = "n_fix",
    measure: str = "relative_improvement",
    ensemble_size: int | None = None,
    width: int = 170,
    height: int = 140,
) -> alt.FacetChart:
    """``measure`` of the ensembles of ``ensemble_size`` against ``axis`` ("n_fix" or
    "kappa"), one line per value of the other axis, means and +-1 std over repeats; the
    grey dashed rule is the MLP's. One panel per dataset and hidden size."""
    if axis not in ("n_fix", "kappa"):
        raise ValueError(f"axis must be 'n_fix' or 'kappa', got {axis!r}")
    other = "kappa" if axis == "n_fix" else "n_fix"
    at_size, size = _at_largest(ensembles, ensemble_size)
    keys = ["dataset", "metric_name", "hidden"]
    wasym = at_size[at_size["type"].str.startswith("wmlp")]
    points = wasym.groupby(keys + ["n_fix", "kappa"], sort=True)[measure].agg(["mean", "std"]).reset_index()
    points["low"], points["high"] = points["mean"] - points["std"].fillna(0), points["mean"] + points["std"].fillna(0)
    mlp = at_size[at_size["type"] == "mlp"].groupby(keys)[measure].mean().rename("mlp").reset_index()
    points = points.merge(mlp, on=keys, how="left")
    points["panel"] = points["dataset"] + " (" + points["metric_name"] + ") h=" + points["hidden"].astype(str)
    points[other] = points[other].astype(str)
    x_title = {"n_fix": "frozen weights per unit (n_fix)", "kappa": "scale of the frozen values (kappa)"}[axis]
    x = alt.X(
        f"{axis}:Q",
        title=x_title,
        scale=alt.Scale(type="log", base=2),
        axis=alt.Axis(values=sorted(wasym[axis].unique().tolist())),
    )
    color = alt.Color(f"{other}:N", title=other)
    title = "relative improvement (%)" if measure == "relative_improvement" else measure.replace("_", " ")
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("mean:Q", title=title, scale=alt.Scale(zero=False)),
            color=color,
            tooltip=[
                f"{axis}:Q",
                f"{other}:N",
                alt.Tooltip("mean:Q", format=".4f"),
                alt.Tooltip("std:Q", format=".4f"),
            ],
        )
    )
    bars = alt.Chart().mark_rule(opacity=0.6).encode(x=x, y="low:Q", y2="high:Q", color=color)
    rule = (
        alt.Chart()
        .mark_rule(color="grey", strokeDash=[4, 3])
        .encode(y="mean(mlp):Q", tooltip=[alt.Tooltip("mean(mlp):Q", title="MLP", format=".4f")])
    )
    return (
        alt.layer(bars, lines, rule, data=inline_data(points))
        .properties(width=width, height=height)
        .facet(column=alt.Column("panel:N", title=None))
        .resolve_scale(y="independent")
        .properties(
            title=f"WMLP ensembles of {size}: {title} against {axis} (grey dashed: MLP; bars: +-1 std over repeats)"
        )
    )


# --------------------------------------------------------------------------- load balancing


def has_balance_ablation(mixtures: pd.DataFrame) -> bool:
    """Whether the mixtures were trained with more than one load-balancing weight."""
    return "balance_weight" in mixtures and mixtures["balance_weight"].nunique() > 1


def balance_table(mixtures: pd.DataFrame, usage: pd.DataFrame) -> pd.DataFrame:
    """Each load-balancing weight w > 0 against w = 0 for the same model and repeats: one
    row per (dataset, gating, kind, experts, w) with the paired difference of the test
    metric (positive: w better), its 95 % t interval and p-value, both means, and the
    effective number of experts with and without the loss."""
    keys = ["dataset", "metric_name", "gating", "kind", "experts"]
    effective = _effective_experts(usage)
    rows = []
    for key, group in mixtures.groupby(keys, sort=False):
        base = group[group["balance_weight"] == 0].set_index("repeat")["metric"]
        for weight, part in group[group["balance_weight"] > 0].groupby("balance_weight"):
            paired = (
                part.set_index("repeat")["metric"].to_frame("with").join(base.rename("without"), how="inner").dropna()
            )
            sign = -1.0 if key[1] == "rmse" else 1.0
            summary = summarize_differences(sign * (paired["with"] - paired["without"]).to_numpy())
            rows.append(
                {
                    **dict(zip(keys, key)),
                    "balance_weight": weight,
                    "n": summary["n"],
                    "with_minus_without": summary["mean"],
                    "ci_low": summary["ci_low"],
                    "ci_high": summary["ci_high"],
                    "p_value": summary["p_value"],
                    "metric_without": paired["without"].mean(),
                    "metric_with": paired["with"].mean(),
                    "effective_experts_without": effective.get((*[key[i] for i in (0, 2, 3, 4)], 0.0), np.nan),
                    "effective_experts_with": effective.get((*[key[i] for i in (0, 2, 3, 4)], float(weight)), np.nan),
                }
            )
    table = pd.DataFrame(rows)
    table.attrs["title"] = (
        "mixtures with a load-balancing loss of weight w against the same mixtures without it, paired over repeats "
        "(positive: w better); effective experts = exp(entropy) of the mean gate weights"
    )
    return table.round(4)


def _effective_experts(usage: pd.DataFrame) -> dict[tuple, float]:
    """{(dataset, gating, kind, experts, balance_weight): effective experts} (``usage_summary``)."""
    if "balance_weight" not in usage:
        usage = usage.assign(balance_weight=0.0)
    found = {}
    for weight, part in usage.groupby("balance_weight"):
        for row in usage_summary(part.drop(columns="balance_weight")).itertuples():
            found[(row.dataset, row.gating, row.kind, row.experts, float(weight))] = row.effective_experts
    return found


def balance_chart(mixtures: pd.DataFrame, *, width: int = 150, height: int = 130) -> alt.FacetChart:
    """Test metric against the load-balancing weight, one line per kind, means and +-1 std
    over repeats; one panel per dataset, gating and number of experts."""
    keys = ["dataset", "metric_name", "gating", "kind", "experts", "balance_weight"]
    points = mixtures.groupby(keys, sort=True)["metric"].agg(["mean", "std"]).reset_index()
    points["low"], points["high"] = points["mean"] - points["std"].fillna(0), points["mean"] + points["std"].fillna(0)
    points["panel"] = (
        points["dataset"]
        + " ("
        + points["metric_name"]
        + ") "
        + points["gating"]
        + " K="
        + points["experts"].astype(str)
    )
    points["weight"] = points["balance_weight"].map(lambda w: f"{w:g}")
    weights = [f"{w:g}" for w in sorted(mixtures["balance_weight"].unique())]
    x = alt.X("weight:O", title="load-balancing weight", sort=weights)
    color = alt.Color("kind:N", title="experts' kind", scale=color_scale(KIND_COLORS, points["kind"]))
    lines = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("mean:Q", title="test metric", scale=alt.Scale(zero=False)),
            color=color,
            tooltip=["kind:N", "weight:O", alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("std:Q", format=".4f")],
        )
    )
    bars = alt.Chart().mark_rule(opacity=0.6).encode(x=x, y="low:Q", y2="high:Q", color=color)
    return (
        alt.layer(bars, lines, data=inline_data(points))
        .properties(width=width, height=height)
        .facet(column=alt.Column("panel:N", title=None))
        .resolve_scale(y="independent")
        .properties(
            title="Mixtures: test metric against the weight of the load-balancing loss (bars: +-1 std over repeats)"
        )
    )
