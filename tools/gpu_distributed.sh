#!/usr/bin/env bash
# The launcher path on one GPU (run on the device: `bash tools/gpu_distributed.sh`, writes to $OUT).
# What one GPU can show of issue 7: a run launched through the elastic launcher (NCCL, world size 1)
# trains like the same run in place; QLoRA's 4-bit base lands on the rank's own GPU; FSDP wraps,
# trains and saves; and `bench --scaling 1` gives the 1-GPU baseline of the scaling table.
source tools/device_setup.sh
set -x
export OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 - <<'PY'
from pathlib import Path
import torch
from supporttune.bench.archs import ARCHS, random_checkpoint
from supporttune.bench.data import bench_tokenizer
from supporttune.config import PrepareConfig
from supporttune.data.prepare import prepare
random_checkpoint(ARCHS["tinyllama-arch"], dtype=torch.bfloat16, tokenizer=bench_tokenizer(".dev/tok"), out=Path("/tmp/tl"))
prepare(PrepareConfig(input="builtin", out=Path("/tmp/d"), force=True))
PY
T="python3 -m supporttune train --model /tmp/tl --data /tmp/d --max-steps 30 --batch-size 16 --grad-accum 1 --dropout 0 --force"
$T --method lora --out /tmp/r/lora-inplace
$T --method lora --out /tmp/r/lora-launch --nproc 1
$T --method lora --out /tmp/r/lora-fsdp --nproc 1 --fsdp
$T --method qlora --out /tmp/r/qlora-inplace
$T --method qlora --out /tmp/r/qlora-launch --nproc 1
python3 - <<'PY'
import glob, json, os
doc = {}
for d in sorted(glob.glob("/tmp/r/*")):
    rows = [json.loads(x) for x in open(d + "/loss.jsonl")]
    doc[os.path.basename(d)] = {"summary": json.load(open(d + "/train_summary.json")),
                                "train_loss": [r["train_loss"] for r in rows if "train_loss" in r]}
    print(os.path.basename(d), doc[os.path.basename(d)]["summary"]["steady_tokens_per_s"],
          [round(x, 4) for x in doc[os.path.basename(d)]["train_loss"]])
json.dump(doc, open(os.environ["OUT"] + "/launch-check.json", "w"), indent=1, default=str)
PY
python3 -m supporttune bench --scaling 1 --model tinyllama-arch --tokenizer .dev/tok --out $OUT/scaling-h100.json
