#!/usr/bin/env bash
# Everything a lent GPU is for, in one call of at most SECONDS (default 540):
#
#     bash benchmarks/gpu_session.sh OUTDIR [SECONDS]
#
# gpu_check.sh first (at most 8 minutes; its logs and JSON packed into OUTDIR/check.tar.gz),
# then the paper profile (gpu_paper.sh, 4 slots) for the time left, resumed from runs/paper
# where the checkout has it: OUTDIR/paper.log and OUTDIR/paper_runs.tar.gz. Three files, as
# a device that returns few files wants. Before the call, restore the units measured so far:
#     mkdir -p runs && cp -r results/gpu_h200/paper runs/paper     (and carry runs/paper)
set -u -o pipefail
out=${1:?usage: bash benchmarks/gpu_session.sh OUTDIR [SECONDS]}
seconds=${2:-540}
started=$(date +%s)
mkdir -p "$out"
bash "$(dirname "$0")/gpu_check.sh" "$out/check"
tar czf "$out/check.tar.gz" -C "$out" check && rm -rf "$out/check"
left=$(( seconds - ($(date +%s) - started) - 15 ))
if [ "$left" -ge 60 ]; then
    bash "$(dirname "$0")/gpu_paper.sh" "$out" "$left" 4
else
    echo "== no time left for the paper profile ($left s)"
fi
echo "== session took $(( $(date +%s) - started )) s"
