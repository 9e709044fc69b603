"""Leakage-free split: whole threads go to one split, chosen by a seeded shuffle."""

from __future__ import annotations

import random
from collections import OrderedDict


def split_by_thread(examples: list[dict], val_frac: float, test_frac: float, seed: int) -> dict[str, list[dict]]:
    """Assign threads to test, then val, then train until each reaches its share of examples.

    Threads are ordered by a seeded shuffle of their sorted ids, so the split depends only on the
    data and the seed. With ``test_frac == 1`` everything lands in test.
    """
    threads: OrderedDict[str, list[dict]] = OrderedDict()
    for ex in examples:
        threads.setdefault(ex["thread_id"], []).append(ex)
    ids = sorted(threads)
    random.Random(seed).shuffle(ids)
    total = len(examples)
    targets = {"test": test_frac * total, "val": val_frac * total}
    out: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for tid in ids:
        rows = threads[tid]
        for name in ("test", "val"):
            if len(out[name]) < targets[name]:
                out[name].extend(rows)
                break
        else:
            out["train"].extend(rows)
    return out
