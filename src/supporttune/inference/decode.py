"""Decoding primitives: settings, the reply record, left padding, and the eager generate path.

``eager_generate`` is the reference path: left padding + KV cache on the agent's own (PEFT) model;
every faster path (engine.py) is tested against it. The engine and the generation API build on this
module, so neither imports the other's callers.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from .agent import Agent
from .mbr import DecodeSpec

ENGINES = ("auto", "eager", "static")
TokenCallback = Callable[[int, int], None]  # (row, token id), called as each token is generated
StopCallback = Callable[[int], bool]  # (row) -> True once that row's reply is no longer wanted


@dataclass(frozen=True)
class DecodeSettings:
    max_new_tokens: int = 64
    batch_size: int = 16
    do_sample: bool = False  # greedy: reproducible, comparable across variants
    temperature: float = 1.0  # used only when do_sample (chat/serve clients may ask for it)
    # auto: the engine's fast path where it pays (CUDA), eager elsewhere; eager: the adapter model as is;
    # static: the fast path's static cache everywhere (compiled on CUDA; on CPU for the equality tests)
    engine: str = field(default_factory=lambda: os.environ.get("SUPPORTTUNE_ENGINE", "auto"))
    top_p: float = 1.0  # used only when do_sample
    num_beams: int = 1  # > 1: beam search (eager path only)
    # the strategy (strategies.py turns it into passes of the knobs above); greedy = exactly the path above
    decode: DecodeSpec = field(default_factory=DecodeSpec)

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine '{self.engine}' (choose from {', '.join(ENGINES)})")

    def as_dict(self) -> dict:
        return {**asdict(self), "decode": self.decode.record()}

    def replies_key(self) -> dict:
        """The settings that decide the replies (batch size and engine do not: tested equal). A strategy other
        than greedy adds its record, so greedy replies on disk are never reused for it (and greedy keys are
        the ones written before strategies existed)."""
        key = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample,
               "temperature": self.temperature if self.do_sample else None}
        if self.do_sample and self.top_p != 1.0:
            key["top_p"] = self.top_p
        if self.num_beams > 1:
            key["num_beams"] = self.num_beams
        if self.decode.strategy != "greedy":
            key["decode"] = self.decode.record()
        return key


@dataclass
class Generated:
    text: str
    new_tokens: int
    hit_max: bool
    latency_s: float | None = None  # batched wall time / batch size (amortized per sample)
    token_ids: list[int] | None = None


def pad_left(prompts: list[list[int]], pad_id: int, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ids and mask; ``rows`` > len(prompts) repeats the last prompt (discarded rows)."""
    prompts = list(prompts) + [prompts[-1]] * ((rows or len(prompts)) - len(prompts))
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    return ids, mask


