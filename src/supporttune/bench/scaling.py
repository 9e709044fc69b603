"""`supporttune bench --scaling 1,2,4`: training throughput on 1..N processes, and how well it scales.

Every point is a real ``supporttune train --nproc N`` run, launched as a user would launch it: the
same data, the same global batch (``batch_size`` sequences per process per micro-batch,
accumulation divided among the ranks) and the same random weights of the chosen architecture
(speed does not depend on weight values). The figure is train_summary.json's
``steady_tokens_per_s``: real (non-pad) tokens of all ranks per second of optimizer steps, warm-up
steps left out. One unmeasured run on the largest process count goes first when there are repeats
or GPUs (the first process on a fresh machine ran 30-55% slower on the H100, and it warms every
GPU); the repeats of the points are interleaved (1, 2, 4, 1, 2, 4, ...) so that drift of the
machine does not favour one count; each point is the median of ``repeats`` runs. Every run is
written to the JSON as it ends, so a harness stopped half-way keeps its figures. Dropout is off, so
every count runs the same computation and the loss curves must agree (to bf16 rounding on GPUs).
Scaling efficiency = tokens/s on N / (N x tokens/s on 1).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from .. import rundir
from ..core.errors import RunFailed, UserError
from ..core.io import write_json
from ..core.provenance import provenance
from ..models.loading import pick_device
from .archs import ARCHS, random_checkpoint
from .config import ScalingConfig
from .data import bench_tokenizer, prepared


def scaling_model(arch: str, out: Path, tokenizer: str | None = None) -> Path:
    """The random-weight model every scaling run trains (same seed, same weights)."""
    return random_checkpoint(ARCHS[arch], dtype=torch.bfloat16, tokenizer=bench_tokenizer(tokenizer), out=out)


def train_config(model: Path, data: Path, method: str, max_steps: int, batch_size: int, global_batch: int,
                 device: str) -> dict:
    """The train config of one scaling point (for any process count: the launch splits the global batch).
    lr: the method's default (TrainConfig asks the registry); dropout off, so every count computes the same."""
    return {"model": str(model), "data": str(data), "method": method, "max_steps": max_steps,
            "batch_size": batch_size, "grad_accum": global_batch // batch_size, "max_val_samples": 8,
            "logging_steps": 2, "save_steps": 10 * max_steps, "device": device, "r": 8, "alpha": 16, "dropout": 0.0}


def _train(work: Path, name: str, cfg: dict, n: int) -> dict:
    run = work / name
    (work / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "out": str(run)}))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "supporttune", "train", "--config", str(work / "cfg.yaml"), "--force",
                           "--nproc", str(n)], capture_output=True, text=True)
    if done.returncode:
        raise RunFailed(f"{cfg['method']} on {n} process(es) failed: {done.stderr.strip().splitlines()[-1]}")
    summary = dict(rundir.summary(run) or {})
    summary["launch_s"] = round(time.monotonic() - started, 1)  # the whole command: start-up, loading, training, exit
    summary["loss_curve"] = [[r["step"], r["train_loss"]] for r in rundir.loss_log(run) if "train_loss" in r]
    return summary


RUN_KEYS = ("steady_tokens_per_s", "tokens_per_s", "wall_time_s", "launch_s", "final_train_loss", "final_val_loss",
            "peak_cuda_mb", "loss_curve")


def run_scaling(cfg: ScalingConfig, log=print) -> dict:
    device, counts = pick_device(cfg.device), cfg.processes
    if device == "cuda" and counts[-1] > torch.cuda.device_count():
        raise UserError(f"--scaling {counts[-1]} processes needs {counts[-1]} GPUs; {torch.cuda.device_count()} visible")
    work = Path(tempfile.mkdtemp(prefix="supporttune-scaling-"))
    model = scaling_model(cfg.model, work / "model", cfg.tokenizer)
    data = prepared(cfg.data, work)

    global_batch = cfg.steps_batch

    def config(method: str, max_steps: int) -> dict:
        return train_config(model, data, method, max_steps, cfg.batch_size, global_batch, device)

    if cfg.repeats > 1 or device == "cuda":
        log(f"warm-up run on {counts[-1]} process(es) (not measured) ...")
        _train(work, "warmup", config(cfg.methods[0], min(cfg.steps, 10)), counts[-1])
    points: list[dict] = []
    done: list[dict] = []
    for method in cfg.methods:
        runs: dict[int, list[dict]] = {n: [] for n in counts}
        for k in range(cfg.repeats):
            for n in counts:
                log(f"{method}: {n} process(es), global batch {global_batch}, run {k + 1}/{cfg.repeats} ...")
                runs[n].append(_train(work, f"{method}-{n}", config(method, cfg.steps), n))
                done.append({"method": method, "processes": n, **{key: runs[n][-1].get(key) for key in RUN_KEYS}})
                if cfg.out is not None:  # every run on disk as it ends: a harness stopped half-way keeps its figures
                    write_json(cfg.out, {"kind": "scaling-partial", "global_batch": global_batch, "runs": done})
        for n in counts:
            s = sorted(runs[n], key=lambda r: r["steady_tokens_per_s"])[len(runs[n]) // 2]  # the median run
            points.append({"method": method, "processes": n, "steady_tokens_per_s": s["steady_tokens_per_s"],
                           "runs_steady_tokens_per_s": [r["steady_tokens_per_s"] for r in runs[n]],
                           "tokens_per_s": s["tokens_per_s"], "final_train_loss": s["final_train_loss"],
                           "final_val_loss": s["final_val_loss"], "loss_curve": s["loss_curve"],
                           "peak_cuda_mb": s.get("peak_cuda_mb"), "peak_rss_mb": s.get("peak_rss_mb"),
                           "parallel": s["parallel"], "steps": s["steps"]})
    for p in points:
        one = next(q for q in points if q["method"] == p["method"] and q["processes"] == 1)
        p["speedup"] = round(p["steady_tokens_per_s"] / one["steady_tokens_per_s"], 3)
        p["efficiency"] = round(p["speedup"] / p["processes"], 3)
        p["max_loss_diff_vs_1"] = max((abs(a[1] - b[1]) for a, b in zip(p["loss_curve"], one["loss_curve"])), default=0.0)
        log(f"{p['method']:>14} x{p['processes']}: {p['steady_tokens_per_s']:>10,.0f} tokens/s  "
            f"speed-up {p['speedup']:.2f}  efficiency {p['efficiency']:.0%}  "
            f"loss {p['final_train_loss']:.4f} (max diff to 1 process {p['max_loss_diff_vs_1']:.4f})")
    result = {"kind": "scaling", "arch": cfg.model, "runs": done, "device": device, "steps": cfg.steps,
              "repeats": cfg.repeats, "per_device_batch": cfg.batch_size, "global_batch": global_batch, "points": points,
              "config": cfg.resolved(), "host": platform.node(), **provenance({})}
    if cfg.out is not None:
        write_json(cfg.out, result)
        log(f"wrote {cfg.out}")
    return result
