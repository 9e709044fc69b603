"""`supporttune run`: prepare -> train every variant -> evaluate each -> baselines -> compare -> report.

Resumable: a variant whose ``eval/metrics.json`` exists and whose resolved config hash matches is
skipped; a half-trained one continues from its checkpoint. A variant that fails is recorded with
its error (``failed.json``) and the suite goes on; the report lists it as failed.

With ``--nproc N`` every rank runs this loop: training is DDP/FSDP, generation is sharded, and
rank 0 alone writes. There a failed variant ends the whole run instead (the ranks could not agree
on going on after an error on one of them); ``--resume`` then continues where it stopped.
"""

from __future__ import annotations

import time
import traceback
from importlib import resources
from pathlib import Path

import yaml

from . import distributed
from .batching import split_global_batch
from .config import SUITE_PRESETS, EvalConfig, PrepareConfig, SuiteConfig, TrainConfig, validation_message
from .errors import Interrupted, RunFailed, UserError
from .io import read_json, read_yaml_mapping, write_json
from .memory import free_memory
from .rundir import saved_identity

PRESETS = SUITE_PRESETS  # configs/<name>.yaml (full = default.yaml); `run --preset` offers exactly these


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return Path(str(resources.files("supporttune") / "configs" / f"{'default' if name == 'full' else name}.yaml"))


def load_suite(path: Path, overrides: dict | None = None) -> SuiteConfig:
    from pydantic import ValidationError

    doc = read_yaml_mapping(path, "suite config")
    for key, value in (overrides or {}).items():
        if key in ("model",):
            doc.setdefault("defaults", {})[key] = value
        else:
            doc[key] = value
    try:
        return SuiteConfig(**doc)
    except ValidationError as e:
        raise UserError(f"{path}: {validation_message(e)}") from None


def check_inputs(cfg: SuiteConfig) -> None:
    """Before the suite directory is touched: the data exists and every variant's base model resolves."""
    from .models import resolve

    if cfg.data != "builtin" and not Path(cfg.data).exists():
        raise UserError(f"{cfg.data}: data not found (give a raw data file, 'builtin' or a prepared directory)")
    for model in {TrainConfig(**{**cfg.defaults, **v}).model for v in cfg.expanded()}:
        resolve(model)


def preflight(cfg: SuiteConfig, nproc: int) -> None:
    """Checks for a multi-process launch: every variant's global batch must split over ``nproc``."""
    for v in cfg.expanded():
        t = TrainConfig(**{**cfg.defaults, **v})
        try:
            split_global_batch(t.batch_size, t.grad_accum, nproc)
        except UserError as e:
            raise UserError(f"variant {v['name']}: {e}") from None


def _prepare_data(cfg: SuiteConfig, out: Path) -> Path:
    given = Path(cfg.data)
    if given.is_dir() and (given / "train.jsonl").is_file():
        return given
    from .data.prepare import prepare

    target = out / "data"
    pcfg = PrepareConfig(**{**cfg.prepare, "input": cfg.data, "out": target, "force": True})
    report = target / "prepare_report.json"
    if report.is_file() and read_json(report).get("config", {}) == {**pcfg.resolved(), "force": True}:
        return target
    prepare(pcfg)
    return target


def _done(dir_: Path, digest: str) -> bool:
    marker = dir_ / "suite_entry.json"
    return (dir_ / "eval" / "metrics.json").is_file() and marker.is_file() and read_json(marker).get("digest") == digest


def _run_variant(tcfg: TrainConfig, ecfg: dict, data: Path) -> None:
    from .evaluate import evaluate
    from .train import train

    out = Path(tcfg.out)
    resumable = saved_identity(out) == tcfg.identity()
    train(tcfg.model_copy(update={"resume": resumable, "force": not resumable}))
    evaluate(EvalConfig(**{**ecfg, "run": out, "data": data, "force": True}))


def _baseline_cfg(name: str, cfg: SuiteConfig, data: Path, out: Path) -> EvalConfig:
    """Baselines use the variants' base model and prompt format, so the comparison is like for like."""
    d = TrainConfig(**cfg.defaults)
    return EvalConfig(**{**cfg.eval, "baseline": name, "model": d.model, "data": data, "out": out,
                         "prompt_format": d.prompt_format, "tags": d.tags, "history": d.history,
                         "retrieval": d.retrieval, "force": True})


