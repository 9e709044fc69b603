"""Answer live customer messages: tag them, build THE prompt, generate. Used by chat and serve.

A live message may come with the conversation so far (``history``: earlier turns, oldest first,
as ``{"role": "user"|"assistant", "content"}``); the prompt shows as many of them as the run was
trained with, and the run's exemplar index adds retrieved examples, exactly as in training.
``ReplyText`` turns a growing list of reply tokens into text that is safe to show so far (for
streaming): never half a character, never text that may turn out to start a stop string.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass

import torch

from ..data.tagging import tag
from ..inference.agent import Agent
from ..inference.decode import DecodeSettings, finish
from ..inference.generate import generate_ids
from ..inference.mbr import DecodeSpec


@dataclass
class Reply:
    reply: str
    sentiment: str
    priority: str
    category: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    token_ids: list[int] | None = None


def live_example(agent: Agent, message: str, brand: str | None, history: list[dict] | None = None,
                 instructions: str | None = None) -> dict:
    """The example the prompt builder renders for a live message (``instructions``: a client's system message)."""
    t = tag(message, agent.sentiment)
    return {"input": message, "brand": brand or "", "sentiment": t.sentiment, "priority": t.priority,
            "category": t.category, "history": list(history or []), "instructions": instructions or ""}


def context_limit(agent: Agent) -> int:
    cfg = getattr(agent.model, "config", None)
    limit = getattr(cfg, "max_position_embeddings", None)
    if limit is None and hasattr(agent.model, "get_base_model"):
        limit = getattr(agent.model.get_base_model().config, "max_position_embeddings", None)
    return int(limit or 2048)


def respond_batch(agent: Agent, items: list[tuple], max_new_tokens: int, temperature: float = 0.0,
                  on_token=None, should_stop=None, prompts: list[list[int]] | None = None,
                  seed: int | None = None, decode: DecodeSpec | None = None) -> list[Reply]:
    """Replies for several ``(message, brand[, history])`` items in one generation call (greedy at temperature 0).

    ``temperature`` > 0 samples (a client's request); otherwise ``decode`` (the chat's or server's strategy:
    greedy, sample, beam or mbr; default greedy) decides.

    ``prompts`` (already built, e.g. while checking the context length) skips building them again;
    ``on_token``/``should_stop`` stream and stop single rows (see generate.generate_ids). ``seed``
    seeds torch's generators right before the call, so the same batch samples the same replies.
    Agents that share one base model (several adapters of one PeftModel) take turns: the agent's
    adapter is made active under the model's lock for the whole call.
    """
    examples = [live_example(agent, *item) for item in items]
    prompts = prompts or [agent.prompt_ids(ex) for ex in examples]
    settings = DecodeSettings(max_new_tokens=max_new_tokens, batch_size=len(prompts), do_sample=temperature > 0,
                              temperature=temperature or 1.0,
                              decode=decode if decode is not None and temperature <= 0 else DecodeSpec())
    with adapter_turn(agent):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            gens = generate_ids(agent, prompts, settings, on_token, should_stop)
        finally:
            if seed is not None:
                torch.seed()  # later unseeded requests must not repeat this sequence
    return [Reply(g.text, ex["sentiment"], ex["priority"], ex["category"], len(p), g.new_tokens,
                  "length" if g.hit_max else "stop", g.token_ids) for ex, p, g in zip(examples, prompts, gens)]


@contextlib.contextmanager
def adapter_turn(agent: Agent):
    """Hold the shared model's lock with this agent's adapter active (agents alone on their model: no lock)."""
    adapter = getattr(agent, "adapter", None)
    if adapter is None:
        yield
        return
    with _LOCKS.setdefault(id(agent.model), threading.Lock()):
        agent.model.set_adapter(adapter)
        yield


_LOCKS: dict[int, threading.Lock] = {}


def prompt_for(agent: Agent, message: str, brand: str | None, history: list[dict] | None = None,
               instructions: str | None = None) -> list[int]:
    return agent.prompt_ids(live_example(agent, message, brand, history, instructions))


def prompt_length(agent: Agent, message: str, brand: str | None, history: list[dict] | None = None) -> int:
    return len(prompt_for(agent, message, brand, history))


def final_text(tokenizer, token_ids: list[int], max_tokens: int, stop: list[str] | None = None) -> tuple[str, str, int]:
    """(text, finish_reason, completion tokens) of a reply cut to ``max_tokens`` and at the first stop string."""
    ids = list(token_ids)[:max_tokens]
    g = finish(tokenizer, [ids], max_tokens, None)[0]
    text, reason = g.text, "length" if g.hit_max else "stop"
    for s in stop or []:
        if s in text:
            text, reason = text[:text.index(s)].rstrip(), "stop"
    return text, reason, g.new_tokens


class ReplyText:
    """The part of a streamed reply that can be shown now; the pieces add up to ``final_text``."""

    def __init__(self, tokenizer, max_tokens: int, stop: list[str] | None = None):
        self.tokenizer, self.max_tokens, self.stop = tokenizer, max_tokens, list(stop or [])
        self.tokens: list[int] = []
        self.shown = ""

    def stopped(self) -> bool:
        """A stop string appeared or the budget is spent: nothing more will be shown."""
        if len(self.tokens) >= self.max_tokens:
            return True
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True) if self.stop else ""
        return any(s in text for s in self.stop)

    def add(self, token: int) -> str:
        """The new text to send after ``token`` ('' while it could still change)."""
        if len(self.tokens) >= self.max_tokens:
            return ""
        self.tokens.append(token)
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True).lstrip()
        cut = len(text)
        for s in self.stop:
            if s in text:
                cut = min(cut, text.index(s))
            for k in range(min(len(s) - 1, len(text)), 0, -1):  # an end that may begin a stop string
                if text.endswith(s[:k]):
                    cut = min(cut, len(text) - k)
                    break
        safe = text[:cut].rstrip()  # trailing spaces wait: the reply may end there (replies are stripped)
        if safe.endswith("\ufffd"):
            safe = safe.rstrip("\ufffd").rstrip()
        return self._advance(safe)

    def close(self) -> tuple[str, str, int]:
        """The remaining text, the finish reason and the token count, once the reply is complete."""
        text, reason, n = final_text(self.tokenizer, self.tokens, self.max_tokens, self.stop)
        return self._advance(text), reason, n

    def _advance(self, safe: str) -> str:
        if not safe.startswith(self.shown) or len(safe) <= len(self.shown):
            return ""
        new, self.shown = safe[len(self.shown):], safe
        return new
