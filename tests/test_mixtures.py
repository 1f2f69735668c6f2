"""Mixtures of experts: the gate, MoE and MoIE against plain definitions, batched training.

Reference implementations here are deliberately naive (a Python loop over experts,
per-example interpolated weight tensors) so that they check the batched code, not mirror it.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from toydata import toy_data

from asymlib.core.mixtures import GATINGS, MIXTURE_KINDS, MixtureEnsemble, gumbel_noise
from asymlib.core.models import MLPEnsemble
from asymlib.core.trainer import TrainConfig, fit


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # inputs and probes drawn with torch.randn are the same every run


def _expert_as_sequential(model, member, expert):
    """Expert ``expert`` of mixture ``member`` copied into plain nn.Linear layers."""
    activation = nn.ReLU if model.activation == "relu" else nn.GELU
    modules = []
    for i, layer in enumerate(model.layers):
        linear = nn.Linear(layer.in_features, layer.out_features)
        with torch.no_grad():
            linear.weight.copy_(layer.weight[member, expert].T)
            linear.bias.copy_(layer.bias[member, expert])
        modules.append(linear)
        if i < len(model.layers) - 1:
            modules.append(activation())
    return nn.Sequential(*modules)


def _interpolated_by_definition(model, x, alpha):
    """MoIE as written in the paper: per-example parameters sum_k alpha_k theta_k, then the MLP.

    x: (batch, d); alpha: (members, batch, K). Returns (members, batch, out).
    """
    h = x.expand(alpha.shape[0], *x.shape)
    for i, layer in enumerate(model.layers):
        weight = torch.einsum("mbk,mkio->mbio", alpha, layer.weight)  # (members, batch, in, out)
        bias = torch.einsum("mbk,mko->mbo", alpha, layer.bias)
        h = torch.einsum("mbi,mbio->mbo", h, weight) + bias
        if i < len(model.layers) - 1:
            h = F.relu(h) if model.activation == "relu" else F.gelu(h)
    return h


@pytest.mark.parametrize("gating", GATINGS)
@pytest.mark.parametrize("kind", MIXTURE_KINDS)
def test_gate_that_always_picks_expert_k_gives_expert_k(kind, gating):
    model = MixtureEnsemble(5, 16, 3, members=2, experts=4, kind=kind, gating=gating, init_seeds=[3, 4])
    chosen = [2, 0]  # expert picked in mixture 0 and mixture 1
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.zero_()
        for member, expert in enumerate(chosen):
            model.gate.bias[member, expert] = 1e4  # Gumbel noise cannot outweigh it
    x = torch.randn(9, 5)
    for mode in (model.train, model.eval):
        mode()
        out = model(x)
        for member, expert in enumerate(chosen):
            alone = _expert_as_sequential(model, member, expert)(x)
            torch.testing.assert_close(out[member], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["imlp", "iwmlp"])
def test_moie_with_identical_experts_equals_one_mlp(kind):
    model = MixtureEnsemble(5, 16, 3, members=2, experts=5, kind=kind, init_seeds=[1, 2], mask_seed=4)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.copy_(layer.weight[:, :1].expand_as(layer.weight))
            layer.bias.copy_(layer.bias[:, :1].expand_as(layer.bias))
    x = torch.randn(11, 5)
    alpha = model.gate_weights(x)
    assert alpha.std(dim=-1).min() > 0  # the gate does mix the experts unevenly
    out = model(x)
    for member in range(2):
        torch.testing.assert_close(out[member], _expert_as_sequential(model, member, 0)(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("gating", GATINGS)
@pytest.mark.parametrize("kind, mlp_kind", [("imlp", "mlp"), ("iwmlp", "wmlp"), ("mlp", "mlp"), ("wmlp", "wmlp")])
def test_one_expert_equals_the_mlp_of_the_same_seed(kind, mlp_kind, gating):
    # a mixture draws its experts first, so its only expert is the MLP of its init seed
    model = MixtureEnsemble(5, 16, 3, members=2, experts=1, kind=kind, gating=gating, init_seeds=[7, 8], mask_seed=2)
    mlp = MLPEnsemble(5, 16, 3, members=2, kind=mlp_kind, init_seeds=[7, 8], mask_seed=2)
    x = torch.randn(13, 5)
    torch.testing.assert_close(model(x), mlp(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("gating", GATINGS)
def test_gate_weights_are_probabilities(gating):
    model = MixtureEnsemble(5, 8, 1, members=3, experts=6, gating=gating)
    x = torch.randn(40, 5)
    for mode in (model.train, model.eval):
        mode()
        alpha = model.gate_weights(x)
        assert alpha.shape == (3, 40, 6) and (alpha >= 0).all()
        torch.testing.assert_close(alpha.sum(dim=-1), torch.ones(3, 40))
    usage = model.expert_usage(x)
    assert usage.shape == (3, 6)
    torch.testing.assert_close(usage.sum(dim=-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("kind", MIXTURE_KINDS)
def test_gumbel_inference_is_the_mean_of_seeded_samples(kind):
    model = MixtureEnsemble(5, 16, 3, members=2, experts=4, kind=kind, gating="gumbel", samples=10, eval_seed=5)
    x = torch.randn(12, 5)
    model.eval()
    with torch.no_grad():
        out = model(x)
        torch.testing.assert_close(model(x), out, rtol=0, atol=0)  # repeatable
        logits = model.gate(x)
        noise = gumbel_noise((10, 1, 12, 4), torch.Generator().manual_seed(5))
        samples = [torch.softmax((logits + noise[s]) / 2.0, dim=-1) for s in range(10)]
        if kind in ("mlp", "wmlp"):
            # MoE: the mean of the S predictions
            expected = torch.stack([model.mix(x, alpha) for alpha in samples]).mean(dim=0)
        else:
            # MoIE: the prediction with alpha averaged over the S samples (docs/protocol.md)
            expected = model.mix(x, torch.stack(samples).mean(dim=0))
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
        # one sample per example in training: a fresh draw each time
        model.train()
        assert not torch.equal(model(x), model(x))


def _set_requires_grad_copy(model):
    return [p.detach().clone().requires_grad_(True) for p in model.parameters()]


@pytest.mark.parametrize("out_features", [3, 1])  # a width-1 output layer takes its own path
@pytest.mark.parametrize("kind", ["mlp", "wmlp"])
def test_stacked_experts_match_experts_run_one_by_one(kind, out_features):
    model = MixtureEnsemble(6, 16, out_features, members=2, experts=3, kind=kind, init_seeds=[0, 1], mask_seed=1)
    x = torch.randn(10, 6)
    singles = {(m, k): _expert_as_sequential(model, m, k) for m in range(2) for k in range(3)}
    outputs = model.expert_outputs(x)  # (members, experts, batch, out)
    probe = torch.randn_like(outputs)
    (outputs * probe).sum().backward()
    for (m, k), net in singles.items():
        alone = net(x)
        torch.testing.assert_close(outputs[m, k], alone, rtol=1e-5, atol=1e-6)
        (alone * probe[m, k]).sum().backward()
        linears = [mod for mod in net if isinstance(mod, nn.Linear)]
        for layer, linear in zip(model.layers, linears):
            grad = linear.weight.grad.T.clone()
            if layer.frozen_mask is not None:
                grad[layer.frozen_mask] = 0  # frozen entries get no gradient
            torch.testing.assert_close(layer.weight.grad[m, k], grad, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(layer.bias.grad[m, k], linear.bias.grad, rtol=1e-4, atol=1e-5)

    # and the whole MoE: y = sum_k alpha_k f_k(x)
    alpha = model.gate_weights(x)
    for m in range(2):
        expected = sum(alpha[m, :, k : k + 1] * singles[(m, k)](x) for k in range(3))
        torch.testing.assert_close(model(x)[m], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", ["paper", "release"])
@pytest.mark.parametrize("hidden", [3, 16])  # both orders of summation in ExpertLinear.interpolate
def test_moie_equals_per_example_interpolated_parameters(hidden, architecture):
    model = MixtureEnsemble(
        5, hidden, 4, members=2, experts=3, kind="imlp", init_seeds=[5, 6], architecture=architecture
    )
    x = torch.randn(8, 5)
    alpha = torch.softmax(torch.randn(2, 8, 3), dim=-1)
    out = model.mix(x, alpha)
    torch.testing.assert_close(out, _interpolated_by_definition(model, x, alpha), rtol=1e-5, atol=1e-6)
    probe = torch.randn_like(out)
    grads = torch.autograd.grad((out * probe).sum(), list(model.layers.parameters()))
    expected = torch.autograd.grad(
        (_interpolated_by_definition(model, x, alpha) * probe).sum(), list(model.layers.parameters())
    )
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("gating", GATINGS)
def test_moie_with_wmlp_experts_keeps_frozen_entries_exact(gating):
    X, y, Xv, yv = toy_data("regression")
    model = MixtureEnsemble(5, 16, 1, members=2, experts=3, kind="iwmlp", gating=gating, init_seeds=[1, 2], mask_seed=9)
    before = [layer.weight.detach().clone() for layer in model.layers]
    config = TrainConfig(lr=1e-2, weight_decay=0.5, batch_size=32, max_epochs=3, patience=100)
    fit(model, X, y, Xv, yv, task="regression", order_seeds=[0, 1], config=config, progress=False)
    for layer, old in zip(model.layers, before):
        mask = layer.frozen_mask.expand_as(layer.weight)
        assert torch.equal(layer.weight[mask], old[mask])  # bit-exact, every expert of every mixture
        assert torch.equal(layer.weight[mask], layer.frozen_values.expand_as(layer.weight)[mask])
        assert not torch.equal(layer.weight[~mask], old[~mask])  # the rest did train


@pytest.mark.parametrize(
    "kind, gating, task, architecture",
    [
        ("wmlp", "gumbel", "multiclass", "paper"),
        ("imlp", "standard", "regression", "paper"),
        ("iwmlp", "gumbel", "regression", "release"),
    ],
)
def test_mixtures_trained_together_equal_each_trained_alone(kind, gating, task, architecture):
    X, y, Xv, yv = toy_data(task)
    n_out = 1 if task == "regression" else 3
    config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=30, patience=2)
    init, order, noise = [11, 12, 13], [21, 22, 23], [31, 32, 33]
    build = lambda members, i: MixtureEnsemble(  # noqa: E731
        5,
        8,
        n_out,
        members=members,
        experts=3,
        kind=kind,
        gating=gating,
        init_seeds=init[i],
        noise_seeds=noise[i],
        mask_seed=3,
        architecture=architecture,
    )
    together = build(3, slice(None))
    result = fit(together, X, y, Xv, yv, task=task, order_seeds=order, config=config, progress=False)
    # the point of the test: the mixtures stopped at different epochs, before the cap
    assert len(set(result.epochs.tolist())) > 1 and result.epochs.min() < config.max_epochs
    for i in range(3):
        alone = build(1, slice(i, i + 1))
        single = fit(alone, X, y, Xv, yv, task=task, order_seeds=order[i : i + 1], config=config, progress=False)
        assert single.epochs[0] == result.epochs[i]
        for p_together, p_alone in zip(together.parameters(), alone.parameters()):
            torch.testing.assert_close(p_together[i], p_alone[0], rtol=1e-4, atol=1e-5)


def test_expert_usage_is_recorded_every_epoch_per_mixture():
    X, y, Xv, yv = toy_data("multiclass")
    model = MixtureEnsemble(5, 8, 3, members=2, experts=4, gating="gumbel", init_seeds=[0, 1])
    config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=12, patience=2)
    result = fit(
        model,
        X,
        y,
        Xv,
        yv,
        task="multiclass",
        order_seeds=[0, 1],
        config=config,
        progress=False,
        monitor=lambda m: m.expert_usage(Xv),
    )
    usage = result.monitored
    assert usage.shape == (len(result.val_history), 2, 4)
    for member, epochs in enumerate(result.epochs):
        np.testing.assert_allclose(usage[:epochs, member].sum(axis=-1), 1.0, rtol=1e-6)
        assert np.isnan(usage[epochs:, member]).all()
    # the last record is the usage of the model kept
    model.eval()
    final = model.expert_usage(Xv).numpy()
    for member, epochs in enumerate(result.epochs):
        np.testing.assert_allclose(usage[epochs - 1, member], final[member], rtol=1e-6)


@pytest.mark.parametrize("kind", ["imlp", "iwmlp"])
def test_the_release_moie_is_five_relu_layers_with_two_frozen_entries_each(kind):
    """The code release's MoIE: d -> h, three h -> h, h -> out, ReLU between them; an iwmlp
    freezes 2 entries per unit in every layer. Its expert run alone is that network."""
    model = MixtureEnsemble(6, 16, 3, members=2, experts=3, kind=kind, init_seeds=[1, 2], architecture="release")
    assert [(layer.in_features, layer.out_features) for layer in model.layers] == [
        (6, 16),
        (16, 16),
        (16, 16),
        (16, 16),
        (16, 3),
    ]
    assert model.activation == "relu" and model.n_fix == (2,) * 5
    if kind == "iwmlp":
        assert all((layer.frozen_mask.sum(dim=-2) == 2).all() for layer in model.layers)  # per output unit
    x = torch.randn(9, 6)
    outputs = model.expert_outputs(x)
    for member, expert in [(0, 0), (1, 2)]:
        torch.testing.assert_close(outputs[member, expert], _expert_as_sequential(model, member, expert)(x))


@pytest.mark.parametrize("kind", ["mlp", "wmlp"])
def test_the_release_moe_is_the_papers(kind):
    paper, release = (
        MixtureEnsemble(6, 16, 3, members=2, experts=3, kind=kind, init_seeds=[1, 2], mask_seed=5, architecture=a)
        for a in ("paper", "release")
    )
    for p, r in zip(paper.parameters(), release.parameters()):
        assert torch.equal(p, r)
    x = torch.randn(9, 6)
    assert torch.equal(paper(x), release(x))


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match="iwmlp"):
        MixtureEnsemble(3, 4, 1, members=1, experts=2, kind="moe")
    with pytest.raises(ValueError, match="gumbel"):
        MixtureEnsemble(3, 4, 1, members=1, experts=2, gating="sparse")
    with pytest.raises(ValueError, match="noise_seeds"):
        MixtureEnsemble(3, 4, 1, members=2, experts=2, init_seeds=[0, 1], noise_seeds=[0])


def test_mixture_units_give_tidy_tables_and_resume(tmp_path, monkeypatch):
    import pandas as pd

    import asymlib.sections.mixtures as experiments
    from asymlib.sections.units import ShardStore

    settings = experiments.MixtureSettings(
        gatings=["gumbel"], kinds=["mlp", "iwmlp"], experts=[2, 3], repeats=2, max_epochs=2, patience=2, max_rows=600
    )
    mixtures, usage = experiments.run_mixtures("churn", settings, out_dir=tmp_path, progress=False)
    # one unit per (gating, kind, experts), its repeats trained together; one row per repeat
    assert ShardStore(tmp_path, tables=("usage", "mixtures")).units() == sorted(
        f"churn-gumbel-{kind}-e{k}" for kind in ["mlp", "iwmlp"] for k in [2, 3]
    )
    assert len(mixtures) == 2 * 2 * 2 and set(mixtures["repeat"]) == {0, 1}
    assert mixtures.groupby("repeat")["init_seed"].nunique().eq(1).all()  # paired across units
    two = mixtures[mixtures["experts"] == 2].groupby(["gating", "kind"])["relative_to_2"].mean()
    assert (two.abs() < 1e-9).all()  # the baseline is the mean over repeats of the 2-expert model
    assert len(usage) == (mixtures["epochs"] * mixtures["experts"]).sum()  # per epoch and expert

    def no_training(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(experiments, "train_mixtures", no_training)
    again, _ = experiments.run_mixtures("churn", settings, out_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(mixtures, again)


def test_importance_cv2_by_hand():
    from asymlib.core.mixtures import importance_cv2

    # Both rows pick expert 0: importance (2, 0), mean 1, population variance 1.
    alpha = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5], [0.25, 0.75]]])
    torch.testing.assert_close(importance_cv2(alpha), torch.tensor([1.0, (0.25**2) / 1.0]))


def test_load_balancing_loss_trains_but_is_not_the_reported_loss():
    from asymlib.core.mixtures import importance_cv2
    from asymlib.core.steps import train_step
    from asymlib.core.trainer import member_losses

    X, y, _, _ = toy_data("multiclass")
    x, target = X[:64].expand(2, 64, -1), y[:64].expand(2, 64)
    build = lambda: MixtureEnsemble(5, 8, 3, members=2, experts=4, init_seeds=[0, 1], balance_weight=0.5)  # noqa: E731
    stepped, by_hand = build(), build()
    losses = train_step(
        stepped, torch.optim.SGD(stepped.parameters(), lr=0.0), x, target, task="multiclass", hand_written=False
    )
    task_losses = member_losses(by_hand(x), target, task="multiclass")
    (task_losses + 0.5 * importance_cv2(by_hand.gate_weights(x))).sum().backward()
    torch.testing.assert_close(losses, task_losses.detach())  # what fit records: the task's loss
    for a, b in zip(stepped.parameters(), by_hand.parameters()):
        torch.testing.assert_close(a.grad, b.grad)
    assert by_hand.gate.weight.grad.abs().sum() > 0


def test_load_balancing_evens_out_expert_usage():
    X, y, Xv, yv = toy_data("multiclass")
    config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=15, patience=15)
    spread = {}
    for weight in (0.0, 1.0):
        model = MixtureEnsemble(5, 8, 3, members=2, experts=4, init_seeds=[0, 1], balance_weight=weight)
        fit(model, X, y, Xv, yv, task="multiclass", order_seeds=[0, 1], config=config, progress=False)
        model.eval()
        usage = model.expert_usage(Xv)
        spread[weight] = float((usage.var(dim=-1, unbiased=False) / usage.mean(dim=-1) ** 2).mean())
    assert spread[1.0] < 0.5 * spread[0.0], spread
    with pytest.raises(ValueError, match="balance_weight"):
        MixtureEnsemble(3, 4, 1, members=1, experts=2, balance_weight=-1)


def test_a_folder_of_one_architecture_refuses_the_other(tmp_path):
    """Unit names do not carry the architecture, so a folder's finished units of one must not
    pass for the other's (real data: churn, a few rows)."""
    from asymlib.sections.mixtures import MixtureSettings, run_mixtures
    from asymlib.sections.units import ShardMismatch

    common = dict(gatings=["standard"], kinds=["imlp"], experts=[2], repeats=1, max_rows=300, max_epochs=1, patience=1)
    release = MixtureSettings(architecture="release", **common)
    mixtures, _ = run_mixtures("churn", release, out_dir=tmp_path, progress=False)
    assert list(mixtures["architecture"]) == ["release"]
    with pytest.raises(ShardMismatch, match="architecture: 'release' -> 'paper'"):
        run_mixtures("churn", MixtureSettings(architecture="paper", **common), out_dir=tmp_path, progress=False)