def sampling_kwargs(tokenizer, settings: DecodeSettings) -> dict:
    beams = {"num_beams": settings.num_beams, "early_stopping": True} if settings.num_beams > 1 else {}
    return dict(max_new_tokens=settings.max_new_tokens, do_sample=settings.do_sample,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **beams,
                **({"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0} if settings.do_sample else
                   {"temperature": None, "top_p": None, "top_k": None}))


def row_hooks(n_real: int, eos_id: int, on_token: TokenCallback | None, should_stop: StopCallback | None,
              rows: int) -> dict:
    """generate() kwargs that stream tokens per row and stop rows early (padding rows stop at once)."""
    from transformers import StoppingCriteria, StoppingCriteriaList
    from transformers.generation.streamers import BaseStreamer

    out: dict = {}
    if on_token is not None:
        class RowStreamer(BaseStreamer):
            def __init__(self):
                self.prompt_seen, self.done = False, [False] * n_real

            def put(self, value):
                if not self.prompt_seen:  # generate() first hands over the prompt
                    self.prompt_seen = True
                    return
                for row, token in enumerate(value.reshape(-1).tolist()[:n_real]):
                    if not self.done[row]:
                        self.done[row] = token == eos_id
                        if not self.done[row]:
                            on_token(row, token)

            def end(self):
                pass

        out["streamer"] = RowStreamer()
    if should_stop is not None or rows > n_real:
        class RowStop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                flags = [bool(should_stop and should_stop(i)) for i in range(n_real)] + [True] * (rows - n_real)
                return torch.tensor(flags, device=input_ids.device)

        out["stopping_criteria"] = StoppingCriteriaList([RowStop()])
    return out


@torch.inference_mode()
def eager_generate(agent: Agent, prompts: list[list[int]], settings: DecodeSettings,
                   on_token: TokenCallback | None = None, should_stop: StopCallback | None = None) -> torch.Tensor:
    """New token ids (rows x steps) from the agent's own model: the reference path."""
    tok = agent.tokenizer
    ids, mask = pad_left(prompts, tok.pad_token_id)
    kwargs = {**sampling_kwargs(tok, settings), **row_hooks(len(prompts), tok.eos_token_id, on_token, should_stop,
                                                               len(prompts))}
    ids, mask = ids.to(agent.device), mask.to(agent.device)
    if is_prompt_tuning(agent.model):
        return _generate_prompt_tuning(agent.model, ids, mask, kwargs)  # only the new tokens
    out = agent.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    return out[:, ids.shape[1]:]


def finish(tokenizer, rows: list[list[int]], max_new: int, per_sample: float | None) -> list[Generated]:
    """Replies from new-token rows: cut at EOS, decoded, never ending in half a character."""
    results = []
    for row in rows:
        n = next((i for i, t in enumerate(row) if t == tokenizer.eos_token_id), len(row))
        ids = row[:n]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        cut = 0
        while text.endswith("\ufffd") and cut < 4 and len(ids) > cut:  # a multi-byte character cut by the budget
            cut += 1
            text = tokenizer.decode(ids[:len(ids) - cut], skip_special_tokens=True)
        results.append(Generated(text.strip(), n, n >= max_new, per_sample, ids))
    return results


def is_prompt_tuning(model) -> bool:
    config = getattr(model, "active_peft_config", None)
    return config is not None and getattr(config, "peft_type", None) is not None and config.peft_type.value == "PROMPT_TUNING"


def prompt_tuning_embeds(model, ids: torch.Tensor, mask: torch.Tensor, embed=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings ``[pad ... pad][virtual tokens][prompt]`` per row, laid out exactly as in training.

    PEFT's own generate puts the virtual tokens *before* the left padding, so in a padded row they
    sit at other positions than in training (and PEFT drops position ids). Here the base model sees
    the virtual tokens at positions 0..V-1 and the prompt right after them, as it did in training,
    at any padding. ``embed`` is the token embedding to use (default: the base model's own).
    """
    batch, width = ids.shape
    prompt = model.get_prompt(batch_size=batch)  # (B, V, H)
    virtual = prompt.shape[1]
    tokens = (embed or model.get_base_model().get_input_embeddings())(ids)
    embeds = torch.zeros((batch, virtual + width, tokens.shape[-1]), dtype=tokens.dtype, device=ids.device)
    new_mask = torch.zeros((batch, virtual + width), dtype=mask.dtype, device=ids.device)
    for i, n in enumerate(mask.sum(dim=1).tolist()):
        start = width - n
        embeds[i, :start] = tokens[i, :start]  # padding, masked out
        embeds[i, start:start + virtual] = prompt[i].to(device=ids.device, dtype=tokens.dtype)
        embeds[i, start + virtual:] = tokens[i, start:]
        new_mask[i, start:] = 1
    return embeds, new_mask


def _generate_prompt_tuning(model, ids: torch.Tensor, mask: torch.Tensor, kwargs: dict) -> torch.Tensor:
    embeds, new_mask = prompt_tuning_embeds(model, ids, mask)
    return model.get_base_model().generate(inputs_embeds=embeds, attention_mask=new_mask, **kwargs)

