"""The figures carry our results and the paper's points, inline and aggregated."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from asymlib.core.statistics import improvement_statistics
from asymlib.reports import charts, figures_mixtures
from asymlib.reports import figures_deep_ensembles as figures
from asymlib.reports.tables import PAPER_FIGURES

SIZES = (2, 4)


def _ensembles() -> pd.DataFrame:
    """Two datasets (one RMSE, one accuracy), hidden 64, sizes 2 and 4, two repeats."""
    rows = []
    for dataset, metric_name, single, step in [("california", "rmse", 0.60, -0.02), ("adult", "accuracy", 0.80, 0.01)]:
        for repeat in range(2):
            for kind, extra in [("mlp", 0.0), ("wmlp", 1.0)]:
                for k in SIZES:
                    metric = single + step * (extra + k / 2) + 0.001 * repeat
                    gain = 100 * abs(metric - single) / single
                    rows.append(
                        {
                            "dataset": dataset,
                            "metric_name": metric_name,
                            "hidden": 64,
                            "repeat": repeat,
                            "type": kind,
                            "ensemble_size": k,
                            "ensemble_metric": metric,
                            "interpolated_metric": single,
                            "single_mean": single,
                            "relative_improvement": gain,
                        }
                    )
    return pd.DataFrame(rows)


def _values(chart) -> list[dict]:
    """Every data row the chart's spec carries (Altair moves inline data to "datasets")."""
    spec = chart.to_dict()
    rows = [row for values in spec.get("datasets", {}).values() for row in values]
    return rows + spec.get("data", {}).get("values", [])


def _paper_gain(dataset: str, hidden: int, kind: str, size: int) -> float:
    """Figure 1's measure from the paper's Figure 3 points, worked out from the CSV."""
    reference = pd.read_csv(PAPER_FIGURES)
    rows = reference[(reference["dataset"] == dataset) & (reference["hidden_dim"] == hidden) & (reference["x"] == size)]
    ensemble = rows[rows["series"] == f"{kind}_ensemble"]["value"].item()
    single = rows[rows["series"] == f"{kind}_single_mean"]["value"].item()
    gain = (single - ensemble) if rows["metric"].iloc[0] == "rmse" else (ensemble - single)
    return 100 * gain / single


def test_figure1_has_ours_and_both_paper_series():
    # Hidden 64 and 256: the paper's points at those two, not at its 128, which we did not train.
    ensembles = pd.concat([_ensembles(), _ensembles().assign(hidden=256)], ignore_index=True)
    rows = _values(figures.figure1(ensembles))
    by_source = {}
    for row in rows:
        by_source.setdefault(row["source"], []).append(row)
    assert set(by_source) == {"ours", "paper (Figure 1)", "paper (Figure 3)"}

    printed = {(r["hidden"], r["type"]): r["relative_improvement"] for r in by_source["paper (Figure 1)"]}
    assert printed == {
        (64, "mlp"): 1.21,
        (64, "wmlp"): 2.12,
        (256, "mlp"): 1.59,
        (256, "wmlp"): 2.98,
    }
    assert {r["ensemble_size"] for r in by_source["paper (Figure 1)"]} == {64}

    # The paper's Figure 3 as relative improvements, averaged over *our* datasets.
    derived = {(r["hidden"], r["type"], r["ensemble_size"]): r for r in by_source["paper (Figure 3)"]}
    expected = (_paper_gain("california", 256, "wmlp", 16) + _paper_gain("adult", 256, "wmlp", 16)) / 2
    assert derived[(256, "wmlp", 16)]["relative_improvement"] == pytest.approx(expected)
    assert derived[(256, "wmlp", 16)]["datasets"] == 2

    # Ours: mean over repeats, then over datasets.
    ours = {(r["type"], r["ensemble_size"]): r["relative_improvement"] for r in by_source["ours"] if r["hidden"] == 64}
    at_4 = ensembles[(ensembles["type"] == "wmlp") & (ensembles["ensemble_size"] == 4)]
    assert ours[("wmlp", 4)] == pytest.approx(at_4.groupby("dataset")["relative_improvement"].mean().mean())


