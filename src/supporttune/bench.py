"""`supporttune bench`: the seed recipe vs supporttune's fast path, in one process and one run.

Training: the same sequences per optimizer step (16), the same steps, the same initial weights,
for each PEFT method. The seed path is the original notebook's: fp16 autocast, every sequence
padded to 512, micro-batch 4 x grad-accum 4, gradient checkpointing. The fast path: bf16, one
micro-batch of 16 padded only to the longest sequence in it (rounded up to a multiple of 16),
batches formed from length-sorted pools, no checkpointing, optionally torch.compile / Liger.
Both paths see identical step batches, so their losses must agree within noise.

Reported per path: real (non-pad) tokens/s, step-time median and spread over repeats, peak
memory, final loss, and MFU = 4N (6N with checkpointing) x real tokens/s over the bf16 matmul
rate measured on the same device. Generation (bench_gen.py): the seed's one-at-a-time loop vs
the batched path, and batch-1 time-to-first-token / time per output token.
"""

from __future__ import annotations

import math
import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field

import torch

from . import methods
from .config import TrainConfig
from .memory import free_memory, sync

TINYLLAMA = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, rms_norm_eps=1e-5,
                 tie_word_embeddings=False)
SMOLLM2 = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
               num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192, rms_norm_eps=1e-5,
               tie_word_embeddings=True, rope_theta=100000.0)
TINY = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=8192, max_position_embeddings=1024, tie_word_embeddings=True)
ARCHS = {"tinyllama-arch": TINYLLAMA, "smollm2-arch": SMOLLM2, "tiny-arch": TINY}


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


def seed_path(device: str) -> PathSpec:
    return PathSpec("seed", "fp16" if device == "cuda" else "fp32", 4, 4, 512, True)


def fast_path(device: str, compile_: bool = False, liger: bool = False) -> PathSpec:
    return PathSpec("fast" + ("+compile" if compile_ else "") + ("+liger" if liger else ""),
                    "bf16" if device == "cuda" else "fp32", 16, 1, None, False, compile_, liger)


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


_CHECKPOINTS: dict[str, str] = {}


def _checkpoint(arch: str | dict, device: str, seed: int) -> str:
    """Random weights saved once per architecture, so every path and method starts identical."""
    import json
    import tempfile

    from transformers import AutoModelForCausalLM, LlamaConfig

    key = json.dumps(arch, sort_keys=True) + device + str(seed)
    if key not in _CHECKPOINTS:
        torch.manual_seed(seed)
        config = LlamaConfig(**(ARCHS[arch] if isinstance(arch, str) else arch), pad_token_id=0, bos_token_id=1,
                             eos_token_id=2)
        with torch.device(device):  # initialise on the GPU: a 1.1B model inits in seconds there
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
        path = tempfile.mkdtemp(prefix="supporttune-bench-")
        model.save_pretrained(path)
        del model
        free_memory()
        _CHECKPOINTS[key] = path
    return _CHECKPOINTS[key]


