"""Units at once on one device: the same small grid trained by ``asymlib train`` with 1 and
with N slots (processes), side by side in one run; prints the wall time of each and whether
every table came out the same (it must: only the scheduling differs).

    python benchmarks/bench_slots.py --device cuda --slots 1 4 8 --out benchmarks/results/slots.json

The grid (``GRID``): churn's deep ensembles at hidden 64 (4 repeats of 64 MLPs and 64
WMLPs) and its softmax-gated mixtures of 2 and 16 experts (MoE and MoIE, 5 mixtures each),
the paper's settings otherwise; 8 units, small enough to leave a GPU mostly idle one at a time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from asymlib.execution.params import SECTIONS  # noqa: E402
from asymlib.execution.serial import train_units  # noqa: E402

COMMON = {"datasets": ["churn"], "seed": 0, "max_epochs": 1000, "patience": 16, "max_rows": None,
          "val_fraction": 0.2, "workers": 1, "threads": None}
GRID = {
    "deep_ensembles": {**COMMON, "hidden_sizes": [64], "members": 64, "ensemble_sizes": [2, 64], "repeats": 4},
    "mixtures": {**COMMON, "gatings": ["standard"], "kinds": ["mlp", "imlp"], "experts": [2, 16], "hidden": 64,
                 "repeats": 5},
}


def _tables(profile_dir: Path) -> dict[str, pd.DataFrame]:
    """Every shard of the run, timing columns left out, keyed by file name."""
    out = {}
    for section in SECTIONS:
        for path in sorted((profile_dir / section / "shards").glob("*.parquet")):
            frame = pd.read_parquet(path)
            out[path.name] = frame.drop(columns=[c for c in frame.columns if "time" in c])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--out", default="benchmarks/results/slots.json")
    args = parser.parse_args()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "slots.yaml"
        params.write_text(yaml.safe_dump(GRID))
        for slots in args.slots:
            started = time.perf_counter()
            summary = train_units(params, out_root=Path(tmp) / f"s{slots}", device=args.device, slots=slots,
                                  progress=False)
            wall = time.perf_counter() - started
            tables = _tables(Path(tmp) / f"s{slots}" / "slots")
            reference = reference or tables
            same = tables.keys() == reference.keys() and all(tables[k].equals(reference[k]) for k in tables)
            rows.append({"slots": slots, "wall_s": round(wall, 2), "units": len(summary.trained),
                         "failed": len(summary.failed), "same_tables_as_first": same})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_string(index=False))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": args.device, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