def test_paper_figure1_matches_its_figure3_at_64():
    # The printed Figure 1 is the mean over datasets of the Figure 3 points: the CSV agrees.
    points = figures.paper_points()
    at_64 = points[points["ensemble_size"] == 64].groupby(["hidden", "type"])["relative_improvement"].mean()
    for hidden, by_type in figures.PAPER_FIGURE1.items():
        for kind, value in by_type.items():
            assert at_64[(hidden, kind)] == pytest.approx(value, abs=0.006)


def test_figure3_has_our_bands_and_the_papers_points():
    ensembles = _ensembles()
    rows = _values(figures.figure3(ensembles))
    assert len(rows) < 500
    paper = [r for r in rows if r["source"] == "paper"]
    assert {r["dataset"] for r in rows} == {"california", "adult"}
    point = next(
        r
        for r in paper
        if r["series"] == "paper: ensemble"
        and r["dataset"] == "california"
        and r["hidden"] == 64
        and r["type"] == "wmlp"
        and r["ensemble_size"] == 64
    )
    assert point["value"] == pytest.approx(0.51322)  # the CSV's point
    singles = [r for r in paper if r["series"] == "paper: mean single model"]
    assert len(singles) == 2 * 2  # one per dataset and type, at our one hidden size

    ours = next(
        r
        for r in rows
        if r["series"] == "ours: ensemble"
        and r["dataset"] == "adult"
        and r["type"] == "mlp"
        and r["ensemble_size"] == 4
    )
    values = ensembles[
        (ensembles["dataset"] == "adult") & (ensembles["type"] == "mlp") & (ensembles["ensemble_size"] == 4)
    ]["ensemble_metric"]
    assert ours["value"] == pytest.approx(values.mean())
    assert ours["low"] == pytest.approx(values.mean() - values.std())
    assert ours["high"] == pytest.approx(values.mean() + values.std())
    assert ours["repeats"] == 2


def _encodings(spec, channel: str) -> list[dict]:
    """Every ``channel`` encoding ("color", "strokeDash", ...) anywhere in a chart's spec."""
    found = []
    if isinstance(spec, dict):
        for key, value in spec.items():
            if key == "encoding" and isinstance(value, dict) and channel in value:
                found.append(value[channel])
            found += _encodings(value, channel)
    elif isinstance(spec, list):
        for item in spec:
            found += _encodings(item, channel)
    return found


def _color_domains(chart) -> list[list[str]]:
    return [e["scale"]["domain"] for e in _encodings(chart.to_dict(), "color") if "domain" in e.get("scale", {})]


def test_legends_list_only_the_types_a_chart_draws():
    # No SMLP trained: no chart's colour scale (nor its legend) lists smlp.
    ensembles = _ensembles()
    for chart in (
        figures.figure1(ensembles),
        figures.figure3(ensembles),
        figures.size_slider_chart(ensembles),
        figures.ensemble_chart(ensembles),
    ):
        domains = _color_domains(chart)
        assert domains and all(domain == ["mlp", "wmlp"] for domain in domains), domains
    # With SMLPs, they are there, in the fixed order and colour.
    with_smlp = pd.concat([ensembles, ensembles[ensembles["type"] == "mlp"].assign(type="smlp")], ignore_index=True)
    scale = next(
        e["scale"] for e in _encodings(figures.figure3(with_smlp).to_dict(), "color") if "domain" in e.get("scale", {})
    )
    assert scale["domain"] == ["mlp", "wmlp", "smlp"]
    assert scale["range"] == [charts.TYPE_COLORS[t] for t in ("mlp", "wmlp", "smlp")]
    # The mixtures' kinds likewise: MoE kinds only, no MoIE in the legend.
    moe = _mixtures()
    moe = moe[moe["kind"].isin(["mlp", "wmlp"])]
    for chart in (figures_mixtures.mixture_chart(moe), figures_mixtures.experts_slider_chart(moe)):
        domains = _color_domains(chart)
        assert domains and all(domain == ["mlp", "wmlp"] for domain in domains), domains