def build_base(arch: str | dict, device: str, dtype: torch.dtype, quantize: bool, seed: int = 0):
    """A random-weight Llama of the given architecture (speed does not depend on weight values)."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    path = _checkpoint(arch, device, seed)
    where = {"": device if device == "cpu" else 0}
    if not quantize:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=where)
    compute = torch.float16 if dtype == torch.float16 else torch.bfloat16
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=where, quantization_config=BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute))


def step_batches(examples: list[dict], steps: int, per_step: int, seed: int) -> list[list[dict]]:
    """Length-grouped step batches: shuffle, cut pools of 8 steps, sort each pool by length."""
    import random

    rng = random.Random(seed)
    pool = list(examples)
    out: list[list[dict]] = []
    while len(out) < steps:
        rng.shuffle(pool)
        for i in range(0, len(pool) - per_step * 8 + 1, per_step * 8):
            chunk = sorted(pool[i:i + per_step * 8], key=lambda e: len(e["input_ids"]))
            groups = [chunk[j:j + per_step] for j in range(0, len(chunk), per_step)]
            rng.shuffle(groups)
            out.extend(groups)
    return out[:steps]


def collate(items: list[dict], pad_to: int | None, multiple: int, vocab: int, device: str) -> dict:
    longest = max(len(x["input_ids"]) for x in items)
    width = pad_to or int(math.ceil(longest / multiple) * multiple)
    ids = torch.zeros((len(items), width), dtype=torch.long)
    labels = torch.full_like(ids, -100)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(items):
        n = min(len(x["input_ids"]), width)
        ids[i, :n] = torch.tensor(x["input_ids"][:n]) % vocab
        lab = torch.tensor(x["labels"][:n])
        labels[i, :n] = torch.where(lab < 0, lab, lab % vocab)
        mask[i, :n] = 1
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": mask, "labels": labels}.items()}



def train_path(arch, method_name: str, path: PathSpec, batches: list[list[dict]], device: str, warmup: int,
               repeats: int, peak_flops: float | None, extra: dict | None = None) -> PathResult:
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[path.dtype]
    method = methods.get(method_name)
    if path.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=True)
    # fp16 autocast needs fp32 master weights for the trainable part; the frozen base stays in `dtype`.
    base = build_base(arch, device, dtype, method.quantize_4bit)
    n_params = sum(p.numel() for p in base.parameters()) if not method.quantize_4bit else base.num_parameters()
    base.config.use_cache = False
    cfg = TrainConfig(method=method_name, r=8, alpha=32, virtual_tokens=20, prompt_init="random",
                      gradient_checkpointing=path.checkpointing, **(extra or {}))
    model = method.build(base, cfg, "")
    if path.checkpointing and method.family == "prompt":
        model.base_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=2e-4, fused=device == "cuda")
    scaler = torch.amp.GradScaler(device, enabled=dtype == torch.float16)
    autocast = torch.autocast(device, dtype=dtype) if dtype != torch.float32 else nullcontext()
    forward = torch.compile(model, dynamic=True) if path.compile else model
    vocab = base.config.vocab_size
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    losses, step_times, real_tokens, padded = [], [], [], 0
    for step, batch in enumerate(batches):
        sync(device)
        t0 = time.perf_counter()
        step_loss, tokens, slots = 0.0, 0, 0
        for i in range(0, len(batch), path.micro_batch):
            inputs = collate(batch[i:i + path.micro_batch], path.pad_to, path.pad_multiple, vocab, device)
            with autocast:
                loss = forward(**inputs).loss / path.grad_accum
            scaler.scale(loss).backward()
            step_loss += float(loss.detach())
            tokens += int(inputs["attention_mask"].sum())
            slots += inputs["input_ids"].numel()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if step >= warmup:
            step_times.append(time.perf_counter() - t0)
            real_tokens.append(tokens)
            padded += slots
        losses.append(step_loss)
    per_repeat = max(1, len(step_times) // repeats)
    rep_tps = [sum(real_tokens[i:i + per_repeat]) / sum(step_times[i:i + per_repeat])
               for i in range(0, per_repeat * repeats, per_repeat) if step_times[i:i + per_repeat]]
    tps = statistics.median(rep_tps)
    flops_per_token = (6 if path.checkpointing else 4) * n_params
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else None
    from .memory import rss_bytes

    result = PathResult(
        method=method_name, path=path.name, tokens_per_s=round(tps, 1),
        step_time_median_s=statistics.median(step_times), step_time_spread_s=[min(step_times), max(step_times)],
        repeat_tokens_per_s=[round(x, 1) for x in rep_tps], peak_memory_mb=round(peak or rss_bytes() / 2**20, 1),
        final_loss=statistics.mean(losses[-3:]), losses=[round(x, 4) for x in losses], flops_per_token=flops_per_token,
        mfu=round(tps * flops_per_token / peak_flops, 4) if peak_flops else None,
        pad_share=round(1 - sum(real_tokens) / max(1, padded), 3),
        settings=asdict(path))
    del model, base, opt, forward
    free_memory()
    if path.liger:
        import importlib

        import transformers.models.llama.modeling_llama as ml

        importlib.reload(ml)  # undo Liger's monkey-patching for the next path
    return result


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
