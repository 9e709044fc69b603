#!/usr/bin/env bash
# Issue 15, item 3 on a multi-GPU device: greedy replies of the zero-shot base with a fixed engine path
# (eager, then static), on 1 GPU twice and on 2 GPUs, predictions and metrics copied to $OUT. Run from
# the snapshot folder tools/gpu_multi.sh uses:  cd .dev/gpu15 && bash tools/gpu_ident.sh
export SUPPORTTUNE_HOME=/tmp/sth
source tools/gpu_snapshot_env.sh
python3 -c "
from pathlib import Path; from supporttune.bench.scaling import scaling_model
scaling_model('tinyllama-arch', Path('/tmp/m'), 'tok')" 2>&1 | tail -1
for spec in eager:1:a eager:1:b eager:2:a static:1:a static:1:b static:2:a; do
  IFS=: read E N K <<< "$spec"; d=/tmp/z-$E-$N-$K
  s=$(date +%s)
  SUPPORTTUNE_ENGINE=$E timeout 70 python3 -m supporttune evaluate --baseline zero-shot --model /tmp/m --out $d --data twcs --limit 48 --max-new-tokens 32 --latency-samples 2 --no-semantic --device cuda --force --nproc $N > $OUT/z-$E-$N-$K.log 2>&1
  echo "$spec rc=$? $(( $(date +%s) - s ))s"
  cp $d/eval/predictions.jsonl $OUT/pred-$E-$N-$K.jsonl 2>/dev/null; cp $d/eval/metrics.json $OUT/metrics-$E-$N-$K.json 2>/dev/null
done
