#!/usr/bin/env bash
# The GPU checks in one go, for a GPU lent for a few minutes (at most 8 minutes): the CUDA
# tests, then what the first GPU run left unmeasured (benchmarks/README.md, "On a GPU"):
# where an epoch goes, hidden 256 in float32, MoIE, and units at once. Run from the repository
# root with the raw data in $ASYMLIB_DATA (default: data/):
#
#     bash benchmarks/gpu_check.sh OUTDIR
#
# It needs torch with CUDA, pandas, scikit-learn, scipy, pytest and tqdm, not the project
# installed (PYTHONPATH points at the checkout), so a stock PyTorch image will do. Each step
# has a time limit, and one that fails does not stop the next; OUTDIR receives a log per
# step and the benchmarks' JSON.
set -u -o pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 ASYMLIB_DATA=${ASYMLIB_DATA:-$PWD/data}
python=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run it with a time limit, its output into OUTDIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
    echo "== $name: exit status ${PIPESTATUS[0]}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
$python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())"
step test_cuda 120 $python -m pytest tests/test_cuda.py -ra -q -p no:cacheprovider
step epoch 120 $python benchmarks/bench_epoch.py --device cuda --out "$out/epoch.json"
step trainer 60 $python benchmarks/bench_trainer.py --device cuda --dataset mnist --hidden 256 --members 64 \
    --baseline none --rounds 1 --no-profile --loop-members 2 --loop-epochs 1 --out "$out/trainer.json"
step mixtures 60 $python benchmarks/bench_mixtures.py --device cuda --dataset california --kinds imlp \
    --experts 16 128 --baseline none --rounds 1 --no-profile --out "$out/mixtures.json"
# the one-slot run's units are units of the paper profile: kept in runs/paper for the estimate
step slots 120 $python benchmarks/bench_slots.py --device cuda --slots 1 4 --keep runs --out "$out/slots.json"
