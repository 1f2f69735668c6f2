"""The batched trainer against a plain one-model-at-a-time PyTorch loop, on identical work.

Both train ``members`` MLPs of the paper's shape on the same data for a fixed number of
epochs (no early stopping), with AdamW, batch 256 and a validation pass every epoch (the
pass early stopping needs). The plain loop is what the paper's code does per model:
nn.Linear layers, a shuffling DataLoader, torch.optim.AdamW. It is timed on a few members
and reported per model-epoch, since its cost grows linearly with the members.

Prints and writes JSON: model-epochs per second of both, their ratio, the batched trainer's
GFLOP/s, and the machine's measured float32 matrix-multiply peak.

    python benchmarks/bench_trainer.py --dataset california --hidden 64 256 --members 64
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from asymlib.core.data import load_dataset
from asymlib.core.models import MLPEnsemble
from asymlib.core.trainer import TrainConfig, fit


def matmul_peak_gflops(*, size: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """Best-of-``repeats`` float32 GFLOP/s of one square matmul: the machine's practical peak."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def flops_per_model_epoch(sizes: list[int], n_train: int, n_val: int) -> float:
    """Matrix-multiply FLOPs of one epoch of one model: forward + backward (3x forward) on the
    training rows, forward on the validation rows. Elementwise work is not counted."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return 2.0 * macs * (3 * n_train + n_val)


def time_batched(data, *, hidden: int, members: int, epochs: int, device: str) -> float:
    model = MLPEnsemble(data.n_features, hidden, data.n_outputs, members=members, init_seeds=range(members)).to(device)
    config = TrainConfig(max_epochs=epochs, patience=epochs + 1)
    tensors = [t.to(device) for t in (data.X_train, data.y_train, data.X_val, data.y_val)]
    _sync(device)
    start = time.perf_counter()
    fit(model, *tensors, task=data.task, order_seeds=range(members), config=config, progress=False)
    _sync(device)
    return time.perf_counter() - start


def train_plainly(net: nn.Module, data, *, epochs: int, device: str) -> None:
    """The plain PyTorch loop a researcher writes for one model: a shuffling DataLoader,
    torch.optim.AdamW, a validation pass every epoch."""
    regression = data.task == "regression"
    loss_fn = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    y_train = data.y_train.unsqueeze(-1) if regression else data.y_train
    y_val = (data.y_val.unsqueeze(-1) if regression else data.y_val).to(device)
    X_val = data.X_val.to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=3e-2)
    loader = DataLoader(TensorDataset(data.X_train, y_train), batch_size=256, shuffle=True)
    for _ in range(epochs):
        net.train()
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            optimizer.zero_grad()
            loss_fn(net(xb), yb).backward()
            optimizer.step()
        net.eval()
        with torch.no_grad():
            loss_fn(net(X_val), y_val).item()


def time_one_by_one(data, *, hidden: int, members: int, epochs: int, device: str) -> float:
    """``members`` nn.Sequential MLPs trained one after the other."""
    _sync(device)
    start = time.perf_counter()
    for member in range(members):
        torch.manual_seed(member)
        h = hidden
        net = nn.Sequential(
            nn.Linear(data.n_features, h), nn.GELU(), nn.Linear(h, h), nn.GELU(),
            nn.Linear(h, h), nn.GELU(), nn.Linear(h, data.n_outputs),
        ).to(device)
        train_plainly(net, data, epochs=epochs, device=device)
    _sync(device)
    return time.perf_counter() - start


def speed_figures(batched_rate: float, loop_rate: float, *, flops: float, peak: float) -> dict:
    """Rates in runs per second (model-epochs, mixture-epochs, ...) and the FLOPs of one run
    -> the figures every benchmark reports: speed-up, GFLOP/s of both, share of the peak."""
    gflops = batched_rate * flops / 1e9
    return {
        "speedup": round(batched_rate / loop_rate, 2),
        "batched_gflops": round(gflops, 1),
        "loop_gflops": round(loop_rate * flops / 1e9, 1),
        "fraction_of_peak": round(gflops / peak, 3),
    }


def write_report(report: dict, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="california")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the batched run")
    parser.add_argument("--loop-members", type=int, default=4, help="members timed in the plain loop")
    parser.add_argument("--loop-epochs", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/trainer.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset)
    peak = matmul_peak_gflops(device=args.device)
    report = {
        "machine": platform.processor() or platform.machine(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "dataset": args.dataset,
        "n_train": len(data.X_train),
        "members": args.members,
        "matmul_peak_gflops": round(peak, 1),
        "runs": [],
    }
    print(f"{report['device']}, {report['threads']} threads, float32 matmul peak {peak:.1f} GFLOP/s")
    for hidden in args.hidden:
        # warm-up: first calls pay for allocator and kernel selection
        time_batched(data, hidden=hidden, members=args.members, epochs=1, device=args.device)
        batched = time_batched(data, hidden=hidden, members=args.members, epochs=args.epochs, device=args.device)
        loop = time_one_by_one(data, hidden=hidden, members=args.loop_members, epochs=args.loop_epochs, device=args.device)
        batched_rate = args.members * args.epochs / batched
        loop_rate = args.loop_members * args.loop_epochs / loop
        sizes = [data.n_features, hidden, hidden, hidden, data.n_outputs]
        flops = flops_per_model_epoch(sizes, len(data.X_train), len(data.X_val))
        run = {
            "hidden": hidden,
            "batched_model_epochs_per_s": round(batched_rate, 2),
            "loop_model_epochs_per_s": round(loop_rate, 2),
            **speed_figures(batched_rate, loop_rate, flops=flops, peak=peak),
        }
        report["runs"].append(run)
        print(
            f"hidden {hidden:4d}: batched {run['batched_model_epochs_per_s']:8.2f} model-epochs/s, "
            f"loop {run['loop_model_epochs_per_s']:7.2f}, speed-up {run['speedup']:5.1f}x, "
            f"{run['batched_gflops']:.1f} GFLOP/s = {100 * run['fraction_of_peak']:.0f}% of peak"
        )
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
