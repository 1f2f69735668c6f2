"""Churn, softmax-gated mixtures at hidden 64: ours over eight seeds beside the release's own
code and the paper (writes comparison.csv and two_repeat_checks.csv beside this file).

Ours: seed0/ ... seed7/ hold the shards of `asymlib train profile.yaml` with `seed:` set to
0 ... 7 (five repeats each; a seed fixes the W-Asymmetric frozen entries, so eight seeds are
eight draws of them). The release: release_runs.csv, one row per call of the release's
`train_moe_single_combination` (each call in its own process, so its masks come from that
process's hash seed). Run from the repository root:

    python results/churn_mixtures_seeds/compare.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from asymlib.reports.fidelity import PAPER_REPEATS

HERE = Path(__file__).resolve().parent
PAPER = HERE.parents[1] / "asymlib" / "reports" / "reference" / "paper_figures.csv"


def paper_points() -> pd.Series:
    """The paper's churn points of Figure 4, softmax gate, hidden 64: (kind, experts) -> accuracy."""
    paper = pd.read_csv(PAPER)
    chosen = paper[(paper.section == "moe") & (paper.dataset == "churn") & (paper.gating == "standard")]
    chosen = chosen[chosen.hidden_dim == 64].rename(columns={"series": "kind", "x": "experts"})
    return chosen.set_index(["kind", "experts"])["value"]


def our_runs() -> pd.DataFrame:
    """One row per trained mixture: seed, repeat, kind, experts, metric."""
    frames = []
    for shard in sorted(HERE.glob("seed*/mixtures/shards/*-mixtures.parquet")):
        frame = pd.read_parquet(shard, columns=["kind", "experts", "repeat", "metric", "gating", "architecture"])
        frames.append(frame.assign(seed=int(shard.parts[-4].removeprefix("seed"))))
    runs = pd.concat(frames, ignore_index=True)
    assert set(runs.gating) == {"standard"} and set(runs.architecture) == {"release"}
    return runs


def side_by_side(ours: pd.DataFrame, release: pd.DataFrame, paper: pd.Series) -> pd.DataFrame:
    """Per point: our mean over every seed and repeat, the release's mean, the paper's value,
    the differences and the standard error of ours minus the release's."""
    rows = []
    for (kind, experts), group in ours.groupby(["kind", "experts"]):
        theirs = release[(release.kind == kind) & (release.experts == experts)].metric
        seed_means = group.groupby("seed").metric.mean()
        rows.append(
            {
                "kind": kind,
                "experts": experts,
                "paper": paper[(kind, experts)],
                "ours_mean": group.metric.mean(),
                "ours_runs": len(group),
                "ours_std": group.metric.std(),
                "std_of_seed_means": seed_means.std(),
                "release_mean": theirs.mean(),
                "release_runs": len(theirs),
                "release_std": theirs.std(),
                "ours_minus_paper": group.metric.mean() - paper[(kind, experts)],
                "release_minus_paper": theirs.mean() - paper[(kind, experts)],
                "ours_minus_release": group.metric.mean() - theirs.mean(),
                "standard_error": np.sqrt(group.metric.var() / len(group) + theirs.var() / len(theirs)),
            }
        )
    return pd.DataFrame(rows)


def two_repeat_checks(runs: pd.DataFrame, paper: pd.Series) -> pd.DataFrame:
    """The fidelity profile's check for each pair of runs (``runs`` has a column ``pair``):
    MoIE (imlp, iwmlp) at 2 and 4 experts within |mean - paper| <= 2 s sqrt(1/2 + 1/10), s
    pooled over the pair's twelve points (the rule of `asymlib compare`; the paper's mixture
    points are means of 10)."""
    rows = []
    for pair, chosen in runs.groupby("pair"):
        pooled = np.sqrt(chosen.groupby(["kind", "experts"]).metric.var().mean())
        bound = 2 * pooled * np.sqrt(1 / 2 + 1 / PAPER_REPEATS["moe"])
        for (kind, experts), group in chosen.groupby(["kind", "experts"]):
            if kind in ("imlp", "iwmlp") and experts in (2, 4):
                difference = group.metric.mean() - paper[(kind, experts)]
                rows.append(
                    {
                        "pair": pair,
                        "kind": kind,
                        "experts": experts,
                        "difference": difference,
                        "bound": bound,
                        "within_noise": abs(difference) <= bound,
                    }
                )
    return pd.DataFrame(rows)


def main() -> None:
    paper, ours = paper_points(), our_runs()
    release = pd.read_csv(HERE / "release_runs.csv")
    table = side_by_side(ours, release, paper)
    # ours: each seed's first two repeats (as the fidelity profile trains them); the release:
    # its runs 0 and 1, 2 and 3, ... (its seeds 1234 + 10000 r)
    first_two = ours[ours.repeat < 2].assign(pair=lambda t: "ours, seed " + t.seed.astype(str))
    release_pairs = release.assign(pair=lambda t: [f"release, runs {r - r % 2} and {r - r % 2 + 1}" for r in t.repeat])
    checks = pd.concat([two_repeat_checks(first_two, paper), two_repeat_checks(release_pairs, paper)])
    table.round(5).to_csv(HERE / "comparison.csv", index=False)
    checks.round(5).to_csv(HERE / "two_repeat_checks.csv", index=False)
    pd.set_option("display.width", 200)
    print(table.round(4).to_string(index=False))
    passed = checks.groupby("pair").within_noise.all()
    for who in ("ours", "release"):
        chosen = passed[passed.index.str.startswith(who)]
        print(f"{who}: all four MoIE points within noise at 2 repeats in {chosen.sum()} of {len(chosen)} pairs")
    print(checks[~checks.within_noise].round(4).to_string(index=False))


if __name__ == "__main__":
    main()
