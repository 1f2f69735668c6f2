"""Beyond the paper, end to end: uncertainty and diversity in the tables, sigma-Asymmetric
MLPs, the ablations of the frozen weights and of load balancing, and their report sections.

One small run of the runner (two datasets, one per task, two repeats) with every new axis
switched on is shared by the module; it takes about a minute on 2 cores.
"""

from __future__ import annotations

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from asymlib.execution.runner import run_profile
from asymlib.reports import beyond_paper
from asymlib.reports.stitch import build_report
from asymlib.reports.tables import load_mixture_results, load_results

PROFILE = {
    "deep_ensembles": {
        "datasets": ["california", "churn"],
        "types": ["mlp", "wmlp", "smlp"],
        "n_fix": [1, 8],
        "kappa": [0.5, 1.0],
        "hidden_sizes": [8],
        "members": 3,
        "ensemble_sizes": [2, 3],
        "repeats": 2,
        "seed": 0,
        "max_epochs": 3,
        "patience": 2,
        "max_rows": 1200,
        "workers": 2,
        "threads": None,
    },
    "mixtures": {
        "datasets": ["churn"],
        "gatings": ["standard"],
        "kinds": ["mlp", "imlp"],
        "experts": [2, 4],
        "balance_weights": [0.0, 0.1],
        "hidden": 8,
        "repeats": 2,
        "seed": 0,
        "max_epochs": 3,
        "patience": 2,
        "max_rows": 1200,
        "workers": 2,
        "threads": None,
    },
}
VARIANTS = {"wmlp n_fix=1 kappa=0.5", "wmlp n_fix=1 kappa=1", "wmlp n_fix=8 kappa=0.5", "wmlp n_fix=8 kappa=1"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("beyond")
    params = root / "beyond.yaml"
    params.write_text(yaml.safe_dump(PROFILE))
    runs = run_profile(params, out_root=root / "runs", progress=False, report=False)
    assert all(r.ok for r in runs.values()), {name: r.failed for name, r in runs.items()}
    return {name: r.out_dir for name, r in runs.items()}


def test_every_type_and_variant_is_a_row_with_its_axes(run):
    models, ensembles = load_results(run["deep_ensembles"])
    assert set(models["type"]) == {"mlp", "smlp"} | VARIANTS  # no paper-default WMLP in this grid
    variants = models[models["type"].str.startswith("wmlp")].drop_duplicates("type").set_index("type")
    assert variants.loc["wmlp n_fix=8 kappa=0.5", ["n_fix", "kappa"]].tolist() == [8, 0.5]
    others = models[~models["type"].str.startswith("wmlp")]
    assert (others["n_fix"] == 0).all() and (others["kappa"] == 0).all()
    # Paired seeds: every type of a repeat starts from the same member seeds.
    assert models.groupby(["dataset", "repeat", "member"])["init_seed"].nunique().eq(1).all()


def test_uncertainty_and_diversity_columns_hold_sensible_values(run):
    models, ensembles = load_results(run["deep_ensembles"])
    churn, california = (ensembles[ensembles["dataset"] == d] for d in ("churn", "california"))
    assert churn["ensemble_ece"].between(0, 1).all() and churn["ensemble_brier"].between(0, 2).all()
    assert churn["disagreement"].between(0, 1).all() and churn["ambiguity"].isna().all()
    assert california["ambiguity"].ge(0).all() and california["disagreement"].isna().all()
    assert california[["ensemble_brier", "ensemble_ece"]].isna().all().all()
    assert models.loc[models["dataset"] == "california", "val_residual_variance"].gt(0).all()
    assert ensembles["ensemble_nll"].notna().all() and ensembles["single_nll"].notna().all()


def test_ambiguity_closes_the_ensemble_decomposition(run):
    """ensemble MSE = mean member MSE - ambiguity, from the tables alone (RMSE squared)."""
    models, ensembles = load_results(run["deep_ensembles"])
    keys = ["dataset", "hidden", "repeat", "type"]
    regression = ensembles[ensembles["metric_name"] == "rmse"]
    assert len(regression)
    for row in regression.itertuples():
        first = models[(models[keys] == pd.Series({k: getattr(row, k) for k in keys})).all(axis=1)]
        first = first[first["member"] < row.ensemble_size]
        member_mse = (first["metric"] ** 2).mean()
        assert row.ensemble_metric**2 == pytest.approx(member_mse - row.ambiguity, rel=1e-4)


def test_ablation_table_pairs_every_variant_with_the_mlps(run):
    _, ensembles = load_results(run["deep_ensembles"])
    assert beyond_paper.has_ablations(ensembles)
    table = beyond_paper.ablation_table(ensembles)
    assert len(table) == 2 * 4 * 2  # datasets x variants x measures
    assert set(zip(table["n_fix"], table["kappa"])) == {(1, 0.5), (1, 1.0), (8, 0.5), (8, 1.0)}
    row = table[
        (table["dataset"] == "churn")
        & (table["n_fix"] == 8)
        & (table["kappa"] == 0.5)
        & (table["measure"] == "ensemble_metric")
    ].iloc[0]
    largest = ensembles[(ensembles["ensemble_size"] == 3) & (ensembles["dataset"] == "churn")]
    means = largest.groupby("type")["ensemble_metric"].mean()
    assert row["variant_minus_mlp"] == pytest.approx(means["wmlp n_fix=8 kappa=0.5"] - means["mlp"])


def test_mixtures_carry_their_balance_weight_and_scores(run):
    mixtures, usage = load_mixture_results(run["mixtures"])
    assert set(mixtures["balance_weight"]) == {0.0, 0.1} and set(usage["balance_weight"]) == {0.0, 0.1}
    shards = {p.name for p in (run["mixtures"] / "shards").iterdir()}
    assert any("-b0.1" in name for name in shards) and any(name.endswith("-e4-mixtures.parquet") for name in shards)
    assert mixtures["ece"].between(0, 1).all() and mixtures["disagreement"].between(0, 1).all()
    # Figure 2's gain is taken within a balance weight: on average over repeats, the
    # 2-expert mixtures of every (kind, weight) gain nothing over themselves.
    two = mixtures[mixtures["experts"] == 2].groupby(["kind", "balance_weight"])["relative_to_2"].mean()
    assert len(two) == 4 and two.abs().max() < 1e-9
    table = beyond_paper.balance_table(mixtures, usage)
    assert len(table) == 2 * 2 and table["effective_experts_with"].between(1, 4).all()


@pytest.mark.parametrize(
    "section, headings",
    [
        (
            "deep_ensembles",
            [
                "## Beyond accuracy: uncertainty and diversity",
                "## A third way to break symmetry: sigma-Asymmetric MLPs",
                "## Ablation: how many weights to freeze",
                "## Ablation: how large the frozen values",
            ],
        ),
        (
            "mixtures",
            ["## Beyond accuracy: uncertainty and the experts' diversity", "## Ablation: a load-balancing loss"],
        ),
    ],
)
def test_reports_have_a_section_per_question_and_run_clean(run, section, headings):
    html = build_report(run[section], section=section)
    report = nbformat.read(html.with_suffix(".ipynb"), as_version=4)
    found = [c.source.splitlines()[0] for c in report.cells if c.cell_type == "markdown"]
    for heading in headings:
        assert heading in found
    errors = [o for c in report.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors[0]["evalue"] if errors else ""
    page = html.read_text()
    for title in (
        ("Uncertainty of ensembles", "Diversity of the members", "against n_fix", "against kappa")
        if section == "deep_ensembles"
        else ("Diversity of a mixture's experts", "weight of the load-balancing loss")
    ):
        assert title in page, title
    # The paper's figures keep to the paper's settings: no ablation variant reaches them.
    figure3 = (
        next(c for c in report.cells if c.source == "figures.figure3(ensembles)")
        if section == "deep_ensembles"
        else None
    )
    if figure3 is not None:
        assert "n_fix=" not in figure3.outputs[0]["data"]["text/html"]


def test_old_results_without_the_new_columns_get_a_clear_error():
    old = pd.DataFrame(
        {
            "dataset": ["otto"],
            "metric_name": ["accuracy"],
            "hidden": [64],
            "type": ["mlp"],
            "ensemble_size": [2],
            "repeat": [0],
            "relative_improvement": [1.0],
        }
    )
    with pytest.raises(ValueError, match="--force"):
        beyond_paper.uncertainty_table(old)
    assert not beyond_paper.has_ablations(old)
    assert np.isnan(beyond_paper._diversity(old.assign(disagreement=np.nan, ambiguity=np.nan))["diversity"][0])


def test_every_shipped_profile_loads_and_the_ablations_profile_varies_each_axis():
    from pathlib import Path

    from asymlib.execution.params import load_params, profile_sections

    folder = Path(__file__).resolve().parents[1] / "params"
    for path in folder.glob("*.yaml"):
        load_params(path, sections=profile_sections(path))
    ablations = load_params(folder / "ablations.yaml", sections=["deep_ensembles", "mixtures"])
    assert len(ablations["deep_ensembles"]["n_fix"]) > 1 and len(ablations["deep_ensembles"]["kappa"]) > 1
    assert 0.0 in ablations["mixtures"]["balance_weights"] and len(ablations["mixtures"]["balance_weights"]) > 1
    assert set(ablations["deep_ensembles"]["datasets"]) == {"otto", "mnist"}
    assert "smlp" in load_params(folder / "verdict.yaml")["deep_ensembles"]["types"]


def test_profile_keys_are_checked_with_a_message_naming_key_and_expectation(tmp_path):
    from asymlib.execution.params import ParamsError, load_params

    for key, value, expected in (
        ("types", ["mlp", "cnn"], "out of mlp, wmlp, smlp"),
        ("n_fix", [0], "positive integers"),
        ("kappa", [-1.0], "positive numbers"),
        ("n_fix", [64], "more than the smallest hidden size"),
    ):
        profile = {"deep_ensembles": {**PROFILE["deep_ensembles"], key: value}}
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(profile))
        with pytest.raises(ParamsError, match=f"deep_ensembles.{key}.*{expected}"):
            load_params(path)
