"""Reference perplexity without the full-vocabulary logits of every prompt token.

Why: after generation, the perplexity pass was the largest stage of an evaluate on a CPU (34 s of
114 s for 60 TWCS messages on a tiny model, ``metrics.json["timing"]``): the forward computed
float32 logits over the whole vocabulary (49k for SmolLM2) at every prompt position, while only
the reply's positions are scored (a reply is ~10% of a prompt with history and retrieval).

Here each batch is left-padded, so every row's reply ends at the batch's last position, with
position ids counted from each row's first real token (the positions of right padding, as in
training), and the model is asked for the logits of the last ``longest reply + 1`` positions only
(transformers' ``logits_to_keep``). The summed NLL is the one ``generate.reference_nll`` computes,
up to float rounding; prompt-learning methods (virtual tokens in front) keep that path.
"""

from __future__ import annotations

import torch


def _left_pad(chunk: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(f["input_ids"]) for f in chunk)
    ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
    labels = torch.full((len(chunk), width), -100, dtype=torch.long)
    mask = torch.zeros((len(chunk), width), dtype=torch.long)
    for i, f in enumerate(chunk):
        n = len(f["input_ids"])
        ids[i, width - n:] = torch.tensor(f["input_ids"])
        labels[i, width - n:] = torch.tensor(f["labels"])
        mask[i, width - n:] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "position_ids": positions}


def _reply_span(labels: torch.Tensor) -> int:
    """Positions from the first labelled token of any row to the end (left padding: replies end together)."""
    labelled = (labels != -100).any(dim=0).nonzero()
    return int(labels.shape[1] - labelled[0]) if len(labelled) else 0


@torch.inference_mode()
def reply_nll(agent, examples: list[dict], batch_size: int = 16, max_length: int = 1024) -> tuple[float, int]:
    """Summed NLL of the reference replies (+EOS) under the agent's model, and how many tokens it sums over."""
    from ..inference.generate import reference_nll
    from ..train.collate import EncodedDataset

    config = getattr(agent.model, "active_peft_config", None)
    if config is not None and getattr(config, "is_prompt_learning", False):
        return reference_nll(agent, examples, batch_size, max_length)  # virtual tokens: the padded path
    items = EncodedDataset(examples, agent.tokenizer, agent.spec, max_length, agent.index).items
    total, count = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = _left_pad(items[start:start + batch_size], agent.tokenizer.pad_token_id)
        keep = min(_reply_span(batch["labels"]), batch["labels"].shape[1] - 1)  # a first token has no prediction
        if keep == 0:
            continue
        inputs = {k: v.to(agent.device) for k, v in batch.items() if k != "labels"}
        logits = agent.model(**inputs, logits_to_keep=keep + 1).logits.float()  # positions width-keep-1 .. width-1
        labels = batch["labels"][:, -keep:].to(agent.device)
        total += float(torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                         ignore_index=-100, reduction="sum"))
        count += int((labels != -100).sum())
    return total, count
