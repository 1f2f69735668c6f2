#!/usr/bin/env bash
# The paper profile (params/paper.yaml) on one GPU, in pieces that fit a time-limited call:
#
#     bash benchmarks/gpu_paper.sh OUTDIR SECONDS [SLOTS]
#
# trains the profile's unfinished units with `asymlib train` (no Dask, notebooks or reports;
# torch, pandas, pyarrow, scikit-learn and PyYAML suffice), SLOTS units at once (default 4),
# starting none after SECONDS minus a margin and killing what still runs at SECONDS; then packs
# what runs/paper holds (every finished unit's shards, settings.yaml, train_log.csv) into
# OUTDIR/paper_runs.tar.gz, and the log into OUTDIR/paper.log. To resume elsewhere, unpack the
# archive in the repository root (it restores runs/paper/) and run this again with runs/paper
# beside the checkout: finished units are skipped. Once every unit is done, `asymlib run
# params/paper.yaml` on any machine executes the notebooks and builds the reports.
# PROFILE=params/smoke.yaml DEVICE=cpu run the same steps on another profile or device (the tests do).
set -u -o pipefail
out=${1:?usage: bash benchmarks/gpu_paper.sh OUTDIR SECONDS [SLOTS]}
seconds=${2:?usage: bash benchmarks/gpu_paper.sh OUTDIR SECONDS [SLOTS]}
slots=${3:-4}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ASYMLIB_DATA=${ASYMLIB_DATA:-$PWD/data}
python=${PYTHON:-python3}
profile=${PROFILE:-params/paper.yaml}
runs=runs/$(basename "$profile" .yaml)
# Units are minutes at most on a GPU: stop starting new ones a tenth of the time (at least 30 s,
# at most half of it) early.
margin=$(( seconds / 10 > 30 ? seconds / 10 : 30 ))
margin=$(( margin > seconds / 2 ? seconds / 2 : margin ))
echo "== $profile on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU'): " \
     "$seconds s, $slots slots, no unit started after $(( seconds - margin )) s"
timeout -s INT -k 10 "$seconds" $python -m asymlib.execution.serial "$profile" --device "${DEVICE:-cuda}" \
    --slots "$slots" --stop-after "$(( seconds - margin ))" --no-progress 2>&1 | tee "$out/paper.log"
echo "== exit status ${PIPESTATUS[0]} (0: every unit done, 4: units left for the next call, 124/130: stopped)"
tar czf "$out/paper_runs.tar.gz" --exclude='*.partial' --exclude='*.partial.*' "$runs" 2>/dev/null
$python - "$runs" <<'PY' | tee -a "$out/paper.log"
import pandas as pd, pathlib, sys
logs = [pd.read_csv(p).assign(section=p.parent.name) for p in pathlib.Path(sys.argv[1]).glob("*/train_log.csv")]
if logs:
    log = pd.concat(logs)
    print(f"units done: {len(log)}; seconds per unit by section and device:")
    print(log.groupby(["section", "device", "slots"])["seconds"].describe()[["count", "mean", "max"]].to_string())
PY
