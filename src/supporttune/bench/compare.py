"""Seed recipe vs fast path: both training paths per method on the same step batches, then generation.

Training: the same sequences per optimizer step (16), the same steps, the same initial weights,
for each PEFT method; both paths see identical step batches, so their losses must agree within
noise. Reported per path: real (non-pad) tokens/s, step-time median and spread over repeats, peak
memory, final loss, and MFU = 4N (6N with checkpointing) x real tokens/s over the matmul rate
measured on the same device. Then generation (generation.py). One JSON result, and a table.
"""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from ..core.io import write_json
from ..core.memory import free_memory
from ..core.provenance import provenance
from ..data.split import load_split
from ..models.loading import pick_device
from .archs import arch_of, random_checkpoint
from .config import BenchConfig
from .data import (
    FoldedTokenizer,
    bench_tokenizer,
    prepared,
    step_batches,
    train_sequences,
)
from .generation import bench_generation
from .train_paths import fast_path, matmul_peak_flops, seed_path, train_path

PER_STEP = 16  # sequences per optimizer step, on both paths


def seed_vs_fast(cfg: BenchConfig, log=print) -> dict:
    device = pick_device(cfg.device)
    arch = arch_of(cfg.model)
    tok = bench_tokenizer(cfg.tokenizer)
    data = prepared(cfg.data)
    train = train_sequences(data, FoldedTokenizer(tok, arch["vocab_size"]))
    steps = cfg.warmup + cfg.steps
    batches = step_batches(train, steps, PER_STEP, cfg.seed)
    peak = matmul_peak_flops(device)
    log(f"device {device}; measured matmul peak {peak / 1e12:.1f} TFLOP/s; {len(train)} train sequences, "
        f"{steps} steps ({cfg.warmup} warm-up) x {PER_STEP} sequences")
    rows = []
    paths = [seed_path(device), fast_path(device)]
    if cfg.compile:
        paths.append(fast_path(device, compile_=True))
    if cfg.liger:
        paths.append(fast_path(device, liger=True))
    checkpoint = random_checkpoint(arch, device=device, seed=cfg.seed)
    tok.save_pretrained(checkpoint)  # generation loads the model directory as any base model, tokenizer included
    for method in cfg.methods if cfg.training else []:
        for path in paths:
            log(f"  {method} / {path.name} ...")
            try:
                r = train_path(checkpoint, method, path, batches, device, cfg.warmup, cfg.repeats, peak)
                rows.append(r.__dict__)
                log(f"    {r.tokens_per_s:,.0f} real tokens/s, step {r.step_time_median_s * 1000:.0f} ms, "
                    f"peak {r.peak_memory_mb:,.0f} MB, loss {r.final_loss:.3f}, MFU {r.mfu}")
            except Exception as e:  # recorded, never silently dropped
                rows.append({"method": method, "path": path.name, "error": f"{type(e).__name__}: {e}"})
                log(f"    FAILED: {type(e).__name__}: {e}")
            free_memory()
    gen = None
    if cfg.generation:
        gen = bench_generation(checkpoint, load_split(data, "test"), device, cfg.new_tokens,
                               seed_samples=cfg.seed_loop_samples, static_cache=cfg.static_cache)
    result = {"model": cfg.model, "weights": "random (speed does not depend on weight values)", "device": device,
              "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine(),
              "matmul_peak_tflops": peak / 1e12, "config": cfg.resolved(), "training": rows, "ratios": _ratios(rows),
              "generation": gen, **provenance()}
    if cfg.out:
        write_json(Path(cfg.out), result)
    log(table(result))
    return result


def _ratios(rows: list[dict]) -> dict:
    ok = {(r["method"], r["path"]): r for r in rows if "error" not in r}
    out = {}
    for (method, path), r in ok.items():
        seed = ok.get((method, "seed"))
        if seed and path != "seed":
            out[f"{method}/{path}"] = {"speedup_tokens_per_s": r["tokens_per_s"] / seed["tokens_per_s"],
                                       "memory_ratio": r["peak_memory_mb"] / seed["peak_memory_mb"],
                                       "loss_diff": r["final_loss"] - seed["final_loss"]}
    lora, qlora = ok.get(("lora", "fast")), ok.get(("qlora", "fast"))
    if lora and qlora:
        out["qlora_vs_lora_fast"] = qlora["tokens_per_s"] / lora["tokens_per_s"]
    return out


def table(result: dict) -> str:
    lines = [f"supporttune bench: {result['model']} ({result['weights']}) on {result['device_name']}",
             f"{'method':<14}{'path':<16}{'tokens/s':>10}{'step ms':>9}{'peak MB':>9}{'loss':>8}{'MFU':>8}{'x seed':>8}"]
    for r in result["training"]:
        if "error" in r:
            lines.append(f"{r['method']:<14}{r['path']:<16} FAILED {r['error'][:60]}")
            continue
        ratio = result["ratios"].get(f"{r['method']}/{r['path']}", {}).get("speedup_tokens_per_s")
        lines.append(f"{r['method']:<14}{r['path']:<16}{r['tokens_per_s']:>10,.0f}{r['step_time_median_s'] * 1000:>9.0f}"
                     f"{r['peak_memory_mb']:>9,.0f}{r['final_loss']:>8.3f}{(r['mfu'] or 0):>8.2%}"
                     f"{(f'{ratio:.2f}x' if ratio else '-'):>8}")
    g = result.get("generation")
    if g:
        lines.append(f"generation ({g['new_tokens']} new tokens): seed loop {g['seed_loop_samples_per_s']:.2f} samples/s, "
                     f"batched {g['batched_samples_per_s']:.1f} samples/s ({g['batched_tokens_per_s']:,.0f} tokens/s); "
                     f"batch-1 TTFT {g['batch1_ttft_ms']:.1f} ms, TPOT {g['batch1_tpot_ms']:.2f} ms")
    return "\n".join(lines)
