"""Every published point of the paper beside ours: the 640-row table, its noise rule, which
runs count, and which profile would fill a point not run."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from asymlib.execution.cli import main
from asymlib.execution.params import load_params, profile_sections
from asymlib.reports.fidelity import (
    Source,
    architecture_comparison,
    paper_comparison,
    profile_points,
    read_source,
)
from asymlib.reports.tables import paper_reference

REPO = Path(__file__).resolve().parents[1]
KEYS = ["section", "dataset", "hidden", "gating", "series", "x"]


def _profile(name):
    path = REPO / "params" / f"{name}.yaml"
    return profile_points(load_params(path, sections=profile_sections(path)))


def test_without_runs_every_point_is_not_run_and_the_paper_profile_would_run_it():
    table = paper_comparison([], profiles={"verdict": _profile("verdict"), "paper": _profile("paper")})
    assert len(table) == 640 and (table["verdict"] == "not run").all()
    assert set(table["would_run"]) == {"verdict", "paper"}  # the paper profile trains every published point
    hidden_64 = table[(table["section"] == "deep_ensemble") & (table["hidden"] == 64) & (table["x"] <= 32)]
    assert (hidden_64["would_run"] == "verdict").all()  # the smaller profile first


def test_the_noise_rule_by_hand():
    paper = paper_reference("moe")
    near, far = paper.iloc[0], paper.iloc[1]
    rows = []
    for point, offset in ((near, 0.0), (far, 0.05)):
        for repeat, wiggle in enumerate((-0.002, 0.0, 0.002)):
            rows.append(
                {
                    "section": "moe",
                    "dataset": point["dataset"],
                    "hidden": 64,
                    "gating": point["gating"],
                    "series": point["series"],
                    "x": point["x"],
                    "repeat": repeat,
                    "value": point["value"] + offset + wiggle,
                    "split": "release",
                    "architecture": "release",
                    "measure": "mixture",
                }
            )
    table = paper_comparison([Source("mine", pd.DataFrame(rows))]).set_index(KEYS)
    first = table.loc[tuple(near[["section", "dataset"]]) + (64, near["gating"], near["series"], near["x"])]
    second = table.loc[tuple(far[["section", "dataset"]]) + (64, far["gating"], far["series"], far["x"])]
    pooled = 0.002  # both points have standard deviation 0.002 over their 3 repeats
    assert first["threshold"] == pytest.approx(
        2 * pooled * np.sqrt(1 / 3 + 1 / 10)
    )  # a mixture point: the paper's mean of 10
    assert first["verdict"] == "within noise" and second["verdict"] == "outside"
    assert second["difference"] == pytest.approx(0.05) and first["source"] == "mine"
    assert first["architecture"] == "release" and first["repeats"] == 3
    assert (table["verdict"] == "not run").sum() == 638


def test_the_committed_verdict_run_fills_hidden_64_up_to_32_members():
    source = read_source(REPO / "results" / "verdict")
    table = paper_comparison([source])
    filled = table[table["source"] == str(REPO / "results" / "verdict")]
    assert len(filled) == 5 * 2 * 2 * 5  # datasets x types x (ensemble, single) x sizes 2..32
    assert (filled["hidden"] == 64).all() and (filled["repeats"] == 5).all() and (filled["split"] == "release").all()
    assert set(filled["verdict"]) <= {"within noise", "outside"}
    # the deep ensembles at hidden 64 match the paper point for point: no point is far off
    assert filled["difference"].abs().max() < 0.01


def test_runs_without_the_papers_stopping_rule_do_not_count(tmp_path):
    smoke = tmp_path / "smoke"
    (smoke / "deep_ensembles").mkdir(parents=True)
    (smoke / "deep_ensembles" / "settings.yaml").write_text("churn: {patience: 2, max_epochs: 3, max_rows: 1500}\n")
    assert len(read_source(smoke).points) == 0


def test_cli_writes_the_table(tmp_path, capsys):
    out = tmp_path / "comparison.csv"
    figure = tmp_path / "comparison.svg"
    assert main(["compare", str(REPO / "results" / "verdict"), "--out", str(out), "--figure", str(figure)]) == 0
    assert figure.read_text().startswith("<svg")
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 640 and "within noise" in capsys.readouterr().out
    assert main(["compare", str(tmp_path / "nowhere"), "--out", str(out)]) == 2


def test_cli_sets_the_committed_moie_networks_side_by_side(tmp_path, capsys):
    """results/fidelity (the release's MoIE) and results/fidelity_text_moie (the text's) trained
    churn's 16 MoIE points each: --architectures writes them side by side."""
    out, both = tmp_path / "comparison.csv", tmp_path / "architectures.csv"
    runs = [str(REPO / "results" / name) for name in ("fidelity", "fidelity_text_moie")]
    assert main(["compare", *runs, "--out", str(out), "--architectures", str(both)]) == 0
    table = pd.read_csv(both)
    assert len(table) == 16 and set(table["dataset"]) == {"churn"} and set(table["series"]) == {"imlp", "iwmlp"}
    assert (table["text_repeats"] == 2).all() and (table["release_repeats"] == 2).all()
    assert "16 MoIE points run with both networks" in capsys.readouterr().out
    # the main table keeps the preferred (first) run's points: the release's networks
    compared = pd.read_csv(out, keep_default_na=False)
    assert set(
        compared.loc[compared["series"].isin(["imlp", "iwmlp"]) & (compared["source"] != ""), "architecture"]
    ) == {"release"}


def test_a_source_without_points_leaves_every_point_not_run():
    table = paper_comparison([Source("empty", pd.DataFrame(columns=["section"]))])
    assert len(table) == 640 and (table["verdict"] == "not run").all()


def _mixture_rows(points, *, architecture, offset, split="release"):
    """Three repeats of each paper point in ``points``, ``offset`` from the paper's value."""
    return [
        {
            "section": "moe",
            "dataset": p["dataset"],
            "hidden": 64,
            "gating": p["gating"],
            "series": p["series"],
            "x": p["x"],
            "repeat": r,
            "value": p["value"] + offset + wiggle,
            "split": split,
            "architecture": architecture,
            "measure": "mixture",
        }
        for _, p in points.iterrows()
        for r, wiggle in enumerate((-0.002, 0.0, 0.002))
    ]


def test_the_two_moie_networks_side_by_side():
    paper = paper_reference("moe")
    churn = paper[(paper["dataset"] == "churn") & (paper["gating"] == "standard")]
    moie, moe = churn[churn["series"].isin(["imlp", "iwmlp"])], churn[churn["series"] == "mlp"]
    text = Source("text", pd.DataFrame(_mixture_rows(pd.concat([moie, moe]), architecture="paper", offset=0.02)))
    release = Source("release", pd.DataFrame(_mixture_rows(moie.iloc[:3], architecture="release", offset=0.0)))
    table = architecture_comparison([release, text])
    assert len(table) == 3  # only the MoIE points both networks have; MoE is one network in both
    assert set(table["series"]) <= {"imlp", "iwmlp"}
    assert (table["text_verdict"] == "outside").all() and (table["release_verdict"] == "within noise").all()
    assert table["text_difference"].to_numpy() == pytest.approx(0.02) and (table["release_repeats"] == 3).all()
    assert set(table["text_source"]) == {"text"} and set(table["release_source"]) == {"release"}
    # one network alone, or the two on different splits, compare nothing
    assert architecture_comparison([text]).empty
    other_split = Source("other", pd.DataFrame(_mixture_rows(moie, architecture="release", offset=0.0, split="paper")))
    assert architecture_comparison([text, other_split]).empty
