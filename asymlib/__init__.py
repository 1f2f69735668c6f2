"""asymlib: W-Asymmetric MLPs in deep ensembles and mixtures of experts, trained as batched models.

Four layers, each importing only those below it (``tests/test_architecture.py`` checks):

- ``execution``: run a parameter profile: check its YAML, execute the section notebooks with
  papermill, resume, summarise (``asymlib`` command, ``python -m asymlib``).
- ``reports``: tidy tables, the paper's figures per section, stitched report notebooks and
  their offline HTML.
- ``sections``: the paper's two sections (deep ensembles, mixtures) as resumable work units.
- ``core``: what the notebooks import to do the science: data, layers, models, mixtures,
  the batched trainer, evaluation, statistics, and where things are on disk.

``docs/architecture.md`` follows one result from raw file to report through these modules.
"""

__version__ = "0.1.0"
