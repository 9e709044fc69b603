"""The benchmarks' data: a prepared split (built-in by default), tokenized by the production prompt builder.

Both training paths see the same sequences in the same step batches, so their losses must agree.
The seed's plain prompt format is used throughout: the same tokens for both paths. A random model
of a named architecture may have a smaller vocabulary than the tokenizer: ``FoldedTokenizer``
folds the real token ids into it, for training data and generation alike (speed does not depend
on which ids they are).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

from ..data.split import load_split
from ..models.presets import DEFAULT_MODEL
from ..prompting.builder import encode_example
from ..prompting.spec import PromptSpec

SPEC = PromptSpec(prompt_format="plain", tags=True, history=0)  # the seed recipe's prompt
MAX_LENGTH = 512  # the seed recipe pads every sequence to this


def bench_tokenizer(path: str | None):
    """The tokenizer in ``path``, or the embedded model's."""
    from transformers import AutoTokenizer

    from ..models.loading import load_tokenizer, resolve

    return AutoTokenizer.from_pretrained(path) if path else load_tokenizer(resolve(DEFAULT_MODEL))


class FoldedTokenizer:
    """``tokenizer`` with every token id it gives taken modulo ``vocab``; everything else passes through."""

    def __init__(self, tokenizer, vocab: int):
        self._tokenizer, self._vocab = tokenizer, vocab

    def __call__(self, *args, **kwargs):
        encoded = self._tokenizer(*args, **kwargs)
        encoded["input_ids"] = self._fold(encoded["input_ids"])
        return encoded

    def _fold(self, ids):
        if isinstance(ids, list):
            return [self._fold(x) for x in ids]
        return ids if ids is None else ids % self._vocab

    pad_token_id = property(lambda self: self._fold(self._tokenizer.pad_token_id))
    bos_token_id = property(lambda self: self._fold(self._tokenizer.bos_token_id))
    eos_token_id = property(lambda self: self._fold(self._tokenizer.eos_token_id))

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


def prepared(data: str, work: Path | None = None) -> Path:
    """A prepared data directory: ``data`` itself, or the built-in set prepared under ``work``."""
    if data != "builtin":
        return Path(data)
    from ..data.config import PrepareConfig
    from ..data.prepare import prepare

    out = Path(work or tempfile.mkdtemp(prefix="supporttune-bench-")) / "data"
    prepare(PrepareConfig(input="builtin", out=out))
    return out


def train_sequences(data: Path, tokenizer) -> list[dict]:
    """Encoded training pairs (prompt masked in the labels) that fit the seed's 512 tokens."""
    return [e for e in (encode_example(tokenizer, row, SPEC, MAX_LENGTH) for row in load_split(data, "train")) if e]


def step_batches(examples: list[dict], steps: int, per_step: int, seed: int) -> list[list[dict]]:
    """Length-grouped step batches: shuffle, cut pools of 8 steps, sort each pool by length."""
    rng = random.Random(seed)
    pool = list(examples)
    out: list[list[dict]] = []
    while len(out) < steps:
        rng.shuffle(pool)
        for i in range(0, len(pool) - per_step * 8 + 1, per_step * 8):
            chunk = sorted(pool[i:i + per_step * 8], key=lambda e: len(e["input_ids"]))
            groups = [chunk[j:j + per_step] for j in range(0, len(chunk), per_step)]
            rng.shuffle(groups)
            out.extend(groups)
    return out[:steps]
