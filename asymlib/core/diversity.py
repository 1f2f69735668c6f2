"""How differently the members of an ensemble predict: the diversity behind an ensemble's gain.

- Classification: pairwise disagreement, the share of test rows on which two members'
  predicted classes differ, averaged over all pairs of members.
- Regression: the ambiguity of the ensemble decomposition (Krogh & Vedelsby, 1995). For an
  ensemble that averages its members' predictions f_e into f,
      (f - y)^2 = mean_e (f_e - y)^2 - mean_e (f_e - f)^2
  row by row, so the ensemble's MSE is the members' mean MSE minus the ambiguity
  mean over rows and members of (f_e - f)^2: the more the members spread around their mean,
  the more the ensemble gains over them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pairwise_disagreement(outputs: Tensor) -> float:
    """Mean over pairs of members of the share of rows with different argmax classes.

    outputs: (E, n, classes) logits or probabilities, E >= 2.
    """
    if outputs.shape[0] < 2:
        raise ValueError(f"disagreement needs at least 2 members, got {outputs.shape[0]}")
    predicted = outputs.argmax(dim=-1)  # (E, n)
    members = predicted.shape[0]
    # Pairs that agree on a row: for each class, C(members predicting it, 2).
    counts = torch.nn.functional.one_hot(predicted, outputs.shape[-1]).sum(dim=0).double()  # (n, classes)
    agreeing_pairs = (counts * (counts - 1) / 2).sum(dim=1)
    pairs = members * (members - 1) / 2
    return float((1 - agreeing_pairs / pairs).mean())


def ambiguity(predictions: Tensor) -> float:
    """mean over rows and members of (f_e - f)^2, f the members' mean.

    predictions: (E, n) or (E, n, 1) regression outputs.
    """
    values = predictions.reshape(predictions.shape[0], -1).double()
    return float((values - values.mean(dim=0)).pow(2).mean())
