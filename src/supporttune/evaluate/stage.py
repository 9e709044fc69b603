"""The evaluate stage: generate replies for held-out messages and score them.

Writes ``<dir>/eval/predictions.jsonl`` (one line per example with its own scores) and
``<dir>/eval/metrics.json`` (headline keys, CIs, breakdowns, worst cases, decoding settings).

Under ``--nproc N`` generation (and the perplexity pass) is sharded over the ranks, the replies are
gathered back in input order, and rank 0 alone scores and writes.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from .. import suitedir
from ..core import distributed
from ..core.errors import Interrupted, UserError
from ..core.io import check_out_dir, read_json, read_jsonl, write_json, write_jsonl
from ..core.memory import PeakTracker, free_memory
from ..data.split import load_split
from ..inference.agent import load_agent
from ..inference.decode import DecodeSettings, Generated
from ..inference.generate import batch1_latencies, generate_replies
from ..inference.strategies import DecodeStats
from ..metrics.scores import (
    CorpusStats,
    corpus_scores,
    length_stats,
    per_example_scores,
    select,
)
from ..metrics.stats import bootstrap_ci
from . import baselines
from .baselines import BaselineInputs
from .config import EvalConfig, ScoringOptions
from .perplexity import reply_nll
from .replylog import ReplyLog, read_partial, replies_key

GROUPS = ("category", "priority", "sentiment")
TIMING = ("load_s", "compile_s", "generation_s", "perplexity_s", "scoring_s", "latency_s", "total_s")


def _breakdown(rows: list[dict], preds: list[str], refs: list[str], key: str) -> dict:
    out = {}
    for value in sorted({r[key] for r in rows}):
        idx = [i for i, r in enumerate(rows) if r[key] == value]
        scores = corpus_scores([preds[i] for i in idx], [refs[i] for i in idx], [rows[i]["scores"] for i in idx])
        out[value] = {"count": len(idx), **scores}
    return out


def _worst(rows: list[dict], k: int) -> dict:
    fields = ("id", "input", "reference", "prediction", "brand", "category")
    out = {}
    for m in select(worst=True):
        scored = [r for r in rows if r["scores"].get(m.key) is not None]
        out[m.key] = [{**{f: r[f] for f in fields}, m.key: r["scores"][m.key]}
                      for r in sorted(scored, key=lambda r: r["scores"][m.key] * (1 if m.higher_is_better else -1))[:k]]
    return out


def _machine_load() -> dict:
    """How busy the machine was while latency was measured (the 1-minute load average covers it)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"latency_load_1m": None if load is None else round(load, 2), "latency_cpus": cpus}


def score(examples: list[dict], gens: list[Generated], latencies: list[float], cfg: ScoringOptions,
          generated: bool | None = None) -> tuple[list[dict], dict]:
    """Per-example rows and the metrics document: every metric of the metrics table, CIs, breakdowns, worst cases."""
    load = _machine_load() if latencies else {}  # read first: scoring itself keeps the CPU busy
    preds = [g.text for g in gens]
    refs = [ex["output"] for ex in examples]
    scores = per_example_scores(preds, refs, semantic=cfg.semantic)
    rows = []
    for ex, g, s in zip(examples, gens, scores):
        rows.append({"id": ex["id"], "thread_id": ex["thread_id"], "brand": ex.get("brand", ""), "input": ex["input"],
                     "reference": ex["output"], "prediction": g.text, "category": ex["category"],
                     "sentiment": ex["sentiment"], "priority": ex["priority"], "new_tokens": g.new_tokens,
                     "hit_max": g.hit_max, "latency_s": g.latency_s, "scores": {k: (round(v, 4) if v is not None else None) for k, v in s.items()}})
    corpus = CorpusStats(preds, refs)
    metrics = {**corpus_scores(preds, refs, scores), **length_stats(preds, refs, [g.hit_max for g in gens])}
    metrics["ci"] = bootstrap_ci(scores, tuple(m.key for m in select(ci=True) if metrics.get(m.key) is not None),
                                 corpus, cfg.bootstrap, cfg.seed)
    if generated is None:  # the entry's own kind: a run generates, a baseline as its registry entry says
        name = getattr(cfg, "baseline", None)
        generated = name is None or baselines.get(name).generates
    metrics["generated"] = generated
    for key in GROUPS:
        metrics[f"by_{key}"] = _breakdown(rows, preds, refs, key)
    metrics["worst"] = _worst(rows, cfg.worst_k)
    if latencies:
        metrics.update(latency_p50_s=float(np.percentile(latencies, 50)), latency_p95_s=float(np.percentile(latencies, 95)),
                       latency_mean_s=float(np.mean(latencies)), latency_samples=len(latencies), **load)
    return rows, metrics


