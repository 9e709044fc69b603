"""`tune --jobs N`: N trials at once, each in its own worker process sharing the study.

Why: a small base leaves a GPU mostly idle (the recipe trains at a few thousand tokens/s on an H100), so
several trials side by side cost little more wall time than one. The parent (search.run_tune) keeps
what it does for one job: the directory lock, the data, recovering left-over trials, the results. Each
worker opens the same SQLite study and runs the ask-train-tell loop until the study has claimed
``trials`` trials; asking is serialized by a file lock, so there is never one trial too many. TPE runs
with a constant liar (search._sampler), so workers asking at once do not draw the same point; which
worker asks when depends on timing, so a --jobs N study is not reproducible draw for draw (one job is).

Out of GPU memory: the trials share the card's memory, and a big trial may run out of it only because of
its neighbours. Such a trial (gpu_share.out_of_memory: torch's OOM, or cuBLAS/cuDNN failing to get workspace)
is not told FAIL: it is marked interrupted (so claimed() and finished() skip it and the results count it
once, as interrupted), its checkpoints are dropped, and its parameters are queued again with ``alone`` set.
That retry runs alone: every trial holds a shared lock on ``.gpu.lock`` while it runs, the alone one takes
it exclusively, so it waits for the running trials and no new trial starts until it is done
(gpu_share.gpu_turn). Only an alone trial that runs out of memory fails ("out of GPU memory even alone").
With one job nothing of this applies: an out-of-memory trial fails as any other.

Interrupts: the workers sit in their own process group, so Ctrl-C reaches the parent only; the parent
passes one SIGINT (or the SIGTERM it got) to each worker, whose train() saves and stops, marks its trial
interrupted (tried again on the next run), and exits; then the parent raises Interrupted. A worker whose
parent is gone starts no new trial.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from ..core.errors import Interrupted, RunFailed
from .space import TuneConfig
from .study import finished, interrupted

ASK_LOCK = ".ask.lock"
INTERRUPTED_EXIT = 130


def claimed(study) -> int:
    """Trials that count towards --trials or are running now (interrupted ones excluded)."""
    from optuna.trial import TrialState

    cut = interrupted(study)
    running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)) if t.number not in cut]
    return len(finished(study)) + len(running)


@contextmanager
def _asking(out: Path):
    with (out / ASK_LOCK).open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _worker(cfg: TuneConfig, out: Path, data: Path, trials: int, deadline: float | None, index: int, jobs: int,
            ready, parent: int) -> None:
    os.setpgrp()  # Ctrl-C in the terminal goes to the parent, which passes on exactly one signal
    import torch

    from .search import ask, open_study, run_trial

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))  # N workers never oversubscribe the CPU

    def log(message: str) -> None:
        print(f"[worker {index}] {message}", file=sys.stderr, flush=True)

    study = open_study(cfg, out, parallel=True)
    ready.wait()  # every worker has imported torch: they start together
    try:
        while os.getppid() == parent:
            if deadline is not None and time.time() > deadline:
                break
            with _asking(out):
                if claimed(study) >= trials:
                    break
                trial = ask(cfg, study)
            trial.set_user_attr("worker", index)
            run_trial(cfg, study, trial, data, out, log, None)
    except (Interrupted, KeyboardInterrupt) as e:
        log(str(e) or "interrupted")
        sys.exit(INTERRUPTED_EXIT)


def run_workers(cfg: TuneConfig, out: Path, data: Path, trials: int, jobs: int, timeout: float | None, log) -> None:
    """Run ``jobs`` workers until the study has ``trials`` finished trials (or the timeout); see the module doc."""
    ctx = multiprocessing.get_context("spawn")  # CUDA and fork do not mix
    ready = ctx.Barrier(jobs)
    deadline = None if timeout is None else time.time() + timeout
    workers = [ctx.Process(target=_worker, name=f"tune-worker-{i}",
                           args=(cfg, out, data, trials, deadline, i, jobs, ready, os.getpid())) for i in range(jobs)]
    stopping: list[int] = []

    def forward(signum, frame):
        if not stopping:  # the first signal: each worker saves and stops its trial
            stopping.append(signum)
            for w in workers:
                if w.is_alive():
                    os.kill(w.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    log(f"{jobs} workers: {trials} trials in all, {jobs} at a time")
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopping:
        raise Interrupted(f"interrupted with {len(finished_now(cfg, out))} of {trials} trials finished; rerun the same "
                          f"command to continue (interrupted trials are tried again)")
    done = len(finished_now(cfg, out))
    if done < trials and deadline is not None and time.time() > deadline:
        log(f"timeout: {done} of {trials} trials finished; rerun the same command to continue")
    failed = [f"worker {i} exited with code {w.exitcode}" for i, w in enumerate(workers) if w.exitcode]
    if failed:
        raise RunFailed("; ".join(failed) + " (its log is above)")


def finished_now(cfg: TuneConfig, out: Path) -> list:
    from .search import open_study

    return finished(open_study(cfg, out))
