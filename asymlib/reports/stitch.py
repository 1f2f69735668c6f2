"""One report notebook per section and profile: stitched, executed, exported to HTML.

The runner leaves one executed notebook per dataset in ``runs/<profile>/<section>/``. The
report stitches them under a summary::

    runs/<profile>/report_<section>.ipynb     the report (opens in JupyterLab)
    runs/<profile>/report_<section>.html      its HTML copy: charts render with no network

Summary first: code cells that import asymlib, load the section's combined tables and draw
the paper's figures next to the paper's points, sliders and the WMLP - MLP statistics.
Then each dataset's executed notebook, under a heading, as one code cell that shows it
again from its file (``replay.show_executed``): its parameters, markdown, code and stored
outputs. Executing the report in any way (JupyterLab's Run All, nbclient, ``pytest
--nbval-lax``) redraws the summary from the tables and the datasets from their notebooks;
nothing is trained again and no stored result is lost.

    from asymlib.reports.stitch import build_report
    build_report("runs/quick/deep_ensembles")      # -> runs/quick/report_deep_ensembles.html

The HTML copy renders with no network (``html.export_html``).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Callable

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..core.data import DATASETS
from ..core.project import (
    notebook_error,
    notebook_succeeded,
    project_path,
    project_root,
)
from .html import ReportError, export_html, trust_notebook
from .tables import describe_diverged, diverged_members, load_mixture_results, load_results, mixture_verdict, verdict


def report_path(section_dir: str | os.PathLike, *, section: str) -> Path:
    """Where ``stitch_section`` writes the report of a section folder by default."""
    return Path(section_dir).resolve().parent / f"report_{section}.ipynb"


def dataset_notebooks(section_dir: str | os.PathLike) -> dict[str, Path]:
    """The executed per-dataset notebooks of a section folder, in the paper's dataset order."""
    section_dir = Path(section_dir)
    return {name: section_dir / f"{name}.ipynb" for name in DATASETS if (section_dir / f"{name}.ipynb").is_file()}


def locate_section(section_dir: str | os.PathLike, *, section: str = "deep_ensembles") -> Path:
    """The section folder a report reads its tables from, wherever its kernel started.

    ``section_dir`` as written in the report: relative to the repository root (so it works
    from papermill's and nbval's working folders alike) or absolute. If it holds no results
    (the runs folder was moved or copied), the report's own folder is tried: ``./<section>``
    and then ``.``, which is where JupyterLab and nbval start the kernel.
    """
    candidates = [project_path(section_dir), Path.cwd() / section, Path.cwd()]
    for candidate in candidates:
        if (candidate / "shards").is_dir():
            return candidate
    raise FileNotFoundError(f"no results (a shards/ folder) in any of {', '.join(map(str, candidates))}")


