"""What the report templates call: their header, the sections beyond one function call.

The summaries of the reports are notebooks, ``notebooks/report_deep_ensembles.ipynb`` and
``notebooks/report_mixtures.ipynb`` (``stitch`` parameterises them with papermill): markdown,
a ``parameters`` cell and cells that call into asymlib. What a cell would otherwise spell
out in several lines lives here: finding the section folder (``locate_section``), the
header under the title (profile, datasets, where the tables are, the verdict), the published
points beside the run, and the sections beyond the paper, each of which says so in one line
when the run has nothing for it (no SMLP, no ablation, ...).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import yaml
from IPython.display import Markdown, display

from ..core import statistics
from ..core.data import DATASETS
from ..core.datasets import dataset_order
from ..core.project import project_path, project_root
from . import beyond_paper as beyond
from . import mechanism
from .figures_deep_ensembles import PAPER_FIGURE1, PAPER_FIGURE1_SIZE
from .tables import (
    compare_mixtures_with_paper,
    holds_results,
    improvement_table,
    mixture_verdict,
    verdict,
)

# --------------------------------------------------------------------------- the section folder

#: The folder of the report templates (``stitch.template_path``).
TEMPLATES = project_root() / "notebooks"


def dataset_notebooks(section_dir: str | os.PathLike) -> dict[str, Path]:
    """The executed per-dataset notebooks of a section folder: the built-in datasets' in the
    paper's order, then those of user datasets (the other datasets its ``settings.yaml``
    records), by name."""
    section_dir = Path(section_dir)
    names = list(DATASETS) + sorted(set(_recorded_datasets(section_dir)) - set(DATASETS))
    return {name: section_dir / f"{name}.ipynb" for name in names if (section_dir / f"{name}.ipynb").is_file()}


def _recorded_datasets(section_dir: Path) -> list[str]:
    """The datasets the section folder's ``settings.yaml`` records results of (none if unreadable)."""
    try:
        recorded = yaml.safe_load((section_dir / "settings.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(name) for name in recorded] if isinstance(recorded, dict) else []


def locate_section(section_dir: str | os.PathLike, *, section: str = "deep_ensembles") -> Path:
    """The section folder a report reads its tables from: its own first, wherever its kernel
    started.

    A report sits beside its section folder (``runs/<profile>/report_<section>.ipynb`` and
    ``runs/<profile>/<section>/``) and its kernel starts in the report's folder (JupyterLab,
    nbval, ``execute_report``), so its own section folder is ``./<section>`` (or ``.``, for a
    report inside it). It holds results if it has a ``shards/`` folder or the section's
    combined table (``tables.holds_results``). Only when it holds none (the report was
    copied elsewhere, or its folder deleted) is ``section_dir`` read, the folder written
    into the report when it was built: relative to the repository root or absolute. The
    report then says so, since that folder may hold another run's results by now (a
    ``runs/smoke`` moved to ``runs/smoke_old`` and a new ``runs/smoke`` made); the
    templates in ``notebooks/``, which have no folder of their own, read it silently.
    """
    own = [Path.cwd() / section, Path.cwd()]
    for candidate in own:
        if holds_results(candidate, section):
            return candidate
    recorded = project_path(section_dir)
    if holds_results(recorded, section):
        if Path.cwd().resolve() != TEMPLATES.resolve():
            print(
                f"Note: no results in {own[0]}, this report's own folder if its kernel started beside it "
                "(the folder is gone, or the report was run from elsewhere, e.g. papermill without --cwd); "
                f"reading {recorded}, the folder it was built from, which may hold other results by now."
            )
        return recorded
    raise FileNotFoundError(
        f"no results (a shards/ folder or combined tables) in any of {', '.join(map(str, [*own, recorded]))}"
    )


def displayed_path(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root if it lies inside it, else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def show_all(frame: pd.DataFrame, *, rows: int = 1000) -> None:
    """Display ``frame`` with up to ``rows`` rows (pandas cuts a long table to 60)."""
    with pd.option_context("display.max_rows", rows):
        display(frame)


# --------------------------------------------------------------------------- the header


def _header(section_dir: Path, profile: str | None, datasets: list[str], verdict_line: str) -> Markdown:
    """Profile, datasets, where the tables are and whether the datasets' notebooks follow,
    then the verdict; displayed under the report's title."""
    profile = profile or section_dir.resolve().parent.name
    notebooks = dataset_notebooks(section_dir)
    follows = "; each dataset's executed notebook follows it, with its outputs as they ran" if notebooks else ""
    lines = [
        f"**Profile `{profile}`.** Datasets: {', '.join(datasets) or 'none'}. The summary is computed "
        f"from the combined tables in `{displayed_path(section_dir)}`{follows}.",
    ]
    if verdict_line:
        lines.append(verdict_line)
    return Markdown("\n\n".join(lines))


def _in_paper_order(names) -> list[str]:
    return sorted(set(names), key=dataset_order)


def deep_ensembles_header(
    section_dir: Path, models: pd.DataFrame, ensembles: pd.DataFrame, *, profile: str | None = None
) -> None:
    """The deep-ensemble report's header (profile, datasets, tables, the verdict), then what
    the tables hold: how many models and ensemble rows, hidden and ensemble sizes, repeats."""
    sentence = f"**The verdict of this run.** {verdict(ensembles)[1]}" if len(ensembles) else ""
    display(_header(section_dir, profile, _in_paper_order(ensembles["dataset"].unique()), sentence))
    repeats = ensembles.groupby(["dataset", "hidden"])["repeat"].nunique()
    print(f"{len(models)} trained models, {len(ensembles)} ensemble rows from {displayed_path(section_dir)}")
    print(f"datasets: {', '.join(ensembles['dataset'].unique())}")
    print(
        f"hidden sizes: {sorted(ensembles['hidden'].unique().tolist())}, "
        f"ensemble sizes: {sorted(ensembles['ensemble_size'].unique().tolist())}, "
        f"repeats: {repeats.min()} to {repeats.max()}"
    )


def mixtures_header(
    section_dir: Path, mixtures: pd.DataFrame, usage: pd.DataFrame, *, profile: str | None = None
) -> None:
    """The mixture report's header (profile, datasets, tables, the paper's second claim),
    then what the tables hold: gatings, kinds, numbers of experts, repeats, networks."""
    sentence = f"**The paper's second claim in this run.** {mixture_verdict(mixtures)[1]}" if len(mixtures) else ""
    display(_header(section_dir, profile, _in_paper_order(mixtures["dataset"].unique()), sentence))
    repeats = mixtures.groupby(["dataset", "gating", "kind", "experts"])["repeat"].nunique()
    print(f"{len(mixtures)} trained mixtures, {len(usage)} expert-usage rows from {displayed_path(section_dir)}")
    print(f"datasets: {', '.join(mixtures['dataset'].unique())}")
    print(f"gatings: {', '.join(mixtures['gating'].unique())}; kinds: {', '.join(mixtures['kind'].unique())}")
    print(
        f"numbers of experts: {sorted(mixtures['experts'].unique().tolist())}, "
        f"repeats: {repeats.min()} to {repeats.max()}"
    )
    if "architecture" in mixtures:
        print(f"networks: {', '.join(mixtures['architecture'].unique())} (docs/departures.md, 'Mixtures')")


# --------------------------------------------------------------------------- the paper beside ours


def figure1_beside_paper(ensembles: pd.DataFrame) -> pd.DataFrame:
    """Figure 1's numbers (``tables.improvement_table``) beside the values printed in the
    paper's Figure 1 (ensembles of 64), one row per hidden size we trained (as the figure's
    panels); the title in ``attrs``."""
    ours = improvement_table(ensembles)
    paper = pd.DataFrame(PAPER_FIGURE1).T.add_prefix(f"paper_{PAPER_FIGURE1_SIZE}_")
    table = ours.add_prefix("ours_").join(paper, how="left").round(2)
    table.attrs["title"] = ours.attrs["title"] + "; the paper's Figure 1 beside it"
    return table


def mixtures_beside_paper(mixtures: pd.DataFrame) -> pd.DataFrame:
    """Our test metric and the paper's Figure 4 per dataset, gating and number of experts,
    one column per kind of experts (``tables.compare_mixtures_with_paper``)."""
    compared = compare_mixtures_with_paper(mixtures)
    return compared.pivot_table(
        index=["dataset", "gating", "experts"], columns="kind", values=["ours", "paper"], sort=False
    )


def published_points(section_dir: Path, *, section: str) -> None:
    """Every published point of the paper that the run beside ``section_dir`` has, with the
    noise verdict (``fidelity.paper_comparison``); section: "deep_ensemble" or "moe"."""
    from .fidelity import fidelity_counts, paper_comparison, read_source

    points = paper_comparison([read_source(Path(section_dir).parent)])
    points = points[points["section"] == section]
    print(fidelity_counts(points))
    show_all(points[points["verdict"] != "not run"].round(4).reset_index(drop=True), rows=400)


def moie_architectures(section_dir: Path) -> None:
    """The text's MoIE beside the release's where this run trained one and a run beside it
    the other (``fidelity.architectures_beside``): how many points each has within noise."""
    from .fidelity import architectures_beside

    both = architectures_beside(Path(section_dir).parent)
    if both.empty:
        print("No run of the other MoIE network beside this one.")
        return
    for prefix, name in (("text", "text's"), ("release", "release's")):
        counts = both[f"{prefix}_verdict"].value_counts()
        print(
            f"the {name} MoIE: {counts.get('within noise', 0)} of {len(both)} points within noise, "
            f"mean difference from the paper {both[f'{prefix}_difference'].mean():+.4f}"
        )
    show_all(both.drop(columns=["text_source", "release_source"]).round(4), rows=400)


# --------------------------------------------------------------------------- beyond the paper


def _largest(ensembles: pd.DataFrame) -> pd.DataFrame:
    return ensembles[ensembles["ensemble_size"] == ensembles["ensemble_size"].max()]


def uncertainty_section(ensembles: pd.DataFrame) -> None:
    """NLL, Brier score and ECE per type (``beyond.uncertainty_table``), their chart and the
    diversity chart, then WMLP - MLP on these scores at the largest ensemble, paired."""
    if "ensemble_nll" not in ensembles:
        print("This run's tables have no uncertainty scores (made before they were recorded).")
        return
    table = beyond.uncertainty_table(ensembles)
    print(table.attrs["title"])
    display(table)
    display(beyond.uncertainty_chart(ensembles))
    display(beyond.diversity_chart(ensembles))
    measures = ["ensemble_nll", "ensemble_brier", "ensemble_ece", "disagreement", "ambiguity"]
    paired = statistics.improvement_statistics(_largest(ensembles), measures=measures)
    print("WMLP - MLP on these scores at the largest ensemble, paired over repeats (> 0: WMLP better)")
    display(paired.round(4))


def versus_mlp_section(ensembles: pd.DataFrame, *, better: str = "smlp", name: str = "sigma-Asymmetric MLPs") -> None:
    """``better`` - MLP per dataset at the largest ensemble, then over datasets; one line
    when the run trained no ``better`` (``name``: how to call them in that line)."""
    if not (ensembles["type"] == better).any():
        print(f"This run trained no {name} (its types: " + ", ".join(ensembles["type"].unique()) + ").")
        return
    display(statistics.improvement_statistics(_largest(ensembles), better=better).round(4))
    display(statistics.across_datasets(ensembles, better=better).round(3))


def mechanism_section(models: pd.DataFrame, ensembles: pd.DataFrame) -> None:
    """Loss barriers and alignment (``reports.mechanism``): the paired comparisons at the
    largest ensemble, then the barriers per type; one line when the run measured none."""
    if not mechanism.has_barriers(models):
        print("This run measured no loss barriers (barrier_pairs: 0; params/mechanism.yaml does).")
        return
    table = mechanism.comparisons(models, ensembles)
    print("\n".join(mechanism.answers(table)) + "\n")
    print(
        "Paired over repeats at the largest ensemble (positive: the first condition better: lower barrier, "
        "better metric); 95 % t intervals, p Holm-corrected over datasets per comparison and measure"
    )
    show_all(
        table[["comparison", "measure", "dataset", "n", "mean", "ci_low", "ci_high", "p_holm", "significant"]].round(4)
    )
    display(mechanism.barrier_chart(models, ensembles, measure="loss_barrier"))
    display(mechanism.barrier_chart(models, ensembles, measure="metric_barrier"))


def ablation_section(everything: pd.DataFrame, *, axis: str) -> None:
    """WMLP ensembles with other values of ``axis`` ("n_fix" or "kappa"): relative
    improvement and test metric (``beyond.ablation_chart``); one line when the run has one."""
    wasym = everything[everything["type"].str.startswith("wmlp")]
    if axis not in everything or wasym[axis].nunique() < 2:
        print(f"This run trained WMLPs with one value of {axis} only: no ablation of it.")
        return
    display(beyond.ablation_chart(everything, axis=axis))
    display(beyond.ablation_chart(everything, axis=axis, measure="ensemble_metric"))


def ablation_variants(everything: pd.DataFrame) -> None:
    """Every WMLP variant against the MLP, paired over repeats (``beyond.ablation_table``)."""
    wasym = everything[everything["type"].str.startswith("wmlp")]
    if not {"n_fix", "kappa"} <= set(everything) or len(wasym[["n_fix", "kappa"]].drop_duplicates()) < 2:
        print("This run trained one WMLP variant only.")
        return
    ablations = beyond.ablation_table(everything)
    print(ablations.attrs["title"])
    show_all(ablations.round(4), rows=500)


def mixture_uncertainty_section(mixtures: pd.DataFrame) -> None:
    """NLL, Brier score and ECE of the mixtures and their experts' diversity
    (``beyond.mixture_uncertainty_table``, ``beyond.mixture_diversity_chart``)."""
    if "nll" not in mixtures:
        print("This run's tables have no uncertainty scores (made before they were recorded).")
        return
    table = beyond.mixture_uncertainty_table(mixtures)
    print(table.attrs["title"])
    show_all(table)
    display(beyond.mixture_diversity_chart(mixtures))


def balance_section(all_mixtures: pd.DataFrame, all_usage: pd.DataFrame) -> None:
    """The load-balancing ablation (``beyond.balance_chart``, ``beyond.balance_table``);
    one line when every mixture was trained without it."""
    if "balance_weight" not in all_mixtures or all_mixtures["balance_weight"].nunique() < 2:
        print("This run trained every mixture without a load-balancing loss: no ablation of it.")
        return
    display(beyond.balance_chart(all_mixtures))
    balance = beyond.balance_table(all_mixtures, all_usage)
    print(balance.attrs["title"])
    show_all(balance)
