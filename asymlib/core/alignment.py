"""Permutation alignment of ensemble members by weight matching (Git Re-Basin, Ainsworth et
al., 2023), and the weight average of the aligned members.

Permuting the units of a hidden layer of a plain MLP (the columns of the weight and the bias
that make the units, and the rows of the next layer's weight that read them) leaves the
function unchanged. ``match_members`` looks, for each member, for the permutation of each of
the three hidden layers that brings it closest (L2) to a reference member: coordinate
ascent on the inner product with the reference, one hidden layer at a time (a linear
assignment, ``scipy.optimize.linear_sum_assignment``) given the permutations of its
neighbours, over the layers in a seeded random order, until a pass changes nothing or
``max_iter`` passes are done. A layer's permutation is only replaced by one that raises the
inner product, so the distance to the reference never grows.

Conventions. A weight is (in_features, out_features) as in ``layers.LinearEnsemble``. A
permutation ``p`` of a hidden layer is a (hidden,) int64 tensor: unit ``j`` of the permuted
member is unit ``p[j]`` of the original, so the layer's weight becomes ``W[:, p]``, its bias
``b[p]`` and the next weight ``W_next[p, :]``.

W-Asymmetric and sigma-Asymmetric members are *not* permutation-equivariant: their frozen
parts (the frozen entries of every weight, the gate matrices C) are shared by all members
and stay in place when the trained weights move. A permuted member computes the original
function only if its frozen parts are permuted along (``permute_member``; ``forward_with``
evaluates a member with explicit frozen parts). The aligned *ensemble*
(``aligned_ensemble``) holds each member's permuted weights, frozen values included (they
sit in the weights), but its gates are the model's: an aligned SMLP member is evaluated
with the reference's gates. The aligned *average* (``aligned_interpolation``) is the
network that interpolation measures: the mean of the aligned weights with the reference's
frozen entries written back (``MLPEnsemble.interpolate``) and the reference's gates, i.e.
the frozen parts of the reference (which is never permuted).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .checks import check_int, check_tensor, is_integer
from .models import MLPEnsemble

#: (mask, values) of one W-Asymmetric layer, both (in_features, out_features), or None.
Frozen = tuple[Tensor, Tensor] | None


def _check_model(model) -> None:
    if not isinstance(model, MLPEnsemble):
        raise TypeError(f"model: expected an MLPEnsemble, got {type(model).__name__}")


def _check_member(index, *, name: str, members: int) -> None:
    if not is_integer(index):
        raise TypeError(f"{name}: expected an integer member index, got {type(index).__name__} {index!r}")
    if not 0 <= index < members:
        raise ValueError(f"{name}: expected a member index in [0, {members}) (the members), got {index}")


def _check_permutations(permutations, *, members: int, hidden: int, n_hidden: int) -> None:
    """``permutations``: ``members`` lists of ``n_hidden`` permutations of range(hidden)."""
    if isinstance(permutations, (str, bytes, Tensor)) or not hasattr(permutations, "__len__"):
        raise TypeError(f"permutations: expected a list of per-member lists, got {type(permutations).__name__}")
    if len(permutations) != members:
        raise ValueError(f"permutations: expected one list per member ({members}), got {len(permutations)}")
    for m, member in enumerate(permutations):
        if isinstance(member, (str, bytes, Tensor)) or not hasattr(member, "__len__") or len(member) != n_hidden:
            raise ValueError(f"permutations[{m}]: expected a list of {n_hidden} permutations (one per hidden layer)")
        for layer, perm in enumerate(member):
            name = f"permutations[{m}][{layer}]"
            check_tensor(perm, name=name, dims=1, dtype="integer")
            if perm.shape[0] != hidden or not torch.equal(torch.sort(perm.cpu()).values, torch.arange(hidden)):
                raise ValueError(f"{name}: expected a permutation of 0..{hidden - 1}, got {perm.tolist()}")


def member_parameters(model: MLPEnsemble, member: int) -> tuple[list[Tensor], list[Tensor]]:
    """One member's weights, each (in_features, out_features), and biases, each
    (out_features,), layer by layer (detached views; frozen values included)."""
    _check_model(model)
    _check_member(member, name="member", members=model.members)
    return (
        [layer.weight.detach()[member] for layer in model.layers],
        [layer.bias.detach()[member] for layer in model.layers],
    )


def frozen_parts(model: MLPEnsemble) -> tuple[list[Frozen], list[Tensor] | None]:
    """The parts every member shares: per layer the W-Asymmetric (mask, values), each
    (in_features, out_features), or None (``mlp``/``smlp``); and the sigma-Asymmetric gates,
    one (hidden, hidden) per hidden layer, or None (``mlp``/``wmlp``)."""
    _check_model(model)
    frozen = [None if layer.frozen_mask is None else (layer.frozen_mask, layer.frozen_values) for layer in model.layers]
    gates = None
    if model.kind == "smlp":
        gates = [getattr(model, f"gate{i}") for i in range(len(model.layers) - 1)]
    return frozen, gates


def permute_member(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    permutations: Sequence[Tensor],
    *,
    frozen: Sequence[Frozen] | None = None,
    gates: Sequence[Tensor] | None = None,
) -> tuple[list[Tensor], list[Tensor], list[Frozen] | None, list[Tensor] | None]:
    """One member with its hidden units permuted, and its frozen parts permuted along.

    weights: L tensors (in_features, out_features); biases: L tensors (out_features,);
    permutations: L - 1 tensors (hidden,), one per hidden layer; frozen: L (mask, values)
    or None; gates: L - 1 (hidden, hidden) gate matrices C. A gate becomes ``C[p][:, p]``
    (then z' = z[..., p] gives z' @ C' = (z @ C)[..., p]).
    Returns (weights, biases, frozen, gates), the last two None where not given.
    """
    if len(permutations) != len(weights) - 1:
        raise ValueError(f"permutations: expected {len(weights) - 1} (one per hidden layer), got {len(permutations)}")
    # the permutation of the inputs of each layer (None: the input features) and of its outputs
    ins = [None, *permutations]
    outs = [*permutations, None]

    def move(matrix: Tensor, rows: Tensor | None, cols: Tensor | None) -> Tensor:
        if rows is not None:
            matrix = matrix[rows]
        return matrix if cols is None else matrix[:, cols]

    new_weights = [move(w, r, c) for w, r, c in zip(weights, ins, outs)]
    new_biases = [b if c is None else b[c] for b, c in zip(biases, outs)]
    new_frozen = None
    if frozen is not None:
        new_frozen = [None if f is None else (move(f[0], r, c), move(f[1], r, c)) for f, r, c in zip(frozen, ins, outs)]
    new_gates = None if gates is None else [g[p][:, p] for g, p in zip(gates, permutations)]
    return new_weights, new_biases, new_frozen, new_gates


def forward_with(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    *,
    frozen: Sequence[Frozen] | None = None,
    gates: Sequence[Tensor] | None = None,
) -> Tensor:
    """One member's output from explicit parameters: x (batch, in_features) -> (batch, out_features).

    weights: L tensors (in_features, out_features); biases: L tensors (out_features,).
    frozen: per layer (mask, values) written over the weight where mask is True (like
    ``LinearEnsemble.apply_frozen``), or None. gates: L - 1 (hidden, hidden) matrices, the
    activation z * sigmoid(z @ C) (``smlp``); None: GELU (``mlp``, ``wmlp``).
    """
    if len(biases) != len(weights):
        raise ValueError(f"biases: expected {len(weights)} (one per weight), got {len(biases)}")
    if gates is not None and len(gates) != len(weights) - 1:
        raise ValueError(f"gates: expected {len(weights) - 1} (one per hidden layer), got {len(gates)}")
    check_tensor(x, name="x", dims=2, dtype=weights[0].dtype, columns=weights[0].shape[0], device=weights[0].device)
    for i, (weight, bias) in enumerate(zip(weights, biases)):
        if frozen is not None and frozen[i] is not None:
            weight = torch.where(frozen[i][0], frozen[i][1], weight)
        x = x @ weight + bias
        if i < len(weights) - 1:
            x = F.gelu(x) if gates is None else x * torch.sigmoid(x @ gates[i])
    return x


def _match_one(
    reference: tuple[list[np.ndarray], list[np.ndarray]],
    member: tuple[list[np.ndarray], list[np.ndarray]],
    *,
    max_iter: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Weight matching of one member to the reference (float64 numpy arrays)."""
    (wa, ba), (wb, bb) = reference, member
    n_hidden = len(wa) - 1
    perms = [np.arange(w.shape[1]) for w in wa[:-1]]
    for _ in range(max_iter):
        changed = False
        for layer in rng.permutation(n_hidden):
            rows = None if layer == 0 else perms[layer - 1]
            incoming = wb[layer] if rows is None else wb[layer][rows]
            # similarity[i, j]: reference unit i against member unit j, over every weight touching them
            similarity = wa[layer].T @ incoming + np.outer(ba[layer], bb[layer])
            cols = perms[layer + 1] if layer + 1 < n_hidden else None
            outgoing = wb[layer + 1] if cols is None else wb[layer + 1][:, cols]
            similarity += wa[layer + 1] @ outgoing.T
            _, best = linear_sum_assignment(similarity, maximize=True)
            units = np.arange(len(best))
            gain = similarity[units, best].sum() - similarity[units, perms[layer]].sum()
            # only a strict gain replaces the permutation: no drift on ties, a monotone objective
            if gain > 1e-12 * max(1.0, abs(similarity[units, perms[layer]].sum())):
                perms[layer] = best
                changed = True
        if not changed:
            break
    return perms


def match_members(model: MLPEnsemble, *, reference: int = 0, max_iter: int = 100, seed: int = 0) -> list[list[Tensor]]:
    """Permutations that align every member to ``reference`` by weight matching.

    Returns per member a list of 3 (hidden,) int64 tensors (CPU), one per hidden layer, in
    the convention of the module docstring; the reference's are the identity. The whole
    weights are matched, frozen W-Asymmetric values included. max_iter: passes over the
    hidden layers (a positive integer); seed: the order of the layers in each pass.

    Coordinate ascent finds a local optimum, not always the best permutation: a member that
    is an exact permutation of the reference is recovered for ``mlp`` and ``smlp`` in the
    tests, but for ``wmlp`` (an artificial case: its frozen values off the shared mask) the
    large frozen values often trap it in a local optimum.
    """
    _check_model(model)
    _check_member(reference, name="reference", members=model.members)
    check_int(max_iter, name="max_iter")
    check_int(seed, name="seed", minimum=0)

    def arrays(member: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        weights, biases = member_parameters(model, member)
        return [w.double().cpu().numpy() for w in weights], [b.double().cpu().numpy() for b in biases]

    target = arrays(reference)
    result = []
    for member in range(model.members):
        if member == reference:
            perms = [np.arange(model.hidden) for _ in model.layers[:-1]]
        else:
            # one generator per member: a member's result does not depend on the others'
            rng = np.random.default_rng([seed, member])
            perms = _match_one(target, arrays(member), max_iter=max_iter, rng=rng)
        result.append([torch.as_tensor(p, dtype=torch.long) for p in perms])
    return result


def permuted_parameters(
    model: MLPEnsemble, permutations: Sequence[Sequence[Tensor]]
) -> tuple[list[Tensor], list[Tensor]]:
    """Every member's parameters with its permutations applied.

    permutations: per member, 3 (hidden,) int64 tensors (``match_members``'s result).
    Returns (weights, biases): per layer (members, in_features, out_features) and
    (members, out_features), on the model's device. A member's frozen W-Asymmetric values
    move with its weights; the model's masks and gates are not changed.
    """
    _check_model(model)
    _check_permutations(permutations, members=model.members, hidden=model.hidden, n_hidden=len(model.layers) - 1)
    device = model.layers[0].weight.device
    per_member = []
    for member, perms in enumerate(permutations):
        weights, biases = member_parameters(model, member)
        w, b, _, _ = permute_member(weights, biases, [p.to(device) for p in perms])
        per_member.append((w, b))
    weights = [torch.stack([m[0][i] for m in per_member]) for i in range(len(model.layers))]
    biases = [torch.stack([m[1][i] for m in per_member]) for i in range(len(model.layers))]
    return weights, biases


@torch.no_grad()
def aligned_ensemble(model: MLPEnsemble, permutations: Sequence[Sequence[Tensor]]) -> MLPEnsemble:
    """A copy of the model whose members carry their permuted parameters (masks and gates
    unchanged: see the module docstring for what that means for ``wmlp``/``smlp``)."""
    weights, biases = permuted_parameters(model, permutations)
    clone = model.subset(list(range(model.members)))
    for layer, weight, bias in zip(clone.layers, weights, biases):
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return clone


def aligned_interpolation(
    model: MLPEnsemble,
    members: Sequence[int] | None = None,
    *,
    reference: int = 0,
    max_iter: int = 100,
    seed: int = 0,
    permutations: Sequence[Sequence[Tensor]] | None = None,
) -> MLPEnsemble:
    """The weight average of the given members (default: all) after aligning every member
    to ``reference``: a 1-member ``MLPEnsemble``, built by ``MLPEnsemble.interpolate`` as in
    ``evaluation.evaluate_ensemble``. Its frozen entries and gates are the reference's (the
    model's). permutations: ``match_members``'s result, computed here when None."""
    if permutations is None:
        permutations = match_members(model, reference=reference, max_iter=max_iter, seed=seed)
    aligned = aligned_ensemble(model, permutations)
    return aligned.interpolate(members)
