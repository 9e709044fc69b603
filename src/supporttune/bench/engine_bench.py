"""Generation measured both ways on the same prompts: the eager path vs the engine's fast path.

Both ways stop the same way (EOS or the token budget, no forced minimum length), so a trained
adapter that answers briefly is measured as it runs. Reported: samples/s and tokens/s over the
whole prompt set (steady: after the fast path's warm-up/compile, which is reported apart),
batch-1 time to first token and per output token, and the share of identical greedy replies.

``supporttune bench`` (generation.py) and the GPU script (tools/gpu_gen14.py) both call ``compare``.
"""

from __future__ import annotations

import statistics
import time

from ..core.memory import sync
from ..inference.agent import Agent
from ..inference.decode import DecodeSettings
from ..inference.generate import generate_ids


def _timed(agent: Agent, prompts: list[list[int]], settings: DecodeSettings, batch: int) -> tuple[float, list]:
    from ..inference.engine import engine_for

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
    from ..inference.engine import engine_for

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
