"""`tune --jobs N` on one GPU: tell out-of-memory failures apart, and let a trial that needs the whole card run alone.

Why: N trials side by side share one card's memory. A big trial (long context, deep history) that runs out of it
next to the others would fail in its own right and the search would learn, wrongly, that its parameters are bad
(measured: 47 of 77 trials failed so with --jobs 8 on one H100, mostly the big ones). So such a trial is marked
interrupted (it does not count), its parameters are queued again with ``alone`` set, and that retry waits until
the running trials finish and keeps new ones from starting until it is done (``gpu_turn``). Only an alone trial
that still runs out of memory fails.
"""

from __future__ import annotations

import fcntl
import shutil
from contextlib import contextmanager
from pathlib import Path

from .. import rundir
from .study import ALONE, OUT_OF_MEMORY, RETRY_OF, mark_interrupted, trial_dir

GPU_LOCK = ".gpu.lock"  # shared by running trials, exclusive for an alone one
GATE_LOCK = ".gpu-gate.lock"  # taken briefly by each trial on its way in; held by an alone trial while it waits

# Messages of RuntimeErrors that mean the card's memory ran out. Besides PyTorch's own "CUDA out of memory", on a
# GPU shared by several processes the libraries fail on their own allocations: cuBLAS cannot get its workspace
# (ALLOC_FAILED, or EXECUTION_FAILED from cublasGemmEx) and cuDNN's attention graph cannot execute without its
# workspace (mha_graph.execute). All of these were seen with 8 trials sharing one H100.
_OOM_MESSAGES = ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "CUBLAS_STATUS_EXECUTION_FAILED",
                 "mha_graph.execute")


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it was raised from) says the accelerator's memory ran out."""
    import torch

    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:  # an error re-raised as another (RunFailed from ...) still counts
        seen.add(id(e))
        if isinstance(e, torch.OutOfMemoryError):
            return True
        if isinstance(e, RuntimeError) and any(m in str(e) for m in _OOM_MESSAGES):
            return True
        e = e.__cause__ or (None if e.__suppress_context__ else e.__context__)
    return False


def retry_alone(study, trial, out: Path, message: str) -> None:
    """Mark ``trial`` interrupted (not counted), drop its checkpoints, and queue its parameters to run alone."""
    trial.set_user_attr(OUT_OF_MEMORY, message)  # the report says why this one was interrupted
    mark_interrupted(study, trial.number)
    shutil.rmtree(trial_dir(out, trial.number) / rundir.CHECKPOINTS, ignore_errors=True)  # never resumed (as _recover)
    study.enqueue_trial(trial.params, user_attrs={RETRY_OF: trial.number, ALONE: True})


@contextmanager
def gpu_turn(out: Path, alone: bool = False):
    """Hold the GPU for one trial: shared with other trials, or ``alone``; a readers-writer lock over ``out``.

    Every trial takes ``.gpu.lock``: shared normally, exclusively when alone, so an alone trial waits until the
    running trials are done. flock grants a shared lock while someone waits for the exclusive one, so new trials
    would keep starving it; hence the gate: a trial takes ``.gpu-gate.lock`` exclusively before its lock on
    ``.gpu.lock`` and a normal one lets it go right after, while an alone trial keeps it for its whole run, so
    trials asked meanwhile queue behind it. The locks belong to the open files: closing them (at the end, after
    an error, or when the process dies) releases both.
    """
    with (Path(out) / GATE_LOCK).open("a") as gate, (Path(out) / GPU_LOCK).open("a") as gpu:
        fcntl.flock(gate, fcntl.LOCK_EX)  # behind an alone trial that waits or runs
        fcntl.flock(gpu, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)  # the next trial may start beside this one
        yield
