"""Batched greedy generation with the training prompt builder, for adapters and base models.

Left padding + KV cache; examples are sorted by prompt length so a batch wastes little padding,
and results come back in input order. PEFT prompt-learning models (prompt tuning) go through the
same batched ``generate`` (PEFT prepends the virtual tokens and extends the attention mask).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from .agent import Agent, load_agent  # noqa: F401  (re-exported: the generation API's callers load agents here)
from .memory import sync
from .progress import track


@dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int = 64
    batch_size: int = 16
    do_sample: bool = False  # greedy: reproducible, comparable across variants
    temperature: float = 1.0  # used only when do_sample (chat/serve clients may ask for it)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generated:
    text: str
    new_tokens: int
    hit_max: bool
    latency_s: float | None = None  # batched wall time / batch size (amortized per sample)
    token_ids: list[int] | None = None


@torch.inference_mode()
def _generate_ids(agent: Agent, prompts: list[list[int]], settings: DecodeSettings) -> list[Generated]:
    tok = agent.tokenizer
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  **({"temperature": settings.temperature, "top_p": 1.0, "top_k": 0} if settings.do_sample else
                     {"temperature": None, "top_p": None, "top_k": None}))
    sync(agent.device)
    t0 = time.perf_counter()
    if _is_prompt_tuning(agent.model):
        out = _generate_prompt_tuning(agent.model, ids.to(agent.device), mask.to(agent.device), kwargs)
        width = 0  # generate() from embeddings returns only the new tokens
    else:
        out = agent.model.generate(input_ids=ids.to(agent.device), attention_mask=mask.to(agent.device), **kwargs)
    sync(agent.device)
    per_sample = (time.perf_counter() - t0) / len(prompts)
    new = out[:, width:] if out.shape[1] > width else out[:, :0]
    results = []
    for row in new.tolist():
        n = next((i for i, t in enumerate(row) if t == tok.eos_token_id), len(row))
        results.append(Generated(tok.decode(row[:n], skip_special_tokens=True).strip(), n,
                                 n >= settings.max_new_tokens, per_sample, row[:n]))
    return results


def _is_prompt_tuning(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return config is not None and getattr(config, "peft_type", None) is not None and config.peft_type.value == "PROMPT_TUNING"


def _generate_prompt_tuning(model, ids: torch.Tensor, mask: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """Batched generation for prompt tuning, laid out exactly as in training.

    PEFT's own generate puts the virtual tokens *before* the left padding, so in a padded row they
    sit at other positions than in training (and PEFT drops position ids). Here each row is
    ``[pad ... pad][virtual tokens][prompt]``: the base model sees the virtual tokens at positions
    0..V-1 and the prompt right after them, as it did in training, at any padding.
    """
    base = model.get_base_model()
    batch, width = ids.shape
    prompt = model.get_prompt(batch_size=batch)  # (B, V, H)
    virtual = prompt.shape[1]
    tokens = base.get_input_embeddings()(ids)
    embeds = torch.zeros((batch, virtual + width, tokens.shape[-1]), dtype=tokens.dtype, device=ids.device)
    new_mask = torch.zeros((batch, virtual + width), dtype=mask.dtype, device=ids.device)
    lengths = mask.sum(dim=1).tolist()
    for i, n in enumerate(lengths):
        start = width - n
        embeds[i, :start] = tokens[i, :start]  # padding, masked out
        embeds[i, start:start + virtual] = prompt[i].to(tokens.dtype)
        embeds[i, start + virtual:] = tokens[i, start:]
        new_mask[i, start:] = 1
    return base.generate(inputs_embeds=embeds, attention_mask=new_mask, **kwargs)


def generate_replies(agent: Agent, examples: list[dict], settings: DecodeSettings, shots: list[list[dict]] | None = None,
                     progress: str | None = "generating", shard: tuple[int, int] = (0, 1)) -> list[Generated | None]:
    """Replies for ``examples`` in order, batched by similar prompt length.

    ``shard=(rank, world)`` generates only every ``world``-th batch from the ``rank``-th (the other
    entries stay None): each batch is then exactly the batch one process would form, with the same
    padding, so greedy replies are bit-identical whatever the number of processes. (Sharding the
    examples instead changes the batches; in bf16 on a GPU that changes the rounding, which can flip
    a near-tied argmax and with it the rest of a reply.)
    """
    prompts = [agent.prompt_ids(ex, shots[i] if shots else None) for i, ex in enumerate(examples)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[Generated | None] = [None] * len(prompts)
    batches = [order[i:i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    batches = batches[shard[0]::shard[1]]
    for batch in track(batches, progress or "generating") if progress else batches:
        for i, g in zip(batch, _generate_ids(agent, [prompts[i] for i in batch], settings)):
            results[i] = g
    return results



def batch1_latencies(agent: Agent, examples: list[dict], settings: DecodeSettings, n: int) -> list[float]:
    """Warm per-sample latency at batch size 1 (one warm-up call first, not timed)."""
    if not examples or n <= 0:
        return []
    one = DecodeSettings(settings.max_new_tokens, 1, settings.do_sample)
    _generate_ids(agent, [agent.prompt_ids(examples[0])], one)
    times = []
    for ex in examples[:n]:
        sync(agent.device)
        t0 = time.perf_counter()
        _generate_ids(agent, [agent.prompt_ids(ex)], one)
        sync(agent.device)
        times.append(time.perf_counter() - t0)
    return times


def reference_perplexity(agent: Agent, examples: list[dict]) -> float | None:
    """exp(mean NLL) of the reference replies (+EOS) under the model, prompt tokens masked."""
    nll, tokens = reference_nll(agent, examples)
    return float(torch.exp(torch.tensor(nll / tokens))) if tokens else None


@torch.inference_mode()
def reference_nll(agent: Agent, examples: list[dict], batch_size: int = 16, max_length: int = 1024) -> tuple[float, int]:
    """Summed NLL of the reference replies (+EOS) and the number of tokens it sums over."""
    from .batching import EncodedDataset, PadCollator, nll_sums

    ds = EncodedDataset(examples, agent.tokenizer, agent.spec, max_length, agent.index)
    return nll_sums(agent.model, ds.items, PadCollator(agent.tokenizer.pad_token_id), batch_size, agent.device)
