"""The data-side ceiling of N-GPU speed-up (issues 15 and 23): consecutive vs token-balanced micro-batches.

Step time grows with the tokens a rank computes, and every rank waits for the slowest. Before
issue 23 the length-grouped global order dealt consecutive 16-sequence micro-batches to the ranks,
so rank 0 got the longer half of each sorted global batch; now ``GlobalOrderSampler`` deals each
global batch so every rank carries about the same tokens. This counts, per step, the tokens of 1
GPU (all micro-batches) over those of the slowest rank of N, both ways, for padded micro-batches
(longest x rows) and packed ones (real tokens), on the prepared data and a tokenizer:
    PYTHONPATH=src .venv/bin/python tools/rank_balance.py .dev/twcs [TOKENIZER_DIR]
(no tokenizer directory: the embedded model's).
"""

import sys
from pathlib import Path

from supporttune.bench.data import bench_tokenizer
from supporttune.data.split import load_split
from supporttune.train.collate import EncodedDataset, GlobalOrderSampler
from supporttune.train.config import TrainConfig
from supporttune.train.stage import prompt_spec

MICRO = 16
data = Path(sys.argv[1])
tok = bench_tokenizer(sys.argv[2] if len(sys.argv) > 2 else None)
cfg = TrainConfig(model="x", data=str(data), method="lora")  # the defaults the scaling runs use
ds = EncodedDataset(load_split(data, "train"), tok, prompt_spec(cfg), cfg.max_length, None)
lens = [len(x["input_ids"]) for x in ds]


def steps_of(world: int, global_batch: int, steps: int, balanced: bool) -> list[list[list[int]]]:
    """The first ``steps`` steps over two epochs, each as its micro-batches (micro-batch k goes to rank k % world)."""
    sampler = GlobalOrderSampler(lens, global_batch, cfg.seed, cfg.group_by_length, MICRO if balanced else None, world)
    order = list(sampler)
    sampler.set_epoch(1)
    order += list(sampler)
    return [[order[k:k + MICRO] for k in range(s * global_batch, (s + 1) * global_batch, MICRO)] for s in range(steps)]


def ceiling(world: int, global_batch: int, steps: int, balanced: bool) -> tuple[float, float, float]:
    """(padded ceiling, packed ceiling, padding share on N GPUs): 1 GPU's tokens (its own layout, as one process
    runs it) over the slowest rank's, summed over the steps."""
    one = sum(max(lens[i] for i in mb) * len(mb) for step in steps_of(1, global_batch, steps, balanced) for mb in step)
    slow_padded = slow_real = real = padded_all = 0
    for step in steps_of(world, global_batch, steps, balanced):
        padded = [max(lens[i] for i in mb) * len(mb) for mb in step]
        reals = [sum(lens[i] for i in mb) for mb in step]
        real += sum(reals)
        padded_all += sum(padded)
        slow_padded += max(sum(padded[r::world]) for r in range(world))
        slow_real += max(sum(reals[r::world]) for r in range(world))
    return one / slow_padded, real / slow_real, 1 - real / padded_all


print(f"{len(lens)} training sequences, micro-batch {MICRO}")
for world in (2, 4):
    for global_batch, steps in ((MICRO * world, 20), (128, 10)):
        for balanced in (False, True):
            padded, packed, pad = ceiling(world, global_batch, steps, balanced)
            print(f"{world} GPUs, global batch {global_batch}, {steps} steps, "
                  f"{'balanced   ' if balanced else 'consecutive'}: ceiling {padded:.3f}x padded, "
                  f"{packed:.3f}x packed (padding {pad:.1%} of the padded tokens)")
