"""Issue 15: `--nproc N` on real GPUs, the whole experiment in one device call.

Run on the device through tools/gpu_multi.sh (which installs the carried wheels); here, as a smoke
test of this script on CPU processes over gloo (tiny model, FSDP skipped):
    PYTHONPATH=src python tools/gpu_multi.py --cpu --out /tmp/gpu15-smoke --tok TOKENIZER --data PREPARED

1. `bench --scaling 1,..,N` for LoRA and QLoRA (TinyLlama-1.1B architecture, random weights) at the
   default global batch; a larger global batch too when 2 GPUs reach under 90% efficiency;
2. `train --nproc 2 --fsdp` (LoRA) against the 1-GPU loss curve of the same config (QLoRA `--nproc 2`
   against 1 GPU comes from the scaling runs, which are that very command);
3. `run --nproc 2` on the prepared TWCS sample, then `evaluate` of its variant on 1 GPU and with
   `--nproc 2`, and the zero-shot baseline on 1 GPU: greedy predictions compared one by one;
4. an injected crash on rank 1, and SIGINT to the launcher mid-run followed by `--resume`.
Every command has a time limit (its process group is killed past it), so one hang cannot eat the call.
Results: OUT/multi.json, OUT/scaling*.json, OUT/logs.tgz (each command's output and any rank logs).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

T0 = time.monotonic()
DEADLINE = float(os.environ.get("GPU15_DEADLINE_S", 480))  # the script ends (with its summary) before the device call does
RESULT: dict = {}
WORK = Path(tempfile.gettempdir()) / "gpu15"
LOGS = WORK / "logs"


def elapsed() -> float:
    return round(time.monotonic() - T0, 1)


def say(msg: str) -> None:
    print(f"[{elapsed():6.1f}s] {msg}", flush=True)


def save(out: Path) -> None:
    (out / "multi.json").write_text(json.dumps(RESULT, indent=1, default=str))


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[object, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its workers: no stray process keeps a GPU
        out, err = proc.communicate()
        return "timeout", out, err


def start(args: list, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "supporttune", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, start_new_session=True)


def record(name: str, args: list, rc, out: str, err: str, seconds: float) -> dict:
    (LOGS / f"{name}.log").write_text(f"$ supporttune {' '.join(map(str, args))}\nrc={rc} seconds={seconds}\n"
                                      f"--- stdout\n{out}\n--- stderr\n{err}\n")
    lines = err.strip().splitlines()
    res = {"cmd": "supporttune " + " ".join(map(str, args)), "rc": rc, "seconds": seconds,
           "last_stderr_line": lines[-1] if lines else "", "stdout_tail": out.strip().splitlines()[-3:]}
    say(f"{name}: rc={rc} in {seconds}s  {res['last_stderr_line'][:200] if rc else ''}")
    return res


def left() -> float:
    return DEADLINE - elapsed()


def cli(name: str, args: list, timeout: float, env: dict | None = None) -> dict:
    t = time.monotonic()
    rc, out, err = _finish(start(args, env), max(5.0, min(timeout, left())))
    return record(name, args, rc, out, err, round(time.monotonic() - t, 1))


def losses(run: Path) -> list[list]:
    if not (run / "loss.jsonl").is_file():
        return []
    rows = [json.loads(x) for x in (run / "loss.jsonl").read_text().splitlines() if x.strip()]
    return [[r["step"], r["train_loss"]] for r in rows if "train_loss" in r]


def max_diff(a: list[list], b: list[list]) -> float | None:
    pairs = dict(map(tuple, b))
    common = [(x, pairs[s]) for s, x in a if s in pairs]
    return max(abs(x - y) for x, y in common) if common else None


def predictions(eval_dir: Path) -> list[tuple]:
    path = eval_dir / "predictions.jsonl"
    if not path.is_file():
        return []
    return [(r["id"], r["prediction"]) for r in map(json.loads, path.read_text().splitlines())]


def compare(a: list[tuple], b: list[tuple]) -> dict:
    return {"examples": [len(a), len(b)], "identical": bool(a) and a == b,
            "same_ids_in_order": [i for i, _ in a] == [i for i, _ in b],
            "differing": sum(x != y for x, y in zip(a, b))}


def environment(cpu: bool) -> dict:
    import torch

    info = {"python": sys.version.split()[0], "NCCL_NVLS_ENABLE": os.environ.get("NCCL_NVLS_ENABLE"),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    for name in ("torch", "transformers", "peft", "accelerate", "bitsandbytes"):
        try:
            info[name] = __import__(name).__version__
        except Exception as e:  # noqa: BLE001 - recorded, not fatal
            info[name] = f"unavailable: {e}"
    if not cpu:
        for what, cmd in (("smi", ["nvidia-smi", "-L"]), ("topology", ["nvidia-smi", "topo", "-m"]),
                          ("driver", ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"])):
            try:
                info[what] = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
            except Exception as e:  # noqa: BLE001
                info[what] = str(e)
    return info


def scaling(a, out: Path) -> None:
    counts = ",".join(str(n) for n in range(1, a.gpus + 1) if n in (1, 2, 4, 8))
    common = ["bench", "--scaling", counts, "--methods", "lora,qlora", "--model", a.arch, "--tokenizer", a.tok,
              "--data", a.data, "--steps", a.steps, "--repeats", a.repeats, "--device", a.device]
    if a.cpu:
        common += ["--quick"]
    RESULT["scaling"] = cli("scaling", [*common, "--out", out / "scaling.json"], a.budget_scaling)
    doc = json.loads((out / "scaling.json").read_text()) if (out / "scaling.json").is_file() else None
    if doc and "points" not in doc:  # stopped half-way: the runs it finished
        RESULT["scaling"]["partial_runs"] = [{k: v for k, v in r.items() if k != "loss_curve"} for r in doc["runs"]]
        return
    RESULT["scaling"]["points"] = doc and [{k: p.get(k) for k in ("method", "processes", "steady_tokens_per_s",
                                                                  "runs_steady_tokens_per_s", "speedup", "efficiency",
                                                                  "peak_cuda_mb", "final_train_loss", "max_loss_diff_vs_1")}
                                           for p in doc["points"]]
    if not doc:
        return
    worst = min(p["efficiency"] for p in doc["points"] if p["processes"] == 2 and p["method"] == "lora")
    RESULT["scaling"]["default_batch_too_small"] = worst < 0.9
    if (worst < 0.9 or a.always_large) and elapsed() < a.large_batch_before:
        big = doc["global_batch"] * 4
        RESULT["scaling_large"] = cli("scaling-large", ["bench", "--scaling", counts, "--methods", "lora", "--model", a.arch,
                                                        "--tokenizer", a.tok, "--data", a.data, "--steps", max(6, a.steps // 2),
                                                        "--repeats", 1, "--device", a.device, "--global-batch", big,
                                                        *(["--quick"] if a.cpu else []), "--out", out / "scaling-large.json"],
                                      a.budget_large)


def scaling_model_dir(a) -> Path:
    """The harness's random model (same seed, same weights); rebuilt only if the harness left none."""
    found = sorted(glob.glob(str(Path(tempfile.gettempdir()) / "supporttune-scaling-*" / "model")), key=os.path.getmtime)
    if found and (Path(found[-1]) / "config.json").is_file():
        return Path(found[-1])
    from supporttune.bench.scaling import scaling_model

    return scaling_model(a.arch, WORK / "model", a.tok)


