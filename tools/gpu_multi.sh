#!/usr/bin/env bash
# Issue 15 on a multi-GPU device machine, in one call (writes $OUT/multi.json, scaling*.json, logs.tgz).
# The device command runs it from a snapshot folder that holds src/, tools/, whl/ (the wheels the image
# lacks; bitsandbytes stripped to its CUDA 13 library), tok/ (the embedded model's tokenizer) and twcs/
# (`supporttune prepare --input ../shared/data/twcs_sample.csv --format twcs --out twcs`):
#   cd .dev/gpu15 && bash tools/gpu_multi.sh
# NVLink multicast stays off (the image sets NCCL_NVLS_ENABLE=0; it is kept, or set if missing).
set -o pipefail
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/site
for w in whl/*.whl; do python3 -m zipfile -e "$w" /tmp/site; done  # wheels are zips; no pip needed
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SUPPORTTUNE_PROGRESS=0
export SUPPORTTUNE_HOME=/tmp/supporttune-home NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
python3 tools/gpu_multi.py --out "$OUT" "$@" 2>&1 | tee "$OUT/log"
