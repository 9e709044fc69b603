"""`supporttune tune`: a hyperparameter search with Optuna, one normal training run per trial.

Why ask-and-tell rather than ``study.optimize``: each trial is a ``train()`` run that may be
pruned, fail, or be interrupted, and each case must leave both the study and the run directory in
a known state; the loop below says so explicitly. The study's directory::

    OUT/
      tune.yaml            the resolved TuneConfig (a rerun must match it)
      study.db             Optuna's SQLite storage: every trial's params, state, values
      data/                prepared data (when the config names raw data)
      trials/trial-0007/   a run directory written by train() (config.yaml, loss.jsonl, ...)
      tune_results.json    results first; tune_report.md and tune_search.png are drawn from it

Resume: rerunning the same command reopens the study (``load_if_exists``) and runs trials until
``--trials`` of them have finished (complete, pruned or failed). A trial stopped by Ctrl-C/SIGTERM,
or left running by a killed process, is marked failed and listed as interrupted; it does not count,
and its parameters are tried again first. One process at a time per directory (a lock file).

Pruning: ``PruneOnValLoss`` reports the validation loss that training logs (at epoch ends, or every
``pruner.report_every`` steps) with ``trial.report``; when the median pruner says so it stops
training, train() finishes the run normally (adapter, summary: a shorter run), and the trial is
told PRUNED.
"""

from __future__ import annotations

import fcntl
import math
import shutil
import time
import warnings
from contextlib import contextmanager, nullcontext
from pathlib import Path

import yaml

from .. import rundir
from ..core.errors import Interrupted, RunFailed, UserError
from ..data.split import load_split
from .space import TuneConfig
from .study import (
    ALONE,
    CONFIG,
    LOCK,
    OUT_OF_MEMORY,
    RETRY_OF,
    STUDY_DB,
    finished,
    interrupted,
    mark_interrupted,
    trial_dir,
)


def pruning_callback(trial, sign: float, report_every: int | None):
    """A TrainerCallback reporting ``sign * val_loss`` to ``trial`` and stopping training when pruned.

    ``sign`` is -1 when the objective is maximized (e.g. ROUGE-L), so the pruner, which compares in
    the study's direction, still keeps the trials with the lower validation loss.
    """
    from transformers import TrainerCallback

    class PruneOnValLoss(TrainerCallback):
        def __init__(self):
            self.pruned_at: int | None = None
            self.last_eval_step: int | None = None

        def on_step_end(self, args, state, control, **kw):
            if report_every and state.global_step % report_every == 0 and state.global_step < state.max_steps:
                control.should_evaluate = True

        def on_epoch_end(self, args, state, control, **kw):
            if state.global_step == self.last_eval_step:  # validated at this very step already
                control.should_evaluate = False

        def on_evaluate(self, args, state, control, metrics=None, **kw):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            self.last_eval_step = state.global_step
            trial.report(sign * loss, state.global_step)
            # the last evaluation ends the run anyway: a finished trial keeps its value
            if state.global_step < state.max_steps and trial.should_prune():
                self.pruned_at = state.global_step
                control.should_training_stop = True

    return PruneOnValLoss()


def _check_out(cfg: TuneConfig, out: Path, force: bool) -> None:
    """A new, empty or matching study directory; --force starts over."""
    if not out.exists() or {p.name for p in out.iterdir()} <= {LOCK}:
        return
    if force:
        shutil.rmtree(out)
        return
    saved = out / CONFIG
    if not saved.is_file():
        raise UserError(f"{out}: exists and is not a tune directory (no {CONFIG}); use another --out or --force")
    before = yaml.safe_load(saved.read_text()) or {}
    now = cfg.resolved()
    if before != now:
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        raise UserError(f"{out}: the study was made with a different tune config (differs in: {', '.join(changed)}); "
                        f"use --force to start over or another --out")


@contextmanager
def _lock(out: Path):
    with (out / LOCK).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise UserError(f"{out}: another `supporttune tune` is running on this directory") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def open_study(cfg: TuneConfig, out: Path, parallel: bool = False):
    """The study in ``out``; ``parallel``: one of several processes sharing it (tune --jobs)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # we print one line per trial ourselves
    # several processes write the one SQLite file: wait for its lock rather than fail after 5 s
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / STUDY_DB).resolve()}",
                                         engine_kwargs={"connect_args": {"timeout": 120}})
    study = optuna.create_study(storage=storage, study_name=cfg.name, direction=cfg.direction,
                                sampler=_sampler(cfg, 0), pruner=_pruner(cfg), load_if_exists=True)
    study.parallel = parallel
    return study


def _sampler(cfg: TuneConfig, number: int, parallel: bool = False):
    """TPE seeded with seed + trial number: a resumed study draws what an uninterrupted one would.

    ``parallel``: trials still running count as bad ones for the draw (constant liar), so workers that ask
    at once do not all try the same point."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # multivariate on optuna < 4
        return optuna.samplers.TPESampler(seed=cfg.sampler.seed + number, n_startup_trials=cfg.sampler.n_startup_trials,
                                          multivariate=cfg.sampler.multivariate, constant_liar=parallel)


