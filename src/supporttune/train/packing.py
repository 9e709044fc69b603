"""Padding-free packing: a micro-batch's sequences laid end to end in one 1 x total_tokens row.

Why: right-padded micro-batches spend compute on pad tokens, a share that grows with the spread of
lengths in a batch (length-grouped batches waste little, random ones more). Packed, all are real.

How the sequences stay apart: transformers' ``DataCollatorWithFlattening`` restarts ``position_ids``
at 0 for every sequence and sets the first label of each to -100 (so no sequence is trained to
predict the next one's first token). With no ``attention_mask`` and no KV cache, transformers
(``masking_utils.find_packed_sequence_indices``) reads the restarts and builds a block-diagonal
causal mask for eager and sdpa attention; flash attention derives ``cu_seqlens`` from the same
position ids. Two conditions follow, both checked by ``packing_problem``:

* ``model.config.use_cache`` must be False: otherwise the model makes a KV cache even in training,
  transformers skips the packed-sequence check, and attention leaks across boundaries (train.py
  sets it False, and HF's Trainer sets it to ``TrainingArguments.use_cache``, False by default);
* the PEFT method must keep position ids and add no per-row tokens: prompt and prefix tuning do
  neither (``Method.supports_packing``).

The loss is unchanged: the same tokens are labelled, and HF's loss sums token NLL and divides by
the number of labelled tokens (``num_items_in_batch``), so packing changes only where tokens sit.
"""

from __future__ import annotations

import random
from typing import Sequence

import torch

from ..core.errors import UserError

# Attention implementations that honour packed position ids (transformers 5.x).
PACKING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3")


class PackCollator:
    """Encoded items ({input_ids, labels}) -> one packed row: input_ids, labels, position_ids (1 x N).

    A thin wrapper on transformers' ``DataCollatorWithFlattening`` that keeps only what the model
    takes (no ``attention_mask``: its absence is what turns on the packed-sequence mask).
    """

    def __init__(self):
        from transformers import DataCollatorWithFlattening

        self.flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=-100)

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        if not features or any(len(f["input_ids"]) == 0 for f in features):
            raise ValueError("PackCollator got an empty batch or an empty sequence")
        batch = self.flatten([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in features])
        return {k: batch[k] for k in ("input_ids", "labels", "position_ids")}


def real_tokens(batch: dict[str, torch.Tensor]) -> int:
    """Non-pad tokens in a batch from either collator (a packed batch has no padding and no mask)."""
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    return int(batch["input_ids"].numel())


def packing_problem(method, model) -> str | None:
    """Why ``model`` trained with ``method`` (a ``methods.Method``) cannot be packed, or None if it can."""
    if not getattr(method, "supports_packing", False):
        return f"{method.name} prepends virtual tokens per row, which packed rows cannot keep apart"
    config = model.config
    if getattr(config, "use_cache", False):
        return "model.config.use_cache is on: the KV cache hides the packed sequence boundaries"
    attn = getattr(config, "_attn_implementation", None) or "sdpa"
    if attn not in PACKING_ATTENTION:
        return f"attention implementation {attn!r} does not honour packed position ids"
    return None


def pack_by_tokens(lengths: Sequence[int], max_tokens: int, order: Sequence[int] | None = None,
                   window: int = 32) -> list[list[int]]:
    """Indices grouped into bins of at most ``max_tokens`` tokens, first-fit in ``order``.

    A pure function of its arguments: no process count, no global RNG, so every rank computes the
    same bins and can take its share of them. Each item goes to the earliest of the last ``window``
    open bins it fits, else opens a new one (the oldest open bin then closes): first-fit's tight bins
    at O(n x window) cost, and bins keep the order's rough shuffle. An item over the budget is refused.
    """
    if max_tokens < 1:
        raise UserError(f"the packing token budget must be positive (got {max_tokens})")
    order = range(len(lengths)) if order is None else order
    bins: list[list[int]] = []
    open_bins: list[int] = []  # indices into bins, oldest first
    room: dict[int, int] = {}
    for i in order:
        n = int(lengths[i])
        if n > max_tokens:
            raise UserError(f"example {i} has {n} tokens, more than the packing budget of {max_tokens} tokens "
                            f"(raise the budget to at least max_length)")
        for b in open_bins:
            if n <= room[b]:
                bins[b].append(i)
                room[b] -= n
                break
        else:
            bins.append([i])
            room[len(bins) - 1] = max_tokens - n
            open_bins.append(len(bins) - 1)
            if len(open_bins) > window:
                del room[open_bins.pop(0)]
    return bins


def token_budget_batches(lengths: Sequence[int], max_tokens: int, seed: int, epoch: int = 0) -> list[list[int]]:
    """One epoch's packed micro-batches: a (seed, epoch)-shuffled order packed by ``pack_by_tokens``,
    the bins themselves shuffled again so that the first-filled (fuller) bins do not all come first."""
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bins = pack_by_tokens(lengths, max_tokens, order)
    rng.shuffle(bins)
    return bins


def padding_share(batches: Sequence[Sequence[int]], lengths: Sequence[int]) -> float:
    """The share of a right-padded run's tokens that are padding, for the given micro-batches."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches if b)
    real = sum(lengths[i] for b in batches for i in b)
    return 1 - real / padded if padded else 0.0
