"""The two training paths the bench compares, run as a lean step loop on identical step batches.

The seed path is the original notebook's: fp16 autocast, every sequence padded to 512,
micro-batch 4 x grad-accum 4, gradient checkpointing. The fast path: bf16, one micro-batch of 16
padded only to the longest sequence in it (rounded up to a multiple of 16), no checkpointing,
optionally torch.compile / Liger. The model is built as ``supporttune train`` builds it (the
production loader, the method registry's builder, the production collator); only the loop is
the bench's own, so that a step's time is the model's and not the Trainer's bookkeeping.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..core.memory import free_memory, rss_bytes, sync
from ..train import methods
from ..train.collate import PadCollator
from ..train.packing import PackCollator
from ..train.packing import real_tokens as count_real_tokens
from ..train.config import TrainConfig
from .archs import load_random

BENCH_LR = 2e-4  # one rate for every method: speed does not depend on it, and both paths must reach the same loss
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class PathSpec:
    name: str
    dtype: str  # fp16 | bf16 | fp32
    micro_batch: int
    grad_accum: int
    pad_to: int | None  # None = dynamic (to the longest, rounded to pad_multiple)
    checkpointing: bool
    compile: bool = False
    liger: bool = False
    pad_multiple: int = 16
    packed: bool = False  # one padding-free row per micro-batch (train/packing.py), no mask


def seed_path(device: str) -> PathSpec:
    return PathSpec("seed", "fp16" if device == "cuda" else "fp32", 4, 4, 512, True)


def fast_path(device: str, compile_: bool = False, liger: bool = False) -> PathSpec:
    return PathSpec("fast" + ("+compile" if compile_ else "") + ("+liger" if liger else ""),
                    "bf16" if device == "cuda" else "fp32", 16, 1, None, False, compile_, liger)


def packed_path(device: str) -> PathSpec:
    """The fast path with packed micro-batches: what `supporttune train` does by default (issue 23)."""
    return PathSpec("packed", "bf16" if device == "cuda" else "fp32", 16, 1, None, False, packed=True)


@dataclass
class PathResult:
    method: str
    path: str
    tokens_per_s: float
    step_time_median_s: float
    step_time_spread_s: list[float]
    repeat_tokens_per_s: list[float]
    peak_memory_mb: float
    final_loss: float
    losses: list[float]
    mfu: float | None
    flops_per_token: float
    pad_share: float
    settings: dict = field(default_factory=dict)


def collate(items: list[dict], path: PathSpec) -> dict[str, torch.Tensor]:
    """The production collator, padding to the path's width (fixed, or the longest rounded up), or packing."""
    if path.packed:
        return PackCollator()(items)
    width = path.pad_to or math.ceil(max(len(x["input_ids"]) for x in items) / path.pad_multiple) * path.pad_multiple
    return PadCollator(pad_id=0, pad_to=width)(items)  # 0: the random model's pad id


@contextmanager
def liger_kernels(model, enabled: bool):
    """Liger's fused Llama kernels on this one model; the module-level names it swaps are put back after."""
    if not enabled:
        yield
        return
    from liger_kernel.transformers import apply_liger_kernel_to_llama
    from transformers.models.llama import modeling_llama

    names = ("apply_rotary_pos_emb", "LlamaRMSNorm", "LlamaMLP")
    saved = {n: getattr(modeling_llama, n) for n in names}
    apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                fused_linear_cross_entropy=True, model=model)
    try:
        yield
    finally:
        for n, v in saved.items():
            setattr(modeling_llama, n, v)


def train_path(checkpoint: Path, method_name: str, path: PathSpec, batches: list[list[dict]], device: str,
               warmup: int, repeats: int, peak_flops: float | None) -> PathResult:
    dtype = DTYPES[path.dtype]
    method = methods.get(method_name)
    # fp16 autocast needs fp32 master weights for the trainable part; the frozen base stays in `dtype`.
    base = load_random(checkpoint, device=device, dtype=dtype, quantize_4bit=method.quantize_4bit)
    n_params = sum(p.numel() for p in base.parameters()) if not method.quantize_4bit else base.num_parameters()
    base.config.use_cache = False
    cfg = TrainConfig(method=method_name, r=8, alpha=32, virtual_tokens=20, prompt_init="random",
                      gradient_checkpointing=path.checkpointing)
    with liger_kernels(base, path.liger):
        model = method.build(base, cfg, "")
        losses, step_times, real_tokens, padded = _steps(model, path, batches, device, dtype)
    peak_mb = (torch.cuda.max_memory_allocated() if device == "cuda" else rss_bytes()) / 2**20
    del model, base
    free_memory()
    step_times, real_tokens, padded = step_times[warmup:], real_tokens[warmup:], sum(padded[warmup:])  # measured steps
    per_repeat = max(1, len(step_times) // repeats)
    rep_tps = [sum(real_tokens[i:i + per_repeat]) / sum(step_times[i:i + per_repeat])
               for i in range(0, per_repeat * repeats, per_repeat) if step_times[i:i + per_repeat]]
    tps = statistics.median(rep_tps)
    flops_per_token = (6 if path.checkpointing else 4) * n_params
    return PathResult(
        method=method_name, path=path.name, tokens_per_s=round(tps, 1),
        step_time_median_s=statistics.median(step_times), step_time_spread_s=[min(step_times), max(step_times)],
        repeat_tokens_per_s=[round(x, 1) for x in rep_tps], peak_memory_mb=round(peak_mb, 1),
        final_loss=statistics.mean(losses[-3:]), losses=[round(x, 4) for x in losses], flops_per_token=flops_per_token,
        mfu=round(tps * flops_per_token / peak_flops, 4) if peak_flops else None,
        pad_share=round(1 - sum(real_tokens) / max(1, padded), 3), settings=asdict(path))


def _steps(model, path: PathSpec, batches: list[list[dict]], device: str, dtype: torch.dtype):
    """Every step batch through forward, backward and AdamW; per step: loss, seconds, real tokens, token slots."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=BENCH_LR, fused=device == "cuda")
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    autocast = torch.autocast(device, dtype=dtype) if dtype != torch.float32 else nullcontext()
    forward = torch.compile(model, dynamic=True) if path.compile else model
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses, times, tokens, slots = [], [], [], []
    for batch in batches:
        sync(device)
        t0 = time.perf_counter()
        step_loss, real, width = 0.0, 0, 0
        for i in range(0, len(batch), path.micro_batch):
            inputs = {k: v.to(device) for k, v in collate(batch[i:i + path.micro_batch], path).items()}
            with autocast:
                loss = forward(**inputs).loss / path.grad_accum
            scaler.scale(loss).backward()
            step_loss += float(loss.detach())
            real += count_real_tokens(inputs)
            width += inputs["input_ids"].numel()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(step_loss)
        tokens.append(real)
        slots.append(width)
    return losses, times, tokens, slots


def matmul_peak_flops(device: str, n: int = 8192) -> float | None:
    """Measured bf16 (GPU) or fp32 (CPU) matrix-product rate, FLOP/s: the MFU denominator."""
    if device == "cpu":
        n = 1024
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    reps = 20 if device == "cuda" else 5
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - t0)
