"""Encoded datasets and the padding collator used for training and evaluation loss."""

from __future__ import annotations

import torch

from ..core.errors import UserError
from ..prompting.builder import PromptBuilder
from ..prompting.spec import PromptSpec


class EncodedDataset(torch.utils.data.Dataset):
    """Examples tokenized with THE prompt builder; pairs longer than ``max_length`` are skipped.

    With an exemplar ``index`` each row first gets its ``spec.retrieve`` nearest past exchanges
    (never from its own thread); ``distract_share`` of them (training only, RAFT-style) get random
    exchanges of other threads instead, so the model learns to ignore a bad neighbour.
    """

    def __init__(self, rows: list[dict], tokenizer, spec: PromptSpec, max_length: int, index=None,
                 distract_share: float = 0.0, seed: int = 0):
        builder = PromptBuilder(tokenizer, spec, index)
        self.items, self.skipped = builder.training_items(rows, max_length, distract_share, seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


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


def nll_sums(model, items: list[dict], collate, batch_size: int, device, forwards: int | None = None) -> tuple[float, int]:
    """Summed next-token NLL over the labelled tokens of ``items``, and how many tokens that is.

    Token-weighted, so the mean does not depend on how the items were batched or sharded.
    ``forwards`` pads the number of forward calls (with discarded repeats) so that every rank of
    an FSDP run makes the same number of them.
    """
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    total, count = 0.0, 0
    for k in range(max(len(chunks), forwards or 0)):
        chunk = chunks[k] if k < len(chunks) else None
        batch = {n: t.to(device) for n, t in collate(chunk or items[:1] or [_DUMMY]).items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        if chunk is None:
            continue
        labels = batch["labels"]
        logits = logits[:, -labels.shape[1]:]  # prompt-learning models prepend virtual tokens
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        total += float(torch.nn.functional.cross_entropy(shift_logits.reshape(-1, shift_logits.shape[-1]),
                                                         shift_labels.reshape(-1), ignore_index=-100, reduction="sum"))
        count += int((shift_labels != -100).sum())
    return total, count


_DUMMY = {"input_ids": [0, 0], "labels": [-100, -100]}


def split_global_batch(batch_size: int, grad_accum: int, world: int) -> tuple[int, int]:
    """Per-process (micro-batch, accumulation) that keep ``batch_size x grad_accum`` sequences per step.

    The config's batch is the global batch: with N processes each takes 1/N of it, dividing the
    accumulation first (same micro-batch, same memory per GPU) and the micro-batch only if needed.
    """
    total = batch_size * grad_accum
    if total % world:
        raise UserError(f"the global batch ({batch_size} x {grad_accum} = {total} sequences per step) "
                        f"cannot be split over {world} processes; make it a multiple of {world}")
    per_rank = total // world
    micro = max(d for d in range(1, min(batch_size, per_rank) + 1) if per_rank % d == 0)
    return micro, per_rank // micro


class GlobalOrderSampler(torch.utils.data.Sampler):
    """One data order for the whole job, the same whatever the number of processes.

    Indices come from a generator seeded by (seed, epoch), grouped by length in chunks of the
    *global* batch. accelerate then deals consecutive micro-batches to the ranks in turn, so every
    optimizer step sees the same sequences with 1 process or N (HF's own length-grouped sampler
    groups by the per-process batch and draws from the global RNG, so its order changes with N).
    Each epoch drops its last ``len % global_batch`` indices (different ones each epoch), so every
    step is a full global batch: no short last step on one process, no padded repeats on N.

    Given ``micro_batch`` and ``world``, each global batch is laid out so that accelerate's dealing
    gives every rank about the same tokens (``deal_global_batch``): with consecutive micro-batches of
    a length-sorted batch, rank 0 got the longer half and the others waited for it. Only the order
    *inside* a step changes; which sequences make up each step does not depend on ``world``.
    """

    def __init__(self, lengths: list[int], global_batch: int, seed: int, group_by_length: bool = True,
                 micro_batch: int | None = None, world: int = 1):
        self.lengths, self.global_batch, self.seed, self.group = lengths, global_batch, seed, group_by_length
        self.micro_batch, self.world = micro_batch, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n - n % self.global_batch if n >= self.global_batch else n

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        if not self.group:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        else:
            from transformers.trainer_pt_utils import get_length_grouped_indices

            order = get_length_grouped_indices(self.lengths, self.global_batch, generator=generator)
        order = order[:len(self)]
        if self.micro_batch and self.global_batch % (self.micro_batch * self.world) == 0:
            g = self.global_batch
            order = [i for k in range(0, len(order), g)
                     for i in deal_global_batch(order[k:k + g], self.lengths, self.micro_batch, self.world)]
        return iter(order)


def deal_global_batch(batch: list[int], lengths: list[int], micro: int, world: int) -> list[int]:
    """One global batch reordered so that micro-batch ``k`` (as accelerate deals it, to rank ``k % world``)
    carries about the same tokens on every rank.

    The batch is sorted longest first and cut into one slice of ``micro x world`` sequences per
    accumulation step; each slice is dealt to the ranks in snake order (0,1,..,N-1,N-1,..,0, ...),
    starting one rank further each step, so each rank's micro-batch holds every N-th length of the
    slice: similar lengths within a micro-batch (little padding), near-equal sums and maxima
    across ranks (padded or packed). With one rank this is the sorted batch cut into micro-batches.
    """
    if len(batch) % (micro * world):
        return batch  # a short last batch (fewer sequences than one global batch): as it came
    ranked = sorted(batch, key=lambda i: (-lengths[i], i))
    out: list[int] = []
    width = micro * world
    for step, start in enumerate(range(0, len(ranked), width)):
        piece = ranked[start:start + width]
        hands: list[list[int]] = [[] for _ in range(world)]
        for p, index in enumerate(piece):
            turn, seat = divmod(p, world)
            rank = seat if turn % 2 == 0 else world - 1 - seat
            hands[(rank + step) % world].append(index)
        for hand in hands:
            out.extend(hand)
    return out
