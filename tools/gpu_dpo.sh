#!/usr/bin/env bash
# Issue 22 on a GPU: a DPO child of each seed's recipe run, trained on automatic preference pairs, and the
# parent and child evaluated on the TWCS test split. The parents are the runs tools/gpu_parents.sh (or gpu_decode.py) trained in
# the previous call on the same warm machine (/tmp/runs/recipe-seedN); the three seeds run at once.
#   bash tools/gpu_dpo.sh  (PAIR_ARGS="" drops the constant reply from the rejected; DPO_ARGS="--sft-weight 1" adds
#   the SFT term;1 DPO epoch: ~3 min per seed on an H100 at the 1.4 steps/s measured; DPO_EPOCHS=3 for more) (on the device; results: $OUT/dpo.tar.gz, scored here by tools/dpo_results.py)
set -u
source tools/device_setup.sh
export SUPPORTTUNE_PROGRESS=0
one() {
  local s=$1 run=/tmp/runs/recipe-seed$1 child=/tmp/runs/dpo-k2-seed$1 w=/tmp/dpo/seed$1
  mkdir -p "$w"
  python3 -m supporttune preferences --run "$run" --data .dev/twcs --out "$w/prefs.jsonl" --samples 2 \
    --temperature 0.7 ${PAIR_ARGS---baselines constant} --batch-size 256 --seed "$s" --device cuda --force || return 1
  python3 -m supporttune train --objective dpo --from "$run" --preferences "$w/prefs.jsonl" --out "$child" \
    --name dpo-k2 --seed "$s" --epochs ${DPO_EPOCHS:-1} ${DPO_ARGS:-} --device cuda --force || return 1
  for r in "$run" "$child"; do
    [ "$r" = "$run" ] && [ -f "$run/eval/predictions.jsonl" ] && continue  # evaluated by gpu_parents.sh EVAL=1
    python3 -m supporttune evaluate --run "$r" --data .dev/twcs --no-semantic --force --latency-samples 0 || return 1
  done
  cp "$run/eval/predictions.jsonl" "$w/parent.jsonl"; cp "$child/eval/predictions.jsonl" "$w/child.jsonl"
  cp "$child/train_summary.json" "$w/child_summary.json"; wc -l "$w/prefs.jsonl" > "$w/pairs_count.txt"
}
t0=$(date +%s)
mkdir -p /tmp/dpo
for s in ${SEEDS:-1 2 3}; do (one $s > /tmp/dpo/log$s.txt 2>&1; echo "seed $s rc=$?" >> /tmp/dpo/log$s.txt) & done
# the call's limit is 600 s: whatever finished by LIMIT seconds is packed and comes back
( sleep ${LIMIT:-570}; echo "time limit: packing what finished" >&2; pkill -f "supporttune (preferences|train|evaluate)" ) &
watchdog=$!
wait $(jobs -p | grep -v "^$watchdog$")
pkill -P $watchdog 2>/dev/null; kill $watchdog 2>/dev/null  # its sleep too, or it holds the output pipe open
echo "wall $(( $(date +%s) - t0 )) s"; tail -n 3 /tmp/dpo/log*.txt
tar czf "$OUT/dpo.tar.gz" -C /tmp dpo
