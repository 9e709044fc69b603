"""`supporttune bench --scaling 1,2,4`: training throughput on 1..N processes, and how well it scales.

Every point is a real ``supporttune train --nproc N`` run, launched as a user would launch it: the
same data, the same global batch (``batch_size`` sequences per process per micro-batch,
accumulation divided among the ranks) and the same random weights of the chosen architecture
(speed does not depend on weight values). The figure is train_summary.json's
``steady_tokens_per_s``: real (non-pad) tokens of all ranks per second of optimizer steps, warm-up
steps left out. One unmeasured run goes first (the first process on a fresh machine ran 30-55%
slower on the H100), and each point is the median of ``repeats`` runs, all of them kept in the JSON.
Scaling efficiency = tokens/s on N / (N x tokens/s on 1).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from ..config import ScalingConfig
from ..errors import RunFailed, UserError
from ..io import read_json, write_json
from ..models import pick_device
from ..provenance import provenance
from .archs import ARCHS, random_checkpoint
from .data import bench_tokenizer, prepared


def _train(work: Path, name: str, cfg: dict, n: int) -> dict:
    run = work / name
    (work / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "out": str(run)}))
    done = subprocess.run([sys.executable, "-m", "supporttune", "train", "--config", str(work / "cfg.yaml"), "--force",
                           "--nproc", str(n)], capture_output=True, text=True)
    if done.returncode:
        raise RunFailed(f"{cfg['method']} on {n} process(es) failed: {done.stderr.strip().splitlines()[-1]}")
    return read_json(run / "train_summary.json")


def run_scaling(cfg: ScalingConfig, log=print) -> dict:
    device, counts = pick_device(cfg.device), cfg.processes
    if device == "cuda" and counts[-1] > torch.cuda.device_count():
        raise UserError(f"--scaling {counts[-1]} processes needs {counts[-1]} GPUs; {torch.cuda.device_count()} visible")
    work = Path(tempfile.mkdtemp(prefix="supporttune-scaling-"))
    model = random_checkpoint(ARCHS[cfg.model], dtype=torch.bfloat16, tokenizer=bench_tokenizer(cfg.tokenizer),
                              out=work / "model")
    data = prepared(cfg.data, work)

    def config(method: str, max_steps: int) -> dict:  # lr: the method's default (TrainConfig asks the registry)
        return {"model": str(model), "data": str(data), "method": method, "max_steps": max_steps,
                "batch_size": cfg.batch_size, "grad_accum": counts[-1], "max_val_samples": 8, "logging_steps": 5,
                "save_steps": 10 * max_steps, "device": device, "r": 8, "alpha": 16}

    if cfg.repeats > 1:
        log("warm-up run (not measured) ...")
        _train(work, "warmup", config(cfg.methods[0], min(cfg.steps, 10)), 1)
    points = []
    for method in cfg.methods:
        for n in counts:
            log(f"{method}: {n} process(es), global batch {cfg.batch_size * counts[-1]}, {cfg.repeats} run(s) ...")
            runs = [_train(work, f"{method}-{n}", config(method, cfg.steps), n) for _ in range(cfg.repeats)]
            s = sorted(runs, key=lambda r: r["steady_tokens_per_s"])[len(runs) // 2]  # the median run
            points.append({"method": method, "processes": n, "steady_tokens_per_s": s["steady_tokens_per_s"],
                           "runs_steady_tokens_per_s": [r["steady_tokens_per_s"] for r in runs],
                           "tokens_per_s": s["tokens_per_s"], "final_train_loss": s["final_train_loss"],
                           "peak_cuda_mb": s.get("peak_cuda_mb"), "peak_rss_mb": s.get("peak_rss_mb"),
                           "parallel": s["parallel"], "steps": s["steps"]})
    for p in points:
        one = next(q for q in points if q["method"] == p["method"] and q["processes"] == 1)
        p["speedup"] = round(p["steady_tokens_per_s"] / one["steady_tokens_per_s"], 3)
        p["efficiency"] = round(p["speedup"] / p["processes"], 3)
        log(f"{p['method']:>14} x{p['processes']}: {p['steady_tokens_per_s']:>10,.0f} tokens/s  "
            f"speed-up {p['speedup']:.2f}  efficiency {p['efficiency']:.0%}")
    result = {"kind": "scaling", "arch": cfg.model, "device": device, "steps": cfg.steps, "repeats": cfg.repeats,
              "per_device_batch": cfg.batch_size, "global_batch": cfg.batch_size * counts[-1], "points": points,
              "config": cfg.resolved(), "host": platform.node(), **provenance({})}
    if cfg.out is not None:
        write_json(cfg.out, result)
        log(f"wrote {cfg.out}")
    return result
