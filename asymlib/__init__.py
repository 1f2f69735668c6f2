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

``DeepEnsembleClassifier`` and ``DeepEnsembleRegressor`` (``core/estimators.py``), the
scikit-learn estimators for your own data, are importable from here; they load torch only
when first used, so that importing the package (the ``asymlib`` command) stays cheap.
"""

__version__ = "0.1.0"
__all__ = ["DeepEnsembleClassifier", "DeepEnsembleRegressor", "__version__"]

_ESTIMATORS = ("DeepEnsembleClassifier", "DeepEnsembleRegressor")


def __getattr__(name: str):
    """The estimators, imported on first access (PEP 562)."""
    if name in _ESTIMATORS:
        from .core import estimators

        return getattr(estimators, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ESTIMATORS))