def rescore(eval_dir: Path, cfg: ScoringOptions | None = None) -> dict:
    """Recompute every score of an existing evaluation from its predictions.jsonl (no generation).

    Keeps what only generation could measure (latency, throughput, perplexity, memory) from the old
    metrics.json. Used when a metric was off where the replies were generated (e.g. no embedding model).
    An evaluation that died after generating (no metrics.json) is scored from its partial file alone.
    """
    cfg, unavailable = _semantic_check(cfg or ScoringOptions())
    eval_dir = Path(eval_dir)
    finished = (eval_dir / suitedir.METRICS).is_file()
    old = read_json(eval_dir / suitedir.METRICS) if finished else {"scored_from": suitedir.PARTIAL}
    preds = read_jsonl(eval_dir / suitedir.PREDICTIONS) if finished else read_partial(eval_dir)
    examples = [{"id": r["id"], "thread_id": r["thread_id"], "brand": r["brand"], "input": r["input"],
                 "output": r["reference"], "category": r["category"], "sentiment": r["sentiment"],
                 "priority": r["priority"]} for r in preds]
    gens = [Generated(r["prediction"], r["new_tokens"], r["hit_max"], r.get("latency_s")) for r in preds]
    looked_up = {b.name for b in baselines.REGISTRY.values() if not b.generates}
    generated = old.get("generated", old.get("name") not in looked_up)  # metrics.json from before the flag
    rows, metrics = score(examples, gens, [], cfg, generated)
    kept = {k: v for k, v in old.items() if k not in metrics or k.startswith(("latency", "throughput"))}
    metrics = {**metrics, **kept, "unavailable": unavailable, "rescored": True}
    _write(eval_dir, rows, metrics)
    return metrics


def _write(eval_dir: Path, rows: list[dict], metrics: dict) -> None:
    """predictions.jsonl, then metrics.json (its presence means: finished); the partial log goes last."""
    write_jsonl(eval_dir / suitedir.PREDICTIONS, rows)
    write_json(eval_dir / suitedir.METRICS, metrics)
    (eval_dir / suitedir.PARTIAL).unlink(missing_ok=True)


def _generate_sharded(agent, examples: list[dict], settings: DecodeSettings, stats: DecodeStats) -> list[Generated]:
    """Replies in input order; with N ranks each generates every N-th batch (batches as one process forms them).
    ``stats`` (MBR's cost and choices) then covers rank 0's batches only."""
    progress = f"generating ({agent.name})"
    if not distributed.active():
        return generate_replies(agent, examples, settings, progress=progress, stats=stats)
    part = generate_replies(agent, examples, settings, progress=progress,
                            shard=(distributed.rank(), distributed.world_size()), stats=stats)
    return distributed.gather_ordered({i: g for i, g in enumerate(part) if g is not None})


def _perplexity_sharded(agent, examples: list[dict], batch_size: int = 16) -> float | None:
    """Each rank scores every N-th batch of 16 references, so each batch's sum is the one-process one."""
    chunks = [list(range(i, min(i + batch_size, len(examples)))) for i in range(0, len(examples), batch_size)]
    mine = [i for chunk in distributed.shard(chunks) for i in chunk]
    sums = distributed.all_gather(reply_nll(agent, [examples[i] for i in mine], batch_size))  # agent adds exemplars
    nll, tokens = sum(s[0] for s in sums), sum(s[1] for s in sums)
    return float(np.exp(nll / tokens)) if tokens else None


