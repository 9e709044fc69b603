#!/usr/bin/env bash
# The recipe's parent runs for the GPU experiments, trained side by side on one GPU (a 135M model leaves an
# H100 mostly idle, so 3 trainings at once take little longer than one): /tmp/runs/lora-all-k2-h3-seedN.
# Then `python3 tools/gpu_decode.py --reuse ...` and `bash tools/gpu_dpo.sh` use them in the same or the next
# call on the same warm machine.      SEEDS="1 2 3" bash tools/gpu_parents.sh
set -u
source tools/device_setup.sh
t0=$(date +%s)
for s in ${SEEDS:-1 2 3}; do
  python3 - "$s" > /tmp/parent$s.log 2>&1 <<'PY' &
import sys
from pathlib import Path
sys.path.insert(0, "tools")
from gpu_decode import recipe
from supporttune.train.stage import train
seed = int(sys.argv[1])
train(recipe(Path(".dev/twcs"), Path(f"/tmp/runs/lora-all-k2-h3-seed{seed}"), seed))
PY
done
wait
echo "parents trained in $(( $(date +%s) - t0 )) s"; tail -n 2 /tmp/parent*.log
