"""Generation benchmark on the production path: the seed's one-at-a-time loop, then eager vs the engine.

The model (the training paths' random checkpoint) is loaded by ``load_agent`` and replies come from
the generation engine, as in evaluate, chat and serve; its tokenizer folds ids into the model's
vocabulary (data.py). Both ways stop the same way (EOS or the budget, no forced minimum length):
see engine_bench.compare for what is reported.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.memory import free_memory, sync
from ..inference.agent import load_agent
from ..inference.decode import DecodeSettings
from ..inference.generate import generate_ids
from .data import SPEC, FoldedTokenizer
from .engine_bench import compare


def bench_generation(checkpoint: Path, examples: list[dict], device: str, new_tokens: int = 64, batch_size: int = 64,
                     seed_samples: int = 16, static_cache: bool = False) -> dict:
    """The seed's one-at-a-time loop on ``seed_samples`` prompts, then eager vs the engine on all of them."""
    agent = load_agent(model=str(checkpoint), device=device, spec=SPEC)
    agent.tokenizer = FoldedTokenizer(agent.tokenizer, agent.model.config.vocab_size)
    prompts = [agent.prompt_ids(ex) for ex in examples]
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
    del agent
    free_memory()
    return {**r, "test_prompts": len(prompts), "static_cache": fast == "static", "seed_loop_samples": len(seed),
            "seed_loop_samples_per_s": len(seed) / seed_s,
            "seed_loop_tokens_per_s": sum(g.new_tokens for g in seed) / seed_s,
            "batched_samples_per_s": r["fast_samples_per_s"], "batched_tokens_per_s": r["fast_tokens_per_s"],
            "batch1_ttft_ms": r["batch1_ttft_ms"], "batch1_tpot_ms": r["batch1_tpot_ms"] or 0.0}
