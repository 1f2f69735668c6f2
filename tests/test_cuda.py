"""The training step on a CUDA device: recorded epochs (CUDA graphs) train as eager ones do,
a replayed epoch never waits for the host, and the opt-in precisions run and are recorded.

Every test here needs a GPU and is skipped without one (``pytest -ra`` lists the skips and
their reason). What a CPU can check of the same code path is in ``test_backprop.py`` (an
epoch of every recordable model runs on the meta device, so it reads nothing on the host).
``benchmarks/gpu_check.sh`` runs this file and the GPU benchmarks in one go.
"""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
import torch
from toydata import RECORDABLE_MODELS, toy_data

from asymlib.core.data import load_dataset
from asymlib.core.mixtures import MixtureEnsemble
from asymlib.core.models import MLPEnsemble
from asymlib.core.steps import EpochBatches, EpochRunner
from asymlib.core.trainer import TrainConfig, _adamw, fit
from asymlib.execution.params import SECTIONS, load_params

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SMOKE = Path(__file__).resolve().parents[1] / "params" / "smoke.yaml"
TASKS = [("regression", 1), ("multiclass", 3)]


def _epochs(model, *, task, use_graph, epochs, sync_check_from=None):
    """Train ``model`` (on the GPU) for ``epochs`` epochs through one EpochRunner; from the
    epoch ``sync_check_from`` on, any host synchronisation raises."""
    X, y, _, _ = (t.cuda() for t in toy_data(task))
    optimizer = _adamw(list(model.parameters()), TrainConfig(lr=1e-2))  # fit's: fused, capturable on a GPU
    anchor_decay = 1e-2 * 3e-2 if getattr(model, "anchored", False) else 0.0  # syre: its decay in the graph too
    batches = EpochBatches(X, y, members=3, batch_size=64)
    runner = EpochRunner(model, optimizer, batches, task=task, use_graph=use_graph, anchor_decay=anchor_decay)
    generators = [torch.Generator().manual_seed(100 + m) for m in range(3)]
    for epoch in range(epochs):
        order = torch.stack([torch.randperm(len(X), generator=g) for g in generators]).cuda()
        checking = sync_check_from is not None and epoch >= sync_check_from
        torch.cuda.set_sync_debug_mode("error" if checking else "default")
        try:
            finite = runner.run_epoch(order)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    assert bool(finite.all())
    return runner, torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.mark.parametrize("task, n_out", TASKS)
@pytest.mark.parametrize("name", list(RECORDABLE_MODELS))
def test_recorded_epochs_train_as_eager_ones(name, task, n_out):
    """Epoch 1 runs eagerly (the warm-up), epoch 2 is recorded and replayed, epochs 3-5 are
    replays: the same kernels on the same buffers as five eager epochs, so the parameters
    agree to float32 rounding (exactly, unless cuBLAS picks another kernel while recording)."""
    build = lambda: RECORDABLE_MODELS[name](5, n_out).cuda()  # noqa: E731
    recorded, recorded_params = _epochs(build(), task=task, use_graph=None, epochs=5)
    assert recorded.graph is not None and recorded.graph.graph is not None
    _, eager_params = _epochs(build(), task=task, use_graph=False, epochs=5)
    torch.testing.assert_close(recorded_params, eager_params, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", list(RECORDABLE_MODELS))
def test_a_replayed_epoch_never_waits_for_the_host(name):
    """CUDA's sync debug mode turns every host synchronisation into an error; epochs 3 and 4
    (replays) run under it."""
    _epochs(RECORDABLE_MODELS[name](5, 3).cuda(), task="multiclass", use_graph=None, epochs=4, sync_check_from=2)


def test_gumbel_gated_mixtures_train_eagerly():
    """Their training noise is drawn on the CPU per step, so no graph is recorded."""
    model = MixtureEnsemble(5, 8, 3, members=3, experts=4, gating="gumbel", init_seeds=[1, 2, 3]).cuda()
    runner, _ = _epochs(model, task="multiclass", use_graph=None, epochs=3)
    assert runner.graph is None


@pytest.mark.parametrize("name", ["wmlp", "moe"])
def test_fit_on_the_gpu_equals_fit_on_the_cpu(name):
    """The whole trainer, early stopping and members leaving the batch included (each set
    of members is recorded afresh): same epochs per member, parameters within what float32
    rounding on two kinds of hardware allows."""
    X, y, Xv, yv = toy_data("regression")
    config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=30, patience=3)
    results, params = {}, {}
    for device in ("cpu", "cuda"):
        model = RECORDABLE_MODELS[name](5, 1).to(device)
        data = [t.to(device) for t in (X, y, Xv, yv)]
        results[device] = fit(model, *data, task="regression", order_seeds=[7, 8, 9], config=config, progress=False)
        params[device] = torch.cat([p.detach().flatten().cpu() for p in model.parameters()])
    assert results["cuda"].epochs.tolist() == results["cpu"].epochs.tolist()
    assert len(set(results["cpu"].epochs.tolist())) > 1  # members left the batch at different epochs
    torch.testing.assert_close(params["cuda"], params["cpu"], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_opt_in_precisions_train_and_are_recorded(precision):
    X, y, Xv, yv = (t.cuda() for t in toy_data("regression"))
    results = {}
    for p in ("float32", precision):
        model = MLPEnsemble(5, 16, 1, members=2, init_seeds=[0, 1]).cuda()
        config = TrainConfig(lr=1e-2, batch_size=64, max_epochs=5, patience=10, precision=p)
        results[p] = fit(model, X, y, Xv, yv, task="regression", order_seeds=[0, 1], config=config, progress=False)
    assert results[precision].precision == precision
    history = results[precision].val_history
    assert (history[-1] < history[0]).all()  # it trains...
    single, other = results["float32"].final_val_loss, results[precision].final_val_loss
    assert abs(other - single).max() < 0.25 * single.max()  # ...about as float32 does


@pytest.mark.parametrize(
    "section, unit",
    [
        ("deep_ensembles", {"hidden": 16, "repeat": 0}),
        ("mixtures", {"gating": "standard", "kind": "iwmlp", "experts": 4, "balance_weight": 0.0}),
    ],
)
def test_a_unit_on_the_gpu_gives_the_cpus_tables(section, unit):
    """A whole work unit (real data, early stopping, scoring) in float32 on the GPU against
    the CPU: the same epochs per member, every number within float32 rounding."""
    settings = dataclasses.replace(load_params(SMOKE, sections=[section])[section], max_epochs=15, patience=3)
    data = load_dataset("churn", max_rows=1500)
    tables = {
        device: SECTIONS[section].train(data, dataclasses.replace(settings, device=device), **unit, progress=False)
        for device in ("cpu", "cuda")
    }
    for name, cpu in tables["cpu"].items():
        gpu = tables["cuda"][name]
        timing = [c for c in cpu.columns if "time" in c or "seconds" in c]
        cpu, gpu = cpu.drop(columns=timing), gpu.drop(columns=timing)
        if "epochs" in cpu:
            assert gpu["epochs"].tolist() == cpu["epochs"].tolist()
        pd.testing.assert_frame_equal(gpu, cpu, check_exact=False, rtol=1e-3, atol=1e-4)