def run_suite(cfg: SuiteConfig, out: Path, force: bool = False, log=print) -> dict:
    """Run (or resume) the whole suite into ``out``; returns the results document."""
    from .models import pick_device

    out = Path(out)
    distributed.setup(pick_device(cfg.defaults.get("device", "auto")))
    main = distributed.is_main()
    log = log if main else (lambda _m: None)
    data = None
    if main:
        import shutil

        if force and out.exists():
            shutil.rmtree(out)
        fresh = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        (out / "suite.yaml").write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))
        try:
            data = _prepare_data(cfg, out)
        except UserError:  # unreadable data: leave no half-made suite that a rerun would refuse
            if fresh:
                shutil.rmtree(out, ignore_errors=True)
            raise
    data = distributed.broadcast(data)
    t0 = time.perf_counter()
    eta = _Eta()
    entries = []
    jobs = [("variant", v["name"], v) for v in cfg.expanded()] + [("baseline", b, None) for b in cfg.baselines]
    for i, (kind, name, variant) in enumerate(jobs, 1):
        dir_ = out / ("variants" if kind == "variant" else "baselines") / name
        if kind == "variant":
            tcfg = TrainConfig(**{**cfg.defaults, **variant, "data": data, "out": dir_})
            digest = tcfg.digest() + "-" + EvalConfig(baseline="constant", out=dir_, **cfg.eval).digest()
        else:
            digest = _baseline_cfg(name, cfg, data, dir_).digest() + "-" + _data_digest(data)
        entry = {"name": name, "kind": kind, "dir": str(dir_.relative_to(out)), "digest": digest}
        if _done(dir_, digest):
            log(f"[{i}/{len(jobs)}] {kind} {name}: done earlier, skipped")
            entries.append({**entry, "status": "ok", "skipped": True})
            continue
        log(f"[{i}/{len(jobs)}] {kind} {name}: running (elapsed {_clock(time.perf_counter() - t0)}"
            f"{eta.left([k for k, _, _ in jobs[i - 1:]])})")
        started = time.perf_counter()
        try:
            if kind == "variant":
                _run_variant(tcfg, cfg.eval, data)
            else:
                from .evaluate import evaluate

                evaluate(_baseline_cfg(name, cfg, data, dir_))
            if main:
                write_json(dir_ / "suite_entry.json", {**entry, "status": "ok"})
            distributed.barrier()
            entries.append({**entry, "status": "ok", "seconds": round(time.perf_counter() - started, 1)})
            eta.done(kind, time.perf_counter() - started)
        except Interrupted:
            raise  # Ctrl-C / SIGTERM: stop the suite; `--resume` continues from the checkpoint
        except (UserError, RunFailed, RuntimeError, ValueError, OSError, MemoryError) as e:
            if distributed.launched():
                raise
            err = f"{type(e).__name__}: {e}"
            log(f"[{i}/{len(jobs)}] {kind} {name}: FAILED ({err})")
            dir_.mkdir(parents=True, exist_ok=True)
            write_json(dir_ / "failed.json", {**entry, "error": err, "traceback": traceback.format_exc()})
            entries.append({**entry, "status": "failed", "error": err})
        finally:
            free_memory()
    if not main:
        return {}
    write_json(out / "suite_status.json", {"entries": entries, "seconds": round(time.perf_counter() - t0, 1)})
    from .report.build import build_results
    from .report.render import render_report

    results = build_results(out)
    render_report(out)
    return results


def _data_digest(data: Path) -> str:
    from .io import sha256_file

    return sha256_file(Path(data) / "test.jsonl")[:12]


class _Eta:
    """The suite's remaining time: each job left costs the mean of the finished jobs of its kind.

    A variant (train + evaluate) and a baseline differ by orders of magnitude, so they are timed
    apart, and a kind not timed yet is named rather than guessed.
    """

    def __init__(self):
        self.seconds: dict[str, list[float]] = {"variant": [], "baseline": []}

    def done(self, kind: str, seconds: float) -> None:
        self.seconds[kind].append(seconds)

    def left(self, kinds: list[str]) -> str:
        means = {k: sum(v) / len(v) for k, v in self.seconds.items() if v}
        if not means:
            return ""
        untimed = [k for k in kinds if k not in means]
        more = f" + {len(untimed)} {untimed[0]}{'s' if len(untimed) > 1 else ''} not timed yet" if untimed else ""
        return f", about {_clock(sum(means[k] for k in kinds if k in means))} left{more}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
