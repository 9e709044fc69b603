"""Encoded datasets and the padding collator used for training and evaluation loss."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import UserError
from .io import read_jsonl
from .prompts import PromptSpec, encode_example


def load_split(data_dir: Path, split: str, required: bool = True) -> list[dict]:
    path = Path(data_dir) / f"{split}.jsonl"
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


class EncodedDataset(torch.utils.data.Dataset):
    """Examples tokenized with THE prompt builder; pairs longer than ``max_length`` are skipped."""

    def __init__(self, rows: list[dict], tokenizer, spec: PromptSpec, max_length: int):
        self.items = []
        self.skipped = 0
        for row in rows:
            enc = encode_example(tokenizer, row, spec, max_length)
            if enc is None:
                self.skipped += 1
            else:
                self.items.append(enc)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]

    @property
    def total_tokens(self) -> int:
        return sum(len(x["input_ids"]) for x in self.items)


class PadCollator:
    """Right-pads a batch to its longest sequence (or to ``pad_to``, the seed recipe's habit)."""

    def __init__(self, pad_id: int, pad_to: int | None = None):
        self.pad_id = pad_id
        self.pad_to = pad_to

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        length = self.pad_to or max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), length), self.pad_id, dtype=torch.long)
        labels = torch.full((len(features), length), -100, dtype=torch.long)
        mask = torch.zeros((len(features), length), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
