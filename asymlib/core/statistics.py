"""Is WMLP better than MLP? Paired differences over repeats, with t intervals and tests.

Repeat r of MLP and repeat r of WMLP share their initialisation and data-order seeds (see
``asymlib.sections.deep_ensembles``), so the two types are compared pair by pair: for every dataset,
hidden size and ensemble size, the difference WMLP - MLP is taken within each repeat and
those differences are summarised (mean, standard deviation, 95 % t interval, paired t-test).
``asymlib.reports.figures_deep_ensembles.improvement_chart`` draws the intervals.

Every difference is oriented so that a positive number means *WMLP is better*:

- a test metric (``ensemble_metric``, ``interpolated_metric``, ``single_mean``): accuracy
  ``wmlp - mlp``; RMSE ``mlp - wmlp`` (lower is better);
- a relative improvement (``relative_improvement``, ``interpolated_relative_improvement``):
  ``wmlp - mlp`` for every task, in percentage points, because each type's gain over its own
  mean single model is already oriented that way;
- an uncertainty score (NLL, Brier score, ECE) or a loss barrier between members (lower is
  better on every task): ``mlp - wmlp``;
- a diversity (``disagreement``, ``ambiguity``, ``mean_pairwise_l2``): ``wmlp - mlp``, where
  positive means *WMLP's members differ more*, neither better nor worse in itself.

Any type can stand in for WMLP (``better=``), e.g. ``"smlp"`` or an ablation's variant.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

#: Columns whose values are test metrics: their orientation depends on the metric.
METRIC_COLUMNS = ("ensemble_metric", "interpolated_metric", "single_mean")
#: Columns that are already "higher is better" whatever the metric.
GAIN_COLUMNS = ("relative_improvement", "interpolated_relative_improvement")
#: Scores where lower is better on every task (NLL, Brier score, calibration error, and the
#: loss barriers between members, ``core.barriers``, whose metric barrier is oriented so).
LOWER_IS_BETTER_COLUMNS = (
    "ensemble_nll",
    "ensemble_brier",
    "ensemble_ece",
    "single_nll",
    "single_brier",
    "single_ece",
    "loss_barrier",
    "metric_barrier",
)
#: Measures with no better side (diversity): the difference is taken as it is, positive
#: meaning that ``better`` has more of it.
NEUTRAL_COLUMNS = ("disagreement", "ambiguity", "mean_pairwise_l2")

_GROUP = ["dataset", "metric_name", "hidden", "ensemble_size"]
_LOWER_IS_BETTER = {"rmse"}


def paired_differences(
    ensembles: pd.DataFrame,
    *,
    measures: Sequence[str] = ("ensemble_metric", "relative_improvement"),
    better: str = "wmlp",
    baseline: str = "mlp",
) -> pd.DataFrame:
    """The oriented difference ``better - baseline`` in every repeat that has both types.

    ensembles: the tidy table of ``run_deep_ensembles`` (one row per dataset, hidden,
        repeat, type, ensemble_size).
    measures: columns of ``ensembles`` to compare (see the module docstring for signs).
    Returns one row per (dataset, metric_name, hidden, ensemble_size, repeat, measure) with
    columns ``baseline_value``, ``better_value`` (the two types' values as recorded) and
    ``improvement`` (oriented: positive = ``better`` is better). Repeats where one type is
    missing are left out: an unpaired value says nothing about the difference.
    """
    known = METRIC_COLUMNS + GAIN_COLUMNS + LOWER_IS_BETTER_COLUMNS + NEUTRAL_COLUMNS
    unknown = [m for m in measures if m not in known]
    if unknown:
        raise ValueError(f"cannot orient {unknown}; known measures: {known}")
    rows = ensembles[ensembles["type"].isin([better, baseline])]
    long = rows.melt(
        id_vars=_GROUP + ["repeat", "type"], value_vars=list(measures), var_name="measure", value_name="value"
    )
    wide = long.pivot_table(index=_GROUP + ["repeat", "measure"], columns="type", values="value", aggfunc="mean")
    wide = wide.reindex(columns=[baseline, better]).dropna().reset_index()
    wide = wide.rename(columns={baseline: "baseline_value", better: "better_value"})
    wide.columns.name = None
    lower_is_better = (wide["measure"].isin(METRIC_COLUMNS) & wide["metric_name"].isin(_LOWER_IS_BETTER)) | wide[
        "measure"
    ].isin(LOWER_IS_BETTER_COLUMNS)
    sign = np.where(lower_is_better, -1.0, 1.0)
    wide["improvement"] = sign * (wide["better_value"] - wide["baseline_value"])
    return wide


def summarize_differences(differences: np.ndarray, *, confidence: float = 0.95) -> dict[str, float]:
    """Mean, spread, t interval and two-sided one-sample t-test (H0: mean 0) of differences.

    differences: (n,) paired differences. A one-sample test on them is the paired t-test.
    With n = 1 there is no spread: std, the interval, t and p are NaN. With n >= 2 and all
    differences equal (common for accuracies over 2 repeats), the interval collapses to the
    mean and t, p are NaN: a test with no measured spread would claim p = 0.
    """
    values = np.asarray(differences, dtype=float)
    n = len(values)
    mean = float(values.mean()) if n else np.nan
    summary = {"n": n, "mean": mean}
    summary.update(dict.fromkeys(["std", "ci_low", "ci_high", "t", "p_value"], np.nan))
    if n < 2:
        return summary
    std = float(values.std(ddof=1))
    half_width = stats.t.ppf(0.5 + confidence / 2, df=n - 1) * std / np.sqrt(n)
    summary.update(std=std, ci_low=float(mean - half_width), ci_high=float(mean + half_width))
    if std <= 1e-12 * max(1.0, abs(mean)):
        return summary
    test = stats.ttest_1samp(values, 0.0)
    summary.update(t=float(test.statistic), p_value=float(test.pvalue))
    return summary


def improvement_statistics(
    ensembles: pd.DataFrame,
    *,
    measures: Sequence[str] = ("ensemble_metric", "relative_improvement"),
    confidence: float = 0.95,
    better: str = "wmlp",
    baseline: str = "mlp",
) -> pd.DataFrame:
    """WMLP against MLP per dataset, hidden size and ensemble size, paired over repeats.

    Returns one row per (dataset, metric_name, hidden, ensemble_size, measure) with columns
    n (pairs of repeats), mean, std (ddof 1), ci_low, ci_high (the ``confidence`` t
    interval of the mean), t and p_value (two-sided paired t-test of "no difference"),
    baseline_mean, better_mean (each type's mean value, unoriented). Positive ``mean`` =
    WMLP better (module docstring). With a single repeat (n = 1) std, the interval, t and
    p_value are NaN: one pair says nothing about the spread.
    """
    paired = paired_differences(ensembles, measures=measures, better=better, baseline=baseline)
    keys = _GROUP + ["measure"]
    rows = []
    for key, group in paired.groupby(keys, sort=True):
        rows.append(
            {
                **dict(zip(keys, key)),
                **summarize_differences(group["improvement"].to_numpy(), confidence=confidence),
                "baseline_mean": group["baseline_value"].mean(),
                "better_mean": group["better_value"].mean(),
            }
        )
    columns = keys + ["n", "mean", "std", "ci_low", "ci_high", "t", "p_value", "baseline_mean", "better_mean"]
    table = pd.DataFrame(rows, columns=columns)
    # One family per measure: every (dataset, hidden, ensemble size) tested on it.
    table["p_holm"] = table.groupby("measure")["p_value"].transform(lambda p: holm(p.to_numpy()))
    table["significant"] = table["p_holm"] < 1 - confidence
    table.attrs["title"] = (
        f"{better.upper()} - {baseline.upper()} paired over repeats (positive: {better.upper()} better), "
        f"{confidence:.0%} t intervals, p-values Holm-corrected over each measure's comparisons"
    )
    return table


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjustment of p-values for multiple comparisons (NaN stays NaN).

    The k-th smallest of m p-values is multiplied by (m - k + 1), and the adjusted values
    are made non-decreasing in that order and capped at 1. It controls the chance of any
    false positive among the m tests, without assuming they are independent. (statsmodels
    has it, but is not otherwise a dependency; these few lines are the whole method.)
    """
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    scaled = p[order] * (m - np.arange(m))
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def across_datasets(
    ensembles: pd.DataFrame,
    *,
    ensemble_size: int | None = None,
    measure: str = "relative_improvement",
    better: str = "wmlp",
    baseline: str = "mlp",
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Figure 1's question over all datasets: does ``better`` gain more than ``baseline``?

    For each hidden size, at ``ensemble_size`` (default: the largest), the paired
    difference better - baseline of ``measure`` (percentage points for the relative
    improvement) is averaged over repeats within each dataset, then summarised over
    datasets by its mean and its median (one dataset can dominate a mean). Intervals come
    from a bootstrap that resamples repeats within each dataset (``resamples`` times,
    seeded): the datasets are the question, the repeats the noise.
    Returns one row per hidden size: datasets, the two types' mean and median
    ``measure`` over datasets, and mean / median difference with their intervals.
    """
    size = int(ensembles["ensemble_size"].max()) if ensemble_size is None else ensemble_size
    at_size = ensembles[ensembles["ensemble_size"] == size]
    paired = paired_differences(at_size, measures=[measure], better=better, baseline=baseline)
    generator = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    rows = []
    for hidden, group in paired.groupby("hidden", sort=True):
        per_dataset = [g["improvement"].to_numpy() for _, g in group.groupby("dataset", sort=True)]
        boot = np.stack(
            [d[generator.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1) for d in per_dataset], axis=1
        )  # (resamples, datasets)
        means = np.array([d.mean() for d in per_dataset])
        types = group.groupby("dataset")[["baseline_value", "better_value"]].mean()
        rows.append(
            {
                "hidden": hidden,
                "ensemble_size": size,
                "datasets": len(per_dataset),
                f"{baseline}_mean": types["baseline_value"].mean(),
                f"{better}_mean": types["better_value"].mean(),
                f"{baseline}_median": types["baseline_value"].median(),
                f"{better}_median": types["better_value"].median(),
                "difference_mean": means.mean(),
                "mean_ci_low": np.quantile(boot.mean(axis=1), tail),
                "mean_ci_high": np.quantile(boot.mean(axis=1), 1 - tail),
                "difference_median": np.median(means),
                "median_ci_low": np.quantile(np.median(boot, axis=1), tail),
                "median_ci_high": np.quantile(np.median(boot, axis=1), 1 - tail),
            }
        )
    table = pd.DataFrame(rows)
    table.attrs["title"] = (
        f"{measure} of the ensemble of {size}, {better.upper()} - {baseline.upper()} over datasets "
        f"(mean and median of per-dataset means; {confidence:.0%} bootstrap intervals over repeats)"
    )
    return table
