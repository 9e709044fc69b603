"""Honest baselines, registered by name and scored by the same evaluation code as the trained variants.

A baseline is one function plus its registration. Two kinds:

* ``generates=True``: the untuned base model answers. The function returns the examples to answer,
  with anything the prompt should show attached (few-shot: ``shots``); the evaluate stage then
  generates with the base model and the suite's prompt options, exactly as for a variant.
* ``generates=False``: the replies are looked up. The function returns ``(reply, seconds)`` per
  example; there is no model, so no latency percentiles, throughput or perplexity to report.

Adding a baseline is one decorated function here; its options are EvalConfig fields (``few_shot_k``,
``retrieval``). The registry feeds the configs' validation and the CLI's help text.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from ..data.split import load_split
from ..prompting.retrieval import ExemplarIndex


@dataclass
class BaselineInputs:
    """What a baseline may look at: the messages to answer, the training split, the eval options."""

    examples: list[dict]
    data: Path  # the prepared data directory (its training split is read only by the baselines that need it)
    options: object  # the EvalConfig (few_shot_k, retrieval, ...)

    @cached_property
    def train_rows(self) -> list[dict]:
        return load_split(self.data, "train")


@dataclass(frozen=True)
class Baseline:
    name: str
    help: str
    generates: bool  # the base model answers (else the replies are looked up)
    timed: bool  # batch-1 latency is measured (few-shot prompts are longer than what serve would send)
    run: Callable[[BaselineInputs], list]


REGISTRY: dict[str, Baseline] = {}


def register(name: str, help: str, generates: bool, timed: bool = True):
    def wrap(fn: Callable[[BaselineInputs], list]) -> Callable[[BaselineInputs], list]:
        REGISTRY[name] = Baseline(name, help, generates, timed and generates, fn)
        return fn
    return wrap


def get(name: str) -> Baseline:
    if name not in REGISTRY:
        raise ValueError(f"unknown baseline '{name}' (choose from {', '.join(REGISTRY)})")
    return REGISTRY[name]


def describe() -> str:
    """'zero-shot (the untuned base model ...), few-shot (...)' for help text."""
    return "; ".join(f"{b.name}: {b.help}" for b in REGISTRY.values())


@register("zero-shot", "the untuned base model with the very same prompt", generates=True)
def zero_shot(inputs: BaselineInputs) -> list[dict]:
    return inputs.examples


@register("few-shot", "the base model with the k most similar training exchanges shown first", generates=True,
          timed=False)
def few_shot(inputs: BaselineInputs) -> list[dict]:
    index = ExemplarIndex(inputs.train_rows, inputs.options.retrieval)
    return [{**ex, "shots": index.nearest(ex, inputs.options.few_shot_k)} for ex in inputs.examples]


@register("retrieval", "the reply to the most similar training message (same brand first, the variants' scorer)",
          generates=False)
def retrieval(inputs: BaselineInputs) -> list[tuple[str, float]]:
    index = ExemplarIndex(inputs.train_rows, inputs.options.retrieval)
    out = []
    for ex in inputs.examples:
        t0 = time.perf_counter()
        reply = index.nearest(ex)[0]["output"]
        out.append((reply, time.perf_counter() - t0))
    return out


@register("constant", "the most common training reply, for every message", generates=False)
def constant(inputs: BaselineInputs) -> list[tuple[str, float]]:
    reply = constant_reply(inputs.train_rows)
    return [(reply, 0.0) for _ in inputs.examples]


def constant_reply(train_rows: list[dict]) -> str:
    """The most common training reply (ties broken by first appearance)."""
    counts = Counter(r["output"] for r in train_rows)
    return counts.most_common(1)[0][0]
