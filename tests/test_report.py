"""Report helpers: tables and the paper's published points."""

import pandas as pd
import pytest

from asymlib.report import compare_with_paper, improvement_table, paper_reference, summary_table


def _ensembles():
    rows = []
    for repeat, shift in [(0, 0.0), (1, 0.02)]:
        for kind, single in [("mlp", 0.80), ("wmlp", 0.78)]:
            for k, metric in [(2, 0.82), (4, 0.84)]:
                rows.append({
                    "dataset": "adult", "hidden": 64, "repeat": repeat, "type": kind, "metric_name": "accuracy",
                    "ensemble_size": k, "ensemble_metric": metric + shift, "interpolated_metric": 0.5,
                    "single_mean": single + shift,
                    "relative_improvement": 100 * (metric - single) / single,
                })
    return pd.DataFrame(rows)


def test_summary_averages_repeats():
    table = summary_table(_ensembles())
    row = table[(table["type"] == "mlp") & (table["ensemble_size"] == 4)].iloc[0]
    assert row["ensemble_metric"] == pytest.approx(0.85)
    assert row["single_mean"] == pytest.approx(0.81)
    assert row["repeats"] == 2


def test_improvement_table_at_largest_size():
    table = improvement_table(_ensembles())
    assert table.loc[64, "mlp"] == pytest.approx(100 * 0.04 / 0.80)
    assert table.loc[64, "wmlp"] == pytest.approx(100 * 0.06 / 0.78)


def test_paper_points_are_packaged():
    reference = paper_reference("deep_ensemble")
    assert set(reference["dataset"]) == {"california", "churn", "adult", "mnist", "otto"}
    assert set(reference["hidden_dim"]) == {64, 128, 256}
    point = reference[(reference["dataset"] == "california") & (reference["hidden_dim"] == 64)
                      & (reference["series"] == "wmlp_ensemble") & (reference["x"] == 64)]
    assert point["value"].item() == pytest.approx(0.51322)
    assert len(paper_reference("moe")) == 280


def test_compare_with_paper_puts_ours_next_to_theirs():
    table = compare_with_paper(_ensembles())
    row = table[table["type"] == "wmlp"].iloc[0]
    assert row["ours_single"] == pytest.approx(0.79)
    assert row["ours_4"] == pytest.approx(0.85)
    reference = paper_reference()
    theirs = reference[(reference["dataset"] == "adult") & (reference["hidden_dim"] == 64)
                       & (reference["series"] == "wmlp_ensemble") & (reference["x"] == 4)]["value"].item()
    assert row["paper_4"] == pytest.approx(theirs, abs=1e-4)
    assert row["paper_single"] > 0.8  # the paper's adult accuracy is ~0.85
