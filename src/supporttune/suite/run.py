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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .. import suitedir
from ..config import load_yaml_config
from ..core import distributed
from ..core.errors import Interrupted, RunFailed, UserError
from ..core.io import read_json, sha256_json, write_json
from ..core.memory import free_memory
from ..data.config import PrepareConfig
from ..data.split import PREPARE_REPORT
from ..evaluate.config import EvalConfig, EvalOptions
from ..inference.options import decode_identity
from ..prompting.spec import PromptOptions
from ..rundir import saved_identity
from ..train.collate import split_global_batch
from ..train.config import TrainConfig
from .config import SUITE_PRESETS, SuiteConfig, dependency_order

PRESETS = SUITE_PRESETS  # configs/<name>.yaml (full = default.yaml); `run --preset` offers exactly these


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        raise UserError(f"unknown preset '{name}' (choose from {', '.join(PRESETS)})")
    return Path(str(resources.files("supporttune") / "configs" / f"{'default' if name == 'full' else name}.yaml"))


def load_suite(path: Path, overrides: dict | None = None) -> SuiteConfig:
    return load_yaml_config(SuiteConfig, path, "suite config", overrides)


def check_inputs(cfg: SuiteConfig) -> None:
    """Before the suite directory is touched: the data exists, and every variant's base model resolves and
    has the variant's target modules (a bad variant in any position fails now, naming it, not after others trained)."""
    from ..models.loading import resolve
    from ..train import methods
    from ..train.stage import check_targets

    if cfg.data != "builtin" and not Path(cfg.data).exists():
        raise UserError(f"{cfg.data}: data not found (give a raw data file, 'builtin' or a prepared directory)")
    checked: dict[tuple, str] = {}
    for v in cfg.expanded():
        t = TrainConfig(**{**cfg.defaults, **v})
        key = (t.model, t.method, tuple(t.targets))  # one meta model per distinct check, not per variant
        if key in checked:
            continue
        try:
            check_targets(t, methods.get(t.method), resolve(t.model))
        except UserError as e:
            raise UserError(f"variant {v['name']}: {e}") from None
        checked[key] = v["name"]


def validate_variants(cfg: SuiteConfig, data: Path) -> None:
    """Every variant as `train` validates it (method, base model, target modules, its data splits, report
    targets), once the data is prepared and before anything trains."""
    from ..train.stage import validate

    seen = set()
    for v in cfg.expanded():
        t = TrainConfig(**{**cfg.defaults, **v, "data": data})
        key = (t.model, t.method, tuple(t.targets), tuple(t.report_to))
        if key in seen:
            continue
        try:
            validate(t)
        except UserError as e:
            raise UserError(f"variant {v['name']}: {e}") from None
        seen.add(key)


def preflight(cfg: SuiteConfig, nproc: int) -> None:
    """Checks for a multi-process launch: every variant's global batch must split over ``nproc``."""
    for v in cfg.expanded():
        t = TrainConfig(**{**cfg.defaults, **v})
        try:
            split_global_batch(t.batch_size, t.grad_accum, nproc)
        except UserError as e:
            raise UserError(f"variant {v['name']}: {e}") from None


def prepare_data(cfg: SuiteConfig, out: Path) -> Path:
    given = Path(cfg.data)
    if given.is_dir() and (given / "train.jsonl").is_file():
        return given
    from ..data.prepare import prepare

    target = out / suitedir.DATA
    pcfg = PrepareConfig(**{**cfg.prepare, "input": cfg.data, "out": target, "force": True})
    report = target / PREPARE_REPORT
    if report.is_file() and read_json(report).get("config", {}) == {**pcfg.resolved(), "force": True}:
        return target
    prepare(pcfg)
    return target


def _done(dir_: Path, digest: str) -> bool:
    marker = dir_ / suitedir.ENTRY
    return suitedir.evaluated(dir_) and marker.is_file() and read_json(marker).get("digest") == digest


