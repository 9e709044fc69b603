"""The splits: made leakage-free at prepare (whole threads go to one split, by a seeded shuffle), read back by every later stage."""

from __future__ import annotations

import random
from collections import OrderedDict
from pathlib import Path

from ..core.errors import UserError
from ..core.io import read_jsonl

SPLITS = ("train", "val", "test")  # <split>.jsonl in a prepared data directory
PREPARE_REPORT = "prepare_report.json"  # what prepare kept, dropped and redacted, and its config


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


def split_path(data_dir: Path, split: str) -> Path:
    return Path(data_dir) / f"{split}.jsonl"


def load_split(data_dir: Path, split: str, required: bool = True) -> list[dict]:
    path = split_path(data_dir, split)
    if not path.is_file():
        if required:
            raise UserError(f"{path}: not found (run `supporttune prepare --out {data_dir}` first)")
        return []
    rows = read_jsonl(path)
    if required and not rows:
        raise UserError(f"{path}: no examples")
    for i, r in enumerate(rows[:50]):
        if "input" not in r or "output" not in r:
            raise UserError(f"{path}:{i + 1}: example lacks input/output fields")
    return rows

