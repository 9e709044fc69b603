"""Generation measured both ways on the same prompts: the eager path vs the engine's fast path.

Both ways stop the same way (EOS or the token budget, no forced minimum length), so a trained
adapter that answers briefly is measured as it runs. Reported: samples/s and tokens/s over the
whole prompt set (steady: after the fast path's warm-up/compile, which is reported apart),
batch-1 time to first token and per output token, and the share of identical greedy replies.

``bench_generation`` keeps the signature of the bench's former generation step, so ``supporttune
bench`` calls it unchanged; ``compare`` is the same measurement for a loaded agent (GPU script).
"""

from __future__ import annotations

import statistics
import time

from .generate import Agent, DecodeSettings, generate_ids
from .memory import sync


class _IdTokenizer:
    """Enough of a tokenizer for random-weight bench models: ids in, ids out."""

    def __init__(self, config):
        self.eos_token_id = config.eos_token_id if isinstance(config.eos_token_id, int) else 2
        self.pad_token_id = config.pad_token_id if config.pad_token_id is not None else 0

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def _timed(agent: Agent, prompts: list[list[int]], settings: DecodeSettings, batch: int) -> tuple[float, list]:
    from .engine import engine_for

    engine = engine_for(agent)
    batches = engine.plan_batches(prompts, DecodeSettings(settings.max_new_tokens, batch, engine=settings.engine))
    out: list = [None] * len(prompts)
    sync(agent.device)
    t0 = time.perf_counter()
    for i, idx in enumerate(batches):
        for j, g in zip(idx, engine.generate([prompts[k] for k in idx], settings, remaining_batches=len(batches) - i)):
            out[j] = g
    sync(agent.device)
    return time.perf_counter() - t0, out


def compare(agent: Agent, prompts: list[list[int]], new_tokens: int = 64, batch_size: int = 256,
            repeats: int = 3, batch1_prompts: int = 8, fast: str = "static") -> dict:
    """Eager vs ``fast`` ("static": compiled on CUDA; "auto": compile only if it repays) on the same prompts."""
    from .engine import engine_for

    eager = DecodeSettings(new_tokens, batch_size, engine="eager")
    quick = DecodeSettings(new_tokens, batch_size, engine=fast)
    eager_s, eager_out = _timed(agent, prompts, eager, batch_size)
    engine = engine_for(agent)
    before = engine.stats["compile_s"] + engine.stats["load_s"]
    first_s, fast_out = _timed(agent, prompts, quick, batch_size)  # pays the warm-up
    warm = engine.stats["compile_s"] + engine.stats["load_s"] - before
    steady = [_timed(agent, prompts, quick, batch_size)[0] for _ in range(repeats)]
    tokens = lambda out: sum(g.new_tokens for g in out)  # noqa: E731
    same = sum(a.token_ids == b.token_ids for a, b in zip(eager_out, fast_out))
    one = DecodeSettings(new_tokens, 1, engine=fast)
    engine.reserve(max(len(p) for p in prompts[:batch1_prompts]), one, rows=1)
    before = engine.stats["compile_s"]
    generate_ids(agent, prompts[:1], one)  # warm-up (and compile) at batch 1
    batch1_warm = engine.stats["compile_s"] - before
    ttft, tpot = [], []
    for p in prompts[:batch1_prompts]:
        t1, g1 = _timed(agent, [p], DecodeSettings(1, 1, engine=fast), 1)
        tn, gn = _timed(agent, [p], one, 1)
        ttft.append(t1)
        if gn[0].new_tokens > 1:
            tpot.append((tn - t1) / (gn[0].new_tokens - 1))
    n = len(prompts)
    return {"prompts": n, "new_tokens": new_tokens, "batch_size": batch_size, "fast": fast,
            "engine_model": engine.stats["model"], "eager_samples_per_s": n / eager_s,
            "eager_tokens_per_s": tokens(eager_out) / eager_s, "fast_first_call_s": first_s, "fast_warmup_s": warm,
            "fast_samples_per_s": n / statistics.median(steady), "fast_tokens_per_s": tokens(fast_out) / statistics.median(steady),
            "fast_repeats_s": steady, "speedup": eager_s / statistics.median(steady),
            "identical_replies": same, "identical_share": same / n,
            "mean_new_tokens": tokens(fast_out) / n, "batch1_warmup_s": batch1_warm,
            "batch1_ttft_ms": 1000 * statistics.median(ttft), "batch1_tpot_ms": 1000 * statistics.median(tpot) if tpot else None,
            "engine": engine.report()}


def bench_generation(model, prompts: list[list[int]], device: str, new_tokens: int = 64, batch_size: int = 64,
                     seed_samples: int = 16, static_cache: bool = False, tokenizer=None) -> dict:
    """`supporttune bench`'s generation step: eager vs the engine on the bench model (random weights)."""
    from .prompts import PromptSpec

    model.eval()
    model.config.use_cache = True
    vocab = model.config.vocab_size
    prompts = [[t % vocab for t in p] for p in prompts]
    agent = Agent(model, tokenizer or _IdTokenizer(model.config), PromptSpec(), device, "bench")
    one = DecodeSettings(new_tokens, 1, engine="eager")
    generate_ids(agent, prompts[:1], DecodeSettings(4, 1, engine="eager"))  # warm-up
    sync(device)
    t0 = time.perf_counter()
    seed = [generate_ids(agent, [p], one)[0] for p in prompts[:seed_samples]]
    sync(device)
    seed_s = time.perf_counter() - t0
    fast = "static" if (static_cache or device == "cuda") else "auto"
    r = compare(agent, prompts, new_tokens, batch_size, repeats=1 if device == "cpu" else 3,
                batch1_prompts=4 if device == "cpu" else 8, fast=fast)
    return {**r, "test_prompts": len(prompts), "static_cache": fast == "static", "seed_loop_samples": len(seed),
            "seed_loop_samples_per_s": len(seed) / seed_s,
            "seed_loop_tokens_per_s": sum(g.new_tokens for g in seed) / seed_s,
            "batched_samples_per_s": r["fast_samples_per_s"], "batched_tokens_per_s": r["fast_tokens_per_s"],
            "batch1_ttft_ms": r["batch1_ttft_ms"], "batch1_tpot_ms": r["batch1_tpot_ms"] or 0.0}