def _run_variant(tcfg: TrainConfig, ecfg: dict, data: Path) -> None:
    from ..evaluate.stage import evaluate
    from ..train.stage import train

    out = Path(tcfg.out)
    resumable = saved_identity(out) == tcfg.identity()
    train(tcfg.model_copy(update={"resume": resumable, "force": not resumable}))
    evaluate(EvalConfig(**{**ecfg, "run": out, "data": data, "force": True}))


def _baseline_cfg(name: str, cfg: SuiteConfig, data: Path, out: Path) -> EvalConfig:
    """Baselines use the variants' base model and prompt format, so the comparison is like for like."""
    d = TrainConfig(**cfg.defaults)
    prompt = {k: getattr(d, k) for k in PromptOptions.model_fields}
    return EvalConfig(**{**cfg.eval, **prompt, "baseline": name, "model": d.model, "data": data, "out": out,
                         "force": True})


@dataclass
class Job:
    """One entry of a suite: a variant to train and evaluate, or a baseline to evaluate."""

    kind: str  # "variant" | "baseline"
    name: str
    dir: Path
    digest: str  # train/eval settings + test data content (not paths): a finished job with it is skipped, anywhere
    train: TrainConfig | None = None
    eval: EvalConfig | None = None
    pairs: dict | None = None  # PairsConfig fields: make the child's preference file first (`preferences: auto`)

    def entry(self, out: Path) -> dict:
        return {"name": self.name, "kind": self.kind, "dir": str(self.dir.relative_to(out)), "digest": self.digest}

    def done(self) -> bool:
        return _done(self.dir, self.digest)

    def run(self, ecfg: dict, data: Path) -> None:
        if self.pairs is not None:
            from ..pairs.auto import make_pairs
            from ..pairs.config import PairsConfig

            make_pairs(PairsConfig(**{"device": self.train.device, **self.pairs, "run": self.train.from_run,
                                      "data": data, "out": self.train.preferences, "force": True}))
        if self.kind == "variant":
            _run_variant(self.train, ecfg, data)
        else:
            from ..evaluate.stage import evaluate

            evaluate(self.eval)


def plan_jobs(cfg: SuiteConfig, out: Path, data: Path) -> list[Job]:
    """Every entry of the suite, variants first (a preference child after its parent), with the digests that
    make resuming safe (a child's includes its parent's, so retraining the parent retrains the child)."""
    jobs, by_name = [], {}
    for v in dependency_order(cfg.expanded()):
        dir_ = suitedir.entry_dir(out, "variant", v["name"])
        pairs, own = None, {}
        if v.get("from_run") is not None:
            parent = by_name[str(v["from_run"])]
            auto = str(v.get("preferences")) == "auto"
            own = {"from_run": parent.dir,
                   "preferences": suitedir.preferences_path(out, v["name"]) if auto else v["preferences"]}
            pairs = dict(cfg.pairs) if auto else None
        tcfg = TrainConfig(**{**cfg.defaults, **v, **own, "data": data, "out": dir_})
        ident = {k: v for k, v in tcfg.identity().items() if k not in ("data", "from_run", "preferences")}
        if own:
            ident["parent"] = parent.digest
            ident["preferences"] = {"auto": pairs} if pairs is not None else _file_digest(Path(own["preferences"]))
        digest = "-".join((sha256_json(ident)[:12], _eval_digest(EvalOptions(**cfg.eval)),
                           _data_digest(data)))
        by_name[v["name"]] = Job("variant", v["name"], dir_, digest, train=tcfg, pairs=pairs)
        jobs.append(by_name[v["name"]])
    for b in cfg.baselines:
        dir_ = suitedir.entry_dir(out, "baseline", b)
        ecfg = _baseline_cfg(b, cfg, data, dir_)
        jobs.append(Job("baseline", b, dir_, _eval_digest(ecfg) + "-" + _data_digest(data), eval=ecfg))
    return jobs


