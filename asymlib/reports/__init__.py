"""Reports: tidy tables, the paper's figures per section, stitched notebooks and offline HTML.

``tables`` (summaries, the paper's published points beside ours), ``charts`` (what the
figures share), ``figures_deep_ensembles`` and ``figures_mixtures`` (the paper's figures,
sliders and explorers of each section), ``stitch`` (one report notebook per section from its
executed per-dataset notebooks) and ``html`` (charts that draw with no network).
"""
