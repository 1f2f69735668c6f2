"""Every published point of the paper's Figures 3 and 4 beside ours, one row per point.

``paper_comparison(sources)`` takes finished runs (a profile folder each, such as
``runs/verdict``, in order of preference) and returns all 640 points of
``reference/paper_figures.csv``: the paper's value, our mean, standard deviation and number
of repeats, the difference, the split (and for mixtures the architecture) ours used, which
run it came from, and a verdict:

- ``within noise`` when |ours - paper| <= 2 s sqrt(1/n + 1/m): n our repeats, m the paper's
  (``PAPER_REPEATS``: 10 for a mixture point, measured; 5 for a deep-ensemble point,
  assumed), and s the pooled standard deviation over repeats of our points of the same
  section, dataset and measure (ensemble, single model, mixture) in that run, since two
  repeats give a poor spread of their own;
- ``outside`` otherwise;
- ``not run`` when no source has the point, with ``would_run`` naming the first profile
  given that trains it with the paper's stopping rule on full data (``asymlib compare``
  gives the shipped ones, smallest first).

A point counts only from a run made with the paper's stopping rule on full data (patience
16, up to 1000 epochs, no row cap): a smaller profile's numbers are not the paper's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..core.data import DATASETS
from ..core.yamlfile import load_yaml
from .tables import load_mixture_results, load_results, paper_mixtures, paper_reference, paper_types

#: The paper's repeats per point, by section of its figures. The text leaves the number out.
#: Its mixture points are means of 10 runs of the release's code: rerun with the release's
#: seeds (1234 + 10000 r, r = 0..9), its MoE-MLP and MoIE-IMLP mixtures on churn (which
#: draw no frozen entries, so are the same in every process) give five of the paper's six
#: softmax-gated points to 0.0001 and the sixth to 0.0005; 5 runs miss them by up to 0.0013
#: (results/churn_mixtures_seeds/). For deep ensembles 5 is assumed, as the verdict profile does.
PAPER_REPEATS = {"deep_ensemble": 5, "moe": 10}
_COLUMNS = [
    "section",
    "dataset",
    "hidden",
    "gating",
    "series",
    "x",
    "metric",
    "paper",
    "ours_mean",
    "ours_std",
    "repeats",
    "difference",
    "threshold",
    "split",
    "architecture",
    "source",
    "verdict",
    "would_run",
]


@dataclass(frozen=True)
class Source:
    """One finished run: its name and the per-repeat values of the paper's points it has."""

    name: str
    points: pd.DataFrame  # section, dataset, hidden, gating, series, x, repeat, value, split, architecture


def follows_paper_rule(settings: dict) -> bool:
    """Whether a section's settings are the paper's stopping rule on full data: patience 16,
    up to 1000 epochs (or more), no row cap."""
    return settings.get("patience") == 16 and settings.get("max_epochs", 0) >= 1000 and settings.get("max_rows") is None


def _paper_rule(settings_file: Path) -> bool:
    """Whether every dataset of a section folder (its ``settings.yaml``) followed the paper's rule."""
    if not settings_file.exists():
        return False
    recorded = load_yaml(settings_file.read_text(), source=str(settings_file)) or {}
    return bool(recorded) and all(follows_paper_rule(s) for s in recorded.values())


def read_source(profile_dir: str | os.PathLike, *, sections: Sequence[str] = ("deep_ensembles", "mixtures")) -> Source:
    """The paper's points in a profile folder (``runs/<profile>``): those of its ``sections``
    (deep ensembles, mixtures) made with the paper's stopping rule on full data (others are
    left out)."""
    profile_dir = Path(profile_dir)
    parts = []
    if "deep_ensembles" in sections and _paper_rule(profile_dir / "deep_ensembles" / "settings.yaml"):
        ensembles = _committed(profile_dir / "deep_ensembles" / "ensembles.csv")
        if ensembles is None:
            ensembles = load_results(profile_dir / "deep_ensembles").ensembles
        parts.append(_ensemble_points(paper_types(ensembles)))
    if "mixtures" in sections and _paper_rule(profile_dir / "mixtures" / "settings.yaml"):
        mixtures = _committed(profile_dir / "mixtures" / "mixtures.csv")
        if mixtures is None:
            mixtures = load_mixture_results(profile_dir / "mixtures").mixtures
        parts.append(_mixture_points(paper_mixtures(mixtures)))
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["section"])
    return Source(str(profile_dir), points)


