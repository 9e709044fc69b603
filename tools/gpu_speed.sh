#!/usr/bin/env bash
# Issue 23's speed rows on one GPU (run on the device: `bash tools/gpu_speed.sh`, writes JSON to $OUT; < 8 min on an H100).
# Needs (carried, git-ignored): .dev/wsmall (wheels), .dev/ga + .dev/gb (the embedded GGUF), .dev/twcs
# (`supporttune prepare --input ../shared/data/twcs_sample.csv --format twcs --out .dev/twcs`).
#  1. a run of the full preset's recipe (docs/RESULTS.md's settings; RUN=dir to use a trained one instead, else trained
#     here for TRAIN_STEPS steps: the speed of evaluating it depends on its shapes and prompts, not its quality);
#  2. `bench --speed RUN`: evaluate it on the 157-message test split twice, each in its own process, sharing a
#     compile cache that starts empty (cold, then warm: compile_s, from_cache, timing by stage, whole wall);
#     then LoRA training on the TinyLlama architecture (random weights), padded vs packed: tokens/s and MFU.
source tools/device_setup.sh
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
START=$(date +%s)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv"
RUN=${RUN:-}
if [ -z "$RUN" ]; then
  RUN=/tmp/runs/recipe
  timeout 240 python3 -m supporttune train --data .dev/twcs --method lora --r 16 --alpha 32 \
      --targets q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj --lr 1e-3 --batch-size 16 --grad-accum 1 \
      --max-length 1024 --dropout 0.05 --retrieval bm25 --retrieve 2 --history 3 --seed 1 \
      --max-steps "${TRAIN_STEPS:-40}" --out "$RUN" --force 2>&1 | tail -5 | tee "$OUT/train.log"
  cp "$RUN/train_summary.json" "$OUT/run_train_summary.json" 2>/dev/null
fi
echo "run ready after $(( $(date +%s) - START )) s"
timeout $(( 460 - ($(date +%s) - START) )) python3 -m supporttune bench --speed "$RUN" --data .dev/twcs \
    --model tinyllama-arch --methods lora --out "$OUT/speed.json" --force 2>&1 | grep -v Warning | tee "$OUT/speed.log"
python3 - <<'PY'
import json, os
r = json.load(open(os.environ["OUT"] + "/speed.json"))
print("card:", r["device_name"])
for which in ("cold", "warm"):
    e = r.get("evaluate", {}).get(which) or {}
    print(f"evaluate {which}: wall {e.get('wall_s')} s, compile {e.get('compile_s')} s, from cache {e.get('from_cache')}, "
          f"timing {e.get('timing')}")
for row in r.get("training", []):
    print(f"train {row['method']}/{row['path']}: {row.get('tokens_per_s')} tokens/s, MFU {row.get('mfu')}, "
          f"pad share {row.get('pad_share')}, loss {row.get('final_loss')} {row.get('error', '')}")
print("packed vs padded:", r.get("packed_vs_padded"))
PY
echo "total $(( $(date +%s) - START )) s"
ls -la "$OUT"
