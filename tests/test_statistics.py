"""WMLP against MLP paired over repeats, checked against numbers worked out by hand."""

import math

import numpy as np
import pandas as pd
import pytest

from asymlib.core.statistics import (
    across_datasets,
    holm,
    improvement_statistics,
    paired_differences,
    summarize_differences,
)

# Student's t with 2 degrees of freedom has a closed form: F(t) = 1/2 + t / (2 sqrt(t^2 + 2)),
# so the two-sided p-value is 1 - |t| / sqrt(t^2 + 2) and the 97.5 % quantile is
# sqrt(2) q / sqrt(1 - q^2) with q = 2 * 0.975 - 1 = 0.95.
T_975_DF2 = math.sqrt(2) * 0.95 / math.sqrt(1 - 0.95**2)


def _row(dataset, metric_name, kind, repeat, size, metric, gain):
    return {
        "dataset": dataset,
        "metric_name": metric_name,
        "hidden": 8,
        "repeat": repeat,
        "type": kind,
        "ensemble_size": size,
        "ensemble_metric": metric,
        "relative_improvement": gain,
        "single_mean": 0.5,
    }


def _table():
    rows = []
    # adult (accuracy), size 2: WMLP - MLP = 0.03, 0.01, 0.04 over three repeats.
    for repeat, (mlp, wmlp) in enumerate([(0.80, 0.83), (0.82, 0.83), (0.81, 0.85)]):
        rows.append(_row("adult", "accuracy", "mlp", repeat, 2, mlp, 1.0))
        rows.append(_row("adult", "accuracy", "wmlp", repeat, 2, wmlp, 1.5 + repeat))
    # california (RMSE, lower is better), size 2: MLP 0.50, WMLP 0.48 in both repeats; a
    # third repeat has only MLP and cannot be paired.
    for repeat in range(2):
        rows.append(_row("california", "rmse", "mlp", repeat, 2, 0.50, 2.0))
        rows.append(_row("california", "rmse", "wmlp", repeat, 2, 0.48, 3.0))
    rows.append(_row("california", "rmse", "mlp", 2, 2, 0.90, 2.0))
    # churn, a single repeat.
    rows.append(_row("churn", "accuracy", "mlp", 0, 4, 0.85, 0.2))
    rows.append(_row("churn", "accuracy", "wmlp", 0, 4, 0.86, 0.9))
    return pd.DataFrame(rows)


def _pick(table, dataset, measure):
    return table[(table["dataset"] == dataset) & (table["measure"] == measure)].iloc[0]


def test_mean_interval_and_p_value_by_hand():
    row = _pick(improvement_statistics(_table()), "adult", "ensemble_metric")
    differences = [0.03, 0.01, 0.04]
    mean = sum(differences) / 3
    std = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    t = mean / (std / math.sqrt(3))
    assert row["n"] == 3
    assert row["mean"] == pytest.approx(0.08 / 3)
    assert row["std"] == pytest.approx(std)
    assert row["ci_low"] == pytest.approx(mean - T_975_DF2 * std / math.sqrt(3))
    assert row["ci_high"] == pytest.approx(mean + T_975_DF2 * std / math.sqrt(3))
    assert row["t"] == pytest.approx(t)
    assert row["p_value"] == pytest.approx(1 - t / math.sqrt(t**2 + 2))
    assert row["baseline_mean"] == pytest.approx(0.81) and row["better_mean"] == pytest.approx((0.83 + 0.83 + 0.85) / 3)


def test_rmse_is_oriented_so_that_positive_means_wmlp_better():
    table = improvement_statistics(_table())
    metric = _pick(table, "california", "ensemble_metric")
    assert metric["mean"] == pytest.approx(0.02)  # WMLP's RMSE is lower
    assert metric["n"] == 2  # the unpaired third repeat is left out
    # Relative improvements are gains already: WMLP - MLP whatever the metric.
    assert _pick(table, "california", "relative_improvement")["mean"] == pytest.approx(1.0)
    assert _pick(table, "adult", "relative_improvement")["mean"] == pytest.approx(1.5)


def test_equal_differences_give_a_zero_width_interval():
    row = _pick(improvement_statistics(_table()), "california", "ensemble_metric")
    assert row["std"] == pytest.approx(0, abs=1e-12)
    assert row["ci_low"] == pytest.approx(0.02) and row["ci_high"] == pytest.approx(0.02)
    assert np.isnan(row["t"]) and np.isnan(row["p_value"])  # no spread: no test


def test_a_single_repeat_has_no_interval_or_p_value():
    row = _pick(improvement_statistics(_table()), "churn", "ensemble_metric")
    assert row["n"] == 1 and row["mean"] == pytest.approx(0.01)
    assert all(np.isnan(row[c]) for c in ["std", "ci_low", "ci_high", "t", "p_value"])
    assert np.isnan(summarize_differences([])["mean"])