def test_figures_1_and_3_facet_only_the_hidden_sizes_we_trained():
    # The paper has hidden 64, 128 and 256; we trained 64 only: one panel, not three (two
    # of them with the paper's points alone). Nor a legend entry for a series that has no point.
    ensembles = _ensembles()
    for chart in (figures.figure1(ensembles), figures.figure3(ensembles)):
        assert {r["hidden"] for r in _values(chart)} == {64}
        assert chart.to_dict()["facet"]["column"]["field"] == "hidden"
    # At a hidden size the paper does not have, only ours, and the legend says so.
    small = _ensembles().assign(hidden=8)
    rows = _values(figures.figure1(small))
    assert {r["source"] for r in rows} == {"ours"} and {r["hidden"] for r in rows} == {8}
    (dash,) = {json.dumps(e["scale"]) for e in _encodings(figures.figure1(small).to_dict(), "strokeDash")}
    assert json.loads(dash)["domain"] == ["ours"]
    assert not _encodings(figures.figure1(small).to_dict(), "shape")  # no diamonds of the printed Figure 1
    series = {json.dumps(e["scale"]["domain"]) for e in _encodings(figures.figure3(small).to_dict(), "strokeDash")}
    assert series == {json.dumps(["ours: ensemble", "ours: mean single model"])}


def test_figure3_with_one_repeat_has_no_band_width():
    one = _ensembles()
    rows = _values(figures.figure3(one[one["repeat"] == 0]))
    ours = [r for r in rows if r["series"] == "ours: ensemble"]
    assert ours and all(r["low"] == r["value"] == r["high"] for r in ours)


def test_slider_chart_binds_the_ensemble_size():
    spec = figures.size_slider_chart(_ensembles()).to_dict()
    (param,) = spec["params"]
    assert param["bind"]["input"] == "range"
    assert (param["bind"]["min"], param["bind"]["max"], param["value"]) == (2, 4, 4)
    # Each panel filters on the parameter: the largest trained size up to the slider's value.
    filters = [t["filter"] for t in spec["spec"]["transform"] if "filter" in t]
    assert f"(datum.ensemble_size <= {param['name']})" in filters
    rows = _values(figures.size_slider_chart(_ensembles()))
    # The paper's points only at our hidden and ensemble sizes, so every position compares like with like.
    paper = [r for r in rows if r["source"] == "paper"]
    assert {(r["hidden"], r["ensemble_size"]) for r in paper} == {(64, 2), (64, 4)}
    california = next(
        r for r in paper if r["dataset"] == "california" and r["type"] == "mlp" and r["ensemble_size"] == 4
    )
    assert california["relative_improvement"] == pytest.approx(_paper_gain("california", 64, "mlp", 4))


def test_size_table_compares_types_at_one_size():
    table = figures.size_table(_ensembles(), ensemble_size=4, hidden=64)
    assert list(table.index) == ["adult", "california"]
    row = table.loc["california"]
    assert row["metric"] == "rmse"
    # california steps by -0.02 (lower RMSE), WMLP one step further: WMLP better by 0.02.
    assert row["wmlp_better"] == pytest.approx(0.02)
    assert row["mlp"] - row["wmlp"] == pytest.approx(0.02)
    assert row["paper_wmlp_gain"] == pytest.approx(_paper_gain("california", 64, "wmlp", 4))


def test_explorer_updates_its_view_and_keeps_a_static_copy():
    explorer = figures.ensemble_explorer(_ensembles())
    assert list(explorer.size.options) == list(SIZES) and explorer.size.value == 4
    assert list(explorer.hidden.options) == [64]
    first = explorer.view.outputs
    assert "ensembles of 4" in first[0]["data"]["text/html"]
    explorer.size.value = 2
    assert "ensembles of 2" in explorer.view.outputs[0]["data"]["text/html"]
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "Static view at ensemble size 2" in bundle["text/html"] and "altair-viz-" in bundle["text/html"]


