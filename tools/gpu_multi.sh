#!/usr/bin/env bash
# Issue 15 on a multi-GPU device machine, in one call (writes $OUT/multi.json, scaling*.json, logs.tgz).
# The device command runs it from a snapshot folder that holds src/, tools/, whl/ (the wheels the image
# lacks; bitsandbytes stripped to its CUDA 13 library), tok/ (the embedded model's tokenizer) and twcs/
# (`supporttune prepare --input ../shared/data/twcs_sample.csv --format twcs --out twcs`):
#   cd .dev/gpu15 && bash tools/gpu_multi.sh
# NVLink multicast stays off (the image sets NCCL_NVLS_ENABLE=0; it is kept, or set if missing).
set -o pipefail
source tools/gpu_snapshot_env.sh
python3 tools/gpu_multi.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log"
