"""Answer live customer messages: tag them, build THE prompt, generate. Used by chat and serve.

A live message may come with the conversation so far (``history``: earlier turns, oldest first,
as ``{"role": "user"|"assistant", "content"}``); the prompt shows as many of them as the run was
trained with, and the run's exemplar index adds retrieved examples, exactly as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

from .generate import Agent, DecodeSettings, _generate_ids
from .tagging import tag


@dataclass
class Reply:
    reply: str
    sentiment: str
    priority: str
    category: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def live_example(agent: Agent, message: str, brand: str | None, history: list[dict] | None = None) -> dict:
    t = tag(message, agent.sentiment)
    return {"input": message, "brand": brand or "", "sentiment": t.sentiment, "priority": t.priority,
            "category": t.category, "history": list(history or [])}


def context_limit(agent: Agent) -> int:
    cfg = getattr(agent.model, "config", None)
    limit = getattr(cfg, "max_position_embeddings", None)
    if limit is None and hasattr(agent.model, "get_base_model"):
        limit = getattr(agent.model.get_base_model().config, "max_position_embeddings", None)
    return int(limit or 2048)


def respond_batch(agent: Agent, items: list[tuple], max_new_tokens: int, temperature: float = 0.0) -> list[Reply]:
    """Replies for several ``(message, brand[, history])`` items in one generation call (greedy at temperature 0)."""
    examples = [live_example(agent, *item) for item in items]
    prompts = [agent.prompt_ids(ex) for ex in examples]
    gens = _generate_ids(agent, prompts, DecodeSettings(max_new_tokens=max_new_tokens, batch_size=len(prompts),
                                                          do_sample=temperature > 0, temperature=temperature or 1.0))
    return [Reply(g.text, ex["sentiment"], ex["priority"], ex["category"], len(p), g.new_tokens,
                  "length" if g.hit_max else "stop") for ex, p, g in zip(examples, prompts, gens)]


def prompt_length(agent: Agent, message: str, brand: str | None, history: list[dict] | None = None) -> int:
    return len(agent.prompt_ids(live_example(agent, message, brand, history)))