def write_cfg(name: str, cfg: dict) -> Path:
    import yaml

    path = WORK / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def fsdp_check(a, model: Path) -> None:
    from supporttune.bench.scaling import train_config

    cfg = train_config(model, Path(a.data), "lora", a.steps, a.batch, a.global_batch, a.device)
    run = WORK / "fsdp2"
    res = cli("fsdp2", ["train", "--config", write_cfg("fsdp2", cfg), "--out", run, "--nproc", 2, "--fsdp", "--force"], 150)
    res["loss_curve"] = losses(run)
    res["summary"] = _summary(run)
    RESULT["fsdp2"] = res


def _summary(run: Path) -> dict | None:
    path = run / "train_summary.json"
    if not path.is_file():
        return None
    s = json.loads(path.read_text())
    return {k: s.get(k) for k in ("steps", "final_train_loss", "final_val_loss", "steady_tokens_per_s", "peak_cuda_mb",
                                  "parallel", "resumed_from")}


def suite_check(a, model: Path) -> None:
    evalcfg = {"limit": a.eval_limit, "max_new_tokens": a.new_tokens, "latency_samples": 2, "bootstrap": 200,
               "semantic": False, "device": a.device}
    suite = {"name": "gpu15", "data": a.data,
             "defaults": {"model": str(model), "max_steps": a.steps, "batch_size": a.batch, "grad_accum": a.global_batch // a.batch, "dropout": 0.0,
                          "max_val_samples": 8, "logging_steps": 2, "device": a.device},
             "variants": [{"name": "lora", "method": "lora"}], "baselines": ["zero-shot", "constant"], "eval": evalcfg}
    out = WORK / "suite"
    res = cli("run2", ["run", "--config", write_cfg("suite", suite), "--out", out, "--nproc", 2, "--force"], 200)
    res["best_variant_lines"] = sum("best variant" in x for x in res["stdout_tail"])
    res["report_files"] = sorted(p.name for p in out.glob("report.*"))
    RESULT["run2"] = res
    variant = out / "variants" / "lora"
    if not (variant / "adapter_model.safetensors").is_file():
        return
    flags = ["--data", a.data, "--limit", a.eval_limit, "--max-new-tokens", a.new_tokens, "--latency-samples", 2,
             "--no-semantic", "--device", a.device, "--force"]
    for name, n in (("eval1", 1), ("eval2", 2), ("eval1b", 1)):
        if name == "eval1b" and left() < 150:  # a second 1-GPU pass: run-to-run noise, if time allows
            break
        copy = WORK / name
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(variant, copy, ignore=shutil.ignore_patterns("eval"))
        RESULT[name] = cli(name, ["evaluate", "--run", copy, *flags, "--nproc", n], 120)
        RESULT[name]["perplexity"] = _metric(copy / "eval", "perplexity")
    base = predictions(variant / "eval")
    RESULT["identity"] = {"run2_vs_eval1": compare(base, predictions(WORK / "eval1" / "eval")),
                          "eval2_vs_eval1": compare(predictions(WORK / "eval2" / "eval"), predictions(WORK / "eval1" / "eval")),
                          "eval1b_vs_eval1": compare(predictions(WORK / "eval1b" / "eval"), predictions(WORK / "eval1" / "eval"))}
    if left() < 120:  # the failure checks come next and need about 100 s
        return
    RESULT["zero1"] = cli("zero1", ["evaluate", "--baseline", "zero-shot", "--model", model, "--out", WORK / "zero1", *flags], 120)
    RESULT["identity"]["run2_zero_shot_vs_1gpu"] = compare(predictions(out / "baselines" / "zero-shot" / "eval"),
                                                           predictions(WORK / "zero1" / "eval"))


