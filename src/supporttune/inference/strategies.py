"""Decoding strategies beyond greedy: one sampled reply, beam search, and minimum-Bayes-risk (MBR) selection.

Every strategy is one or two passes of the engine (engine.py) with plain settings, so the engine's
paths stay what they are: ``sample`` is one sampling pass (temperature, top-p); ``beam`` one HF beam
search pass (always on the eager path); ``mbr`` is the greedy pass (the very replies greedy decoding
gives) plus a sampling pass of N candidates per message, then ``mbr.mbr_replies`` picks, per message,
the candidate the pool agrees with most (design: mbr.py's docstring). The N samples of a message are
its prompt repeated N times in one batch (the same distribution as ``num_return_sequences``, and the
shape the static/compiled path already takes); a sampling call holds ``batch_size // N`` messages (at
least one), so the KV cache stays the size of an ordinary batch.

Streaming: beam and mbr know a reply only at the end; its tokens are then handed to ``on_token`` at
once. ``should_stop`` (a client gone, a stop string) is honoured by greedy and sample only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from .decode import DecodeSettings, Generated, StopCallback, TokenCallback
from .mbr import DecodeSpec, mbr_replies


@dataclass
class DecodeStats:
    """What MBR cost and did, summed over the calls of one evaluation (for metrics.json)."""

    candidates_s: float = 0.0  # wall time of the sampling passes
    greedy_s: float = 0.0  # wall time of the greedy passes inside mbr
    selection_s: float = 0.0  # wall time of mbr_replies
    messages: int = 0
    greedy_wins: int = 0  # pools whose winner is the greedy reply (index 0)
    distinct: int = 0  # distinct texts, summed over pools

    def metrics(self, spec: DecodeSpec) -> dict:
        out: dict = {"decode": spec.record()}
        if spec.strategy == "mbr":
            n = self.messages
            out.update(mbr_candidates_time_s=round(self.candidates_s, 3), mbr_greedy_time_s=round(self.greedy_s, 3),
                       mbr_selection_time_s=round(self.selection_s, 3),
                       mbr_greedy_share=round(self.greedy_wins / n, 4) if n and spec.include_greedy else None,
                       mbr_distinct_candidates=round(self.distinct / n, 3) if n else None, mbr_messages=n)
        return out


def greedy_settings(settings: DecodeSettings) -> DecodeSettings:
    return replace(settings, do_sample=False, num_beams=1, decode=DecodeSpec())


def sample_settings(settings: DecodeSettings) -> DecodeSettings:
    spec = settings.decode
    return replace(settings, do_sample=True, temperature=spec.temperature, top_p=spec.top_p, num_beams=1)


def beam_settings(settings: DecodeSettings) -> DecodeSettings:
    return replace(settings, do_sample=False, num_beams=settings.decode.num_beams)


def seed_sampling(settings: DecodeSettings) -> None:
    """Seed torch before a strategy's sampling (reproducible candidates for one device and batch plan)."""
    if settings.decode.strategy in ("sample", "mbr"):
        import torch

        torch.manual_seed(settings.decode.seed)


def decode_prompts(engine, prompts: list[list[int]], settings: DecodeSettings, on_token: TokenCallback | None = None,
                   should_stop: StopCallback | None = None, remaining_batches: int | None = None,
                   stats: DecodeStats | None = None) -> list[Generated]:
    """Replies to ``prompts`` under ``settings.decode`` (greedy: exactly ``engine.generate``)."""
    strategy = settings.decode.strategy
    if strategy == "greedy":
        return engine.generate(prompts, settings, on_token, should_stop, remaining_batches=remaining_batches)
    if strategy == "sample":
        return engine.generate(prompts, sample_settings(settings), on_token, should_stop,
                               remaining_batches=remaining_batches)
    if strategy == "beam":
        gens = engine.generate(prompts, beam_settings(settings), remaining_batches=remaining_batches)
    else:
        gens = _mbr(engine, prompts, settings, remaining_batches or 1, stats if stats is not None else DecodeStats())
    _replay(gens, on_token)
    return gens


def _mbr(engine, prompts: list[list[int]], settings: DecodeSettings, remaining_batches: int,
         stats: DecodeStats) -> list[Generated]:
    spec = settings.decode
    n, t0 = spec.candidates, time.perf_counter()
    greedy = engine.generate(prompts, greedy_settings(settings), remaining_batches=remaining_batches) \
        if spec.include_greedy else [None] * len(prompts)
    t1 = time.perf_counter()
    sampling = sample_settings(settings)
    per_call = max(1, settings.batch_size // n)
    calls = -(-len(prompts) // per_call)
    samples: list[list[Generated]] = []
    for c, start in enumerate(range(0, len(prompts), per_call)):
        chunk = prompts[start:start + per_call]
        rows = [p for p in chunk for _ in range(n)]  # prompt-major: row i*n + k is sample k of message i
        gens = engine.generate(rows, replace(sampling, batch_size=len(rows)),
                               remaining_batches=remaining_batches * calls - c)
        samples += [gens[i * n:(i + 1) * n] for i in range(len(chunk))]
    t2 = time.perf_counter()
    pools = [([g] if g is not None else []) + s for g, s in zip(greedy, samples)]
    picks = mbr_replies([[c.text for c in pool] for pool in pools], spec.utility)
    t3 = time.perf_counter()
    stats.greedy_s += t1 - t0
    stats.candidates_s += t2 - t1
    stats.selection_s += t3 - t2
    stats.messages += len(prompts)
    stats.greedy_wins += sum(1 for index, _ in picks if index == 0 and spec.include_greedy)
    stats.distinct += sum(len({c.text for c in pool}) for pool in pools)
    per_message = (t3 - t0) / len(prompts)  # greedy + sampling + selection, amortized like every latency_s
    return [Generated(pool[i].text, pool[i].new_tokens, pool[i].hit_max, per_message, pool[i].token_ids)
            for pool, (i, _) in zip(pools, picks)]


def _replay(gens: list[Generated], on_token: TokenCallback | None) -> None:
    """Hand a finished reply's tokens to a streaming caller (beam and mbr know the reply only at the end)."""
    if on_token is None:
        return
    for row, g in enumerate(gens):
        for token in g.token_ids or []:
            on_token(row, token)
