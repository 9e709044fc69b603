"""Runs spread over N processes, on the standard stack: torch's elastic launcher + accelerate.

``supporttune train|evaluate|run --nproc N`` re-launches the same command through
``torch.distributed.launcher`` (what ``torchrun --standalone`` runs), one worker per GPU (or CPU
processes over gloo). Inside a worker the HF Trainer, with accelerate underneath, does DDP or FSDP.
This module holds the little our own code needs around that:

- who am I (``rank``/``world_size``), wait for the others, gather per-rank results in input order;
- only rank 0 writes files and talks to the terminal (other ranks log to a file per rank);
- a worker that fails records its error; the launcher ends every rank and raises that error as
  one line (the first rank that failed, with the path of its log), instead of hanging.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, TypeVar

from .errors import Interrupted, RunFailed, UserError

T = TypeVar("T")
LOG_DIR_ENV = "SUPPORTTUNE_RANK_LOGS"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def launched() -> bool:
    """True inside a worker started by the launcher (even a run of one process, e.g. FSDP on 1 GPU)."""
    return "RANK" in os.environ and "LOCAL_RANK" in os.environ


def active() -> bool:
    """True inside a worker of a run of several processes (collectives are needed)."""
    return launched() and world_size() > 1


def is_main() -> bool:
    return rank() == 0


def backend(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def setup(device: str) -> None:
    """Join the process group once, through accelerate's shared state (which the Trainer reuses)."""
    if not launched():
        return
    import torch
    from accelerate import PartialState

    if device == "cuda":
        torch.cuda.set_device(local_rank())
    PartialState(cpu=device == "cpu", backend=backend(device))


def _group_ready() -> bool:
    import torch.distributed as dist

    return active() and dist.is_available() and dist.is_initialized()


def teardown() -> None:
    """Leave the process group when a launched command ends well (else torch warns at exit that
    destroy_process_group() was not called, on every multi-GPU run). A failing rank skips it: the
    launcher ends every rank then."""
    if not launched():
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if _group_ready():
        import torch.distributed as dist

        dist.barrier()


def broadcast(value: T) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not _group_ready():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather(value: T) -> list[T]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not _group_ready():
        return [value]
    import torch.distributed as dist

    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def shard(items: list[T]) -> list[T]:
    """This rank's share of ``items``: every N-th one, so length-sorted work is spread evenly."""
    return items[rank()::world_size()]


def gather_ordered(part: dict[int, T]) -> list[T]:
    """Merge every rank's ``{index: item}`` into one list in index order (on every rank)."""
    merged: dict[int, T] = {}
    for piece in all_gather(part):
        merged.update(piece)
    return [merged[i] for i in sorted(merged)]


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any: lets all ranks stop at the same step."""
    if not _group_ready():
        return flag
    return any(all_gather(bool(flag)))


@contextlib.contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. fills a cache, resets a directory); the others after it."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


# ---------------------------------------------------------------- worker side


def worker_prologue() -> None:
    """In a launched worker: rank 0 keeps the terminal; other ranks write to their own log file."""
    logs = os.environ.get(LOG_DIR_ENV)
    if not launched() or not logs or is_main():
        return
    os.environ["SUPPORTTUNE_PROGRESS"] = "0"
    fd = os.open(Path(logs) / f"rank{rank()}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)


def record_failure(error: BaseException, exit_code: int) -> None:
    """Leave this rank's error where the launcher will find it (and its traceback in the rank's log)."""
    logs = os.environ.get(LOG_DIR_ENV)
    if not launched() or not logs:
        return
    if isinstance(error, KeyboardInterrupt):
        message = "interrupted (before training had a step to checkpoint); rerun with --resume or --force"
    elif isinstance(error, (UserError, RunFailed)):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    doc = {"rank": rank(), "error": message, "exit_code": exit_code, "time": time.time(),
           "interrupted": isinstance(error, (Interrupted, KeyboardInterrupt))}
    Path(logs, f"rank{rank()}.error.json").write_text(json.dumps(doc))
    with open(Path(logs) / f"rank{rank()}.log", "a") as f:
        traceback.print_exception(error, file=f)


# ---------------------------------------------------------------- launcher side


def _first_failure(logs: Path) -> dict | None:
    errors = [json.loads(p.read_text()) for p in logs.glob("rank*.error.json")]
    if not errors:
        return None
    real = [e for e in errors if not e["interrupted"]] or errors
    return min(real, key=lambda e: e["time"])


def launch(args: list[str], nproc: int, device: str) -> None:
    """Run ``supporttune ARGS`` as ``nproc`` workers; return when all finished, raise if any failed."""
    import logging

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if device == "cuda":
        import torch

        visible = torch.cuda.device_count()
        if nproc > visible:
            raise UserError(f"--nproc {nproc} needs {nproc} GPUs, but {visible} {'is' if visible == 1 else 'are'} visible")
    logs = Path(tempfile.mkdtemp(prefix="supporttune-ranks-"))
    os.environ[LOG_DIR_ENV] = str(logs)
    if "OMP_NUM_THREADS" not in os.environ:  # N processes must not each take every core
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we report failures ourselves
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"supporttune-{os.getpid()}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.2)
    try:
        elastic_launch(config, sys.executable)("-m", "supporttune", *args)
    except (SignalException, ChildFailedError) as e:
        raise _launch_error(e, logs, nproc) from None
    import shutil

    shutil.rmtree(logs, ignore_errors=True)


def _launch_error(e: Exception, logs: Path, nproc: int) -> Exception:
    """One error for the whole run: the first rank's own (an interrupt gives the checkpoint it saved)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    first = _first_failure(logs)
    if first is None:
        if isinstance(e, ChildFailedError):
            rank_, failure = e.get_first_failure()
            return RunFailed(f"rank {rank_} died (exit code {failure.exitcode}) without a message; see {logs}/rank{rank_}.log")
        return Interrupted(f"interrupted before any rank started work (rank logs: {logs})")
    if first["interrupted"]:
        return Interrupted(first["error"])
    where = f"see {logs}/rank{first['rank']}.log" if first["rank"] else f"rank logs: {logs}"
    kind = UserError if first["exit_code"] == 2 else RunFailed
    return kind(f"rank {first['rank']} of {nproc} failed: {first['error']} ({where})")
