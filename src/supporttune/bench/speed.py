"""`supporttune bench --speed RUN|base`: the rows of issue 23 that a command can reproduce.

(a) Compile once per machine: the same evaluation run twice, each ``supporttune evaluate`` in its own
    process, both pointed at one compile cache that starts empty (``SUPPORTTUNE_COMPILE_CACHE`` and
    ``TORCHINDUCTOR_CACHE_DIR`` in a fresh folder; the model cache stays where it is, so only
    compilation differs). Reported per process: whole wall time, ``metrics.json["timing"]`` stage by
    stage, the engine's compile seconds and whether its artifacts came from the cache. A trained run
    is copied first (without checkpoints), so its own ``eval/`` is never overwritten.
(b) Padding-free packing: LoRA training steps on identical step batches, right-padded micro-batches
    vs packed ones (train/packing.py's collator), real tokens/s, MFU and loss (they must agree).

On a CPU with ``--quick`` it checks the harness on the tiny architecture (no compile happens on a
CPU: compile_s is 0 both times); on a GPU it gives the numbers (tools/gpu_speed.sh).
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .. import rundir
from .. import suitedir
from ..core.io import read_json, write_json
from ..core.memory import free_memory
from ..core.provenance import provenance
from ..models.loading import pick_device
from ..train import methods
from .archs import arch_of, random_checkpoint
from .config import SpeedConfig
from .data import FoldedTokenizer, bench_tokenizer, prepared, step_batches, train_sequences
from .train_paths import fast_path, matmul_peak_flops, packed_path, train_path


def _target(cfg: SpeedConfig, work: Path, device: str, data: Path) -> list[str]:
    """The evaluate command's target: a copy of the trained run, or the zero-shot baseline on random weights."""
    if cfg.run != "base":
        copy = work / "run"
        shutil.copytree(cfg.run, copy, ignore=shutil.ignore_patterns(rundir.CHECKPOINTS, suitedir.EVAL))
        return ["--run", str(copy)]
    checkpoint = random_checkpoint(arch_of(cfg.model), device=device, seed=cfg.seed, tokenizer=bench_tokenizer(cfg.tokenizer),
                                   out=work / "model")
    return ["--baseline", "zero-shot", "--model", str(checkpoint), "--out", str(work / "base")]


def cold_warm_evaluate(cfg: SpeedConfig, device: str, data: Path, log=print) -> dict:
    """Evaluate twice in separate processes sharing one compile cache that starts empty."""
    work = Path(tempfile.mkdtemp(prefix="supporttune-speed-"))
    args = [sys.executable, "-m", "supporttune", "evaluate", *_target(cfg, work, device, data), "--data", str(data),
            "--split", "test", "--max-new-tokens", str(cfg.new_tokens), "--latency-samples", str(cfg.latency_samples),
            "--device", device, "--no-semantic", "--force"] + (["--limit", str(cfg.limit)] if cfg.limit else [])
    env = {**os.environ, "SUPPORTTUNE_COMPILE_CACHE": str(work / "cache" / "compile"),
           "TORCHINDUCTOR_CACHE_DIR": str(work / "cache" / "inductor"), "SUPPORTTUNE_ENGINE": cfg.engine,
           "SUPPORTTUNE_PROGRESS": "0"}
    metrics_path = suitedir.metrics_path(work / "run" if cfg.run != "base" else work / "base")
    out = {"engine": cfg.engine, "target": cfg.run, "command": " ".join(args[1:])}
    for which in ("cold", "warm"):
        log(f"  evaluate ({which} compile cache) ...")
        t0 = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            out[which] = {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["?"], "wall_s": wall}
            log(f"    FAILED: {out[which]['error'][0]}")
            break
        m = read_json(metrics_path)
        engine = m.get("engine") or {}
        out[which] = {"wall_s": round(wall, 2), "timing": m.get("timing"), "compile_s": engine.get("compile_s"),
                      "from_cache": engine.get("from_cache"), "compile_cache": engine.get("compile_cache"),
                      "path": engine.get("path"), "examples": m.get("examples"),
                      "throughput_samples_per_s": m.get("throughput_samples_per_s")}
        log(f"    wall {wall:.1f} s, compile {engine.get('compile_s')} s (from cache: {engine.get('from_cache')}), "
            f"timing {m.get('timing')}")
    shutil.rmtree(work, ignore_errors=True)
    return out


def padded_vs_packed(cfg: SpeedConfig, device: str, data: Path, log=print) -> list[dict]:
    """Each method's training steps right-padded and packed, on the same step batches and initial weights."""
    arch = arch_of(cfg.model)
    train = train_sequences(data, FoldedTokenizer(bench_tokenizer(cfg.tokenizer), arch["vocab_size"]))
    batches = step_batches(train, cfg.warmup + cfg.steps, cfg.per_step, cfg.seed)
    peak = matmul_peak_flops(device)
    checkpoint = random_checkpoint(arch, device=device, seed=cfg.seed)
    rows = []
    for method in cfg.methods:
        for path in (fast_path(device), packed_path(device)):
            path.micro_batch = cfg.per_step
            if path.packed and not methods.get(method).supports_packing:
                rows.append({"method": method, "path": path.name, "error": "the method cannot be packed (methods.py)"})
                continue
            log(f"  train {method} / {path.name} ...")
            try:
                r = train_path(checkpoint, method, path, batches, device, cfg.warmup, cfg.repeats, peak)
                rows.append({**r.__dict__, "matmul_peak_tflops": round(peak / 1e12, 1)})
                log(f"    {r.tokens_per_s:,.0f} real tokens/s, MFU {r.mfu}, pad share {r.pad_share}, loss {r.final_loss:.4f}")
            except Exception as e:  # recorded, never silently dropped
                rows.append({"method": method, "path": path.name, "error": f"{type(e).__name__}: {e}"})
                log(f"    FAILED: {type(e).__name__}: {e}")
            free_memory()
    return rows


def run_speed(cfg: SpeedConfig, log=print) -> dict:
    device = pick_device(cfg.device)
    data = prepared(cfg.data)
    result = {"device": device, "device_name": torch.cuda.get_device_name(0) if device == "cuda"
              else platform.processor() or platform.machine(), "config": cfg.resolved(), **provenance()}
    if cfg.generation:
        result["evaluate"] = cold_warm_evaluate(cfg, device, data, log)
        if cfg.out:
            write_json(Path(cfg.out), result)  # kept if the training part runs out of time
    if cfg.training:
        result["training"] = padded_vs_packed(cfg, device, data, log)
        ok = {(r["method"], r["path"]): r for r in result["training"] if "error" not in r}
        result["packed_vs_padded"] = {m: {"tokens_per_s": ok[(m, "packed")]["tokens_per_s"] / ok[(m, "fast")]["tokens_per_s"],
                                          "loss_diff": ok[(m, "packed")]["final_loss"] - ok[(m, "fast")]["final_loss"]}
                                      for m in cfg.methods if (m, "packed") in ok and (m, "fast") in ok}
    if cfg.out:
        write_json(Path(cfg.out), result)
    return result