def _metric(eval_dir: Path, key: str):
    path = eval_dir / "metrics.json"
    return json.loads(path.read_text()).get(key) if path.is_file() else None


HOOK = """import os
if os.environ.get('RANK') == '1':
    import transformers
    _step = transformers.Trainer.training_step
    def _boom(self, *a, **k):
        if self.state.global_step == 2:
            raise RuntimeError('injected fault on rank 1')
        return _step(self, *a, **k)
    transformers.Trainer.training_step = _boom
"""


def failure_checks(a, model: Path) -> None:
    from supporttune.bench.scaling import train_config

    cfg = write_cfg("lora2", train_config(model, Path(a.data), "lora", a.steps, a.batch, a.global_batch, a.device))
    hook = WORK / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    res = cli("crash", ["train", "--config", cfg, "--out", WORK / "crash", "--nproc", 2, "--max-steps", 200, "--force"], 150,
              env={"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    log = res["last_stderr_line"].split("see ", 1)[-1].rstrip(")")
    res["rank_log_has_traceback"] = Path(log).is_file() and "injected fault" in Path(log).read_text()
    res["traceback_on_terminal"] = "Traceback" in (LOGS / "crash.log").read_text().split("--- stderr", 1)[1]
    RESULT["crash"] = res

    run = WORK / "ctrlc"
    args = ["train", "--config", cfg, "--out", run, "--nproc", 2, "--force"]
    t = time.monotonic()
    proc = start(args)
    while len(losses(run)) < 2 and proc.poll() is None and time.monotonic() - t < 120:
        time.sleep(0.05)
    sent_at = losses(run)[-1][0] if losses(run) else None
    proc.send_signal(signal.SIGINT)  # to the launcher only, as the CPU test does
    t_sig = time.monotonic()
    rc, out, err = _finish(proc, max(5.0, min(90, left())))
    res = record("ctrlc", args, rc, out, err, round(time.monotonic() - t, 1))
    res.update(signal_after_logged_step=sent_at, exit_after_signal_s=round(time.monotonic() - t_sig, 1),
               checkpoints=sorted(p.name for p in (run / "checkpoints").glob("checkpoint-*")))
    RESULT["ctrlc"] = res
    res = cli("resume", ["train", "--config", cfg, "--out", run, "--nproc", 2, "--resume"], 150)
    res["summary"] = _summary(run)
    res["loss_curve"] = losses(run)
    RESULT["resume"] = res


def summary_table() -> None:
    say("==== summary ====")
    for p in (RESULT.get("scaling") or {}).get("points") or []:
        print(f"scaling {p['method']:>5} x{p['processes']}: {p['steady_tokens_per_s']:>9,.0f} tok/s "
              f"runs {p['runs_steady_tokens_per_s']} speed-up {p['speedup']:.2f} eff {p['efficiency']:.0%} "
              f"peak {p['peak_cuda_mb']} MB loss {p['final_train_loss']:.4f} dloss {p['max_loss_diff_vs_1']:.4f}")
    for key in ("scaling_large", "fsdp2", "run2", "eval1", "eval2", "eval1b", "zero1", "crash", "ctrlc", "resume"):
        r = RESULT.get(key)
        if r:
            extra = {k: r[k] for k in ("loss_diff_vs_1gpu", "exit_after_signal_s", "checkpoints", "perplexity",
                                       "report_files", "resume_loss_diff_vs_uninterrupted") if k in r}
            print(f"{key}: rc={r['rc']} {r['seconds']}s {extra} | {r['last_stderr_line'][:160]}")
    print("identity:", json.dumps(RESULT.get("identity")))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu", action="store_true", help="smoke test on CPU processes (gloo), tiny model, no FSDP")
    ap.add_argument("--tok", default="tok")
    ap.add_argument("--data", default="twcs")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--budget-scaling", type=float, default=380)
    ap.add_argument("--large-batch-before", type=float, default=230, help="run the larger batch only if this early")
    ap.add_argument("--always-large", action="store_true")
    ap.add_argument("--budget-large", type=float, default=230)
    ap.add_argument("--parts", default="scaling,fsdp,suite,failures", help="which parts, in this order")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    LOGS.mkdir(parents=True)
    import torch

    a.gpus = 2 if a.cpu else torch.cuda.device_count()
    a.device, a.arch, a.batch = ("cpu", "tiny-arch", 4) if a.cpu else ("cuda", "tinyllama-arch", 16)
    a.global_batch = a.batch * max(n for n in (1, 2, 4, 8) if n <= a.gpus)  # the harness's default
    a.eval_limit, a.new_tokens = (9, 8) if a.cpu else (48, 32)
    if a.cpu:
        a.steps = min(a.steps, 8)
    RESULT["environment"] = environment(a.cpu)
    RESULT["settings"] = {k: v for k, v in vars(a).items() if k != "out"}
    say(f"environment: {json.dumps(RESULT['environment'])[:1500]}")
    try:
        parts = {"scaling": lambda: scaling(a, a.out), "fsdp": lambda: fsdp_check(a, scaling_model_dir(a)),
                 "suite": lambda: suite_check(a, scaling_model_dir(a)),
                 "failures": lambda: failure_checks(a, scaling_model_dir(a))}
        for part in a.parts.split(","):
            fn = parts[part]
            if part == "fsdp" and a.cpu:
                continue
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - one broken part must not stop the others
                RESULT[f"{part}_error"] = f"{type(e).__name__}: {e}"
                say(f"{part} FAILED: {type(e).__name__}: {e}")
            save(a.out)
            _bundle(a.out)
        _derived(a.out)
    finally:
        save(a.out)
        _bundle(a.out)
        summary_table()
        say("done")


def _bundle(out: Path) -> None:
    """Every command's output and the rank logs that failed runs left, in one file (few files come back)."""
    with tarfile.open(out / "logs.tgz", "w:gz") as tar:
        tar.add(LOGS, arcname="logs")
        for d in glob.glob(str(Path(tempfile.gettempdir()) / "supporttune-ranks-*")):
            tar.add(d, arcname=f"ranks/{Path(d).name}")


def _derived(out: Path) -> None:
    """Comparisons between parts: FSDP and resumed curves against the scaling runs of the same config."""
    doc = out / "scaling.json"
    if not doc.is_file():
        return
    full = {(p["method"], p["processes"]): p for p in json.loads(doc.read_text())["points"]}
    if "fsdp2" in RESULT and ("lora", 1) in full:
        RESULT["fsdp2"]["loss_diff_vs_1gpu"] = max_diff(RESULT["fsdp2"]["loss_curve"], full[("lora", 1)]["loss_curve"])
    if "resume" in RESULT and ("lora", 2) in full:
        RESULT["resume"]["resume_loss_diff_vs_uninterrupted"] = max_diff(RESULT["resume"]["loss_curve"],
                                                                         full[("lora", 2)]["loss_curve"])


if __name__ == "__main__":
    main()