def mark_done(job: Job, out: Path) -> None:
    write_json(job.dir / suitedir.ENTRY, {**job.entry(out), "status": "ok"})


def start_suite(cfg: SuiteConfig, out: Path, force: bool = False) -> Path:
    """Create (or reuse) the suite directory, record the config, prepare the data; returns the data dir."""
    import shutil

    if force and out.exists():
        shutil.rmtree(out)
    fresh = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    (out / suitedir.SUITE_YAML).write_text(yaml.safe_dump(cfg.resolved(), sort_keys=False))
    try:
        data = prepare_data(cfg, out)
        validate_variants(cfg, data)
        return data
    except UserError:  # unreadable data: leave no half-made suite that a rerun would refuse
        if fresh:
            shutil.rmtree(out, ignore_errors=True)
        raise


def run_suite(cfg: SuiteConfig, out: Path, force: bool = False, log=print) -> dict:
    """Run (or resume) the whole suite into ``out``; returns the results document."""
    from ..models.loading import pick_device

    out = Path(out)
    distributed.setup(pick_device(cfg.defaults.get("device", "auto")))
    main = distributed.is_main()
    log = log if main else (lambda _m: None)
    data = start_suite(cfg, out, force) if main else None
    data = distributed.broadcast(data)
    t0 = time.perf_counter()
    eta = _Eta()
    entries = []
    jobs = plan_jobs(cfg, out, data)
    for i, job in enumerate(jobs, 1):
        kind, name, dir_, entry = job.kind, job.name, job.dir, job.entry(out)
        if job.done():
            log(f"[{i}/{len(jobs)}] {kind} {name}: done earlier, skipped")
            entries.append({**entry, "status": "ok", "skipped": True})
            continue
        log(f"[{i}/{len(jobs)}] {kind} {name}: running (elapsed {_clock(time.perf_counter() - t0)}"
            f"{eta.left([j.kind for j in jobs[i - 1:]])})")
        started = time.perf_counter()
        try:
            job.run(cfg.eval, data)
            if main:
                mark_done(job, out)
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
            write_json(dir_ / suitedir.FAILED, {**entry, "error": err, "traceback": traceback.format_exc()})
            entries.append({**entry, "status": "failed", "error": err})
        finally:
            free_memory()
    if not main:
        return {}
    write_json(out / suitedir.STATUS, {"entries": entries, "seconds": round(time.perf_counter() - t0, 1)})
    from ..report.build import build_results
    from ..report.render import render_report

    results = build_results(out)
    render_report(out)
    return results


def _eval_digest(ecfg: EvalOptions) -> str:
    """What defines an evaluation's result: not where it is written or the data's path (its content is hashed);
    decoding by its record only (greedy adds nothing: digests from before the decode options still match)."""
    fields = decode_identity(ecfg.resolved())
    return sha256_json({k: v for k, v in fields.items() if k not in ("out", "run", "data", "force", "device")})[:12]


def _file_digest(path: Path) -> str | None:
    from ..core.io import sha256_file

    return sha256_file(path)[:12] if path.is_file() else None


def _data_digest(data: Path) -> str:
    """The prepared splits' content (train feeds variants and retrieval, test is what is scored)."""
    from ..core.io import sha256_file

    return sha256_json([sha256_file(Path(data) / f"{s}.jsonl") for s in ("train", "val", "test")
                        if (Path(data) / f"{s}.jsonl").is_file()])[:12]


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
        named = f"{len(untimed)} {untimed[0]}{'s' if len(untimed) > 1 else ''} not timed yet" if untimed else ""
        if len(untimed) == len(kinds):  # only kinds with no time yet are left: no "about 0s"
            return f", {named}" if named else ""
        return f", about {_clock(sum(means[k] for k in kinds if k in means))} left{' + ' + named if named else ''}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, m, s = seconds // 3600, seconds // 60 % 60, seconds % 60
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"