def test_improvement_chart_carries_the_intervals():
    statistics = improvement_statistics(_ensembles())
    rows = _values(figures.improvement_chart(statistics, measure="ensemble_metric"))
    assert {r["measure"] for r in rows} == {"ensemble_metric"}
    california = next(r for r in rows if r["dataset"] == "california" and r["ensemble_size"] == 2)
    # Both repeats differ by the same 0.02 (RMSE lower for WMLP): a zero-width interval at +0.02.
    assert california["mean"] == pytest.approx(0.02)
    assert california["ci_low"] == pytest.approx(0.02) and california["ci_high"] == pytest.approx(0.02)


def test_charts_stay_small():
    ensembles = _ensembles()
    charts = [
        figures.figure1(ensembles),
        figures.figure3(ensembles),
        figures.size_slider_chart(ensembles),
        figures.improvement_chart(improvement_statistics(ensembles)),
    ]
    for chart in charts:
        assert len(_values(chart)) < 500
        assert len(json.dumps(chart.to_dict())) < 200_000


# --------------------------------------------------------------------------- mixtures

EXPERTS = (2, 4)


def _mixtures() -> pd.DataFrame:
    """Two datasets (one RMSE, one accuracy), both gatings, all four kinds, 2 and 4 experts,
    two repeats; no relative_to_2 column: the figures work it out themselves."""
    rows = []
    for dataset, metric_name, base, step in [("california", "rmse", 0.60, -0.02), ("adult", "accuracy", 0.80, 0.01)]:
        for gating_index, gating in enumerate(["standard", "gumbel"]):
            for kind_index, kind in enumerate(["mlp", "wmlp", "imlp", "iwmlp"]):
                for experts in EXPERTS:
                    for repeat in range(2):
                        metric = base + step * (kind_index + gating_index + experts / 2) + 0.004 * repeat
                        rows.append(
                            {
                                "dataset": dataset,
                                "gating": gating,
                                "kind": kind,
                                "experts": experts,
                                "repeat": repeat,
                                "metric_name": metric_name,
                                "metric": metric,
                            }
                        )
    return pd.DataFrame(rows)


def _paper_moe(dataset: str, gating: str, kind: str, experts: int) -> float:
    reference = pd.read_csv(PAPER_FIGURES)
    row = reference[
        (reference["section"] == "moe")
        & (reference["dataset"] == dataset)
        & (reference["gating"] == gating)
        & (reference["series"] == kind)
        & (reference["x"] == experts)
    ]
    return row["value"].item()


def _paper_gain_over_2(dataset: str, gating: str, kind: str, experts: int) -> float:
    """Figure 2's measure from the paper's Figure 4 points, worked out from the CSV."""
    two, more = _paper_moe(dataset, gating, kind, 2), _paper_moe(dataset, gating, kind, experts)
    gain = (two - more) if dataset == "california" else (more - two)
    return 100 * gain / two


def _by_source(rows: list[dict]) -> dict[str, list[dict]]:
    grouped = {}
    for row in rows:
        grouped.setdefault(row["source"], []).append(row)
    return grouped


