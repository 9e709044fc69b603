"""`supporttune bench --scaling 1,2,4`: training throughput on 1..N processes, and how well it scales.

Every point is a real ``supporttune train --nproc N`` run, launched as a user would launch it: the
same data, the same global batch (``batch_size`` sequences per GPU per micro-batch, accumulation
divided among the ranks) and the same random weights of the chosen architecture (speed does not
depend on weight values). The figure is train_summary.json's ``steady_tokens_per_s``: real
(non-pad) tokens of all ranks per second of optimizer steps, warm-up steps left out. One
unmeasured run on the largest process count goes first when there are repeats or GPUs (the first
process on a fresh machine ran 30-55% slower on the H100, and it warms every GPU), the repeats of the points are interleaved
(1, 2, 4, 1, 2, 4, ...) so that drift of the machine does not favour one count, and each point is
the median of ``repeats`` runs, all of them kept in the JSON. Dropout is off, so every count runs
the same computation and the loss curves must agree (to bf16 rounding on GPUs).
Scaling efficiency = tokens/s on N / (N x tokens/s on 1).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .errors import RunFailed, UserError
from .io import read_json, read_jsonl, write_json
from .provenance import provenance


def scaling_model(arch: str, out: Path, tokenizer: str | None = None) -> Path:
    """Random weights of ``arch`` with a real tokenizer (the embedded one by default; vocabulary widened to fit)."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from .bench import ARCHS
    from .bench_run import bench_tokenizer

    tok = bench_tokenizer(tokenizer)
    config = LlamaConfig(**{**ARCHS[arch], "vocab_size": max(ARCHS[arch]["vocab_size"], len(tok))},
                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _prepared(data: str, work: Path) -> Path:
    if data != "builtin":
        return Path(data)
    from .config import PrepareConfig
    from .data.prepare import prepare

    prepare(PrepareConfig(input="builtin", out=work / "data"))
    return work / "data"


def train_config(model: Path, data: Path, method: str, max_steps: int, batch_size: int, global_batch: int,
                 device: str) -> dict:
    """The train config of one scaling point (for any process count: the launch splits the global batch)."""
    return {"model": str(model), "data": str(data), "method": method, "max_steps": max_steps,
            "batch_size": batch_size, "grad_accum": global_batch // batch_size, "max_val_samples": 8,
            "logging_steps": 2, "save_steps": 10 * max_steps, "device": device, "r": 8, "alpha": 16, "dropout": 0.0,
            "lr": 3e-2 if method.startswith(("prompt", "prefix")) else 2e-4}


def _train(work: Path, name: str, cfg: dict, n: int) -> dict:
    run = work / name
    (work / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "out": str(run)}))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "supporttune", "train", "--config", str(work / "cfg.yaml"), "--force",
                           "--nproc", str(n)], capture_output=True, text=True)
    if done.returncode:
        raise RunFailed(f"{cfg['method']} on {n} process(es) failed: {done.stderr.strip().splitlines()[-1]}")
    summary = read_json(run / "train_summary.json")
    summary["launch_s"] = round(time.monotonic() - started, 1)  # the whole command: start-up, loading, training, exit
    summary["loss_curve"] = [[r["step"], r["train_loss"]] for r in read_jsonl(run / "loss.jsonl") if "train_loss" in r]
    return summary


RUN_KEYS = ("steady_tokens_per_s", "tokens_per_s", "wall_time_s", "launch_s", "final_train_loss", "final_val_loss", "peak_cuda_mb",
            "loss_curve")


def _median(runs: list[dict]) -> dict:
    return sorted(runs, key=lambda r: r["steady_tokens_per_s"])[len(runs) // 2]


def run_scaling(counts: list[int], methods: list[str], arch: str, data: str, device: str, steps: int,
                batch_size: int, out: Path | None, tokenizer: str | None = None, repeats: int = 3, log=print,
                global_batch: int | None = None) -> dict:
    """Measure every method on every process count; ``global_batch`` defaults to ``batch_size`` x the largest count."""
    from .bench import ARCHS

    if arch not in ARCHS:
        raise UserError(f"--scaling needs an architecture name ({', '.join(ARCHS)}), got '{arch}'")
    if sorted(set(counts)) != counts or counts[0] != 1:
        raise UserError(f"--scaling takes increasing process counts starting at 1 (got {','.join(map(str, counts))})")
    global_batch = global_batch or batch_size * counts[-1]
    if global_batch % (batch_size * counts[-1]):
        raise UserError(f"--global-batch {global_batch} must be a multiple of {batch_size} sequences per GPU x "
                        f"{counts[-1]} processes, so that every count runs the same micro-batch")
    if device == "cuda":
        import torch

        if counts[-1] > torch.cuda.device_count():
            raise UserError(f"--scaling {counts[-1]} processes needs {counts[-1]} GPUs; {torch.cuda.device_count()} visible")
    work = Path(tempfile.mkdtemp(prefix="supporttune-scaling-"))
    model = scaling_model(arch, work / "model", tokenizer)
    prepared = _prepared(data, work)

    def config(method: str, max_steps: int) -> dict:
        return train_config(model, prepared, method, max_steps, batch_size, global_batch, device)

    if repeats > 1 or device == "cuda":
        log(f"warm-up run on {counts[-1]} process(es) (not measured) ...")
        _train(work, "warmup", config(methods[0], min(steps, 10)), counts[-1])
    points: list[dict] = []
    done: list[dict] = []
    for method in methods:
        runs: dict[int, list[dict]] = {n: [] for n in counts}
        for k in range(repeats):
            for n in counts:
                log(f"{method}: {n} process(es), global batch {global_batch}, run {k + 1}/{repeats} ...")
                runs[n].append(_train(work, f"{method}-{n}", config(method, steps), n))
                done.append({"method": method, "processes": n, **{key: runs[n][-1].get(key) for key in RUN_KEYS}})
                if out is not None:  # every run on disk as it ends: a harness stopped half-way keeps its figures
                    write_json(out, {"kind": "scaling-partial", "global_batch": global_batch, "runs": done})
        for n in counts:
            s = _median(runs[n])
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
        p["max_loss_diff_vs_1"] = max(abs(a[1] - b[1]) for a, b in zip(p["loss_curve"], one["loss_curve"]))
        log(f"{p['method']:>14} x{p['processes']}: {p['steady_tokens_per_s']:>10,.0f} tokens/s  "
            f"speed-up {p['speedup']:.2f}  efficiency {p['efficiency']:.0%}  "
            f"loss {p['final_train_loss']:.4f} (max diff to 1 process {p['max_loss_diff_vs_1']:.4f})")
    result = {"kind": "scaling", "arch": arch, "runs": done, "device": device, "steps": steps, "repeats": repeats,
              "per_device_batch": batch_size, "global_batch": global_batch, "points": points,
              "host": platform.node(), **provenance({})}
    if out is not None:
        write_json(out, result)
        log(f"wrote {out}")
    return result
