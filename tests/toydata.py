"""A small synthetic problem shared by the trainer and mixture tests."""

import torch


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