def test_figure2_averages_gains_over_repeats_then_datasets():
    mixtures = _mixtures()
    by_source = _by_source(_values(figures_mixtures.figure2(mixtures)))
    assert set(by_source) == {"ours", "paper"}
    ours = {(r["gating"], r["kind"], r["experts"]): r for r in by_source["ours"]}
    assert len(ours) == 2 * 4 * 2

    # By hand, gumbel WMLP: california (RMSE) 2 experts: 0.60 - 0.02 * (1 + 1 + 1) = 0.54 and
    # 0.544 -> mean 0.542; 4 experts: 0.60 - 0.02 * 4 = 0.52, 0.524 -> 0.522: gain (0.542 - 0.522) / 0.542.
    # adult (accuracy) 2 experts: 0.80 + 0.01 * 3 = 0.83, 0.834 -> 0.832; 4 experts 0.842: gain 0.01 / 0.832.
    california, adult = 100 * 0.020 / 0.542, 100 * 0.010 / 0.832
    assert ours[("gumbel", "wmlp", 4)]["relative_to_2"] == pytest.approx((california + adult) / 2)
    assert ours[("gumbel", "wmlp", 4)]["datasets"] == 2
    assert ours[("standard", "mlp", 2)]["relative_to_2"] == pytest.approx(0.0, abs=1e-12)
    # Standard MLP: california 0.58 / 0.584 -> 0.56 / 0.564; adult 0.81 / 0.814 -> 0.82 / 0.824.
    expected = (100 * 0.02 / 0.582 + 100 * 0.01 / 0.812) / 2
    assert ours[("standard", "mlp", 4)]["relative_to_2"] == pytest.approx(expected)

    # The paper's Figure 4 turned into the same measure, over our datasets, at all its sizes.
    paper = {(r["gating"], r["kind"], r["experts"]): r for r in by_source["paper"]}
    assert {r["experts"] for r in by_source["paper"]} == {2, 4, 8, 16, 32, 64, 128}
    expected = (
        _paper_gain_over_2("california", "gumbel", "iwmlp", 128) + _paper_gain_over_2("adult", "gumbel", "iwmlp", 128)
    ) / 2
    assert paper[("gumbel", "iwmlp", 128)]["relative_to_2"] == pytest.approx(expected)
    assert paper[("gumbel", "iwmlp", 128)]["datasets"] == 2


def test_figure2_table_puts_ours_beside_the_paper_at_our_sizes():
    table = figures_mixtures.figure2_table(_mixtures())
    assert list(table.columns) == ["ours_2", "paper_2", "ours_4", "paper_4"]
    assert list(table.index)[:2] == [("standard", "mlp"), ("standard", "wmlp")] and len(table) == 8
    expected = (
        _paper_gain_over_2("california", "standard", "wmlp", 4) + _paper_gain_over_2("adult", "standard", "wmlp", 4)
    ) / 2
    assert table.loc[("standard", "wmlp"), "paper_4"] == pytest.approx(expected)


def test_figure4_has_our_bands_and_the_papers_points():
    mixtures = _mixtures()
    rows = _values(figures_mixtures.figure4(mixtures))
    assert len(rows) < 500
    by_source = _by_source(rows)
    assert {r["dataset"] for r in rows} == {"california", "adult"}
    paper = {(r["dataset"], r["gating"], r["kind"], r["experts"]): r for r in by_source["paper"]}
    assert len(paper) == 2 * 2 * 4 * 7  # our datasets, every gating, kind and size of the paper
    assert paper[("adult", "gumbel", "iwmlp", 64)]["value"] == pytest.approx(_paper_moe("adult", "gumbel", "iwmlp", 64))
    assert paper[("california", "standard", "mlp", 8)]["value"] == pytest.approx(0.52717)  # the CSV's point

    ours = next(
        r
        for r in by_source["ours"]
        if (r["dataset"], r["gating"], r["kind"], r["experts"]) == ("adult", "standard", "imlp", 4)
    )
    values = pd.Series([0.80 + 0.01 * 4, 0.80 + 0.01 * 4 + 0.004])
    assert ours["value"] == pytest.approx(values.mean())
    assert (ours["low"], ours["high"]) == pytest.approx((values.mean() - values.std(), values.mean() + values.std()))
    assert ours["repeats"] == 2 and ours["panel"] == "adult (accuracy)"