def _pruner(cfg: TuneConfig):
    import optuna

    p = cfg.pruner
    if p.type == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)


def _recover(study, out: Path, log) -> None:
    """After a crash or kill: running trials become interrupted ones; interrupted parameters are queued again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        log(f"[trial {t.number}] was left running by an earlier process: marked interrupted")
        mark_interrupted(study, t.number)
    queued = {t.user_attrs.get(RETRY_OF) for t in study.get_trials(deepcopy=False)}
    for number in sorted(interrupted(study) - queued):
        t = study.get_trials(deepcopy=False)[number]
        shutil.rmtree(trial_dir(out, number) / rundir.CHECKPOINTS, ignore_errors=True)  # never resumed
        alone = {ALONE: True} if t.user_attrs.get(ALONE) else {}  # an alone trial stays alone
        study.enqueue_trial(t.params, user_attrs={RETRY_OF: number, **alone})
        log(f"[trial {number}] was interrupted: its parameters are tried again next")


def _preflight(cfg: TuneConfig, data: Path) -> None:
    """Checks that need the prepared data: a validation split, and the target modules of every model/method."""
    from ..train.stage import validate

    if not load_split(data, "val", required=False):
        raise UserError(f"{data}: tune needs a validation split (val.jsonl is missing or empty)")
    seen = set()
    for key, param in cfg.search.items():
        for value in param.extremes():
            t = cfg.trial_config({key: value}, data, Path("."), "check")
            sig = (t.model, t.method, tuple(t.targets))
            if sig not in seen:
                seen.add(sig)
                validate(t)


def format_params(params: dict) -> str:
    def one(v):
        if isinstance(v, float):
            return f"{v:.3g}"
        return "+".join(v) if isinstance(v, list) else str(v)

    return " ".join(f"{k}={one(v)}" for k, v in params.items())


def _objective_value(cfg: TuneConfig, summary: dict, run: Path, data: Path) -> float | None:
    if cfg.objective == "val_loss":
        return summary.get("final_val_loss")
    from ..evaluate.config import EvalConfig
    from ..evaluate.stage import evaluate

    metrics = evaluate(EvalConfig(**{**cfg.eval, "run": run, "data": data, "split": "val", "force": True}))
    return metrics.get(cfg.objective)


def ask(cfg: TuneConfig, study):
    """The next trial: TPE reseeded by the trial count (resumable), a queued retry first."""
    study.sampler = _sampler(cfg, len(study.get_trials(deepcopy=False)), getattr(study, "parallel", False))
    return study.ask(cfg.distributions())


def _one_trial(cfg: TuneConfig, study, data: Path, out: Path, log, callbacks: list | None) -> None:
    run_trial(cfg, study, ask(cfg, study), data, out, log, callbacks)


def run_trial(cfg: TuneConfig, study, trial, data: Path, out: Path, log, callbacks: list | None) -> None:
    """Train (and evaluate) one asked trial and tell the study how it ended.

    In a --jobs study (``study.parallel``) the trial holds its turn on the GPU (gpu_share.gpu_turn) while it
    runs, and one that runs out of GPU memory next to other trials is queued again to run alone."""
    from optuna.trial import TrialState

    from ..core.memory import free_memory
    from .gpu_share import gpu_turn, retry_alone

    params = cfg.decode(trial.params)
    run = trial_dir(out, trial.number)
    tcfg = cfg.trial_config(params, data, run, run.name)
    retry, alone = trial.user_attrs.get(RETRY_OF), bool(trial.user_attrs.get(ALONE))
    parallel = getattr(study, "parallel", False)
    oom_before = retry is not None and OUT_OF_MEMORY in study.get_trials(deepcopy=False)[retry].user_attrs
    why = "ran out of GPU memory next to other trials" if oom_before else "was interrupted"
    log(f"[trial {trial.number}] {format_params(params)}" + (f" (again: trial {retry} {why})" if retry is not None else ""))
    if alone and parallel:
        log(f"[trial {trial.number}] runs alone: waits until the running trials finish")
    try:
        with gpu_turn(out, alone) if parallel else nullcontext():
            failure = _attempt(cfg, study, trial, tcfg, run, data, log, callbacks)
            free_memory()  # before the turn ends: the failed run's frames are gone, so its model is freed too
    except (Interrupted, KeyboardInterrupt):
        mark_interrupted(study, trial.number)
        raise Interrupted(f"interrupted in trial {trial.number}; rerun the same command to continue "
                          f"(that trial is tried again)") from None
    if failure is None:
        return
    message, oom = failure
    if oom and parallel and not alone:
        retry_alone(study, trial, out, message)
        log(f"[trial {trial.number}] out of GPU memory next to other trials: tried again alone")
        return
    if oom and alone:
        message = f"out of GPU memory even alone: {message}"
    trial.set_user_attr("error", message)
    study.tell(trial, state=TrialState.FAIL)
    log(f"[trial {trial.number}] FAILED ({message})")


def _attempt(cfg: TuneConfig, study, trial, tcfg, run: Path, data: Path, log,
             callbacks: list | None) -> tuple[str, bool] | None:
    """Train, evaluate and tell a result; a failure comes back untold as (message, out of GPU memory?).

    Not as the exception itself: its traceback would keep the failed run's model (and GPU memory) alive."""
    from optuna.trial import TrialState

    from ..train.stage import train
    from .gpu_share import out_of_memory

    pruner = pruning_callback(trial, 1.0 if cfg.direction == "minimize" else -1.0, cfg.pruner.report_every)
    try:
        summary = train(tcfg, callbacks=[pruner, *(callbacks or [])])
        if pruner.pruned_at is not None:
            study.tell(trial, state=TrialState.PRUNED)
            log(f"[trial {trial.number}] pruned at step {pruner.pruned_at} (validation loss above the median)")
            return None
        value = _objective_value(cfg, summary, run, data)
        if value is None or not math.isfinite(value):
            raise RunFailed(f"objective {cfg.objective} is {value}")
        study.tell(trial, float(value))
        log(f"[trial {trial.number}] {cfg.objective} {value:.4f} (best so far: {study.best_value:.4f}, "
            f"trial {study.best_trial.number})")
    except Interrupted:  # a RunFailed, but run_trial marks it interrupted
        raise
    except (UserError, RunFailed, RuntimeError, ValueError, OSError, MemoryError) as e:
        return f"{type(e).__name__}: {e}", out_of_memory(e)
    return None


