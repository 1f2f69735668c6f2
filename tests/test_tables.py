"""Report helpers: tables and the paper's published points."""

import pandas as pd
import pytest

from asymlib.reports.tables import (
    compare_with_paper,
    improvement_table,
    out_of_range_table,
    outlier_members,
    paper_reference,
    summary_table,
    verdict,
)


def _ensembles():
    rows = []
    for repeat, shift in [(0, 0.0), (1, 0.02)]:
        for kind, single in [("mlp", 0.80), ("wmlp", 0.78)]:
            for k, metric in [(2, 0.82), (4, 0.84)]:
                rows.append(
                    {
                        "dataset": "adult",
                        "hidden": 64,
                        "repeat": repeat,
                        "type": kind,
                        "metric_name": "accuracy",
                        "ensemble_size": k,
                        "ensemble_metric": metric + shift,
                        "interpolated_metric": 0.5,
                        "single_mean": single + shift,
                        "relative_improvement": 100 * (metric - single) / single,
                    }
                )
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
    point = reference[
        (reference["dataset"] == "california")
        & (reference["hidden_dim"] == 64)
        & (reference["series"] == "wmlp_ensemble")
        & (reference["x"] == 64)
    ]
    assert point["value"].item() == pytest.approx(0.51322)
    assert len(paper_reference("moe")) == 280


def test_compare_with_paper_puts_ours_next_to_theirs():
    table = compare_with_paper(_ensembles())
    row = table[table["type"] == "wmlp"].iloc[0]
    assert row["ours_single"] == pytest.approx(0.79)
    assert row["ours_4"] == pytest.approx(0.85)
    reference = paper_reference()
    theirs = reference[
        (reference["dataset"] == "adult")
        & (reference["hidden_dim"] == 64)
        & (reference["series"] == "wmlp_ensemble")
        & (reference["x"] == 4)
    ]["value"].item()
    assert row["paper_4"] == pytest.approx(theirs, abs=1e-4)
    assert row["paper_single"] > 0.8  # the paper's adult accuracy is ~0.85


def _mixtures():
    rows = []
    for dataset, name, base in [("adult", "accuracy", 0.80), ("california", "rmse", 0.50)]:
        for repeat, shift in [(0, 0.0), (1, 0.02)]:
            for kind in ["mlp", "iwmlp"]:
                for experts, step in [(2, 0.0), (8, 0.04)]:
                    rows.append(
                        {
                            "dataset": dataset,
                            "metric_name": name,
                            "gating": "gumbel",
                            "kind": kind,
                            "experts": experts,
                            "repeat": repeat,
                            "metric": base + shift + step,
                            "epochs": 10,
                            "train_time": 1.0,
                            "parameters": 100 * experts,
                        }
                    )
    return pd.DataFrame(rows)


def test_relative_to_two_experts_is_figure_2s_gain():
    from asymlib.sections.mixtures import add_relative_to_two

    table = add_relative_to_two(_mixtures()).set_index(["dataset", "kind", "experts", "repeat"])
    # baseline: the mean over repeats of the 2-expert model (0.81 accuracy, 0.51 RMSE)
    assert table.loc[("adult", "mlp", 8, 0), "relative_to_2"] == pytest.approx(100 * (0.84 - 0.81) / 0.81)
    assert table.loc[("california", "mlp", 8, 1), "relative_to_2"] == pytest.approx(100 * (0.51 - 0.56) / 0.51)
    assert table.xs(2, level="experts")["relative_to_2"].groupby(level=["dataset", "kind"]).mean().abs().max() < 1e-12


def test_mixture_summary_and_figure_2_table():
    from asymlib.reports.tables import mixture_improvement_table, mixture_summary
    from asymlib.sections.mixtures import add_relative_to_two

    mixtures = add_relative_to_two(_mixtures())
    summary = mixture_summary(mixtures)
    row = summary[(summary["dataset"] == "adult") & (summary["kind"] == "iwmlp") & (summary["experts"] == 8)].iloc[0]
    assert row["metric"] == pytest.approx(0.85) and row["repeats"] == 2
    assert list(summary["kind"].unique()) == ["mlp", "iwmlp"]  # the grid's order, not alphabetical
    table = mixture_improvement_table(mixtures)
    expected = (100 * 0.04 / 0.81 - 100 * 0.04 / 0.51) / 2  # adult gains, california loses RMSE
    assert table.loc[("gumbel", "mlp"), 8] == pytest.approx(expected)