def _committed(csv: Path) -> pd.DataFrame | None:
    """A combined table committed as CSV beside a run's settings (``results/<profile>/``,
    which keeps no shards), or None when the folder has its shards instead."""
    if csv.exists() and not (csv.parent / "shards").is_dir():
        return pd.read_csv(csv, keep_default_na=False, na_values=["", "NaN", "nan"])
    return None


def _ensemble_points(ensembles: pd.DataFrame) -> pd.DataFrame:
    """Figure 3's points per repeat: ``<type>_ensemble`` and ``<type>_single_mean`` at size x."""
    parts = []
    for column, suffix in (("ensemble_metric", "ensemble"), ("single_mean", "single_mean")):
        part = ensembles[["dataset", "hidden", "type", "ensemble_size", "repeat", column, "split"]].rename(
            columns={"ensemble_size": "x", column: "value"}
        )
        parts.append(part.assign(series=part["type"] + "_" + suffix, measure=suffix))
    points = pd.concat(parts, ignore_index=True).drop(columns="type")
    return points.assign(section="deep_ensemble", gating="", architecture="")


def _mixture_points(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Figure 4's points per repeat: the test metric of each kind at x experts."""
    architecture = mixtures["architecture"] if "architecture" in mixtures else "paper"
    points = mixtures.assign(architecture=architecture)[
        ["dataset", "hidden", "gating", "kind", "experts", "repeat", "metric", "split", "architecture"]
    ].rename(columns={"kind": "series", "experts": "x", "metric": "value"})
    return points.assign(section="moe", measure="mixture")


def _summaries(source: Source) -> pd.DataFrame:
    """Mean, standard deviation and repeats per point, and the pooled standard deviation of
    the point's section, dataset and measure in this run."""
    if not len(source.points):
        return pd.DataFrame()
    points = source.points.dropna(subset=["value"])  # a diverged member or mixture has no result
    keys = ["section", "dataset", "hidden", "gating", "series", "x"]
    table = (
        points.groupby(keys)
        .agg(
            ours_mean=("value", "mean"),
            ours_std=("value", "std"),
            repeats=("value", "size"),
            measure=("measure", "first"),
            split=("split", lambda s: "/".join(sorted(set(s)))),
            architecture=("architecture", "first"),
        )
        .reset_index()
    )
    spread = table[table["repeats"] >= 2].assign(variance=lambda t: t["ours_std"] ** 2)
    pooled = spread.groupby(["section", "dataset", "measure"])["variance"].mean().pow(0.5).rename("pooled_std")
    table = table.join(pooled, on=["section", "dataset", "measure"])
    return table.assign(source=source.name)


def paper_comparison(sources: Sequence[Source], *, profiles: dict[str, set[tuple]] | None = None) -> pd.DataFrame:
    """The 640 points of the paper beside ours (module docstring); ``sources`` in order of
    preference (a point comes from the first that has it). ``profiles``: profile name ->
    the points its grid trains (``profile_points``), smallest first, for ``would_run``."""
    paper = pd.concat([paper_reference("deep_ensemble"), paper_reference("moe")], ignore_index=True)
    paper = paper.rename(columns={"hidden_dim": "hidden", "value": "paper"}).assign(
        gating=lambda t: t["gating"].fillna("")
    )
    keys = ["section", "dataset", "hidden", "gating", "series", "x"]
    parts = [_summaries(s) for s in sources if len(s.points)]
    ours = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(ours):
        ours = ours.drop_duplicates(subset=keys, keep="first")  # the preferred source's
        table = paper.merge(ours, how="left", on=keys)
    else:
        table = paper.assign(
            **{c: np.nan for c in ("ours_mean", "ours_std", "repeats", "pooled_std")},
            split="",
            architecture="",
            source="",
        )
    table["difference"] = table["ours_mean"] - table["paper"]
    paper_repeats = table["section"].map(PAPER_REPEATS)
    table["threshold"] = 2 * table["pooled_std"] * np.sqrt(1 / table["repeats"] + 1 / paper_repeats)
    run = table["ours_mean"].notna()
    table["verdict"] = np.where(
        ~run, "not run", np.where(table["difference"].abs() <= table["threshold"], "within noise", "outside")
    )
    table.loc[run & table["threshold"].isna(), "verdict"] = "no spread"  # one repeat and no other point to pool
    profiles = profiles or {}
    table["would_run"] = [
        "" if ran else next((name for name, covered in profiles.items() if point in covered), "")
        for ran, point in zip(run, table[keys].itertuples(index=False, name=None))
    ]
    for column in ("split", "architecture", "source"):
        table[column] = table[column].fillna("")
    table["repeats"] = table["repeats"].astype("Int64")
    return table[_COLUMNS].reset_index(drop=True)


def profile_points(settings: dict[str, dict]) -> set[tuple]:
    """The paper's points (``section, dataset, hidden, gating, series, x``) that a profile's
    sections train, if they run with the paper's stopping rule on full data."""
    points = set()
    de = settings.get("deep_ensembles")
    if de and follows_paper_rule(de):
        sizes = [k for k in de["ensemble_sizes"] if k <= de["members"]]
        for dataset in de["datasets"]:
            for hidden in de["hidden_sizes"]:
                for kind in set(de["types"]) & {"mlp", "wmlp"}:
                    for what in ("ensemble", "single_mean"):
                        points.update(("deep_ensemble", dataset, hidden, "", f"{kind}_{what}", k) for k in sizes)
    mx = settings.get("mixtures")
    if mx and follows_paper_rule(mx) and 0.0 in mx["balance_weights"]:
        for dataset in mx["datasets"]:
            for gating in mx["gatings"]:
                for kind in mx["kinds"]:
                    points.update(("moe", dataset, mx["hidden"], gating, kind, k) for k in mx["experts"])
    return points


def fidelity_counts(table: pd.DataFrame) -> str:
    """One line: how many of the points are within noise, outside, not run."""
    counts = table["verdict"].value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in ("within noise", "outside", "not run", "no spread") if counts.get(v, 0)]
    return f"{len(table)} published points: " + ", ".join(parts)