def preflight(cfg: EvalConfig) -> tuple[list[dict], Path]:
    """Checks that need no model: the run directory, the data split, and nothing overwritten by accident."""
    if cfg.run:
        from ..rundir import read_record

        read_record(cfg.run)  # fail on a wrong run directory before anything else
    out_dir = suitedir.eval_dir(Path(cfg.run) if cfg.run else Path(cfg.out))
    check_out_dir(out_dir, "--out" if cfg.baseline else "--run")
    examples = load_split(cfg.data, cfg.split)[: cfg.limit]
    if (out_dir / suitedir.METRICS).is_file() and not cfg.force:
        raise UserError(f"{out_dir / suitedir.METRICS} exists (use --force to re-evaluate)")
    return examples, out_dir


def _semantic_check(cfg: ScoringOptions) -> tuple[ScoringOptions, dict]:
    """An optional metric whose model is missing: one warning line now, 'unavailable' in metrics.json."""
    from ..metrics.scores import semantic_unavailable

    why = semantic_unavailable() if cfg.semantic else None
    if not why:
        return cfg, {}
    if distributed.is_main():
        print(f"supporttune: warning: semantic similarity unavailable ({why}); scoring without it", file=sys.stderr)
    return cfg.model_copy(update={"semantic": False}), {"semantic_sim": why}


def _entry_key(cfg: EvalConfig) -> dict:
    """What the replies depend on besides data and decoding: the trained run, or the baseline's prompt."""
    if cfg.run:
        from ..rundir import read_record

        return {"run": read_record(cfg.run).config_hash}
    return {"baseline": cfg.baseline, "model": cfg.model, "prompt": cfg.prompt_spec().as_dict(),
            "options": [cfg.few_shot_k, cfg.retrieval]}


def _generate_logged(agent, cfg: EvalConfig, examples: list[dict], settings: DecodeSettings,
                     out_dir: Path, stats: DecodeStats) -> tuple[list[Generated], dict]:
    """Replies in input order, appended to the partial file batch by batch; resumes from it (one process)."""
    if distributed.active():
        return _generate_sharded(agent, examples, settings, stats), {}
    log = ReplyLog(out_dir, replies_key(_entry_key(cfg), str(cfg.data), cfg.split, examples, settings.replies_key(),
                                        agent.device))
    done = log.load(examples)
    log.start(resumed=bool(done))
    todo = [i for i in range(len(examples)) if i not in done]
    if done:
        print(f"supporttune: resuming {agent.name}: {len(done)} of {len(examples)} replies already in {log.path}",
              file=sys.stderr)

    def on_batch(indices: list[int], gens: list[Generated]) -> None:
        log.append([examples[todo[i]] for i in indices], gens)

    part = generate_replies(agent, [examples[i] for i in todo], settings, progress=f"generating ({agent.name})",
                            on_batch=on_batch, stats=stats) if todo else []
    gens = dict(done)
    gens.update(zip(todo, part))
    return [gens[i] for i in range(len(examples))], {"resumed_replies": len(done), "generated_replies": len(todo),
                                                    "log": log, "new_tokens": sum(g.new_tokens for g in part)}