def _displayed_path(path: Path) -> str:
    """``path`` relative to the repository root if it lies inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(project_root()))
    except ValueError:
        return str(path.resolve())


# --------------------------------------------------------------------------- summaries


def _cells(*parts: tuple[str, str]) -> list:
    """Notebook cells from ("md" | "code", source) pairs; sources are dedented."""
    make = {"md": new_markdown_cell, "code": new_code_cell}
    return [make[kind](textwrap.dedent(source).strip()) for kind, source in parts]


def _published_points(section: str, *, figure: int) -> tuple[tuple[str, str], ...]:
    """Cells listing the paper's published points of ``figure`` that the report's run has,
    with the noise verdict (``reports/fidelity.py``); ``section``: the points' section
    ("deep_ensemble" or "moe")."""
    return (
        (
            "md",
            f"""
        ### Every published point beside this run

        One row per point of the paper's Figure {figure} that this run has (`asymlib compare`'s
        table, which covers all 640 points over several runs): the paper's value, our mean,
        standard deviation and repeats, and whether the difference is within repeat noise
        (|ours - paper| <= 2 s sqrt(1/n + 1/5), s pooled over this run's points of the same
        dataset and measure). Only a run with the paper's stopping rule on full data counts.
        """,
        ),
        (
            "code",
            f"""
        from IPython.display import display

        from asymlib.reports.fidelity import fidelity_counts, paper_comparison, read_source

        points = paper_comparison([read_source(section_dir.parent)])
        points = points[points["section"] == "{section}"]
        print(fidelity_counts(points))
        with pd.option_context("display.max_rows", 400):
            display(points[points["verdict"] != "not run"].round(4).reset_index(drop=True))
        """,
        ),
    )


def _moie_architectures() -> tuple[tuple[str, str], ...]:
    """Cells setting the text's MoIE beside the release's, where this run trained one network
    and another run beside it (``runs/*``) the other (``fidelity.architectures_beside``)."""
    return (
        (
            "md",
            """
        ### The text's MoIE beside the release's

        The paper's text and its code release build MoIE experts differently (docs/departures.md,
        'Mixtures'); the setting `architecture` chooses. Where this run used one and another
        run beside it (same split, the paper's stopping rule) the other, each point of Figure 4
        that both have, with each network's mean, repeats, difference from the paper and verdict.
        `params/fidelity_text_moie.yaml` trains the text's networks beside the fidelity profile.
        """,
        ),
        (
            "code",
            """
        from asymlib.reports.fidelity import architectures_beside

        both = architectures_beside(section_dir.parent)
        if both.empty:
            print("No run of the other MoIE network beside this one.")
        else:
            for prefix, name in (("text", "text's"), ("release", "release's")):
                counts = both[f"{prefix}_verdict"].value_counts()
                print(f"the {name} MoIE: {counts.get('within noise', 0)} of {len(both)} points within noise, "
                      f"mean difference from the paper {both[f'{prefix}_difference'].mean():+.4f}")
            with pd.option_context("display.max_rows", 400):
                display(both.drop(columns=["text_source", "release_source"]).round(4))
        """,
        ),
    )


def _deep_ensembles_summary(section_dir: Path, profile: str, datasets: list[str]) -> list:
    """The summary cells of the deep-ensemble section: the paper's Figures 1 and 3 next
    to its points, the comparison table, the size sliders and the paired statistics."""
    where = _displayed_path(section_dir)
    title = _cells(
        (
            "md",
            f"""
        # Deep ensembles of MLPs and W-Asymmetric MLPs: profile `{profile}`

        A reproduction of Chernov & Novitskij (2025), *The Empirical Impact of Reducing Symmetries
        on the Performance of Deep Ensembles and MoE*, Figures 1 and 3. Deep ensembles of the first
        *k* of independently trained MLPs and W-Asymmetric MLPs (WMLP: some weights frozen at random
        values) are scored on the test set. The claim under test: WMLP ensembles gain more from
        growing than MLP ensembles, relative to their own mean single model.

        Datasets: {", ".join(datasets)}. The summary is computed from the combined tables in
        `{where}`; each dataset's executed notebook follows it, with its outputs as they ran.

        {_verdict_line(section_dir)}

        Contents: the verdict · Figure 1 · Figure 3 · ours against the paper in numbers · MLP
        against WMLP at one ensemble size (sliders) · WMLP against MLP, paired over repeats · test
        rows beyond training's range · the datasets' notebooks.
        """,
        )
    )
    parameters = new_code_cell(
        f"# The section folder: relative to the repository root, or absolute.\n"
        f"section_dir = {where!r}\nsection = 'deep_ensembles'",
        metadata={"tags": ["parameters"]},
    )
    return (
        title
        + [parameters]
        + _cells(
            (
                "code",
                """
        import pandas as pd

        from asymlib.core import statistics
        from asymlib.reports import beyond_paper as beyond
        from asymlib.reports import figures_deep_ensembles as figures
        from asymlib.reports.html import offline_charts
        from asymlib.reports.stitch import locate_section
        from asymlib.reports.tables import (
            compare_with_paper, improvement_table, load_results, out_of_range_table, outlier_members,
            paper_types, summary_table, verdict,
        )

        offline_charts()  # the charts below then draw with no network, in JupyterLab too
        section_dir = locate_section(section_dir, section=section)
        models, everything = load_results(section_dir, section=section)
        # The paper's settings; an ablation's other WMLPs have their own section below.
        ensembles = paper_types(everything)
        repeats = ensembles.groupby(["dataset", "hidden"])["repeat"].nunique()
        print(f"{len(models)} trained models, {len(ensembles)} ensemble rows from {section_dir}")
        print(f"datasets: {', '.join(ensembles['dataset'].unique())}")
        print(f"hidden sizes: {sorted(ensembles['hidden'].unique().tolist())}, "
              f"ensemble sizes: {sorted(ensembles['ensemble_size'].unique().tolist())}, "
              f"repeats: {repeats.min()} to {repeats.max()}")
        """,
            ),
            (
                "md",
                """
        ## The verdict

        WMLP - MLP at the largest ensemble, per dataset: the test metric (accuracy or RMSE,
        oriented so that positive means WMLP is better) and the gain over the mean single model
        (Figure 1's measure, in percentage points), each with its 95 % t interval over repeats and
        whether it stays significant after Holm's correction for the number of comparisons. Then
        the paper's question over all datasets: the mean (and the median, since one dataset can
        dominate a mean) of the per-dataset differences in gain, with bootstrap intervals.
        """,
            ),
            (
                "code",
                """
        table, sentence = verdict(ensembles)
        print(sentence)
        table.round(4)
        """,
            ),
            ("code", "statistics.across_datasets(ensembles).round(3)"),
            (
                "md",
                """
        ## Figure 1: relative improvement over the mean single model

        Accuracy (ens - single) / single, RMSE (single - ens) / single, in %, where *single* is the
        mean test metric of all members of that type and repeat; means over repeats, then over
        datasets. Solid: ours. Dashed: the paper's Figure 3 points turned into the same measure,
        over the same datasets as ours. Diamonds: the values printed in the paper's Figure 1
        (size 64, all five datasets).
        """,
            ),
            ("code", "figures.figure1(ensembles)"),
            (
                "code",
                """
        ours = improvement_table(ensembles)
        print(ours.attrs["title"] + "; the paper's Figure 1 beside it")
        paper = pd.DataFrame(figures.PAPER_FIGURE1).T.add_prefix(f"paper_{figures.PAPER_FIGURE1_SIZE}_")
        ours.add_prefix("ours_").join(paper, how="outer").round(2)
        """,
            ),
            (
                "md",
                """
        ## Figure 3: test metric against ensemble size

        Ours: mean over repeats with a band of +-1 standard deviation, and each type's mean single
        model (dashed rule). The paper's points: dashed lines with diamonds, its mean single models
        dotted. The paper's points come from its code release's split (72 / 8 / 20, `split: release`);
        ours from the split in the `our_split` column below (`paper`: the text's 64 / 16 / 20).
        """,
            ),
            ("code", "figures.figure3(ensembles)"),
            ("md", "### Ours next to the paper, in numbers (means over repeats)"),
            ("code", "compare_with_paper(ensembles)"),
            *_published_points("deep_ensemble", figure=3),
            (
                "md",
                """
        ## MLP against WMLP at one ensemble size

        The slider belongs to the chart, so it also works in the HTML copy: bars are our relative
        improvement at the largest trained ensemble size up to the slider's value, black ticks the
        paper's at the same size. Below, ipywidgets do the same with a table of the test metrics;
        they need a running kernel, and a static view of their first state is saved.
        """,
            ),
            ("code", "figures.size_slider_chart(ensembles)"),
            ("code", "figures.ensemble_explorer(ensembles)"),
            (
                "md",
                """
        ## WMLP against MLP, paired over repeats

        Repeat *r* of both types shares its seeds, so the difference WMLP - MLP is taken within each
        repeat, oriented so that **positive means WMLP is better** (accuracy: wmlp - mlp; RMSE:
        mlp - wmlp; relative improvements: wmlp - mlp, in percentage points). Mean, 95 % t interval
        and the paired t-test's p-value over repeats; with a single repeat these are NaN.
        """,
            ),
            (
                "code",
                """
        paired = statistics.improvement_statistics(ensembles)
        figures.improvement_chart(paired, measure="relative_improvement")
        """,
            ),
            ("code", 'figures.improvement_chart(paired, measure="ensemble_metric")'),
            (
                "code",
                """
        print(paired.attrs["title"] + ", largest ensembles")
        largest = paired["ensemble_size"] == paired["ensemble_size"].max()
        paired[largest].round(4).reset_index(drop=True)
        """,
            ),
            (
                "md",
                """
        ## Test rows beyond training's range

        A test row whose standardised value in some feature exceeds anything the training part
        has in that feature lies where no network was fit; a frozen W-Asymmetric weight on that
        feature cannot shrink to tame it. Per dataset: how many such rows, the largest |z| in the
        test part, and each type's mean member metric with and without those rows. Then the
        members whose metric lies beyond the median + 5 MAD of their peers (below, for accuracy),
        with their seeds.
        """,
            ),
            ("code", "out_of_range_table(models).round(4)"),
            ("code", "outlier_members(models)"),
        )
        + _deep_ensembles_beyond(section_dir)
        + _cells(
            ("md", "### Every ensemble size, means over repeats"),
            ("code", "summary_table(ensembles)"),
        )
    )


def _deep_ensembles_beyond(section_dir: Path) -> list:
    """The summary's sections beyond the paper, for what the results hold: uncertainty and
    diversity, sigma-Asymmetric MLPs, and each ablation of the W-Asymmetric weights."""
    try:
        ensembles = load_results(section_dir).ensembles
    except FileNotFoundError:
        return []
    cells = []
    if "ensemble_nll" in ensembles:
        cells += _cells(
            (
                "md",
                """
            ## Beyond accuracy: uncertainty and diversity

            The paper scores ensembles by accuracy and RMSE alone. Here the same models' predictive
            distributions: NLL, Brier score and expected calibration error (15 equal-width bins of the
            top-label confidence) for classification; for regression the Gaussian NLL, each member with
            the variance of its residuals on the validation set and an ensemble as the mixture of its
            members' Gaussians (docs/protocol.md, "Beyond the paper"). Lower is better for all three.
            Diversity is the members' pairwise disagreement (classification) or the ambiguity of the
            ensemble decomposition (regression: ensemble MSE = mean member MSE - ambiguity).
            """,
            ),
            (
                "code",
                """
            table = beyond.uncertainty_table(ensembles)
            print(table.attrs["title"])
            table
            """,
            ),
            ("code", "beyond.uncertainty_chart(ensembles)"),
            ("code", "beyond.diversity_chart(ensembles)"),
            (
                "md",
                """
            WMLP - MLP on these scores at the largest ensemble, paired over repeats (positive: WMLP
            better, i.e. lower NLL, Brier score or ECE; for diversity: WMLP's members differ more).
            """,
            ),
            (
                "code",
                """
            largest = ensembles[ensembles["ensemble_size"] == ensembles["ensemble_size"].max()]
            measures = ["ensemble_nll", "ensemble_brier", "ensemble_ece", "disagreement", "ambiguity"]
            statistics.improvement_statistics(largest, measures=measures).round(4)
            """,
            ),
        )
    if (ensembles["type"] == "smlp").any():
        cells += _cells(
            (
                "md",
                """
            ## A third way to break symmetry: sigma-Asymmetric MLPs

            `smlp` networks keep every weight trainable but replace each GELU by x * sigmoid(x C), with
            a frozen random matrix C per hidden layer (Lim et al., 2024); they share the MLPs' seeds, so
            the comparison is paired like WMLP's. SMLP - MLP per dataset at the largest ensemble, then
            over datasets (positive: SMLP better).
            """,
            ),
            (
                "code",
                """
            largest = ensembles[ensembles["ensemble_size"] == ensembles["ensemble_size"].max()]
            sigma = statistics.improvement_statistics(largest, better="smlp")
            sigma.round(4)
            """,
            ),
            ("code", 'statistics.across_datasets(ensembles, better="smlp").round(3)'),
        )
    if "n_fix" in ensembles:
        wasym = ensembles[ensembles["type"].str.startswith("wmlp")]
        for axis, heading, question in (
            ("n_fix", "how many weights to freeze", "frozen weights per unit after the first layer (n_fix)"),
            ("kappa", "how large the frozen values", "the standard deviation of the frozen values (kappa)"),
        ):
            if wasym[axis].nunique() > 1:
                cells += _cells(
                    (
                        "md",
                        f"""
                    ## Ablation: {heading}

                    The paper leaves open how many weights to freeze and how large their values should be.
                    WMLP ensembles with other {question}; the other axis by colour, the MLP of the same
                    repeats as a grey rule. First the relative improvement over the mean single model
                    (Figure 1's measure), then the ensemble's test metric.
                    """,
                    ),
                    ("code", f'beyond.ablation_chart(everything, axis="{axis}")'),
                    ("code", f'beyond.ablation_chart(everything, axis="{axis}", measure="ensemble_metric")'),
                )
        if wasym[["n_fix", "kappa"]].drop_duplicates().shape[0] > 1:
            cells += _cells(
                ("md", "### Every WMLP variant against the MLP, paired over repeats"),
                (
                    "code",
                    """
                ablations = beyond.ablation_table(everything)
                print(ablations.attrs["title"])
                with pd.option_context("display.max_rows", 500):
                    display(ablations.round(4))
                """,
                ),
            )
    return cells


def _mixtures_beyond(section_dir: Path) -> list:
    """The mixture summary's sections beyond the paper: uncertainty and the experts'
    diversity, and the load-balancing ablation."""
    try:
        mixtures = load_mixture_results(section_dir).mixtures
    except FileNotFoundError:
        return []
    cells = []
    if "nll" in mixtures:
        cells += _cells(
            (
                "md",
                """
            ## Beyond accuracy: uncertainty and the experts' diversity

            NLL, Brier score and expected calibration error of each mixture's prediction (regression:
            Gaussian NLL with the variance of the mixture's validation residuals), and how differently
            its experts predict, each expert run as a network of its own (MoIE: the network of its
            parameters alone), against the mixture's gain over 2 experts.
            """,
            ),
            (
                "code",
                """
            table = beyond.mixture_uncertainty_table(mixtures)
            print(table.attrs["title"])
            with pd.option_context("display.max_rows", 1000):
                display(table)
            """,
            ),
            ("code", "beyond.mixture_diversity_chart(mixtures)"),
        )
    if "balance_weight" in mixtures and mixtures["balance_weight"].nunique() > 1:
        cells += _cells(
            (
                "md",
                """
            ## Ablation: a load-balancing loss

            The paper asks whether MoE needs load balancing. The same mixtures (same seeds) trained with
            an auxiliary loss w * CV(importance)^2 (Shazeer et al., 2017), for each weight w, against
            w = 0; how many experts the gate then uses (effective experts) beside the test metric.
            """,
            ),
            ("code", "beyond.balance_chart(all_mixtures)"),
            (
                "code",
                """
            balance = beyond.balance_table(all_mixtures, all_usage)
            print(balance.attrs["title"])
            with pd.option_context("display.max_rows", 1000):
                display(balance)
            """,
            ),
        )
    return cells


def _verdict_line(section_dir: Path) -> str:
    """The verdict sentence for the report's first cell, from the results at stitch time."""
    try:
        ensembles = load_results(section_dir).ensembles
    except FileNotFoundError:
        return ""
    if ensembles.empty:
        return ""
    return f"**The verdict of this run.** {verdict(ensembles)[1]}"


def _mixture_verdict_line(section_dir: Path) -> str:
    """The mixtures' verdict sentence for the report's first cell, at stitch time."""
    try:
        mixtures = load_mixture_results(section_dir).mixtures
    except FileNotFoundError:
        return ""
    if mixtures.empty:
        return ""
    return f"**The paper's second claim in this run.** {mixture_verdict(mixtures)[1]}"


def _mixtures_summary(section_dir: Path, profile: str, datasets: list[str]) -> list:
    """The summary cells of the mixture section: the paper's Figures 2 and 4 next to its
    points, the comparison table, the number-of-experts slider and explorer, and how evenly
    the gates use their experts."""
    where = _displayed_path(section_dir)
    title = _cells(
        (
            "md",
            f"""
        # Mixtures of MLP and W-Asymmetric MLP experts: profile `{profile}`

        A reproduction of Chernov & Novitskij (2025), *The Empirical Impact of Reducing Symmetries
        on the Performance of Deep Ensembles and MoE*, Figures 2 and 4. A logistic-regression gate
        (softmax, or Gumbel-softmax with tau = 2) weighs *K* experts of hidden 64: MoE mixes the
        experts' outputs (kinds `mlp`, `wmlp`), MoIE interpolates their parameters per example
        (`imlp`, `iwmlp`); the `w` kinds are W-Asymmetric (some weights frozen at random values).
        The paper finds the evidence for W-Asymmetric experts inconclusive here.

        Datasets: {", ".join(datasets)}. The summary is computed from the combined tables in
        `{where}`; each dataset's executed notebook follows it, with its outputs as they ran.

        {_mixture_verdict_line(section_dir)}

        Contents: the paper's second claim · Figure 2 · Figure 4 · ours against the paper in
        numbers · the kinds at one number of experts (sliders) · expert usage · the datasets'
        notebooks.
        """,
        )
    )
    parameters = new_code_cell(
        f"# The section folder: relative to the repository root, or absolute.\n"
        f"section_dir = {where!r}\nsection = 'mixtures'",
        metadata={"tags": ["parameters"]},
    )
    return (
        title
        + [parameters]
        + _cells(
            (
                "code",
                """
        import pandas as pd
        from IPython.display import display

        from asymlib.reports import beyond_paper as beyond
        from asymlib.reports import figures_mixtures as figures
        from asymlib.reports.html import offline_charts
        from asymlib.reports.stitch import locate_section
        from asymlib.reports.tables import (
            compare_mixtures_with_paper, load_mixture_results, mixture_summary, mixture_verdict, paper_mixtures,
            usage_summary,
        )

        offline_charts()  # the charts below then draw with no network, in JupyterLab too
        section_dir = locate_section(section_dir, section=section)
        all_mixtures, all_usage = load_mixture_results(section_dir)
        # Without a load-balancing loss, the paper's; the ablation has its own section below.
        mixtures, usage = paper_mixtures(all_mixtures), paper_mixtures(all_usage)
        repeats = mixtures.groupby(["dataset", "gating", "kind", "experts"])["repeat"].nunique()
        print(f"{len(mixtures)} trained mixtures, {len(usage)} expert-usage rows from {section_dir}")
        print(f"datasets: {', '.join(mixtures['dataset'].unique())}")
        print(f"gatings: {', '.join(mixtures['gating'].unique())}; kinds: {', '.join(mixtures['kind'].unique())}")
        print(f"numbers of experts: {sorted(mixtures['experts'].unique().tolist())}, "
              f"repeats: {repeats.min()} to {repeats.max()}")
        if "architecture" in mixtures:
            print(f"networks: {', '.join(mixtures['architecture'].unique())} (docs/departures.md, 'Mixtures')")
        """,
            ),
            (
                "md",
                """
        ## The paper's second claim

        W-Asymmetric experts against plain ones, per dataset, gating and number of experts: MoE
        of WMLP against MLP experts, MoIE of IWMLP against IMLP experts, the test metric paired
        over repeats (oriented so that positive means the W-Asymmetric kind is better), with 95 %
        t intervals and significance after Holm's correction over every cell of the table.
        """,
            ),
            (
                "code",
                """
        table, sentence = mixture_verdict(mixtures)
        print(sentence)
        with pd.option_context("display.max_rows", 1000):
            display(table.round(4))
        """,
            ),
            (
                "md",
                """
        ## Figure 2: gain over the same model with 2 experts

        Accuracy (m - m2) / m2, RMSE (m2 - m) / m2, in %, where *m2* is the mean test metric of
        the same dataset, gating and kind with 2 experts: positive means more experts helped.
        Means over repeats, then over datasets. Solid: ours. Dashed: the paper's Figure 4 points
        turned into the same measure, over the same datasets as ours (up to 128 experts).
        """,
            ),
            ("code", "figures.figure2(mixtures)"),
            (
                "code",
                """
        table = figures.figure2_table(mixtures)
        print(table.attrs["title"])
        table.round(3)
        """,
            ),
            (
                "md",
                """
        ## Figure 4: test metric against the number of experts

        Ours: mean over repeats with a band of +-1 standard deviation. The paper's points: dashed
        lines with diamonds. The paper's code release split its data 72 / 8 / 20 and built its
        MoIE of five ReLU layers; which split and networks ours used is in the table's `split`
        and `architecture` columns (printed above).
        """,
            ),
            ("code", "figures.figure4(mixtures)"),
            ("md", "### Ours next to the paper, in numbers (means over repeats; the paper: its Figure 4)"),
            (
                "code",
                """
        compared = compare_mixtures_with_paper(mixtures)
        with pd.option_context("display.max_rows", 1000):
            display(compared.pivot_table(
                index=["dataset", "gating", "experts"], columns="kind", values=["ours", "paper"], sort=False
            ))
        """,
            ),
            *_published_points("moe", figure=4),
            *_moie_architectures(),
            (
                "md",
                """
        ## The kinds of experts at one number of experts

        The slider belongs to the chart, so it also works in the HTML copy: points are our test
        metric (+-1 std over repeats) at the largest trained number of experts up to the slider's
        value, black ticks the paper's at the same number. Below, ipywidgets compare MLP with WMLP
        and IMLP with IWMLP experts, paired over repeats (positive: the W-Asymmetric kind is
        better); they need a running kernel, and a static view of their first state is saved.
        """,
            ),
            ("code", "figures.experts_slider_chart(mixtures)"),
            ("code", "figures.mixture_explorer(mixtures)"),
            (
                "md",
                """
        ## Expert usage

        From each mixture's last epoch: *effective experts* = exp(entropy) of the mean gate
        weights on the validation set (*K* when the gate uses every expert equally, 1 when one
        expert takes everything), means over repeats; one column per number of experts. The
        full table (with the top share and the unused experts) follows.
        """,
            ),
            (
                "code",
                """
        used = usage_summary(usage)  # in the paper's order of datasets, gatings and kinds
        used.pivot_table(index=["dataset", "gating", "kind"], columns="experts", values="effective_experts", sort=False)
        """,
            ),
            (
                "code",
                """
        with pd.option_context("display.max_rows", 1000):
            display(used)
        """,
            ),
        )
        + _mixtures_beyond(section_dir)
        + _cells(
            ("md", "### Every model, means over repeats"),
            (
                "code",
                """
        with pd.option_context("display.max_rows", 1000):
            display(mixture_summary(mixtures))
        """,
            ),
        )
    )


def _generic_summary(section_dir: Path, profile: str, datasets: list[str]) -> list:
    # A section without figures of its own yet still gets its notebooks in one place.
    return [
        new_markdown_cell(
            f"# {section_dir.name}: profile `{profile}`\n\n"
            f"No summary figures for this section yet. Datasets: {', '.join(datasets)}; "
            f"results in `{_displayed_path(section_dir)}`."
        ),
    ]


#: The summary each section's report opens with: (section_dir, profile, datasets) -> cells.
SUMMARIES: dict[str, Callable[[Path, str, list[str]], list]] = {
    "deep_ensembles": _deep_ensembles_summary,
    "mixtures": _mixtures_summary,
}


# --------------------------------------------------------------------------- stitching


def _dataset_cells(dataset: str, notebook_path: Path, *, section: str) -> list:
    """A heading and the cell that shows the dataset's executed notebook again."""
    run = nbformat.read(notebook_path, as_version=4).metadata.get("papermill", {})
    heading = [
        f"## {dataset}\n",
        f"The executed notebook `{notebook_path.name}` ({_displayed_path(notebook_path)}), as it ran"
        + (f", {run['duration']:.0f} s" if run.get("duration") else "")
        + ". The cell below shows its parameters, code and outputs from that file: running it"
        " reads the file again and trains nothing.",
    ]
    if not notebook_succeeded(notebook_path):
        heading.append(f"\n\n**This notebook did not finish:** {notebook_error(notebook_path)}")
    show = new_code_cell(
        "from asymlib.reports.replay import show_executed\n\n"
        f"show_executed({_displayed_path(notebook_path)!r}, section={section!r})"
    )
    # Cell ids are unique within a notebook; the dataset names are.
    show.id = f"{dataset}-executed"
    return [new_markdown_cell("\n".join(heading)), show]


def _diverged_warning(section_dir: Path, section: str) -> list:
    """A warning cell for the top of the report when any member or mixture diverged."""
    loaders = {
        "deep_ensembles": lambda: load_results(section_dir),
        "mixtures": lambda: load_mixture_results(section_dir),
    }
    if section not in loaders:
        return []
    try:
        diverged = diverged_members(loaders[section]()._asdict())
    except FileNotFoundError:  # no results yet: nothing to warn about
        return []
    if not len(diverged):
        return []
    return [
        new_markdown_cell(
            f"> **Warning: some results are not results.** {describe_diverged(diverged)}. "
            "Their rows in the tables below say `diverged = True` with the reason; every figure and "
            "summary leaves them out."
        )
    ]


def stitch_section(
    section_dir: str | os.PathLike,
    *,
    section: str = "deep_ensembles",
    profile: str | None = None,
    output: str | os.PathLike | None = None,
) -> Path:
    """Write the (not yet executed) report notebook of a section folder; returns its path.

    section_dir: ``runs/<profile>/<section>``, holding ``<dataset>.ipynb`` per dataset and
        the combined tables (or shards).
    profile: shown in the title; default the name of the folder above ``section_dir``.
    output: the notebook to write; default ``runs/<profile>/report_<section>.ipynb``.
    Raises ReportError if the folder holds no executed dataset notebook.
    """
    section_dir = Path(section_dir).resolve()
    profile = profile or section_dir.parent.name
    notebooks = dataset_notebooks(section_dir)
    if not notebooks:
        raise ReportError(f"{section_dir} holds no executed dataset notebook ({', '.join(DATASETS)}.ipynb)")
    summary = SUMMARIES.get(section, _generic_summary)(section_dir, profile, list(notebooks))
    cells = summary[:1] + _diverged_warning(section_dir, section) + summary[1:]
    cells += [new_markdown_cell("# The datasets' notebooks")]
    for dataset, path in notebooks.items():
        cells += _dataset_cells(dataset, path, section=section)

    report = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
            "language_info": {"name": "python"},
            "title": f"{section.replace('_', ' ')}: {profile}",
        },
    )
    output = Path(output) if output is not None else report_path(section_dir, section=section)
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(report)
    nbformat.write(report, output)
    return output


def execute_report(path: str | os.PathLike, *, kernel: str = "python3", timeout: int = 600, trust: bool = True) -> Path:
    """Execute the report in place with nbclient, the kernel started in its own folder.

    Widget state is saved with the notebook. trust: sign the executed notebook
    (``html.trust_notebook``), so that JupyterLab runs the scripts of its chart outputs. If
    a cell fails,
    the notebook is still written, with the traceback, and the error raised.
    """
    from nbclient import NotebookClient

    path = Path(path)
    report = nbformat.read(path, as_version=4)
    client = NotebookClient(
        report,
        kernel_name=kernel,
        timeout=timeout,
        resources={"metadata": {"path": str(path.parent.resolve())}},
    )
    try:
        client.execute()
    finally:
        nbformat.write(report, path)
    if trust:
        trust_notebook(path)
    return path


def build_report(
    section_dir: str | os.PathLike,
    *,
    section: str = "deep_ensembles",
    profile: str | None = None,
    output: str | os.PathLike | None = None,
    kernel: str = "python3",
) -> Path:
    """Stitch, execute and export a section's report; returns the HTML path.

    The notebook goes to ``output`` (default ``runs/<profile>/report_<section>.ipynb``),
    the HTML beside it.
    """
    notebook = stitch_section(section_dir, section=section, profile=profile, output=output)
    execute_report(notebook, kernel=kernel)
    return export_html(notebook)