def comparison_chart(table: pd.DataFrame):
    """Every panel of Figures 3 and 4 in one chart: the paper's points as lines, ours as dots
    with bars of two standard deviations, a panel per dataset and hidden size (Figure 3) or
    dataset and gating (Figure 4), x on a log2 axis. ``table``: ``paper_comparison``'s."""
    import altair as alt

    from .charts import KIND_COLORS, inline_data

    frame = table.assign(
        panel=np.where(table["section"] == "deep_ensemble", "h" + table["hidden"].astype(str), table["gating"]),
        family=np.where(table["section"] == "deep_ensemble", "Figure 3", "Figure 4"),
        kind=table["series"].str.split("_").str[0],
        what=table["series"].str.split("_", n=1).str[1].fillna("mixture"),
        low=table["ours_mean"] - 2 * table["ours_std"].fillna(0),
        high=table["ours_mean"] + 2 * table["ours_std"].fillna(0),
    )
    frame = frame[
        ["family", "dataset", "panel", "kind", "what", "series", "x", "paper", "ours_mean", "low", "high", "verdict"]
    ]
    colour = alt.Color("kind:N", scale=alt.Scale(domain=list(KIND_COLORS), range=list(KIND_COLORS.values())))
    x = alt.X("x:Q", scale=alt.Scale(type="log", base=2), title="ensemble size / experts")
    base = alt.Chart(inline_data(frame)).encode(x=x, color=colour)
    paper = base.mark_line(strokeDash=[4, 2], opacity=0.7).encode(
        y=alt.Y("paper:Q", scale=alt.Scale(zero=False), title="test metric"), detail="series:N"
    )
    bars = base.mark_rule().encode(y="low:Q", y2="high:Q", detail="series:N")
    ours = base.mark_point(filled=True, size=25).encode(
        y="ours_mean:Q",
        shape=alt.Shape("verdict:N"),
        detail="series:N",
        tooltip=["dataset:N", "panel:N", "series:N", "x:Q", "paper:Q", "ours_mean:Q", "verdict:N"],
    )
    panels = ["Figure 3 h64", "Figure 3 h128", "Figure 3 h256", "Figure 4 standard", "Figure 4 gumbel"]
    return (
        (paper + bars + ours)
        .properties(width=150, height=110)
        .facet(
            row=alt.Row("dataset:N", sort=list(DATASETS)),
            column=alt.Column("family_panel:N", title=None, sort=panels),
        )
        .transform_calculate(family_panel="datum.family + ' ' + datum.panel")
        .resolve_scale(y="independent")
        .properties(title="The paper's points (dashed lines) and ours (dots, +- 2 sd over repeats)")
    )


