"""The paper's two sections as resumable work units, one module each.

``deep_ensembles`` (one unit: dataset x hidden x repeat, MLP and WMLP ensembles) and
``mixtures`` (one unit: dataset x gating x kind x experts, its repeats trained together),
each with its settings class (``DeepEnsembleSettings``, ``MixtureSettings``: typed, frozen,
self-checking, built on ``settings``); ``units`` holds what they share: seeds derived from
integers and the Parquet shard store, which records each unit's settings. The section
notebooks call ``run_deep_ensembles`` / ``run_mixtures`` with a settings object, which
train the missing units one after the other; the runner's Dask tasks call the unit
functions they loop over, ``train_deep_ensemble_unit`` / ``train_mixture_unit``, which
return a unit's tables and write nothing.
"""
