"""The mechanism report (reports/mechanism.py) on tables whose answers are known."""

import numpy as np
import pandas as pd
import pytest

from asymlib.reports import mechanism

TYPES = ("mlp", "wmlp", "smlp", "syre")
#: Per type: (loss barrier, aligned loss barrier, interpolated accuracy, aligned one).
PLANTED = {
    "mlp": (0.30, 0.10, 0.60, 0.75),
    "wmlp": (0.05, 0.05, 0.80, 0.80),
    "smlp": (0.20, 0.15, 0.65, 0.70),
    "syre": (0.30, 0.10, 0.60, 0.75),
}


def tables(datasets=("churn", "adult"), repeats=4, members=4, seed=0):
    """Models and ensembles tables of a mechanism run, with PLANTED values plus noise."""
    rng = np.random.default_rng(seed)
    models, ensembles = [], []
    for dataset in datasets:
        for repeat in range(repeats):
            for kind in TYPES:
                barrier, aligned, interpolated, interpolated_aligned = PLANTED[kind]
                key = dict(dataset=dataset, metric_name="accuracy", hidden=64, repeat=repeat, type=kind)
                for member in range(members):
                    paired = 1 <= member <= 2
                    noise = rng.normal(0, 0.005)
                    models.append(
                        {
                            **key,
                            "member": member,
                            "loss_barrier": barrier + noise if paired else np.nan,
                            "metric_barrier": barrier / 10 if paired else np.nan,
                            "loss_barrier_aligned": aligned + noise if paired else np.nan,
                            "metric_barrier_aligned": aligned / 10 if paired else np.nan,
                        }
                    )
                for size in (2, 4):
                    ensembles.append(
                        {
                            **key,
                            "ensemble_size": size,
                            "ensemble_metric": 0.85 + rng.normal(0, 0.002),
                            "interpolated_metric": interpolated + rng.normal(0, 0.002),
                            "interpolated_metric_aligned": interpolated_aligned + rng.normal(0, 0.002),
                        }
                    )
    return pd.DataFrame(models), pd.DataFrame(ensembles)


def test_conditions_hold_each_type_as_trained_and_aligned_with_barriers_averaged_over_pairs():
    models, ensembles = tables()
    table = mechanism.conditions(models, ensembles)
    assert set(table["type"]) == {*TYPES, *(f"{t} aligned" for t in TYPES)}
    assert (table["ensemble_size"] == 4).all() and len(table) == 2 * 4 * 8
    mlp = table[table["type"] == "mlp"]
    assert mlp["loss_barrier"].mean() == pytest.approx(0.30, abs=0.01)
    assert table.loc[table["type"] == "mlp aligned", "interpolated_metric"].mean() == pytest.approx(0.75, abs=0.01)
    # a permutation leaves an MLP's (and syre's) members as they compute, not a WMLP's or SMLP's
    aligned_ensembles = table[table["type"].str.endswith("aligned")].set_index("type")["ensemble_metric"]
    assert aligned_ensembles.loc[["mlp aligned", "syre aligned"]].notna().all()
    assert aligned_ensembles.loc[["wmlp aligned", "smlp aligned"]].isna().all()


def test_comparisons_are_oriented_so_that_a_lower_barrier_is_positive_with_holm_over_datasets():
    models, ensembles = tables()
    result = mechanism.comparisons(models, ensembles).set_index(["comparison", "measure", "dataset"])
    assert result.loc[("wmlp - mlp", "loss_barrier", "churn"), "mean"] == pytest.approx(0.25, abs=0.01)
    assert result.loc[("mlp aligned - mlp", "loss_barrier", "adult"), "mean"] == pytest.approx(0.20, abs=0.01)
    assert result.loc[("wmlp - mlp aligned", "interpolated_metric", "churn"), "mean"] == pytest.approx(0.05, abs=0.01)
    assert result.loc[("wmlp - mlp", "loss_barrier", "churn"), "significant"]
    # Holm over the two datasets: each adjusted p at least its raw p
    tested = result["p_value"].notna()  # metric_barrier is planted without spread: no test
    assert tested.any() and (result.loc[tested, "p_holm"] >= result.loc[tested, "p_value"] - 1e-15).all()
    assert set(result.index.get_level_values("comparison")) == {f"{a} - {b}" for a, b in mechanism.COMPARISONS}


def test_ablation_variants_are_left_out_when_the_ensembles_are_the_paper_types():
    models, ensembles = tables(datasets=("churn",))
    variant = models[models["type"] == "wmlp"].assign(type="wmlp n_fix=8 kappa=1")
    models = pd.concat([models, variant], ignore_index=True)
    table = mechanism.conditions(models, ensembles)
    assert not table["type"].str.contains("n_fix").any()


def test_a_run_without_barriers_is_named_as_such():
    models, ensembles = tables(datasets=("churn",))
    plain = models.drop(columns=[c for c in models if "barrier" in c])
    assert not mechanism.has_barriers(plain) and mechanism.has_barriers(models)
    with pytest.raises(ValueError, match="barrier_pairs: 0"):
        mechanism.conditions(plain, ensembles)


def test_the_barrier_chart_draws_each_condition_per_dataset():
    models, ensembles = tables()
    chart = mechanism.barrier_chart(models, ensembles, measure="metric_barrier")
    spec = chart.to_dict()
    values = spec["datasets"][spec["data"]["name"]]
    drawn = {(v["dataset"], v["condition"]) for v in values}
    assert len(drawn) == 2 * 8
    with pytest.raises(ValueError, match="loss_barrier"):
        mechanism.barrier_chart(models, ensembles, measure="ensemble_metric")


def test_the_answers_count_significant_datasets_on_each_side():
    models, ensembles = tables()
    lines = mechanism.answers(mechanism.comparisons(models, ensembles))
    wmlp = next(line for line in lines if "wmlp - mlp:" in line)
    assert "loss barrier: better on 2 of 2, worse on 0" in wmlp
    aligned = next(line for line in lines if "wmlp - mlp aligned:" in line)
    assert "weight average: better on 2 of 2" in aligned and "loss barrier: better on 2 of 2, worse on 0" in aligned
    alignment = next(line for line in lines if "mlp aligned - mlp:" in line)
    assert "weight average: better on 2 of 2" in alignment and "ensemble: better on 0 of 2, worse on 0" in alignment
