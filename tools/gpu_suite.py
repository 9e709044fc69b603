"""Run one suite's entries side by side on several GPUs (a device-machine helper, not part of the package).

`supporttune run` trains variants one after another. On a machine with several GPUs and a small base
model this script runs `--per-gpu` jobs on each GPU at once, each in its own process pinned with
CUDA_VISIBLE_DEVICES, and marks each finished job exactly as `supporttune run` does. Afterwards
`supporttune run --config SAME --data SAME --out SAME --resume` skips every finished entry, runs
what is left and writes the report.

    python tools/gpu_suite.py --config src/supporttune/configs/rag-ablation.yaml --data DATA --out OUT \
        --gpus 4 --per-gpu 3 --deadline 480
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path


def _jobs(args):
    from supporttune.suite.run import load_suite, plan_jobs, start_suite

    cfg = load_suite(Path(args.config), {"data": args.data})
    out = Path(args.out)
    data = start_suite(cfg, out)
    return cfg, out, data, plan_jobs(cfg, out, data)


def run_one(args) -> None:
    from supporttune.suite.run import mark_done

    cfg, out, data, jobs = _jobs(args)
    job = next(j for j in jobs if j.name == args.one)
    job.run(cfg.eval, data)
    mark_done(job, out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--gpus", type=int, default=1)
    p.add_argument("--per-gpu", type=int, default=2)
    p.add_argument("--deadline", type=float, default=1e9, help="Start no new job after this many seconds.")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return run_one(args)
    from supporttune.models.loading import local_dir, resolve

    cfg, out, data, jobs = _jobs(args)
    local_dir(resolve(cfg.defaults.get("model", "smollm2-135m")))  # fill the model cache once, before the workers
    todo = [j for j in jobs if not j.done()]
    logs = out / "gpu_logs"
    logs.mkdir(exist_ok=True)
    slots = [g for g in range(args.gpus) for _ in range(args.per_gpu)]
    running: dict[int, tuple] = {}
    t0 = time.time()
    print(f"{len(todo)} of {len(jobs)} jobs to run on {args.gpus} GPU(s) x {args.per_gpu}", flush=True)
    while todo or running:
        for slot, (proc, job, started) in list(running.items()):
            if proc.poll() is not None:
                state = "ok" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(f"[{time.time() - t0:5.0f}s] {job.name}: {state} in {time.time() - started:.0f}s", flush=True)
                del running[slot]
        free = [i for i in range(len(slots)) if i not in running]
        while todo and free and time.time() - t0 < args.deadline:
            job, slot = todo.pop(0), free.pop(0)
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": str(slots[slot])}
            cmd = [sys.executable, __file__, "--config", args.config, "--data", args.data, "--out", args.out,
                   "--one", job.name]
            log = open(logs / f"{job.name}.log", "w")
            running[slot] = (subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), job, time.time())
        if todo and time.time() - t0 >= args.deadline and not running:
            print(f"deadline: {len(todo)} job(s) not started: {', '.join(j.name for j in todo)}", flush=True)
            break
        time.sleep(2)


if __name__ == "__main__":
    main()
