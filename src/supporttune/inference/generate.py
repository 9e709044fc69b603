"""The generation API: every caller (evaluate, baselines, chat, serve, export, bench) goes through it.

``generate_ids`` is the one generation function: token prompts in, finished replies out, in order.
It hands the work to the agent's engine (engine.py), which picks the path: on CUDA a plain bf16
model with the adapter merged in and a compiled static-cache decode step (when that repays its
compile time), on CPU the eager path below. ``eager_generate`` is that eager path: left padding
+ KV cache on the agent's own (PEFT) model, the reference every faster path is tested against.
``generate_replies`` batches examples by prompt length and returns replies in input order.
``settings.decode`` picks the strategy (strategies.py: sample, beam, mbr); greedy takes the path above.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import torch

from ..core.progress import track
from .agent import Agent
from .decode import DecodeSettings, Generated, StopCallback, TokenCallback
from .strategies import DecodeStats, decode_prompts, seed_sampling


def generate_ids(agent: Agent, prompts: list[list[int]], settings: DecodeSettings,
                 on_token: TokenCallback | None = None, should_stop: StopCallback | None = None) -> list[Generated]:
    """Replies to token prompts, one generation call (the engine may pad the batch to a compiled size).

    ``on_token(row, id)`` sees each reply token as it is made (streaming); ``should_stop(row)`` ends a
    row early (a client went away, a stop string matched); greedy replies do not depend on either.
    """
    from .engine import engine_for

    if settings.decode.strategy == "greedy":
        return engine_for(agent).generate(prompts, settings, on_token, should_stop)
    seed_sampling(settings)  # each call reproducible (chat, serve)
    return decode_prompts(engine_for(agent), prompts, settings, on_token, should_stop)


_generate_ids = generate_ids  # the name respond.py and older callers used


def generate_replies(agent: Agent, examples: list[dict], settings: DecodeSettings,
                     progress: str | None = "generating", shard: tuple[int, int] = (0, 1),
                     on_batch: Callable[[list[int], list[Generated]], None] | None = None,
                     stats: DecodeStats | None = None) -> list[Generated | None]:
    """Replies for ``examples`` in order, batched by similar prompt length.

    ``on_batch(indices, replies)`` runs after every batch (evaluate appends them to disk there).
    ``shard=(rank, world)`` generates only every ``world``-th batch from the ``rank``-th (the other
    entries stay None): each batch is then exactly the batch one process would form. ``stats`` sums what
    MBR cost and chose (strategies.DecodeStats). Sampling strategies seed torch once, before the first batch.
    """
    from .engine import engine_for

    prompts = [agent.prompt_ids(ex) for ex in examples]
    engine = engine_for(agent)
    batches = engine.plan_batches(prompts, settings)[shard[0]::shard[1]]
    results: list[Generated | None] = [None] * len(prompts)
    seed_sampling(settings)
    for j, batch in enumerate(track(batches, progress or "generating") if progress else batches):
        gens = decode_prompts(engine, [prompts[i] for i in batch], settings, remaining_batches=len(batches) - j,
                              stats=stats)
        for i, g in zip(batch, gens):
            results[i] = g
        if on_batch:
            on_batch(batch, gens)
    return results


def batch1_latencies(agent: Agent, examples: list[dict], settings: DecodeSettings, n: int) -> list[float]:
    """Warm per-sample latency at batch size 1 (one warm-up call first, not timed)."""
    from ..core.memory import sync
    from .engine import engine_for

    if not examples or n <= 0:
        return []
    one = replace(settings, batch_size=1)
    engine = engine_for(agent)
    prompts = [agent.prompt_ids(ex) for ex in examples[:n]]
    engine.reserve(max(len(p) for p in prompts), one, batches=n + 1, rows=1)
    seed_sampling(one)
    decode_prompts(engine, prompts[:1], one, remaining_batches=len(prompts) + 1)
    times = []
    for j, p in enumerate(prompts):
        sync(agent.device)
        t0 = time.perf_counter()
        decode_prompts(engine, [p], one, remaining_batches=len(prompts) - j)  # the whole strategy (mbr: all passes)
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
    from ..train.collate import EncodedDataset, PadCollator, nll_sums

    ds = EncodedDataset(examples, agent.tokenizer, agent.spec, max_length, agent.index)
    return nll_sums(agent.model, ds.items, PadCollator(agent.tokenizer.pad_token_id), batch_size, agent.device)
