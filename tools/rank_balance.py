"""The data-side ceiling of 2-GPU speed-up for `bench --scaling` (issue 15).

Step time grows with the padded tokens a rank computes. The length-grouped global order deals
consecutive 16-sequence micro-batches to the ranks, so rank 0 gets the longer half of each sorted
global batch and rank 1 waits for it. This counts padded tokens per step, 1 GPU (every micro-batch)
vs 2 GPUs (the slower rank), on the prepared data and tokenizer the scaling runs used:
    .venv/bin/python tools/rank_balance.py .dev/twcs .dev/gpu15/tok
"""

import sys
from pathlib import Path

from transformers import AutoTokenizer

from supporttune.train.collate import EncodedDataset, GlobalOrderSampler
from supporttune.data.split import load_split
from supporttune.train.config import TrainConfig
from supporttune.train.stage import prompt_spec

data, tok_dir = Path(sys.argv[1]), sys.argv[2]
cfg = TrainConfig(model="x", data=str(data), method="lora")  # the defaults the scaling runs use
ds = EncodedDataset(load_split(data, "train"), AutoTokenizer.from_pretrained(tok_dir), prompt_spec(cfg), cfg.max_length, None)
lens = [len(x["input_ids"]) for x in ds]
for global_batch, steps in ((32, 20), (128, 10)):
    sampler = GlobalOrderSampler(lens, global_batch, cfg.seed, cfg.group_by_length)
    order = list(sampler)
    sampler.set_epoch(1)
    order += list(sampler)
    one = two = real = 0
    for s in range(steps):
        batch = order[s * global_batch:(s + 1) * global_batch]
        padded = [max(lens[i] for i in batch[k:k + 16]) * 16 for k in range(0, global_batch, 16)]
        one += sum(padded)
        two += max(sum(padded[0::2]), sum(padded[1::2]))
        real += sum(lens[i] for i in batch)
    print(f"global batch {global_batch}, {steps} steps: 2-GPU ceiling {one / two:.3f}x "
          f"(padding {1 - real / one:.1%} of the 1-GPU tokens)")
