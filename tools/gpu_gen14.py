"""The generation-engine measurements of docs/BENCHMARKS.md, in one GPU call (issue 14).

Run on the device machine from .dev/gen14 (a snapshot of src/ and tools/, the pre-engine src/ in
old/src, the embedded model's tokenizer in tok/, the prepared TWCS sample in twcs/, wheels in whl/):

    bash tools/gpu_gen14.sh            # installs the wheels, then: python3 tools/gpu_gen14.py $OUT 330

Steps, each timed and recorded in $OUT/results.json as it finishes (a failure is recorded and the
next step runs): a random-weight SmolLM2-135M-architecture model with the embedded tokenizer;
short LoRA, prompt-tuning and QLoRA trainings on the TWCS sample (real adapters); the engine vs
the eager path on the 157 test prompts per method; `evaluate` end to end with the old code and
the new (fresh processes); `serve` under the load test with the old code and the new batchers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/out")
BUDGET = float(sys.argv[2]) if len(sys.argv) > 2 else 330
HERE = Path.cwd()
T0 = time.time()
RESULTS: dict = {"steps": {}}
MODEL, RUNS, DATA = Path("/tmp/m"), Path("/tmp/runs"), HERE / "twcs"
DEVICE, ARCH = os.environ.get("GEN14_DEVICE", "cuda"), os.environ.get("GEN14_ARCH", "SMOLLM2")  # CPU dry run: cpu, TINY
ONLY = set(filter(None, os.environ.get("GEN14_ONLY", "").split(",")))  # dry runs: just these steps
LIMIT = os.environ.get("GEN14_LIMIT", "None")  # dry runs: evaluate the first N test examples


def save() -> None:
    (OUT / "results.json").write_text(json.dumps(RESULTS, indent=1, default=str))


def step(name: str, need_s: float = 0):
    def wrap(fn):
        if ONLY and name not in ONLY:
            return None
        left = BUDGET - (time.time() - T0)
        if left < need_s:
            RESULTS["steps"][name] = {"skipped": f"{left:.0f} s left, needs ~{need_s:.0f}"}
            print(f"== {name}: skipped ({left:.0f} s left)", flush=True)
            save()
            return None
        print(f"== {name} (t={time.time() - T0:.0f}s)", flush=True)
        t = time.time()
        try:
            value = fn()
            RESULTS["steps"][name] = {"ok": True, "seconds": round(time.time() - t, 1)}
            RESULTS[name] = value
        except Exception as e:
            RESULTS["steps"][name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-3000:],
                                      "seconds": round(time.time() - t, 1)}
            print(f"   FAILED {type(e).__name__}: {e}", flush=True)
            value = None
        save()
        return value
    return wrap


def sub(code: str, old: bool = False, timeout: float = 120, env: dict | None = None) -> dict:
    """Run python code in a fresh process (old = the pre-engine code); its last stdout line is JSON."""
    path = f"/tmp/site:{HERE / ('old/src' if old else 'src')}"
    t = time.time()
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": path, **(env or {})})
    wall = time.time() - t
    if p.returncode:
        raise RuntimeError(p.stderr[-1500:])
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = round(wall, 2)
    return out


@step("environment")
def environment():
    import torch
    import transformers
    import peft

    return {"gpu": torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu", "torch": torch.__version__, "transformers": transformers.__version__,
            "peft": peft.__version__}


@step("model")
def model():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    from supporttune.bench import archs as bench  # TINYLLAMA, SMOLLM2, TINY

    tok = AutoTokenizer.from_pretrained(HERE / "tok")
    torch.manual_seed(0)
    arch = {**getattr(bench, ARCH), "vocab_size": len(tok)} if ARCH == "TINY" else getattr(bench, ARCH)
    config = LlamaConfig(**arch, pad_token_id=tok.pad_token_id or tok.eos_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id)
    with torch.device(DEVICE):
        m = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16 if DEVICE == "cuda" else torch.float32)
    m.save_pretrained(MODEL)
    tok.save_pretrained(MODEL)
    return {"params": sum(p.numel() for p in m.parameters())}


@step("train", 40)
def train_all():
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    out = {}
    only = set(filter(None, os.environ.get("GEN14_TRAIN", "").split(",")))  # a serve-only call trains lora alone
    for name, extra in (("lora", {"r": 8, "alpha": 32}), ("prompt-tuning", {"virtual_tokens": 10, "prompt_init": "random"}),
                        ("qlora", {"r": 8, "alpha": 32})):
        if only and name not in only:
            continue
        t = time.time()
        s = train(TrainConfig(model=str(MODEL), data=DATA, out=RUNS / name, method=name, max_steps=6, batch_size=16,
                              grad_accum=1, device=DEVICE, max_val_samples=16, logging_steps=3, save_steps=100, **extra))
        out[name] = {"seconds": round(time.time() - t, 1), "final_train_loss": (s or {}).get("final_train_loss")}
    return out


def _compare(method: str, **kw) -> dict:
    from supporttune.data.split import load_split
    from supporttune.bench.engine_bench import compare
    from supporttune.inference.agent import load_agent

    agent = load_agent(RUNS / method if method != "base" else None, model=str(MODEL) if method == "base" else None,
                       device=DEVICE)
    prompts = [agent.prompt_ids(ex) for ex in load_split(DATA, "test")]
    fast = "auto" if "error" in RESULTS["steps"].get("engine_lora", {}) else "static"  # don't pay a failing compile twice
    return compare(agent, prompts, new_tokens=64, batch_size=256, repeats=3, batch1_prompts=8, fast=fast, **kw)


step("engine_lora", 100)(lambda: _compare("lora"))
step("engine_prompt_tuning", 30)(lambda: _compare("prompt-tuning"))


@step("engine_qlora", 30)
def engine_qlora():
    import torch

    from supporttune.data.split import load_split
    from supporttune.inference.agent import load_agent
    from supporttune.inference.decode import pad_left
    from supporttune.core.memory import sync

    r = _compare("qlora")
    agent = load_agent(RUNS / "qlora", device=DEVICE)  # 4-bit, static cache without compile (bnb is not compiled)
    prompts = [agent.prompt_ids(ex) for ex in load_split(DATA, "test")]
    ids, mask = pad_left(prompts, agent.tokenizer.pad_token_id)
    kw = dict(max_new_tokens=64, do_sample=False, pad_token_id=agent.tokenizer.pad_token_id,
              eos_token_id=agent.tokenizer.eos_token_id)
    ids, mask = ids.to(DEVICE), mask.to(DEVICE)
    with torch.inference_mode():
        agent.model.generate(input_ids=ids[:4], attention_mask=mask[:4], cache_implementation="static", **kw)
        sync(DEVICE)
        t = time.time()
        agent.model.generate(input_ids=ids, attention_mask=mask, cache_implementation="static", **kw)
        sync(DEVICE)
    r["four_bit_static_uncompiled_samples_per_s"] = len(prompts) / (time.time() - t)
    return r


EVAL = ("import json, time; t=time.time(); from supporttune.config import EvalConfig; from supporttune.evaluate import "
        "evaluate; m = evaluate(EvalConfig(run='{run}', data='{data}', semantic=False, force=True, device='{device}', limit={limit})); "
        "print(json.dumps({{'in_process_s': time.time()-t, **{{k: m.get(k) for k in ('throughput_samples_per_s', "
        "'generation_s', 'generation_wall_s', 'warmup_s', 'latency_p50_s', 'rougeL', 'engine', 'decoding')}}}}, default=str))")
step("evaluate_old_lora", 50)(lambda: sub(EVAL.format(run=RUNS / "lora", data=DATA, device=DEVICE, limit=LIMIT), old=True))
step("evaluate_new_lora", 30)(lambda: sub(EVAL.format(run=RUNS / "lora", data=DATA, device=DEVICE, limit=LIMIT)))

SERVE_OLD = ("import json; from supporttune.generate import load_agent; from supporttune.serve import ServeOptions, "
             "create_app; from supporttune.loadtest import LocalServer, load; a = load_agent('{run}', device='{device}'); "
             "s = LocalServer(create_app(a, ServeOptions(max_new_tokens=32)))\n"
             "with s as url: r = load(url, 200, 16)\nprint(json.dumps(r))")
step("serve_old_lora", 40)(lambda: sub(SERVE_OLD.format(run=RUNS / "lora", device=DEVICE), old=True))


@step("serve_new_lora", 50)
def serve_new():
    out = {}
    for mode in ("window", "continuous"):
        code = f"from supporttune.loadtest import main; main(['{RUNS / 'lora'}', '200', '32', '{mode}'])"
        try:
            out[mode] = sub(code, timeout=max(30, BUDGET - (time.time() - T0) - 10))
        except Exception as e:
            out[mode] = {"error": f"{type(e).__name__}: {str(e)[-800:]}"}
        save()
    return out


step("evaluate_new_lora_static", 40)(lambda: sub(EVAL.format(run=RUNS / "lora", data=DATA, device=DEVICE, limit=LIMIT),
                                                 env={"SUPPORTTUNE_ENGINE": "static"}))
step("engine_base", 20)(lambda: _compare("base"))


def table() -> str:
    lines = [f"device {RESULTS.get('environment', {}).get('gpu')}; {time.time() - T0:.0f} s"]
    for m in ("lora", "prompt_tuning", "qlora", "base"):
        r = RESULTS.get(f"engine_{m}")
        if r:
            lines.append(f"{m:<14} eager {r['eager_samples_per_s']:7.1f}/s  engine {r['fast_samples_per_s']:7.1f}/s "
                         f"({r['speedup']:.1f}x) warm-up {r['fast_warmup_s']:.0f}s  identical {r['identical_replies']}/"
                         f"{r['prompts']}  b1 TPOT {r['batch1_tpot_ms'] or 0:.2f} ms (warm-up {r['batch1_warmup_s']:.0f}s)"
                         f"  mean tokens {r['mean_new_tokens']:.1f}")
    for k in ("evaluate_old_lora", "evaluate_new_lora", "evaluate_new_lora_static", "serve_old_lora"):
        if RESULTS.get(k):
            lines.append(f"{k}: " + json.dumps({x: y for x, y in RESULTS[k].items() if x != "engine"}, default=str)[:300])
    for mode, r in (RESULTS.get("serve_new_lora") or {}).items():
        lines.append(f"serve_new_{mode}: {json.dumps(r)[:300]}")
    for k, v in RESULTS["steps"].items():
        if "error" in v or "skipped" in v:
            lines.append(f"{k}: {v.get('error') or v.get('skipped')}")
    return "\n".join(lines)


RESULTS["total_s"] = round(time.time() - T0, 1)
save()
print(table(), flush=True)
