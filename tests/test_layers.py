"""W-Asymmetric layers: frozen positions and values, their exactness through training."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from asymlib.core.layers import LinearEnsemble, wasym_entries
from asymlib.core.models import MLPEnsemble, default_n_fix
from asymlib.core.trainer import TrainConfig, fit


def test_n_fix_per_output_unit_in_every_layer():
    for hidden, expected in [(64, (2, 3, 3, 3)), (128, (2, 3, 3, 3)), (256, (2, 4, 4, 4))]:
        model = MLPEnsemble(13, hidden, 10, members=2, kind="wmlp", mask_seed=5)
        assert model.n_fix == expected == default_n_fix(hidden)
        for layer, n_fix in zip(model.layers, expected):
            counts = layer.frozen_mask.sum(dim=0)  # per output unit (column)
            assert counts.shape == (layer.out_features,)
            assert torch.all(counts == n_fix)
            # every member carries the same frozen values
            for e in range(model.members):
                assert torch.equal(layer.weight[e][layer.frozen_mask], layer.frozen_values[layer.frozen_mask])


def test_masks_depend_on_seed_and_layer():
    a = wasym_entries(20, 30, n_fix=3, seed=1)
    b = wasym_entries(20, 30, n_fix=3, seed=2)
    assert not torch.equal(a.mask, b.mask)
    model = MLPEnsemble(8, 16, 1, members=1, kind="wmlp", mask_seed=0)
    assert not torch.equal(model.layers[1].frozen_mask, model.layers[2].frozen_mask)
    # Frozen values follow N(0, kappa^2): a loose check on many draws.
    many = wasym_entries(400, 500, n_fix=4, kappa=1.0, seed=0)
    values = many.values[many.mask]
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1.0) < 0.05


def test_plain_mlp_has_no_frozen_entries():
    model = MLPEnsemble(8, 16, 1, members=2, kind="mlp")
    assert all(layer.frozen_mask is None for layer in model.layers)


_MASK_SCRIPT = """
import hashlib, torch
from asymlib.core.models import MLPEnsemble
m = MLPEnsemble(13, 64, 3, members=1, kind="wmlp", mask_seed=7)
h = hashlib.sha256()
for layer in m.layers:
    h.update(layer.frozen_mask.numpy().tobytes()); h.update(layer.frozen_values.numpy().tobytes())
