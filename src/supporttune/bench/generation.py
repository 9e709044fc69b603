"""Generation benchmark on the production path: the seed's one-at-a-time loop vs batched; batch-1 TTFT and TPOT.

The model (the training paths' random checkpoint) is loaded by ``load_agent`` and replies come from
``generate_replies``, as in evaluate, chat and serve, so the figures are those of supporttune's own
generation; its tokenizer folds ids into the model's vocabulary (data.py). Replies are forced to
their full length (``min_new_tokens`` in the model's generation config) so that random weights do
the work a trained model would; token rates count the tokens actually generated.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from ..generate import DecodeSettings, generate_replies, load_agent
from ..memory import free_memory, sync
from .data import SPEC, FoldedTokenizer


def _timed(agent, examples: list[dict], new_tokens: int, batch_size: int) -> tuple[float, int]:
    """Seconds to reply to ``examples`` (``new_tokens`` each, forced), and the tokens generated."""
    agent.model.generation_config.min_new_tokens = new_tokens
    sync(agent.device)
    t0 = time.perf_counter()
    replies = generate_replies(agent, examples, DecodeSettings(max_new_tokens=new_tokens, batch_size=batch_size), progress=None)
    sync(agent.device)
    return time.perf_counter() - t0, sum(r.new_tokens for r in replies)


def bench_generation(checkpoint: Path, examples: list[dict], device: str, new_tokens: int = 64, batch_size: int = 64,
                     seed_samples: int = 16, static_cache: bool = False) -> dict:
    """Seed loop on ``seed_samples`` examples (it is slow), batched path on all of them."""
    agent = load_agent(model=str(checkpoint), device=device, spec=SPEC)
    agent.tokenizer = FoldedTokenizer(agent.tokenizer, agent.model.config.vocab_size)
    _timed(agent, examples[:1], 4, 1)  # warm-up
    seed_s, seed_tokens = _timed(agent, examples[:seed_samples], new_tokens, 1)
    if static_cache:
        agent.model.generation_config.cache_implementation = "static"
    _timed(agent, examples[:batch_size], 4, batch_size)  # warm-up at full width
    batched_s, batched_tokens = _timed(agent, examples, new_tokens, batch_size)
    _timed(agent, examples[:1], new_tokens, 1)  # warm-up (and compile) at batch 1
    ttft = [_timed(agent, [ex], 1, 1)[0] for ex in examples[:8]]
    full = [_timed(agent, [ex], new_tokens, 1)[0] for ex in examples[:8]]
    tpot = [(f - t) / (new_tokens - 1) for f, t in zip(full, ttft)]
    n, seeds = len(examples), len(examples[:seed_samples])
    del agent
    free_memory()
    return {
        "new_tokens": new_tokens, "test_prompts": n, "seed_loop_samples": seeds,
        "seed_loop_samples_per_s": seeds / seed_s, "seed_loop_tokens_per_s": seed_tokens / seed_s,
        "batched_samples_per_s": n / batched_s, "batched_tokens_per_s": batched_tokens / batched_s,
        "batch_size": batch_size, "static_cache": static_cache,
        "batch1_ttft_ms": 1000 * statistics.median(ttft), "batch1_tpot_ms": 1000 * statistics.median(tpot),
    }