#: The kinds whose network the ``architecture`` setting changes (MoE is the same in both).
MOIE_KINDS = ("imlp", "iwmlp")
_ARCHITECTURE_PREFIX = {"paper": "text", "release": "release"}


def architecture_comparison(sources: Sequence[Source]) -> pd.DataFrame:
    """MoIE points trained with both networks, the text's (``architecture: paper``) and the
    release's, beside the paper's value: one row per point and split, with each network's
    mean, repeats, difference from the paper and verdict (``paper_comparison``'s rule, the
    spread pooled within that network's run). Points only one network has are left out;
    ``sources`` in order of preference, as for ``paper_comparison``.

    Columns: dataset, hidden, gating, series, x, split, paper, then ``text_*`` and
    ``release_*``: mean, repeats, difference, verdict, source.
    """
    keys = ["dataset", "hidden", "gating", "series", "x", "split"]
    per_network = {}
    for source in sources:
        table = paper_comparison([source])
        table = table[(table["section"] == "moe") & table["series"].isin(MOIE_KINDS) & (table["verdict"] != "not run")]
        for architecture, rows in table.groupby("architecture"):
            prefix = _ARCHITECTURE_PREFIX.get(architecture)
            if prefix is None:
                continue
            rows = rows[keys + ["paper", "ours_mean", "repeats", "difference", "verdict", "source"]].rename(
                columns={
                    c: f"{prefix}_{c.removeprefix('ours_')}"
                    for c in ("ours_mean", "repeats", "difference", "verdict", "source")
                }
            )
            earlier = per_network.get(prefix)
            per_network[prefix] = rows if earlier is None else pd.concat([earlier, rows]).drop_duplicates(keys)
    if len(per_network) < 2:
        return pd.DataFrame(
            columns=keys
            + ["paper"]
            + [f"{p}_{c}" for p in ("text", "release") for c in ("mean", "repeats", "difference", "verdict", "source")]
        )
    both = per_network["text"].merge(per_network["release"].drop(columns="paper"), on=keys)
    order = {name: i for i, name in enumerate(DATASETS)}
    return both.sort_values(
        ["dataset", "gating", "series", "x"], key=lambda c: c.map(order) if c.name == "dataset" else c
    ).reset_index(drop=True)


def architectures_beside(profile_dir: str | os.PathLike) -> pd.DataFrame:
    """``architecture_comparison`` of a profile folder's mixtures and those of every other
    profile folder beside it (``runs/*``) made with the paper's stopping rule on full data:
    where this run used one network and another run the other, what the text's MoIE does
    against the release's. This run's points come first."""
    profile_dir = Path(profile_dir).resolve()
    siblings = sorted(
        p for p in profile_dir.parent.iterdir() if p != profile_dir and (p / "mixtures" / "settings.yaml").is_file()
    )
    return architecture_comparison([read_source(p, sections=("mixtures",)) for p in [profile_dir, *siblings]])
