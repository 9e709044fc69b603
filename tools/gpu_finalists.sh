#!/usr/bin/env bash
# Issue 21's finalists on one GPU: trials of the GPU tune (tools/gpu_tune.sh, same warm machine) retrained with
# seeds 1-3 from their own config.yaml and evaluated on the test split; three trainings at once (six at once
# failed three of them for lack of GPU memory). Comes back as $OUT/fin.tgz (no adapters); scored here with
#   python tools/finalist_results.py --entry tuned-k4=DIR/t32- --entry recipe=DIR/t0- --baseline ... --reference recipe
# Session 8 ran TRIALS="32 0" (the tune's best and trial 0 = the recipe it started from).
set -u
source tools/device_setup.sh
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
t0=$(date +%s)
mkdir -p /tmp/fin
one() {
  python3 - "$1" "$2" <<'PY' || return 1
import sys
from pathlib import Path

import yaml

from supporttune.train.config import TrainConfig
from supporttune.train.stage import train

t, s = sys.argv[1], int(sys.argv[2])
raw = yaml.safe_load(Path(f"/tmp/tune-gpu/trials/trial-{int(t):04d}/config.yaml").read_text())["train"]
raw.update(seed=s, out=f"/tmp/fin/t{t}-seed{s}", force=True, data=".dev/twcs", name=f"t{t}-seed{s}")
train(TrainConfig(**raw))
PY
  python3 -m supporttune evaluate --run "/tmp/fin/t$1-seed$2" --data .dev/twcs --no-semantic --force \
      --latency-samples 0 > "/tmp/fin/ev$1-$2.log" 2>&1
  echo "t$1 seed $2 done at $(( $(date +%s) - t0 )) s (rc $?)"
}
for t in ${TRIALS:-32 0}; do
  for s in 1 2 3; do one "$t" "$s" > "/tmp/fin/log$t-$s" 2>&1 & done
  wait
done
grep -hE "done|rror" /tmp/fin/log* | cut -c1-200
tar czf "$OUT/fin.tgz" -C /tmp --exclude='adapter_model.safetensors' --exclude='checkpoints' fin