def test_paired_differences_keep_both_values():
    paired = paired_differences(_table(), measures=["ensemble_metric"])
    first = paired[(paired["dataset"] == "adult") & (paired["repeat"] == 0)].iloc[0]
    assert first["baseline_value"] == pytest.approx(0.80) and first["better_value"] == pytest.approx(0.83)
    assert first["improvement"] == pytest.approx(0.03)


def test_unknown_measure_is_refused():
    with pytest.raises(ValueError, match="cannot orient"):
        paired_differences(_table(), measures=["members_trained"])


def test_other_confidence_levels():
    wide = _pick(improvement_statistics(_table(), confidence=0.99), "adult", "ensemble_metric")
    narrow = _pick(improvement_statistics(_table(), confidence=0.9), "adult", "ensemble_metric")
    assert wide["ci_high"] - wide["ci_low"] > narrow["ci_high"] - narrow["ci_low"]


def test_holm_by_hand():
    # m = 4 tested (NaN is not a test): sorted 0.01, 0.02, 0.03, 0.2 times 4, 3, 2, 1 gives
    # 0.04, 0.06, 0.06, 0.2; already non-decreasing after the running maximum.
    adjusted = holm(np.array([0.03, np.nan, 0.01, 0.2, 0.02]))
    np.testing.assert_allclose(adjusted, [0.06, np.nan, 0.04, 0.2, 0.06])
    # the running maximum: 0.01 * 3 = 0.03, 0.011 * 2 = 0.022 -> 0.03; capped at 1
    np.testing.assert_allclose(holm(np.array([0.011, 0.01, 0.9])), [0.03, 0.03, 0.9])
    assert holm(np.array([0.6, 0.7]))[0] == 1.0


def test_improvement_statistics_carry_holm_per_measure():
    table = improvement_statistics(_table())
    for _, group in table.groupby("measure"):
        np.testing.assert_allclose(group["p_holm"], holm(group["p_value"].to_numpy()))
    assert (table["significant"] == (table["p_holm"] < 0.05)).all()


def _gains(values_by_dataset):
    rows = []
    for dataset, pairs in values_by_dataset.items():
        for repeat, (mlp, wmlp) in enumerate(pairs):
            rows.append(_row(dataset, "accuracy", "mlp", repeat, 4, 0.8, mlp))
            rows.append(_row(dataset, "accuracy", "wmlp", repeat, 4, 0.8, wmlp))
    return pd.DataFrame(rows)


def test_across_datasets_mean_median_and_bootstrap_by_hand():
    # Per-dataset mean differences: adult 1.0, churn 2.0, otto 9.0 (otto dominates the mean).
    table = _gains(
        {
            "adult": [(1.0, 2.0), (1.0, 2.0)],
            "churn": [(0.0, 1.0), (0.0, 3.0)],
            "otto": [(1.0, 10.0), (1.0, 10.0)],
        }
    )
    row = across_datasets(table, resamples=2000).iloc[0]
    assert row["datasets"] == 3 and row["ensemble_size"] == 4
    assert row["difference_mean"] == pytest.approx(4.0)
    assert row["difference_median"] == pytest.approx(2.0)
    assert row["mlp_mean"] == pytest.approx(2 / 3) and row["wmlp_mean"] == pytest.approx(14 / 3)
    # adult and otto have no spread; churn's mean is 1, 2 or 3: the mean over datasets
    # lies in [11/3, 13/3] and the median in [1, 3] (the extremes have probability 1/4).
    assert 11 / 3 - 1e-9 <= row["mean_ci_low"] <= row["difference_mean"] <= row["mean_ci_high"] <= 13 / 3 + 1e-9
    assert row["mean_ci_low"] == pytest.approx(11 / 3) and row["mean_ci_high"] == pytest.approx(13 / 3)
    assert row["median_ci_low"] == pytest.approx(1.0) and row["median_ci_high"] == pytest.approx(3.0)
    again = across_datasets(table, resamples=2000).iloc[0]
    assert again.equals(row)  # seeded


def test_uncertainty_scores_are_oriented_lower_is_better_and_diversity_as_is():
    from asymlib.core.statistics import paired_differences

    rows = []
    for kind, nll, disagreement in (("mlp", 0.5, 0.1), ("wmlp", 0.4, 0.3)):
        rows.append(
            {
                "dataset": "otto",
                "metric_name": "accuracy",
                "hidden": 64,
                "ensemble_size": 8,
                "repeat": 0,
                "type": kind,
                "ensemble_nll": nll,
                "disagreement": disagreement,
            }
        )
    paired = paired_differences(pd.DataFrame(rows), measures=["ensemble_nll", "disagreement"]).set_index("measure")
    assert paired.loc["ensemble_nll", "improvement"] == pytest.approx(0.1)  # WMLP's lower NLL is better
    assert paired.loc["disagreement", "improvement"] == pytest.approx(0.2)  # WMLP's members differ more