def run_tune(cfg: TuneConfig, out: Path, trials: int, timeout: float | None = None, force: bool = False,
             log=print, callbacks: list | None = None, jobs: int = 1) -> dict:
    """Run (or continue) the search in ``out`` until ``trials`` trials have finished; returns tune_results.json.

    ``timeout``: start no new trial after this many seconds (a running trial is not cut short).
    ``callbacks``: extra TrainerCallbacks for every trial's training (tests use them to interrupt).
    ``jobs``: trials at once, each in a worker process sharing the study (tune/parallel.py).
    """
    from ..suite.run import prepare_data
    from .report import write_results

    if trials < 1:
        raise UserError(f"--trials must be at least 1 (got {trials})")
    if timeout is not None and timeout <= 0:
        raise UserError(f"--timeout must be positive (got {timeout})")
    out = Path(out)
    _check_out(cfg, out, force)
    out.mkdir(parents=True, exist_ok=True)
    with _lock(out):
        (out / CONFIG).write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))
        data = prepare_data(cfg, out)
        _preflight(cfg, data)
        study = open_study(cfg, out)
        _recover(study, out, log)
        if not study.get_trials(deepcopy=False):  # a new study: its start points first
            for i, point in enumerate(cfg.start_with):
                study.enqueue_trial(cfg.encode(point), user_attrs={"start_with": i})
        started = time.perf_counter()
        try:
            if jobs > 1:
                from .parallel import run_workers

                run_workers(cfg, out, data, trials, jobs, timeout, log)
            while jobs == 1 and (done := len(finished(study))) < trials:
                if timeout is not None and time.perf_counter() - started > timeout:
                    log(f"timeout: {done} of {trials} trials finished; rerun the same command to continue")
                    break
                _one_trial(cfg, study, data, out, log, callbacks)
        finally:  # also after Ctrl-C: the results always describe what the study holds
            results = write_results(study, cfg, out, trials)
    return results