print(h.hexdigest())
"""


def test_masks_identical_across_processes_and_hash_seeds():
    digests = set()
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _MASK_SCRIPT], env=env, capture_output=True, text=True, check=True)
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_frozen_entries_bit_exact_after_training_with_weight_decay():
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(256, 6, generator=g), torch.randn(256, generator=g)
    model = MLPEnsemble(6, 16, 1, members=3, kind="wmlp", init_seeds=[1, 2, 3], mask_seed=9)
    before = [layer.weight.detach().clone() for layer in model.layers]
    config = TrainConfig(lr=1e-2, weight_decay=0.5, batch_size=32, max_epochs=5, patience=100)
    fit(model, X, y, X[:64], y[:64], task="regression", order_seeds=[0, 1, 2], config=config, progress=False)
    for layer, old in zip(model.layers, before):
        mask = layer.frozen_mask.expand_as(layer.weight)
        assert torch.equal(layer.weight[mask], old[mask])  # bit-exact
        assert not torch.equal(layer.weight[~mask], old[~mask])  # the rest did train


def test_frozen_entries_get_no_gradient():
    model = MLPEnsemble(6, 16, 2, members=2, kind="wmlp", mask_seed=1)
    model(torch.randn(10, 6)).sum().backward()
    for layer in model.layers:
        assert torch.all(layer.weight.grad[:, layer.frozen_mask] == 0)
        assert torch.any(layer.weight.grad[:, ~layer.frozen_mask] != 0)


def test_member_initialisation_matches_nn_linear_from_same_seed():
    model = MLPEnsemble(7, 12, 3, members=3, kind="mlp", init_seeds=[11, 22, 33])
    for e, seed in enumerate([11, 22, 33]):
        torch.manual_seed(seed)  # nn.Linear draws from the global generator
        linears = [nn.Linear(7, 12), nn.Linear(12, 12), nn.Linear(12, 12), nn.Linear(12, 3)]
        for layer, lin in zip(model.layers, linears):
            torch.testing.assert_close(layer.weight[e], lin.weight.detach().T, rtol=0, atol=0)
            torch.testing.assert_close(layer.bias[e], lin.bias.detach(), rtol=0, atol=0)
    assert not torch.equal(model.layers[0].weight[0], model.layers[0].weight[1])


def test_shared_and_per_member_inputs_agree():
    layer = LinearEnsemble(5, 4, members=3)
    g = torch.Generator().manual_seed(0)
    for e in range(3):
        layer.init_member(e, g)
    x = torch.randn(8, 5)
    torch.testing.assert_close(layer(x), layer(x.expand(3, 8, 5).contiguous()))
    torch.testing.assert_close(layer(x)[1], x @ layer.weight[1] + layer.bias[1])


def test_sigma_gates_are_frozen_shared_and_drawn_from_integers_alone():
    from asymlib.core.layers import sigma_gate
    from asymlib.core.models import MLPEnsemble

    model = MLPEnsemble(5, 8, 1, members=3, kind="smlp", mask_seed=7)
    gates = [getattr(model, f"gate{i}") for i in range(3)]
    assert all(g.shape == (8, 8) for g in gates)
    # Buffers, not parameters: never trained, and the same for every member.
    assert not any(p.shape[-2:] == (8, 8) and p.dim() == 2 for p in model.parameters())
    assert {name for name, _ in model.named_buffers()} >= {"gate0", "gate1", "gate2"}
    assert not torch.equal(gates[0], gates[1])
    torch.testing.assert_close(gates[1], sigma_gate(8, seed=(7, 1)), rtol=0, atol=0)
    again = MLPEnsemble(5, 8, 1, members=2, kind="smlp", mask_seed=7)
    assert torch.equal(again.gate2, gates[2])
    # Never the W-Asymmetric draws of the same shape and seed.
    from asymlib.core.layers import wasym_entries

    assert not torch.equal(sigma_gate(8, seed=(7, 1)), wasym_entries(8, 8, n_fix=8, seed=(7, 1)).values)
    # The network's activation is z * sigmoid(z C), not GELU.
    z = torch.randn(3, 4, 8)
    torch.testing.assert_close(model.activation(0, z), z * torch.sigmoid(z @ gates[0]))
    assert not model.hand_written_step and MLPEnsemble(5, 8, 1, members=1).hand_written_step


def test_syre_anchor_is_a_pure_function_of_its_seed_within_its_ranges():
    from asymlib.core.layers import syre_anchor

    one, again, other = (syre_anchor(64, 32, seed=s) for s in ((0, 1), (0, 1), (0, 2)))
    assert torch.equal(one.weight, again.weight) and torch.equal(one.bias_scale, again.bias_scale)
    assert not torch.equal(one.weight, other.weight)
    assert one.weight.shape == (64, 32) and one.bias.shape == (32,)
    assert one.weight.std().item() == pytest.approx(0.01 / 8, rel=0.1)
    assert one.weight_scale.min() >= 0.99 and one.weight_scale.max() <= 1.01
    with pytest.raises(ValueError, match="spread"):
        syre_anchor(4, 4, seed=0, spread=1.5)


def test_decay_towards_anchor_pulls_every_member_towards_the_shared_anchor():
    from asymlib.core.layers import LinearEnsemble, syre_anchor

    anchor = syre_anchor(5, 3, seed=0, scale=1.0, spread=0.5)
    layer = LinearEnsemble(5, 3, members=2, anchor=anchor)
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    before = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.decay_towards_anchor(0.1)
    torch.testing.assert_close(layer.weight, before[0] - 0.1 * anchor.weight_scale * (before[0] - anchor.weight))
    torch.testing.assert_close(layer.bias, before[1] - 0.1 * anchor.bias_scale * (before[1] - anchor.bias))
    plain = LinearEnsemble(5, 3, members=2)
    with torch.no_grad():
        plain.weight.copy_(before[0])
    plain.decay_towards_anchor(0.1)  # no anchor: nothing happens
    assert torch.equal(plain.weight, before[0])