def _interrupted(out_dir: Path, total: int) -> Interrupted:
    """What a Ctrl-C during generation leaves: how many replies the partial file holds (a rerun resumes from it)."""
    path = out_dir / suitedir.PARTIAL
    saved = len(read_partial(out_dir)) if path.is_file() else 0
    return Interrupted(f"interrupted: {saved} of {total} replies saved in {path}")


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate one trained run (``cfg.run``) or one baseline (``cfg.baseline``); returns its metrics (rank 0)."""
    started = time.perf_counter()
    timing = dict.fromkeys(TIMING, 0.0)  # where the wall time went, stage by stage (metrics.json "timing")
    examples, out_dir = preflight(cfg)
    cfg, unavailable = _semantic_check(cfg)
    from ..models.loading import pick_device

    device = pick_device(cfg.device)
    settings = DecodeSettings(cfg.max_new_tokens, cfg.batch_size or (256 if device == "cuda" else 16),
                              decode=cfg.decode_spec())
    stats = DecodeStats()  # MBR's cost (candidates vs selection seconds) and choices, for metrics.json
    peak = PeakTracker("cuda" if device == "cuda" else "cpu")
    meta: dict = {"decoding": settings.as_dict(), "split": cfg.split, "examples": len(examples), "data": str(cfg.data),
                  "unavailable": unavailable}
    latencies: list[float] = []
    log, generated, new_tokens = None, len(examples), None
    baseline = baselines.get(cfg.baseline) if cfg.baseline else None
    inputs = BaselineInputs(examples, cfg.data, cfg) if baseline else None
    if baseline is not None and not baseline.generates:
        t0 = time.perf_counter()
        gens = [Generated(reply, len(reply.split()), False, seconds) for reply, seconds in baseline.run(inputs)]
        elapsed = timing["generation_s"] = time.perf_counter() - t0
        latencies = [g.latency_s for g in gens]
        meta.update(trainable_params=0, trainable_pct=0.0, name=cfg.baseline)
    else:
        from ..inference.engine import engine_for

        distributed.setup(device)
        t = time.perf_counter()
        with distributed.main_first():  # rank 0 fills the model cache if needed
            agent = load_agent(cfg.run, model=cfg.model, device=cfg.device, spec=cfg.prompt_spec())
        timing["load_s"] = time.perf_counter() - t
        prompted = baseline.run(inputs) if baseline else examples  # few-shot: its shots attached
        engine = engine_for(agent)
        t0 = time.perf_counter()
        try:
            gens, progress = _generate_logged(agent, cfg, prompted, settings, out_dir, stats)
        except KeyboardInterrupt:  # Ctrl-C: the replies made so far are on disk; say so instead of exiting silently
            raise _interrupted(out_dir, len(examples)) from None
        elapsed = time.perf_counter() - t0
        log, generated = progress.pop("log", None), progress.get("generated_replies", len(examples))
        new_tokens = progress.pop("new_tokens", None)
        meta.update(progress)
        warm = engine.stats["compile_s"] + engine.stats["load_s"]  # paid once per process, reported apart
        meta.update(generation_wall_s=round(elapsed, 3), warmup_s=round(warm, 3))
        elapsed = max(elapsed - warm, 1e-9) if generated else 0.0
        t = time.perf_counter()
        if (baseline is None or baseline.timed) and distributed.is_main():
            latencies = batch1_latencies(agent, examples, settings, cfg.latency_samples)
        # the batch-1 shape may load or compile too: counted under load/compile, not latency
        timing["latency_s"] = time.perf_counter() - t - (engine.stats["compile_s"] + engine.stats["load_s"] - warm)
        t = time.perf_counter()
        meta["perplexity"] = _perplexity_sharded(agent, prompted) if cfg.perplexity else None
        timing["perplexity_s"] = time.perf_counter() - t
        timing.update(load_s=timing["load_s"] + engine.stats["load_s"], compile_s=engine.stats["compile_s"],
                      generation_s=elapsed)
        meta["name"] = cfg.baseline or agent.name
        meta["prompt"] = agent.spec.as_dict()
        meta["engine"] = engine.report()
        meta.update(stats.metrics(settings.decode))  # the decode record, and for mbr its cost and choices
        if not cfg.run:
            meta.update(trainable_params=0, trainable_pct=0.0)
        del agent
        free_memory()
    if not distributed.is_main():
        distributed.barrier()  # wait until rank 0 has written the results
        return {}
    t = time.perf_counter()
    rows, metrics = score(examples, gens, latencies, cfg, baseline is None or baseline.generates)
    timing["scoring_s"] = time.perf_counter() - t
    new_tokens = sum(g.new_tokens for g in gens) if new_tokens is None else new_tokens
    # steady generation: the replies generated in this process over their time, warm-up/compile excluded
    metrics.update(throughput_samples_per_s=generated / elapsed if elapsed and generated else None,
                   throughput_tokens_per_s=new_tokens / elapsed if elapsed and generated else None,
                   generation_s=round(elapsed, 3), eval_memory=peak.result(), **meta)
    timing["total_s"] = time.perf_counter() - started  # up to writing the files
    metrics["timing"] = {k: round(max(v, 0.0), 3) for k, v in timing.items()}
    _write(out_dir, rows, metrics)
    if log is not None:
        log.remove()
    if cfg.run:  # the run's card shows its scores
        from ..train.publish import write_card

        write_card(Path(cfg.run))
    distributed.barrier()
    return metrics


__all__ = ["evaluate", "score", "rescore"]
