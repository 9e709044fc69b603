"""Orchestrates `supporttune bench`: data, both training paths per method, generation, JSON + table."""

from __future__ import annotations

import platform
from pathlib import Path

import torch

from .bench import ARCHS, build_base, fast_path, matmul_peak_flops, seed_path, step_batches, train_path
from .engine_bench import bench_generation
from .config import BenchConfig
from .io import write_json
from .memory import free_memory
from .prompts import PromptSpec, encode_example, encode_prompt
from .provenance import provenance


def bench_tokenizer(path: str | None):
    from transformers import AutoTokenizer

    from .models import load_tokenizer, resolve

    return AutoTokenizer.from_pretrained(path) if path else load_tokenizer(resolve("smollm2-135m"))


def _examples(cfg: BenchConfig, tok) -> tuple[list[dict], list[dict]]:
    from .batching import load_split

    if cfg.data == "builtin":
        import tempfile

        from .config import PrepareConfig
        from .data.prepare import prepare

        tmp = Path(tempfile.mkdtemp()) / "data"
        prepare(PrepareConfig(input="builtin", out=tmp))
        data = tmp
    else:
        data = Path(cfg.data)
    spec = PromptSpec("plain", True)  # the seed's format for both paths: same tokens, fair comparison
    train = [e for e in (encode_example(tok, r, spec, 512) for r in load_split(data, "train")) if e]
    test = [{"prompt": encode_prompt(tok, r, spec)} for r in load_split(data, "test")]
    return train, test


def _arch(cfg: BenchConfig):
    if cfg.model in ARCHS:
        return cfg.model
    from .models import load_config, resolve

    return {k: v for k, v in load_config(resolve(cfg.model)).to_dict().items()
            if k in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                     "vocab_size", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings")}


def run_bench(cfg: BenchConfig, log=print) -> dict:
    device = "cuda" if cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    tok = bench_tokenizer(cfg.tokenizer)
    train, test = _examples(cfg, tok)
    steps = cfg.warmup + cfg.steps
    batches = step_batches(train, steps, 16, cfg.seed)
    peak = matmul_peak_flops(device)
    arch = _arch(cfg)
    log(f"device {device}; measured matmul peak {peak / 1e12:.1f} TFLOP/s; {len(train)} train sequences, "
        f"{steps} steps ({cfg.warmup} warm-up) x 16 sequences")
    rows = []
    paths = [seed_path(device), fast_path(device)]
    if cfg.compile:
        paths.append(fast_path(device, compile_=True))
    if cfg.liger:
        paths.append(fast_path(device, liger=True))
    for method in cfg.methods if cfg.training else []:
        for path in paths:
            if method == "qlora" and device == "cpu" and path.dtype == "fp16":
                continue
            log(f"  {method} / {path.name} ...")
            try:
                r = train_path(arch, method, path, batches, device, cfg.warmup, cfg.repeats, peak)
                rows.append(r.__dict__)
                log(f"    {r.tokens_per_s:,.0f} real tokens/s, step {r.step_time_median_s * 1000:.0f} ms, "
                    f"peak {r.peak_memory_mb:,.0f} MB, loss {r.final_loss:.3f}, MFU {r.mfu}")
            except Exception as e:  # recorded, never silently dropped
                rows.append({"method": method, "path": path.name, "error": f"{type(e).__name__}: {e}"})
                log(f"    FAILED: {type(e).__name__}: {e}")
            free_memory()
    gen = None
    if cfg.generation:
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        model = build_base(arch, device, dtype, quantize=False)
        gen = bench_generation(model, [t["prompt"] for t in test], device, cfg.new_tokens,
                               seed_samples=cfg.seed_loop_samples, static_cache=cfg.static_cache)
        del model
        free_memory()
    summary = _ratios(rows)
    result = {"model": cfg.model, "weights": "random (speed does not depend on weight values)", "device": device,
              "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or platform.machine(),
              "matmul_peak_tflops": peak / 1e12, "config": cfg.resolved(), "training": rows, "ratios": summary,
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
