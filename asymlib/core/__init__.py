"""The core that notebooks import: datasets, batched networks, their trainer, their scores.

``data`` (``load_dataset``; one record per dataset in ``datasets``, then readers, splits,
fetch), ``layers`` (stacked ``(members, in, out)`` weights with W-Asymmetric frozen
entries), ``models`` (MLP and WMLP ensembles), ``mixtures`` (MoE, Gumbel-gated MoE, MoIE), ``trainer`` (batched AdamW with per-member early stopping),
``evaluation`` (member, ensemble and interpolated metrics), ``statistics`` (paired WMLP - MLP
differences), ``project`` (paths in the checkout, executed notebooks' status) and ``checks``
(the entry points' argument checks). Nothing here knows about sections, reports or the runner.
"""
