"""Units at once on one device: the same small grid trained by ``asymlib train`` with 1 and
with N slots (processes), side by side in one run; prints the wall time of each and whether
every table came out the same (it must: only the scheduling differs).

    python benchmarks/bench_slots.py --device cuda --slots 1 4 --keep runs

The grid (``grid``): churn's units of the paper profile (params/paper.yaml, its settings
unchanged) at hidden 64: 4 repeats of deep ensembles (64 MLPs and 64 WMLPs each) and the
mixtures of 2 and 16 experts, MoE and MoIE, both gatings (5 mixtures each): 12 small units,
which leave a GPU mostly idle one at a time. ``--keep ROOT`` adds the one-slot run's units to
ROOT/paper (shards, settings, train_log.csv) where that folder lacks them: they are units of
the paper profile, and their logged seconds, measured alone on the device, are what
``asymlib estimate --measured`` needs of small units.
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

from asymlib.execution.params import SECTIONS, load_params  # noqa: E402
from asymlib.execution.serial import LOG_NAME, train_units  # noqa: E402


def grid() -> dict:
    """The paper profile cut down to churn's small units (only grid keys change)."""
    profile = yaml.safe_load((REPO / "params" / "paper.yaml").read_text())
    profile["deep_ensembles"].update(datasets=["churn"], hidden_sizes=[64], repeats=4)
    profile["mixtures"].update(datasets=["churn"], kinds=["mlp", "imlp"], experts=[2, 16])
    return profile


def _tables(profile_dir: Path) -> dict[str, pd.DataFrame]:
    """Every shard of the run, timing columns left out, keyed by file name."""
    out = {}
    for section in SECTIONS:
        for path in sorted((profile_dir / section / "shards").glob("*.parquet")):
            frame = pd.read_parquet(path)
            out[path.name] = frame.drop(columns=[c for c in frame.columns if "time" in c])
    return out


def keep(run: Path, params: Path, root: Path) -> int:
    """Copy the units of ``run`` (a profile folder) that ``root/paper`` lacks into it, with
    their settings and log rows; returns how many."""
    settings = load_params(params, sections=list(SECTIONS))
    copied = 0
    for name, section in SECTIONS.items():
        source, target = section.store(run / name, settings[name]), section.store(root / "paper" / name, settings[name])
        log = pd.read_csv(run / name / LOG_NAME)
        new = [unit for unit in source.units() if not target.done(unit)]
        for unit in new:  # saved again: the target records the unit's settings as it saves it
            target.save(unit, **{table: pd.read_parquet(source.path(unit, table)) for table in section.tables})
        rows = log[log["unit"].isin(new)]
        path = target.root / LOG_NAME
        rows.to_csv(path, mode="a", header=not path.exists(), index=False)
        copied += len(new)
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--keep", metavar="ROOT", help="add the one-slot run's units to ROOT/paper")
    parser.add_argument("--out", default="benchmarks/results/slots.json")
    args = parser.parse_args()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "paper.yaml"
        params.write_text(yaml.safe_dump(grid()))
        for slots in args.slots:
            started = time.perf_counter()
            summary = train_units(
                params, out_root=Path(tmp) / f"s{slots}", device=args.device, slots=slots, progress=False
            )
            wall = time.perf_counter() - started
            tables = _tables(Path(tmp) / f"s{slots}" / "paper")
            reference = reference or tables
            same = tables.keys() == reference.keys() and all(tables[k].equals(reference[k]) for k in tables)
            rows.append(
                {
                    "slots": slots,
                    "wall_s": round(wall, 2),
                    "units": len(summary.trained),
                    "failed": len(summary.failed),
                    "same_tables_as_first": same,
                }
            )
            print(rows[-1], flush=True)
        if args.keep and 1 in args.slots:
            print(f"kept {keep(Path(tmp) / 's1' / 'paper', params, Path(args.keep))} units in {args.keep}/paper")
    print(pd.DataFrame(rows).to_string(index=False))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": args.device, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