def test_usage_summary_counts_effective_experts():
    from asymlib.reports.tables import usage_summary

    rows = []
    for epoch, weights in [(1, [0.25, 0.25, 0.25, 0.25]), (2, [0.97, 0.01, 0.01, 0.01])]:
        for expert, weight in enumerate(weights):
            rows.append(
                {
                    "dataset": "adult",
                    "gating": "standard",
                    "kind": "mlp",
                    "experts": 4,
                    "repeat": 0,
                    "epoch": epoch,
                    "expert": expert,
                    "usage": weight,
                }
            )
    summary = usage_summary(pd.DataFrame(rows), decimals=6).iloc[0]  # the last epoch counts
    assert 1 < summary["effective_experts"] < 1.2
    assert summary["top_share"] == pytest.approx(0.97)
    assert summary["unused"] == 3  # 0.01 is below a tenth of an equal share (0.025)


def test_compare_with_paper_names_our_split():
    assert set(compare_with_paper(_ensembles())["our_split"]) == {"paper"}  # tables without a split column
    released = _ensembles().assign(split="release")
    assert set(compare_with_paper(released)["our_split"]) == {"release"}


def _models():
    """california, one hidden size, 2 repeats x 4 members per type; WMLP member 3 of repeat 1
    is far off (RMSE 5.0), and every member scores 0.1 better without the out-of-range row."""
    rows = []
    for kind in ("mlp", "wmlp"):
        for repeat in range(2):
            for member, metric in enumerate([0.50, 0.52, 0.51, 0.53]):
                metric = 5.0 if (kind, repeat, member) == ("wmlp", 1, 3) else metric
                rows.append(
                    {
                        "dataset": "california",
                        "split": "paper",
                        "hidden": 64,
                        "type": kind,
                        "repeat": repeat,
                        "metric_name": "rmse",
                        "member": member,
                        "metric": metric,
                        "metric_in_range": metric - 0.1,
                        "test_rows_out_of_range": 1,
                        "worst_test_z": 234.0,
                        "worst_test_feature": "AveOccup",
                        "init_seed": 100 * repeat + member,
                        "order_seed": 7,
                    }
                )
    return pd.DataFrame(rows)


def test_out_of_range_table_by_hand():
    table = out_of_range_table(_models())
    wmlp = table[table["type"] == "wmlp"].iloc[0]
    assert wmlp["test_rows_out_of_range"] == 1 and wmlp["worst_test_feature"] == "AveOccup"
    assert wmlp["metric"] == pytest.approx((2 * 0.515 * 4 - 0.53 + 5.0) / 8)
    assert wmlp["metric_in_range"] == pytest.approx(wmlp["metric"] - 0.1)


def test_outlier_members_beyond_five_mads():
    # WMLP: median 0.515, absolute deviations' median 0.01 -> only 5.0 lies beyond 0.565.
    table = outlier_members(_models())
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["type"], row["repeat"], row["member"], row["init_seed"]) == ("wmlp", 1, 3, 103)
    accuracy = _models().assign(metric_name="accuracy")
    assert outlier_members(accuracy).empty  # for accuracy, only the low side is bad


def test_verdict_table_and_sentence():
    rows = []
    for dataset, gains in {
        "adult": [(1.0, 2.0), (1.0, 2.5), (1.2, 2.0)],
        "otto": [(1.0, 1.5), (1.1, 1.4), (1.0, 1.6)],
    }.items():
        for repeat, (mlp, wmlp) in enumerate(gains):
            for kind, gain in (("mlp", mlp), ("wmlp", wmlp)):
                rows.append(
                    {
                        "dataset": dataset,
                        "hidden": 64,
                        "repeat": repeat,
                        "type": kind,
                        "metric_name": "accuracy",
                        "ensemble_size": 16,
                        "ensemble_metric": 0.8 + gain / 100,
                        "single_mean": 0.8,
                        "interpolated_metric": 0.5,
                        "relative_improvement": gain,
                    }
                )
    table, sentence = verdict(pd.DataFrame(rows))
    assert list(table["dataset"]) == ["adult", "otto"] and (table["repeats"] == 3).all()
    assert table.loc[0, "gain_difference_pp"] == pytest.approx((1.0 + 1.5 + 0.8) / 3)
    assert table.loc[0, "metric_difference"] == pytest.approx((1.0 + 1.5 + 0.8) / 300)
    assert "supports the paper's claim" in sentence and "Over 2 datasets at hidden 64" in sentence

    one_repeat = pd.DataFrame(rows).query("repeat == 0")
    assert "no verdict" in verdict(one_repeat)[1]


