"""Generation benchmark: the seed's one-at-a-time loop vs the batched path; batch-1 TTFT and TPOT.

Replies are forced to their full length (``min_new_tokens``) so random-weight models and trained
ones do the same amount of work.
"""

from __future__ import annotations

import statistics
import time

import torch

from .memory import sync



@torch.inference_mode()
def _generate(model, prompts: list[list[int]], new_tokens: int, device: str, pad_id: int = 0, **kw) -> float:
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    sync(device)
    t0 = time.perf_counter()
    model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=new_tokens,
                   min_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_id, **kw)
    sync(device)
    return time.perf_counter() - t0


def bench_generation(model, prompts: list[list[int]], device: str, new_tokens: int = 64, batch_size: int = 64,
                     seed_samples: int = 16, static_cache: bool = False) -> dict:
    """Seed loop on ``seed_samples`` prompts (it is slow), batched path on all of them."""
    model.eval()
    model.config.use_cache = True
    vocab = model.config.vocab_size
    prompts = [[t % vocab for t in p] for p in prompts]
    _generate(model, prompts[:1], 4, device)  # warm-up
    seed_times = [_generate(model, [p], new_tokens, device) for p in prompts[:seed_samples]]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    kw = {"cache_implementation": "static"} if static_cache else {}
    _generate(model, [prompts[i] for i in order[:batch_size]], 4, device, **kw)  # warm-up at full width
    t0 = time.perf_counter()
    for i in range(0, len(order), batch_size):
        _generate(model, [prompts[j] for j in order[i:i + batch_size]], new_tokens, device, **kw)
    batched = time.perf_counter() - t0
    _generate(model, prompts[:1], new_tokens, device, **kw)  # warm-up (and compile) at batch 1
    ttft = [_generate(model, [p], 1, device, **kw) for p in prompts[:8]]
    full = [_generate(model, [p], new_tokens, device, **kw) for p in prompts[:8]]
    tpot = [(f - t) / (new_tokens - 1) for f, t in zip(full, ttft)]
    n = len(prompts)
    return {
        "new_tokens": new_tokens, "test_prompts": n, "seed_loop_samples": len(seed_times),
        "seed_loop_samples_per_s": len(seed_times) / sum(seed_times),
        "seed_loop_tokens_per_s": len(seed_times) * new_tokens / sum(seed_times),
        "batched_samples_per_s": n / batched, "batched_tokens_per_s": n * new_tokens / batched,
        "batch_size": batch_size, "static_cache": static_cache,
        "batch1_ttft_ms": 1000 * statistics.median(ttft), "batch1_tpot_ms": 1000 * statistics.median(tpot),
    }