def test_experts_slider_binds_the_number_of_experts():
    chart = figures_mixtures.experts_slider_chart(_mixtures())
    spec = chart.to_dict()
    (param,) = spec["params"]
    assert param["name"] == "experts" and param["bind"]["input"] == "range"
    assert (param["bind"]["min"], param["bind"]["max"], param["value"]) == (2, 4, 4)
    filters = [t["filter"] for t in spec["spec"]["transform"] if "filter" in t]
    assert "(datum.experts <= experts)" in filters
    # The paper's points only at our gatings and numbers of experts.
    paper = [r for r in _values(chart) if r["source"] == "paper"]
    assert {r["experts"] for r in paper} == {2, 4} and len(paper) == 2 * 2 * 4 * 2
    point = next(
        r for r in paper if (r["dataset"], r["gating"], r["kind"], r["experts"]) == ("california", "gumbel", "wmlp", 4)
    )
    assert point["metric"] == pytest.approx(_paper_moe("california", "gumbel", "wmlp", 4))


def test_experts_table_pairs_the_w_asymmetric_kinds_with_their_counterparts():
    table = figures_mixtures.experts_table(_mixtures(), experts=4, gating="standard")
    assert list(table.index) == ["california", "adult"]  # the paper's order
    california = table.loc["california"]
    assert california["metric"] == "rmse"
    # Each kind is one step of -0.02 (RMSE) further than the previous: WMLP beats MLP by 0.02.
    assert california["wmlp_better"] == pytest.approx(0.02) and california["iwmlp_better"] == pytest.approx(0.02)
    assert california["mlp"] == pytest.approx(0.60 - 0.02 * 2 + 0.002)
    assert california["paper_iwmlp"] == pytest.approx(_paper_moe("california", "standard", "iwmlp", 4))
    assert table.loc["adult", "wmlp_better"] == pytest.approx(0.01)


def test_mixture_explorer_updates_its_view_and_keeps_a_static_copy():
    explorer = figures_mixtures.mixture_explorer(_mixtures())
    assert list(explorer.experts.options) == list(EXPERTS) and explorer.experts.value == 4
    assert list(explorer.gating.options) == ["standard", "gumbel"] and explorer.gating.value == "standard"
    assert "4 experts, standard gating" in explorer.view.outputs[0]["data"]["text/html"]
    explorer.experts.value = 2
    explorer.gating.value = "gumbel"
    assert "2 experts, gumbel gating" in explorer.view.outputs[0]["data"]["text/html"]
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "Static view at 2 experts, gumbel gating" in bundle["text/html"] and "altair-viz-" in bundle["text/html"]


def test_mixture_charts_stay_small():
    mixtures = _mixtures()
    for chart in [
        figures_mixtures.figure2(mixtures),
        figures_mixtures.figure4(mixtures),
        figures_mixtures.experts_slider_chart(mixtures),
    ]:
        assert len(_values(chart)) < 500
        assert len(json.dumps(chart.to_dict())) < 200_000


def test_figures_command_saves_figures_1_and_3_as_svg(tmp_path):
    from asymlib.execution.cli import main
    from asymlib.sections.deep_ensembles import DEEP_ENSEMBLE_TABLES, deep_ensemble_unit
    from asymlib.sections.units import ShardStore

    ensembles = _ensembles()
    section = tmp_path / "deep_ensembles"
    store = ShardStore(section, tables=DEEP_ENSEMBLE_TABLES)
    for (dataset, hidden, repeat), rows in ensembles.groupby(["dataset", "hidden", "repeat"]):  # a shard per unit
        store.save(deep_ensemble_unit(dataset, hidden, repeat), models=rows.head(1), ensembles=rows)
    assert main(["figures", str(section), "--out", str(tmp_path / "figures")]) == 0
    for name in ("figure1.svg", "figure3.svg"):
        svg = (tmp_path / "figures" / name).read_text()
        assert svg.startswith("<svg") and "ensemble size" in svg
    assert main(["figures", str(tmp_path / "nothing"), "--out", str(tmp_path / "figures")]) == 2