def _mixture_rows(differences, *, kinds=("mlp", "wmlp"), metric_name="accuracy", experts=2):
    """A mixtures table: one cell (churn, standard, ``experts``) whose W-Asymmetric kind beats
    the plain one by ``differences[r]`` in repeat r."""
    rows = []
    for repeat, difference in enumerate(differences):
        base = 0.8 + 0.01 * repeat
        for kind, value in ((kinds[0], base), (kinds[1], base + difference)):
            rows.append(
                {
                    "dataset": "churn",
                    "metric_name": metric_name,
                    "gating": "standard",
                    "kind": kind,
                    "experts": experts,
                    "repeat": repeat,
                    "metric": value,
                    "balance_weight": 0.0,
                }
            )
    return pd.DataFrame(rows)


def test_mixture_verdict_pairs_repeats_and_corrects():
    from asymlib.reports.tables import mixture_verdict

    mixtures = pd.concat(
        [
            _mixture_rows([0.020, 0.021, 0.019, 0.020]),  # MoE: WMLP clearly better
            _mixture_rows([0.01, -0.02, 0.015, -0.01], kinds=("imlp", "iwmlp")),  # MoIE: nothing to see
        ]
    )
    table, sentence = mixture_verdict(mixtures)
    moe = table[table["comparison"] == "MoE"].iloc[0]
    moie = table[table["comparison"] == "MoIE"].iloc[0]
    assert moe["n"] == 4 and moe["mean"] == pytest.approx(0.02) and moe["significant"]
    assert not moie["significant"] and moie["ci_low"] < 0 < moie["ci_high"]
    assert moe["p_holm"] == pytest.approx(min(1.0, 2 * moe["p_value"]))  # the smaller of two p-values, doubled
    assert "significantly better in 1 and significantly worse in 0" in sentence


def test_mixture_verdict_orients_rmse_and_says_when_repeats_decide_nothing():
    from asymlib.reports.tables import mixture_verdict

    table, _ = mixture_verdict(_mixture_rows([0.02, 0.03, 0.025], metric_name="rmse"))
    assert table.iloc[0]["mean"] == pytest.approx(-0.025)  # a larger RMSE is worse
    _, sentence = mixture_verdict(_mixture_rows([0.02]))
    assert "no verdict" in sentence
    _, sentence = mixture_verdict(_mixture_rows([0.02, 0.05]))
    assert "With 2 repeats" in sentence


def test_committed_csv_tables_load_as_the_shards_do(tmp_path):
    """A copy of the combined tables without shards (results/verdict/deep_ensembles) loads,
    with the values its shards give (results/fidelity/deep_ensembles has both)."""
    import shutil
    from pathlib import Path

    from asymlib.reports.tables import holds_results, load_mixture_results, load_results

    results = Path(__file__).resolve().parents[1] / "results"
    fidelity = results / "fidelity" / "deep_ensembles"
    copy = tmp_path / "profile" / "deep_ensembles"
    copy.mkdir(parents=True)
    for table in ("models", "ensembles"):
        shutil.copy(fidelity / f"{table}.csv", copy / f"{table}.csv")
    assert holds_results(copy) and not holds_results(copy, "mixtures") and not holds_results(tmp_path)
    from_csv, from_shards = load_results(copy), load_results(fidelity)
    for table in ("models", "ensembles"):
        ours, theirs = getattr(from_csv, table), getattr(from_shards, table)
        keys = [c for c in ("dataset", "hidden", "repeat", "type", "member", "ensemble_size") if c in ours]
        ours, theirs = (t.sort_values(keys).reset_index(drop=True) for t in (ours, theirs))
        pd.testing.assert_frame_equal(ours, theirs[ours.columns], check_dtype=False)
    assert (from_csv.models["diverged_reason"] == "").all()
    # The profile folder above it is found too, as for a run's folder.
    assert len(load_results(copy.parent).ensembles) == len(from_shards.ensembles)
    # The committed verdict run (CSV only) and the fidelity mixtures (shards only) load.
    assert len(load_results(results / "verdict" / "deep_ensembles").ensembles) > 0
    assert len(load_mixture_results(results / "fidelity" / "mixtures").mixtures) > 0
    with pytest.raises(FileNotFoundError, match="no results"):
        load_results(tmp_path / "nothing")
