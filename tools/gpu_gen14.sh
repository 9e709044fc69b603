#!/usr/bin/env bash
# Issue 14's GPU measurements (docs/BENCHMARKS.md, "Generation engine"). On the device machine, from the
# carried snapshot .dev/gen14 (src/, old/src/ = the code before the engine, tools/, tok/ = the embedded tokenizer,
# twcs/ = `supporttune prepare` of the TWCS sample, whl/ = /work/shared/device/wheelhouse.sh's wheels plus
# fastapi, starlette, uvicorn and opentelemetry-api, which fastapi >= 0.16x imports):   bash tools/gpu_gen14.sh [BUDGET_S]
set -o pipefail
out=${OUT:-/tmp/out}; mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 SUPPORTTUNE_PROGRESS=0 \
       SUPPORTTUNE_HOME=/tmp/st-home TOKENIZERS_PARALLELISM=false
python3 tools/gpu_gen14.py "$out" "${1:-330}" 2>&1 | tee "$out/log.txt"
