"""`supporttune bench --scaling 1,2,4`: training throughput on 1..N processes, and how well it scales.

Every point is a real ``supporttune train --nproc N`` run, launched as a user would launch it: the
same data, the same global batch (``batch_size`` sequences per GPU per micro-batch, accumulation
divided among the ranks) and the same random weights of the chosen architecture (speed does not
depend on weight values). The figure is train_summary.json's ``steady_tokens_per_s``: real
(non-pad) tokens of all ranks per second of optimizer steps, warm-up steps left out. One
unmeasured run goes first (the first process on a fresh machine ran 30-55% slower on the H100),
and each point is the median of ``repeats`` runs, all of them kept in the JSON.
Scaling efficiency = tokens/s on N / (N x tokens/s on 1).
"""

from __future__ import annotations

import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from .errors import RunFailed, UserError
from .io import read_json, write_json
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


def _train(work: Path, name: str, cfg: dict, n: int) -> dict:
    run = work / name
    (work / "cfg.yaml").write_text(yaml.safe_dump({**cfg, "out": str(run)}))
    done = subprocess.run([sys.executable, "-m", "supporttune", "train", "--config", str(work / "cfg.yaml"), "--force",
                           "--nproc", str(n)], capture_output=True, text=True)
    if done.returncode:
        raise RunFailed(f"{cfg['method']} on {n} process(es) failed: {done.stderr.strip().splitlines()[-1]}")
    return read_json(run / "train_summary.json")


def run_scaling(counts: list[int], methods: list[str], arch: str, data: str, device: str, steps: int,
                batch_size: int, out: Path | None, tokenizer: str | None = None, repeats: int = 3, log=print) -> dict:
    from .bench import ARCHS

    if arch not in ARCHS:
        raise UserError(f"--scaling needs an architecture name ({', '.join(ARCHS)}), got '{arch}'")
    if sorted(set(counts)) != counts or counts[0] != 1:
        raise UserError(f"--scaling takes increasing process counts starting at 1 (got {','.join(map(str, counts))})")
    if device == "cuda":
        import torch

        if counts[-1] > torch.cuda.device_count():
            raise UserError(f"--scaling {counts[-1]} processes needs {counts[-1]} GPUs; {torch.cuda.device_count()} visible")
    work = Path(tempfile.mkdtemp(prefix="supporttune-scaling-"))
    model = scaling_model(arch, work / "model", tokenizer)
    prepared = _prepared(data, work)
    def config(method: str, max_steps: int) -> dict:
        return {"model": str(model), "data": str(prepared), "method": method, "max_steps": max_steps,
                "batch_size": batch_size, "grad_accum": counts[-1], "max_val_samples": 8, "logging_steps": 5,
                "save_steps": 10 * max_steps, "device": device, "r": 8, "alpha": 16,
                "lr": 3e-2 if method.startswith(("prompt", "prefix")) else 2e-4}

    if repeats > 1:
        log("warm-up run (not measured) ...")
        _train(work, "warmup", config(methods[0], min(steps, 10)), 1)
    points = []
    for method in methods:
        for n in counts:
            log(f"{method}: {n} process(es), global batch {batch_size * counts[-1]}, {repeats} run(s) ...")
            runs = [_train(work, f"{method}-{n}", config(method, steps), n) for _ in range(repeats)]
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
    result = {"kind": "scaling", "arch": arch, "device": device, "steps": steps, "repeats": repeats,
              "per_device_batch": batch_size,
              "global_batch": batch_size * counts[-1], "points": points, "host": platform.node(), **provenance({})}
    if out is not None:
        write_json(out, result)
        log(f"wrote {out}")
    return result
