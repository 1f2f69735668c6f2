"""A small synthetic problem and small models, shared by the trainer, mixture and device tests."""

import torch

from asymlib.core.mixtures import MixtureEnsemble
from asymlib.core.models import MLPEnsemble

#: Every kind of model whose training epoch may be recorded as one CUDA graph (Gumbel-gated
#: mixtures are not: ``steps_capturable``), small: name -> (in_features, n_out) -> model.
#: Built from fixed seeds, so two calls give two identical models.
RECORDABLE_MODELS = {
    "mlp": lambda d, out: MLPEnsemble(d, 16, out, members=3, kind="mlp", init_seeds=[1, 2, 3]),
    "wmlp": lambda d, out: MLPEnsemble(d, 16, out, members=3, kind="wmlp", init_seeds=[1, 2, 3], mask_seed=4),
    "smlp": lambda d, out: MLPEnsemble(d, 16, out, members=3, kind="smlp", init_seeds=[1, 2, 3], mask_seed=4),
    "syre": lambda d, out: MLPEnsemble(d, 16, out, members=3, kind="syre", init_seeds=[1, 2, 3], mask_seed=4),
    "moe": lambda d, out: MixtureEnsemble(
        d, 8, out, members=3, experts=4, kind="wmlp", init_seeds=[1, 2, 3], balance_weight=0.1
    ),
    "moie": lambda d, out: MixtureEnsemble(
        d, 8, out, members=3, experts=4, kind="iwmlp", init_seeds=[1, 2, 3], balance_weight=0.1
    ),
}


def toy_data(task, n=300, d=5, seed=0):
    """(X_train, y_train, X_val, y_val): 200 training and 100 validation rows.

    Regression targets are float (n,); "multiclass" targets are 3 classes, int64 (n,).
    """
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    if task == "regression":
        y = (X[:, 0] * 2 - X[:, 1] ** 2 + 0.3 * torch.randn(n, generator=g)).float()
    else:
        y = ((X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * torch.randn(n, generator=g)) > 0).long() + (X[:, 3] > 1).long()
    return X[:200], y[:200], X[200:], y[200:]
