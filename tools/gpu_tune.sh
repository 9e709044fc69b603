#!/usr/bin/env bash
# Issue 21's recipe search on one GPU, in 10-minute device calls: 8 trials at once, no new trial after 4 min
# (a trial is ~4-5 min alone on an H100, unmeasured 8 at a time), so a call finishes about 1-2 waves.
# Rerun the same command in the next call on the same warm machine to continue (the study is in /tmp/tune-gpu;
# tune_results.json and tune_report.md come back under $OUT each time).      bash tools/gpu_tune.sh
set -u
source tools/device_setup.sh
t0=$(date +%s)
python3 -m supporttune tune --config src/supporttune/configs/tune-gpu.yaml --data .dev/twcs --trials "${TRIALS:-32}" \
    --jobs "${JOBS:-8}" --timeout "${TUNE_TIMEOUT:-240}" --out /tmp/tune-gpu 2>&1 | grep -E "^\[worker|timeout|best|wrote|error"
echo "tune call: $(( $(date +%s) - t0 )) s"
cp /tmp/tune-gpu/tune_results.json /tmp/tune-gpu/tune_report.md "$OUT"/ 2>/dev/null
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv > "$OUT/gpu.csv"
