#!/usr/bin/env bash
# The recipe's parent runs for the GPU experiments, trained side by side on one GPU (a 135M model leaves an
# H100 mostly idle, so 3 trainings at once take little longer than one): /tmp/runs/recipe-seedN.
# EVAL=1: each parent is also evaluated on the test split as soon as it is trained (gpu_dpo.sh then skips it).
# Then `python3 tools/gpu_decode.py --reuse ...` and `bash tools/gpu_dpo.sh` use them in the same or the next
# call on the same warm machine.      SEEDS="1 2 3" EVAL=1 bash tools/gpu_parents.sh
set -u
source tools/device_setup.sh
parent() {
  local s=$1 run=/tmp/runs/recipe-seed$1
  python3 - "$s" <<'PY' || return 1
import sys
from pathlib import Path
sys.path.insert(0, "tools")
from gpu_decode import recipe
from supporttune.train.stage import train
seed = int(sys.argv[1])
train(recipe(Path(".dev/twcs"), Path(f"/tmp/runs/recipe-seed{seed}"), seed))
PY
  echo "seed $s trained at $(( $(date +%s) - t0 )) s"
  [ -z "${EVAL:-}" ] || python3 -m supporttune evaluate --run "$run" --data .dev/twcs --no-semantic --force \
      --latency-samples 0 || return 1
  echo "seed $s done at $(( $(date +%s) - t0 )) s"
}
t0=$(date +%s)
for s in ${SEEDS:-1 2 3}; do parent "$s" > /tmp/parent$s.log 2>&1 & done
wait
echo "parents done in $(( $(date +%s) - t0 )) s"; tail -n 3 /tmp/parent*.log
