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
  mean single model is already oriented that way.
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
    unknown = [m for m in measures if m not in METRIC_COLUMNS + GAIN_COLUMNS]
    if unknown:
        raise ValueError(f"cannot orient {unknown}; known measures: {METRIC_COLUMNS + GAIN_COLUMNS}")
    rows = ensembles[ensembles["type"].isin([better, baseline])]
    long = rows.melt(
        id_vars=_GROUP + ["repeat", "type"], value_vars=list(measures), var_name="measure", value_name="value"
    )
    wide = long.pivot_table(
        index=_GROUP + ["repeat", "measure"], columns="type", values="value", aggfunc="mean"
    )
    wide = wide.reindex(columns=[baseline, better]).dropna().reset_index()
    wide = wide.rename(columns={baseline: "baseline_value", better: "better_value"})
    wide.columns.name = None
    sign = np.where(
        wide["measure"].isin(METRIC_COLUMNS) & wide["metric_name"].isin(_LOWER_IS_BETTER), -1.0, 1.0
    )
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
        rows.append({
            **dict(zip(keys, key)),
            **summarize_differences(group["improvement"].to_numpy(), confidence=confidence),
            "baseline_mean": group["baseline_value"].mean(),
            "better_mean": group["better_value"].mean(),
        })
    columns = keys + ["n", "mean", "std", "ci_low", "ci_high", "t", "p_value", "baseline_mean", "better_mean"]
    table = pd.DataFrame(rows, columns=columns)
    table.attrs["title"] = (
        f"{better.upper()} - {baseline.upper()} paired over repeats (positive: {better.upper()} better), "
        f"{confidence:.0%} t intervals"
    )
    return table

