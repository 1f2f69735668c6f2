"""Where one epoch of a unit's batched model goes on a device: the eager epoch (the first of a
set of members, and again after members stop), the epoch that records a CUDA graph, a
replayed epoch and the kernels' share of it, the validation pass and the host's part (row
orders drawn on the CPU and copied over). Shapes of the paper profile's units, full data.

    python benchmarks/bench_epoch.py --device cuda --out benchmarks/results/epoch.json

A unit's members stop at different epochs, and each time some stop the rest is gathered into
a new batch whose graph is recorded afresh (one eager epoch, then one recording epoch), so
``(eager + record - 2 x replay)`` is what every such regrouping costs over a replay. On a
CPU there is no graph: the eager epoch is every epoch, and the record and replay columns
stay empty. Times are medians of ``--repeats`` (default 5) with the device synchronised.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asymlib.core.data import load_dataset  # noqa: E402
from asymlib.core.mixtures import MixtureEnsemble  # noqa: E402
from asymlib.core.models import MLPEnsemble  # noqa: E402
from asymlib.core.steps import EpochBatches, EpochRunner  # noqa: E402
from asymlib.core.trainer import TrainConfig, _adamw, evaluate_losses  # noqa: E402

#: name: (dataset, what to build, its size); members as in the paper profile's units.
CASES = {
    "churn DE h64": ("churn", "mlp", 64),
    "mnist DE h256": ("mnist", "mlp", 256),
    "california MoE K16": ("california", "moe", 16),
    "mnist MoIE K128": ("mnist", "moie", 128),
    "california MoE K16 gumbel": ("california", "gumbel", 16),
}


def _build(kind: str, size: int, data) -> torch.nn.Module:
    if kind == "mlp":
        return MLPEnsemble(data.n_features, size, data.n_outputs, members=64, init_seeds=range(64))
    gating = "gumbel" if kind == "gumbel" else "standard"
    return MixtureEnsemble(
        data.n_features,
        64,
        data.n_outputs,
        members=5,
        experts=size,
        init_seeds=range(5),
        kind="imlp" if kind == "moie" else "mlp",
        gating=gating,
        noise_seeds=range(5),
    )


def _timed(work, device: torch.device) -> float:
    """Seconds of ``work()`` with the device synchronised before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    work()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _kernel_seconds(work, device: torch.device) -> float | None:
    """Device time of the kernels ``work()`` ran, by the profiler (None off a GPU)."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            work()
            torch.cuda.synchronize()
    except RuntimeError as exc:  # a profiler that cannot see into graph replays: the other columns still count
        print(f"no kernel times: {exc}", file=sys.stderr)
        return None
    return sum(e.self_device_time_total for e in prof.key_averages()) / 1e6


def measure(name: str, *, device: torch.device, repeats: int) -> dict:
    dataset, kind, size = CASES[name]
    data = load_dataset(dataset)
    X, y, Xv, yv = (t.to(device) for t in (data.X_train, data.y_train, data.X_val, data.y_val))
    model = _build(kind, size, data).to(device)
    optimizer = _adamw(list(model.parameters()), TrainConfig())
    runner = EpochRunner(model, optimizer, EpochBatches(X, y, members=model.members, batch_size=256), task=data.task)
    generators = [torch.Generator().manual_seed(m) for m in range(model.members)]

    def order() -> torch.Tensor:
        return torch.stack([torch.randperm(len(X), generator=g) for g in generators]).to(device)

    epoch = lambda: runner.run_epoch(order())  # noqa: E731
    eager = _timed(epoch, device)  # the first epoch of a set of members (CUDA: the warm-up)
    record = _timed(epoch, device) if runner.graph is not None else None
    epochs = [_timed(epoch, device) for _ in range(repeats)]
    replay_kernels = _kernel_seconds(epoch, device) if runner.graph is not None else None
    validation = statistics.median(
        _timed(lambda: evaluate_losses(model, Xv, yv, task=data.task).cpu(), device) for _ in range(repeats)
    )
    host = statistics.median(_timed(order, device) for _ in range(repeats))
    steps = -(-len(X) // 256)
    replay = statistics.median(epochs) if runner.graph is not None else None
    row = {
        "case": name,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "steps_per_epoch": steps,
        "eager_ms": 1e3 * eager,
        "record_ms": record and 1e3 * record,
        "replay_ms": replay and 1e3 * replay,
        "kernels_in_replay": replay_kernels and replay_kernels / replay,
        "validation_ms": 1e3 * validation,
        "host_orders_ms": 1e3 * host,
        "epoch_ms": 1e3 * statistics.median(epochs),
        "regrouping_ms": record and 1e3 * (eager + record - 2 * replay),
    }
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/epoch.json")
    args = parser.parse_args()
    rows = []
    for name in args.cases:
        rows.append(measure(name, device=torch.device(args.device), repeats=args.repeats))
        print(rows[-1], flush=True)
    import pandas as pd

    print(pd.DataFrame(rows).drop(columns="device").to_string(index=False))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
