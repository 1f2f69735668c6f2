"""Mixture training time against the number of experts: stacked experts against a loop over them.

Both train mixtures of K experts of the paper's shape (4-layer MLP, hidden 64, softmax
gate) on the same data for a fixed number of epochs (no early stopping), with AdamW, batch
256 and a validation pass every epoch. The batched side is asymlib's ``MixtureEnsemble``
trained by ``fit`` (all K experts, and ``--mixtures`` mixtures, in stacked tensors). The
loop side is what one would write in plain PyTorch: K ``nn.Sequential`` experts in an
``nn.ModuleList``, a Python loop over them in the forward pass (for MoIE, a loop per layer:
sum_k alpha_k (W_k h + b_k)), a shuffling DataLoader and ``torch.optim.AdamW``.

Prints and writes JSON, per kind and K, before and after (``--baseline``, as in
bench_trainer.py: each version timed in child processes of its own, alternating, the
fastest of ``--rounds`` kept):
mixture-epochs per second (and expert-epochs per second, K times as many, comparable with
bench_trainer's model-epochs), the speed-up over the loop, GFLOP/s and the share of the
machine's measured float32 matrix-multiply peak, and the profiler's time split of an epoch.

    python benchmarks/bench_mixtures.py --dataset california --experts 2 4 8 16 32 64 128
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_trainer import (
    _nothing,
    _sync,
    alternate_versions,
    baseline_package,
    check_precision,
    common_arguments,
    flops_per_model_epoch,
    machine_report,
    matmul_peak_gflops,
    print_machine,
    print_versions,
    time_split,
    train_config,
    train_plainly,
    version_figures,
    write_report,
)
from torch import nn

from asymlib.core.data import load_dataset
from asymlib.core.mixtures import MixtureEnsemble
from asymlib.core.trainer import fit


def flops_per_mixture_epoch(sizes: list[int], experts: int, n_train: int, n_val: int) -> float:
    """Matrix-multiply FLOPs of one epoch of one mixture: K experts and the gate (d x K).
    The same count for MoE and MoIE (an interpolated layer does K experts' multiplies)."""
    gate = 2.0 * sizes[0] * experts * (3 * n_train + n_val)
    return experts * flops_per_model_epoch(sizes, n_train, n_val) + gate


def time_batched(
    data, *, kind: str, experts: int, mixtures: int, hidden: int, epochs: int, device: str, precision: str = "float32"
) -> float:
    model = MixtureEnsemble(
        data.n_features,
        hidden,
        data.n_outputs,
        members=mixtures,
        experts=experts,
        kind=kind,
        init_seeds=range(mixtures),
    ).to(device)
    config = train_config(epochs, precision)
    tensors = [t.to(device) for t in (data.X_train, data.y_train, data.X_val, data.y_val)]
    _sync(device)
    start = time.perf_counter()
    fit(model, *tensors, task=data.task, order_seeds=range(mixtures), config=config, progress=False)
    _sync(device)
    return time.perf_counter() - start


def measure_batched(
    data,
    *,
    kind: str,
    experts: int,
    mixtures: int,
    hidden: int,
    epochs: int,
    device: str,
    profile: bool,
    precision: str = "float32",
) -> dict:
    """Mixture-epochs per second of the batched trainer and the time split of one epoch."""
    common = {
        "kind": kind,
        "experts": experts,
        "mixtures": mixtures,
        "hidden": hidden,
        "device": device,
        "precision": precision,
    }
    rate = mixtures * epochs / time_batched(data, epochs=epochs, **common)
    return {
        "rate": rate,
        "split": time_split(lambda: time_batched(data, epochs=1, **common), device=device) if profile else None,
    }


class LoopMixture(nn.Module):
    """A plain PyTorch mixture: a Python loop over K nn.Sequential experts."""

    def __init__(self, in_features: int, hidden: int, out_features: int, *, experts: int, interpolated: bool):
        super().__init__()
        self.interpolated = interpolated
        self.gate = nn.Linear(in_features, experts)
        self.experts = nn.ModuleList(
            nn.Sequential(
                nn.Linear(in_features, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
                nn.Linear(hidden, out_features),
            )
            for _ in range(experts)
        )

    def forward(self, x):
        alpha = torch.softmax(self.gate(x), dim=-1)
        if not self.interpolated:
            return sum(alpha[:, k : k + 1] * expert(x) for k, expert in enumerate(self.experts))
        h = x
        for i in range(0, len(self.experts[0]), 2):  # Linear, GELU pairs; the last Linear alone
            h = sum(alpha[:, k : k + 1] * expert[i](h) for k, expert in enumerate(self.experts))
            if i + 1 < len(self.experts[0]):
                h = self.experts[0][i + 1](h)
        return h


def time_loop(data, *, kind: str, experts: int, hidden: int, epochs: int, device: str) -> float:
    torch.manual_seed(0)
    net = LoopMixture(
        data.n_features, hidden, data.n_outputs, experts=experts, interpolated=kind in ("imlp", "iwmlp")
    ).to(device)
    _sync(device)
    start = time.perf_counter()
    train_plainly(net, data, epochs=epochs, device=device)
    _sync(device)
    return time.perf_counter() - start


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(parser, epochs_help="epochs of the batched run")
    parser.add_argument("--max-rows", type=int, default=None, help="subsample the dataset (default: all rows)")
    parser.add_argument("--experts", type=int, nargs="+", default=[2, 4, 8, 16, 32, 64, 128])
    parser.add_argument("--kinds", nargs="+", default=["mlp", "imlp"], help="mlp/wmlp (MoE), imlp/iwmlp (MoIE)")
    parser.add_argument("--mixtures", type=int, default=1, help="mixtures trained together in the batched run")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--loop-epochs", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/mixtures.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precision_argv = check_precision(parser, args)
    epochs = args.epochs or (20 if args.device.startswith("cuda") else 2)
    data = load_dataset(args.dataset, max_rows=args.max_rows)
    common = {
        "mixtures": args.mixtures,
        "hidden": args.hidden,
        "epochs": epochs,
        "device": args.device,
        "profile": not args.no_profile,
        "precision": args.precision,
    }
    if args.child_out:  # a version's child process: the batched runs only
        for kind in args.kinds:
            time_batched(
                data,
                kind=kind,
                experts=2,
                mixtures=args.mixtures,
                hidden=args.hidden,
                epochs=1,
                device=args.device,
                precision=args.precision,
            )  # warm-up
        runs = {
            f"{kind}-{k}": measure_batched(data, kind=kind, experts=k, **common)
            for kind in args.kinds
            for k in args.experts
        }
        Path(args.child_out).write_text(json.dumps(runs))
        return runs

    peak = matmul_peak_gflops(device=args.device, precision=args.precision)
    report = {**machine_report(args, data, peak), "hidden": args.hidden, "mixtures": args.mixtures, "epochs": epochs}
    print_machine(report)
    sizes = [data.n_features, args.hidden, args.hidden, args.hidden, data.n_outputs]
    with baseline_package(args.baseline) if args.baseline != "none" else _nothing() as package:
        for kind in args.kinds:
            # the loop runs in this process: warm it up (its first run pays one-time costs)
            time_loop(data, kind=kind, experts=2, hidden=args.hidden, epochs=1, device=args.device)
            for experts in args.experts:
                child_argv = (
                    [
                        "--dataset",
                        args.dataset,
                        "--kinds",
                        kind,
                        "--experts",
                        str(experts),
                        "--mixtures",
                        str(args.mixtures),
                        "--hidden",
                        str(args.hidden),
                        "--epochs",
                        str(epochs),
                        "--device",
                        args.device,
                        "--threads",
                        str(torch.get_num_threads()),
                    ]
                    + (["--max-rows", str(args.max_rows)] if args.max_rows else [])
                    + precision_argv
                )
                after, before = alternate_versions(
                    package, "bench_mixtures.py", child_argv, rounds=args.rounds, profile=not args.no_profile
                )
                loop = time_loop(
                    data, kind=kind, experts=experts, hidden=args.hidden, epochs=args.loop_epochs, device=args.device
                )
                loop_rate = args.loop_epochs / loop
                flops = flops_per_mixture_epoch(sizes, experts, len(data.X_train), len(data.X_val))
                figures = {"flops": flops, "peak": peak, "unit": "mixture_epochs"}
                run = {
                    "kind": kind,
                    "experts": experts,
                    "loop_mixture_epochs_per_s": round(loop_rate, 3),
                    "before": version_figures(before and before[f"{kind}-{experts}"], loop_rate, **figures),
                    "after": version_figures(after[f"{kind}-{experts}"], loop_rate, **figures),
                }
                report["runs"].append(run)
                print(f"{kind:5s} K={experts:4d}: loop {loop_rate:.3f} mixture-epochs/s")
                print_versions(f"{kind:5s} K={experts:4d}", run, "mixture_epochs")
    write_report(report, args.out)
    return report


if __name__ == "__main__":
    main()
