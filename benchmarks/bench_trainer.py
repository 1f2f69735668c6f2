"""The batched trainer against a plain one-model-at-a-time PyTorch loop, on identical work,
before and after a change of the trainer, in one run on one machine.

Both train ``members`` MLPs of the paper's shape on the same data for a fixed number of
epochs (no early stopping), with AdamW, batch 256 and a validation pass every epoch (the
pass early stopping needs). The plain loop is what the paper's code does per model:
nn.Linear layers, a shuffling DataLoader, torch.optim.AdamW. It is timed on a few members
and reported per model-epoch, since its cost grows linearly with the members.

Before/after: ``--baseline REV`` (default: the commit before issue 12's training step)
extracts the package as it was at REV (``git archive``, into a temporary folder; nothing
in the checkout changes). Both versions run the same batched work in child processes of
their own (``PYTHONPATH`` points at the checkout or at the old package; the data folder is
this checkout's), alternating after, before, after, ... ``--rounds`` times, size by size;
each version's fastest round is reported, so that a busy moment of the machine does not
decide the comparison. ``--baseline none`` times the current code only.

Prints and writes JSON, per hidden size and for both versions: model-epochs per second,
the speed-up over the loop, GFLOP/s and the share of the machine's measured float32
matrix-multiply peak, and where one epoch's time goes according to torch.profiler
(matmul / elementwise / optimizer / data / other, ``time_split``).

    python benchmarks/bench_trainer.py --dataset california --hidden 64 256 --members 64
    python benchmarks/bench_trainer.py --device cuda --dataset mnist --hidden 256    # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from asymlib.core.data import default_data_dir, load_dataset
from asymlib.core.models import MLPEnsemble
from asymlib.core.trainer import TrainConfig, fit

#: The last commit before issue 12 ("Throughput") changed the training step.
BASELINE = "be24596"
REPO = Path(__file__).resolve().parents[1]


def matmul_peak_gflops(
    *, size: int | None = None, repeats: int = 10, device: str = "cpu", precision: str = "float32"
) -> float:
    """Best-of-``repeats`` GFLOP/s of one square matmul at the training steps' ``precision``
    (float32; TF32 or bfloat16 where opted in): the machine's practical peak. ``size``: 2048
    on a CPU, 8192 on a GPU, which smaller products leave partly idle."""
    from asymlib.core.steps import precision_context  # not at the top: baseline children lack it

    size = size or (8192 if str(device).startswith("cuda") else 2048)
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    best = float("inf")
    with precision_context(precision, torch.device(device)):
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


def flops_per_model_epoch(sizes: list[int], n_train: int, n_val: int, *, kind: str = "mlp") -> float:
    """Matrix-multiply FLOPs of one epoch of one model: forward + backward (3x forward) on the
    training rows, forward on the validation rows. Elementwise work is not counted. An SMLP
    adds its frozen gate products z @ C, (hidden x hidden) per hidden layer: forward, and
    backward to z only (C trains not)."""
    macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    flops = 2.0 * macs * (3 * n_train + n_val)
    if kind == "smlp":
        flops += 2.0 * sum(h * h for h in sizes[1:-1]) * (2 * n_train + n_val)
    return flops


# ----------------------------------------------------------------------------- time split

#: ATen operators by kind of work, for ``time_split``; any other operator is elementwise
#: work (activations, their gradients, bias sums, losses, copies).
MATMUL_OPS = {
    "aten::bmm",
    "aten::baddbmm",
    "aten::mm",
    "aten::addmm",
    "aten::matmul",
    "aten::addbmm",
    "aten::mv",
    "aten::dot",
    "aten::einsum",
    "aten::linear",
}
OPTIMIZER_OPS = {"aten::_fused_adamw_", "aten::_fused_adam_"}
DATA_OPS = {"aten::index", "aten::index_select", "aten::randperm", "aten::take", "aten::_index_put_impl_"}


def time_split(work, *, device: str) -> dict:
    """Where the time of ``work()`` goes: shares of the wall time spent in matrix multiplies,
    elementwise operators, the optimizer and data movement (gathers, shuffles), by the
    profiler's self time per ATen operator (on a GPU: the kernels' device time), and
    "other" for the rest (Python, autograd's engine, waiting).

    On a GPU, time an epoch that runs eagerly (fit's first epoch of a set of members): in
    a CUDA graph's replay the profiler sees no operators.
    """
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    _sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        work()
        _sync(device)
    wall_us = (time.perf_counter() - start) * 1e6
    shares = {"matmul": 0.0, "elementwise": 0.0, "optimizer": 0.0, "data": 0.0}
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        spent = event.self_device_time_total if device.startswith("cuda") else event.self_cpu_time_total
        kind = (
            "matmul"
            if event.key in MATMUL_OPS
            else "optimizer"
            if event.key in OPTIMIZER_OPS
            else "data"
            if event.key in DATA_OPS
            else "elementwise"
        )
        shares[kind] += spent
    total = wall_us if not device.startswith("cuda") else max(wall_us, sum(shares.values()))
    split = {kind: round(spent / total, 3) for kind, spent in shares.items()}
    split["other"] = round(max(0.0, 1 - sum(split.values())), 3)
    return split


def format_split(split: dict | None) -> str:
    if not split:
        return ""
    return " / ".join(f"{kind} {100 * share:.0f}%" for kind, share in split.items())


# ----------------------------------------------------------------------------- before/after


@contextmanager
def baseline_package(rev: str):
    """A temporary folder holding the package ``asymlib`` as it was at commit ``rev``."""
    with tempfile.TemporaryDirectory(prefix="asymlib-baseline-") as folder:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "asymlib"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
        yield Path(folder)


def run_in_child(package: Path, script: str, argv: list[str]) -> dict:
    """Run ``script`` (a benchmark of this folder) in a child process that imports the
    package ``asymlib`` found in the folder ``package``; returns what it wrote with
    ``--child-out``: {run key: {"rate": ..., "split": ...}}."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        env = {**os.environ, "PYTHONPATH": str(package), "ASYMLIB_DATA": str(default_data_dir().resolve())}
        subprocess.run(
            [sys.executable, str(Path(__file__).parent / script), *argv, "--child-out", out.name], env=env, check=True
        )
        return json.loads(Path(out.name).read_text())


def alternate_versions(
    baseline: Path | None, script: str, argv: list[str], *, rounds: int, profile: bool
) -> tuple[dict, dict | None]:
    """The current package and the baseline's (None: none), each timed in its own child
    processes, alternating after, before, after, ... ``rounds`` times. Returns (after,
    before): per run key the fastest round's rate, every round's rate, and the time split
    of the first round (the only one profiled)."""
    after, before = [], []
    for round_ in range(rounds):
        child_argv = argv + ([] if profile and round_ == 0 else ["--no-profile"])
        after.append(run_in_child(REPO, script, child_argv))
        if baseline is not None:
            before.append(run_in_child(baseline, script, child_argv))
    return _fastest(after), _fastest(before) if before else None


def _fastest(rounds: list[dict]) -> dict:
    return {
        key: {
            "rate": max(r[key]["rate"] for r in rounds),
            "rates": [round(r[key]["rate"], 3) for r in rounds],
            "split": rounds[0][key]["split"],
        }
        for key in rounds[0]
    }


def common_arguments(parser: argparse.ArgumentParser, *, epochs_help: str) -> None:
    parser.add_argument("--dataset", default="california")
    parser.add_argument("--epochs", type=int, default=None, help=epochs_help + " (default: 3 on a CPU, 20 on a GPU)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--baseline", default=BASELINE, help="commit to compare with, or 'none'")
    parser.add_argument("--rounds", type=int, default=3, help="child runs per version, alternating (default: 3)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiler's time split")
    # core.steps.PRECISIONS, spelled out: a baseline's child process imports an older package
    parser.add_argument(
        "--precision",
        choices=["float32", "tf32", "bf16"],
        default="float32",
        help="the training steps' matmul precision (TrainConfig.precision); the peak is "
        "measured at the same precision; needs --baseline none unless float32",
    )
    parser.add_argument("--child-out", default=None, help=argparse.SUPPRESS)  # set in a version's child process


def check_precision(parser: argparse.ArgumentParser, args) -> list[str]:
    """The child processes' ``--precision`` arguments; an error for a baseline, which
    predates ``TrainConfig.precision``, and for TF32 off a GPU."""
    if args.precision == "float32":
        return []
    if args.precision == "tf32" and not args.device.startswith("cuda"):
        parser.error("--precision tf32 needs --device cuda (TensorFloat-32 is a GPU's matmul mode)")
    if args.baseline != "none" and not args.child_out:
        parser.error(f"--precision {args.precision} needs --baseline none (the baseline trains in float32 only)")
    return ["--precision", args.precision]


def train_config(epochs: int, precision: str) -> TrainConfig:
    """A fixed number of epochs (no early stopping) at ``precision``."""
    config = {"max_epochs": epochs, "patience": epochs + 1}
    # the default is left out: a baseline's TrainConfig has no precision field
    return TrainConfig(**config, **({} if precision == "float32" else {"precision": precision}))


def machine_report(args, data, peak: float) -> dict:
    return {
        "machine": platform.processor() or platform.machine(),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average": os.getloadavg(),
        "dataset": args.dataset,
        "n_train": len(data.X_train),
        "baseline": args.baseline,
        "precision": args.precision,
        "matmul_peak_gflops": round(peak, 1),
        "runs": [],
    }


def print_machine(report: dict) -> None:
    print(
        f"{report['device']}, {report['threads']} threads, {report['precision']} matmul peak "
        f"{report['matmul_peak_gflops']:.1f} GFLOP/s, load average {report['load_average'][0]:.2f}"
    )


# ----------------------------------------------------------------------------- deep ensembles


def time_batched(
    data, *, hidden: int, members: int, epochs: int, device: str, kind: str = "mlp", precision: str = "float32"
) -> float:
    model = MLPEnsemble(
        data.n_features, hidden, data.n_outputs, members=members, kind=kind, init_seeds=range(members)
    ).to(device)
    config = train_config(epochs, precision)
    tensors = [t.to(device) for t in (data.X_train, data.y_train, data.X_val, data.y_val)]
    _sync(device)
    start = time.perf_counter()
    fit(model, *tensors, task=data.task, order_seeds=range(members), config=config, progress=False)
    _sync(device)
    return time.perf_counter() - start


def measure_batched(
    data,
    *,
    hidden: int,
    members: int,
    epochs: int,
    device: str,
    profile: bool,
    kind: str = "mlp",
    precision: str = "float32",
) -> dict:
    """Model-epochs per second of the batched trainer (after a one-epoch warm-up) and the
    time split of one epoch."""

    def run(n):
        return time_batched(
            data, hidden=hidden, members=members, epochs=n, device=device, kind=kind, precision=precision
        )

    run(1)  # warm-up: first calls pay for allocator and kernel selection
    rate = members * epochs / run(epochs)
    return {"rate": rate, "split": time_split(lambda: run(1), device=device) if profile else None}


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


class SigmaActivation(nn.Module):
    """The sigma-Asymmetric activation z * sigmoid(z @ C), C frozen: the plain loop's SMLP."""

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("gate", torch.randn(width, width))

    def forward(self, z):
        return z * torch.sigmoid(z @ self.gate)


def time_one_by_one(data, *, hidden: int, members: int, epochs: int, device: str, kind: str = "mlp") -> float:
    """``members`` nn.Sequential MLPs (or SMLPs) trained one after the other."""
    _sync(device)
    start = time.perf_counter()
    for member in range(members):
        torch.manual_seed(member)
        h = hidden
        act = (lambda: SigmaActivation(h)) if kind == "smlp" else nn.GELU
        net = nn.Sequential(
            nn.Linear(data.n_features, h),
            act(),
            nn.Linear(h, h),
            act(),
            nn.Linear(h, h),
            act(),
            nn.Linear(h, data.n_outputs),
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


def version_figures(measured: dict | None, loop_rate: float, *, flops: float, peak: float, unit: str) -> dict | None:
    """One version's row: its rate, speed figures and time split."""
    if measured is None:
        return None
    figures = speed_figures(measured["rate"], loop_rate, flops=flops, peak=peak)
    return {
        f"batched_{unit}_per_s": round(measured["rate"], 3),
        "rounds": measured.get("rates"),
        **figures,
        "time_split": measured["split"],
    }


def print_versions(label: str, run: dict, unit: str) -> None:
    for version in ("before", "after"):
        figures = run.get(version)
        if figures is None:
            continue
        print(
            f"{label} {version:6s}: {figures[f'batched_{unit}_per_s']:9.3f} {unit.replace('_', '-')}/s, "
            f"speed-up {figures['speedup']:5.1f}x, {figures['batched_gflops']:6.1f} GFLOP/s = "
            f"{100 * figures['fraction_of_peak']:3.0f}% of peak   {format_split(figures['time_split'])}",
            flush=True,
        )


def write_report(report: dict, out: str | Path) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    common_arguments(parser, epochs_help="epochs of the batched run")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument(
        "--kind", choices=["mlp", "smlp"], default="mlp", help="the members' kind (smlp: sigma-Asymmetric)"
    )
    parser.add_argument("--loop-members", type=int, default=4, help="members timed in the plain loop")
    parser.add_argument("--loop-epochs", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/trainer.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    precision_argv = check_precision(parser, args)
    epochs = args.epochs or (20 if args.device.startswith("cuda") else 3)
    data = load_dataset(args.dataset)
    if args.child_out:  # a version's child process: the batched runs only
        runs = {
            str(h): measure_batched(
                data,
                hidden=h,
                members=args.members,
                epochs=epochs,
                device=args.device,
                profile=not args.no_profile,
                kind=args.kind,
                precision=args.precision,
            )
            for h in args.hidden
        }
        Path(args.child_out).write_text(json.dumps(runs))
        return runs

    peak = matmul_peak_gflops(device=args.device, precision=args.precision)
    report = {**machine_report(args, data, peak), "kind": args.kind, "members": args.members, "epochs": epochs}
    print_machine(report)
    # The plain loop runs in this process: warm it up first, or the first size's loop pays
    # for the thread pool, the allocator and kernel selection (it read 2x slower).
    time_one_by_one(data, hidden=args.hidden[0], members=1, epochs=1, device=args.device, kind=args.kind)
    with baseline_package(args.baseline) if args.baseline != "none" else _nothing() as package:
        for hidden in args.hidden:
            child_argv = [
                "--dataset",
                args.dataset,
                "--hidden",
                str(hidden),
                "--members",
                str(args.members),
                "--kind",
                args.kind,
                "--epochs",
                str(epochs),
                "--device",
                args.device,
                "--threads",
                str(torch.get_num_threads()),
            ] + precision_argv
            after, before = alternate_versions(
                package, "bench_trainer.py", child_argv, rounds=args.rounds, profile=not args.no_profile
            )
            loop = time_one_by_one(
                data,
                hidden=hidden,
                members=args.loop_members,
                epochs=args.loop_epochs,
                device=args.device,
                kind=args.kind,
            )
            loop_rate = args.loop_members * args.loop_epochs / loop
            sizes = [data.n_features, hidden, hidden, hidden, data.n_outputs]
            flops = flops_per_model_epoch(sizes, len(data.X_train), len(data.X_val), kind=args.kind)
            figures = {"flops": flops, "peak": peak, "unit": "model_epochs"}
            run = {
                "hidden": hidden,
                "loop_model_epochs_per_s": round(loop_rate, 3),
                "before": version_figures(before and before[str(hidden)], loop_rate, **figures),
                "after": version_figures(after[str(hidden)], loop_rate, **figures),
            }
            report["runs"].append(run)
            print(f"hidden {hidden:4d}: loop {loop_rate:.2f} model-epochs/s")
            print_versions(f"hidden {hidden:4d}", run, "model_epochs")
    write_report(report, args.out)
    return report


@contextmanager
def _nothing():
    yield None


if __name__ == "__main__":
    main()
