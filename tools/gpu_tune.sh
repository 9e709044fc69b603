#!/usr/bin/env bash
# Issue 21's recipe search on one GPU (docs/RESULTS.md, "The GPU tune"). Session 8 ran it as three device calls on
# one warm H100: TRIALS=32 JOBS=8 TUNE_TIMEOUT=300, then TRIALS=64 (same), then TRIALS=80 JOBS=5 TUNE_TIMEOUT=200.
# With 8 trials at once 47 of 64 trials ran out of GPU memory (a trial takes 4-16 GiB); 5 at once with
# expandable segments lost none, hence the defaults below. The study lives in /tmp/tune-gpu: rerun the same
# command in the next call on the same warm machine to continue; tune_results.json, tune_report.md and the
# study come back under $OUT each time.      TRIALS=80 bash tools/gpu_tune.sh
set -u
source tools/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
t0=$(date +%s)
timeout -s INT 560 python3 -m supporttune tune --config src/supporttune/configs/tune-gpu.yaml --data .dev/twcs \
    --trials "${TRIALS:-32}" --jobs "${JOBS:-5}" --timeout "${TUNE_TIMEOUT:-200}" --out /tmp/tune-gpu 2>&1 \
    | grep -E "^\[worker|^best|timeout|wrote|rror" | cut -c1-250
echo "tune call: $(( $(date +%s) - t0 )) s"
cp /tmp/tune-gpu/tune_results.json /tmp/tune-gpu/tune_report.md /tmp/tune-gpu/study.db "$OUT"/ 2>/dev/null
