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

from . import distributed
from .baselines import constant_reply
from .batching import load_split
from .config import EvalConfig
from .errors import UserError
from .generate import DecodeSettings, Generated, batch1_latencies, generate_replies, load_agent, reference_nll
from .io import check_out_dir, read_json, read_jsonl, write_json, write_jsonl
from .memory import PeakTracker, free_memory
from .metrics import CorpusStats, corpus_scores, length_stats, per_example_scores, select
from .prompts import PromptSpec
from .replylog import PARTIAL, ReplyLog, read_partial, replies_key
from .retrieval import ExemplarIndex
from .stats import bootstrap_ci

GROUPS = ("category", "priority", "sentiment")
LOOKED_UP = ("retrieval", "constant")  # baselines whose replies are looked up: no latency or throughput to report


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


def score(examples: list[dict], gens: list[Generated], latencies: list[float], cfg: EvalConfig) -> tuple[list[dict], dict]:
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
    metrics["generated"] = cfg.baseline not in LOOKED_UP
    for key in GROUPS:
        metrics[f"by_{key}"] = _breakdown(rows, preds, refs, key)
    metrics["worst"] = _worst(rows, cfg.worst_k)
    if latencies:
        metrics.update(latency_p50_s=float(np.percentile(latencies, 50)), latency_p95_s=float(np.percentile(latencies, 95)),
                       latency_mean_s=float(np.mean(latencies)), latency_samples=len(latencies), **load)
    return rows, metrics


def _non_model_replies(name: str, examples: list[dict], train_rows: list[dict], scorer: str) -> list[Generated]:
    if name == "constant":
        reply = constant_reply(train_rows)
        return [Generated(reply, len(reply.split()), False, 0.0) for _ in examples]
    retriever = ExemplarIndex(train_rows, scorer)
    out = []
    for ex in examples:
        t0 = time.perf_counter()
        reply = retriever.nearest(ex)[0]["output"]
        out.append(Generated(reply, len(reply.split()), False, time.perf_counter() - t0))
    return out


def rescore(eval_dir: Path, cfg: EvalConfig) -> dict:
    """Recompute every score of an existing evaluation from its predictions.jsonl (no generation).

    Keeps what only generation could measure (latency, throughput, perplexity, memory) from the old
    metrics.json. Used when a metric was off where the replies were generated (e.g. no embedding model).
    An evaluation that died after generating (no metrics.json) is scored from its partial file alone.
    """
    cfg, unavailable = _semantic_check(cfg)
    finished = (eval_dir / "metrics.json").is_file()
    old = read_json(eval_dir / "metrics.json") if finished else {"scored_from": "predictions.partial.jsonl"}
    preds = read_jsonl(eval_dir / "predictions.jsonl") if finished else read_partial(eval_dir)
    examples = [{"id": r["id"], "thread_id": r["thread_id"], "brand": r["brand"], "input": r["input"],
                 "output": r["reference"], "category": r["category"], "sentiment": r["sentiment"],
                 "priority": r["priority"]} for r in preds]
    gens = [Generated(r["prediction"], r["new_tokens"], r["hit_max"], r.get("latency_s")) for r in preds]
    rows, metrics = score(examples, gens, [], cfg)
    kept = {k: v for k, v in old.items() if k not in metrics or k.startswith(("latency", "throughput"))}
    generated = old.get("generated", old.get("name") not in LOOKED_UP)  # cfg here names no real baseline
    metrics = {**metrics, **kept, "generated": generated, "unavailable": unavailable, "rescored": True}
    write_jsonl(eval_dir / "predictions.jsonl", rows)
    write_json(eval_dir / "metrics.json", metrics)
    (eval_dir / PARTIAL).unlink(missing_ok=True)
    return metrics


def _generate_sharded(agent, examples: list[dict], settings: DecodeSettings, shots) -> list[Generated]:
    """Replies in input order; with N ranks each generates every N-th batch (batches as one process forms them)."""
    progress = f"generating ({agent.name})"
    if not distributed.active():
        return generate_replies(agent, examples, settings, shots, progress=progress)
    part = generate_replies(agent, examples, settings, shots, progress=progress,
                            shard=(distributed.rank(), distributed.world_size()))
    return distributed.gather_ordered({i: g for i, g in enumerate(part) if g is not None})


def _perplexity_sharded(agent, examples: list[dict], batch_size: int = 16) -> float | None:
    """Each rank scores every N-th batch of 16 references, so each batch's sum is the one-process one."""
    chunks = [list(range(i, min(i + batch_size, len(examples)))) for i in range(0, len(examples), batch_size)]
    mine = [i for chunk in distributed.shard(chunks) for i in chunk]
    sums = distributed.all_gather(reference_nll(agent, [examples[i] for i in mine], batch_size))  # agent adds exemplars
    nll, tokens = sum(s[0] for s in sums), sum(s[1] for s in sums)
    return float(np.exp(nll / tokens)) if tokens else None


def preflight(cfg: EvalConfig) -> tuple[list[dict], Path]:
    """Checks that need no model: the run directory, the data split, and nothing overwritten by accident."""
    if cfg.run:
        from .rundir import read_record

        read_record(cfg.run)  # fail on a wrong run directory before anything else
    out_dir = (Path(cfg.run) if cfg.run else Path(cfg.out)) / "eval"
    check_out_dir(out_dir, "--out" if cfg.baseline else "--run")
    examples = load_split(cfg.data, cfg.split)[: cfg.limit]
    if (out_dir / "metrics.json").is_file() and not cfg.force:
        raise UserError(f"{out_dir}/metrics.json exists (use --force to re-evaluate)")
    return examples, out_dir


def _semantic_check(cfg: EvalConfig) -> tuple[EvalConfig, dict]:
    """An optional metric whose model is missing: one warning line now, 'unavailable' in metrics.json."""
    from .metrics import semantic_unavailable

    why = semantic_unavailable() if cfg.semantic else None
    if not why:
        return cfg, {}
    if distributed.is_main():
        print(f"supporttune: warning: semantic similarity unavailable ({why}); scoring without it", file=sys.stderr)
    return cfg.model_copy(update={"semantic": False}), {"semantic_sim": why}


def _entry_key(cfg: EvalConfig) -> dict:
    """What the replies depend on besides data and decoding: the trained run, or the baseline's prompt."""
    if cfg.run:
        from .rundir import read_record

        return {"run": read_record(cfg.run).config_hash}
    return {"baseline": cfg.baseline, "model": cfg.model, "prompt": [cfg.prompt_format, cfg.tags, cfg.history],
            "shots": [cfg.few_shot_k, cfg.retrieval] if cfg.baseline == "few-shot" else None}


def _generate_logged(agent, cfg: EvalConfig, examples: list[dict], settings: DecodeSettings, shots,
                     out_dir: Path) -> tuple[list[Generated], dict]:
    """Replies in input order, appended to the partial file batch by batch; resumes from it (one process)."""
    if distributed.active():
        return _generate_sharded(agent, examples, settings, shots), {}
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

    part = generate_replies(agent, [examples[i] for i in todo], settings, [shots[i] for i in todo] if shots else None,
                            progress=f"generating ({agent.name})", on_batch=on_batch) if todo else []
    gens = dict(done)
    gens.update(zip(todo, part))
    return [gens[i] for i in range(len(examples))], {"resumed_replies": len(done), "generated_replies": len(todo),
                                                    "log": log, "new_tokens": sum(g.new_tokens for g in part)}


def evaluate(cfg: EvalConfig) -> dict:
    """Evaluate one trained run (``cfg.run``) or one baseline (``cfg.baseline``); returns its metrics (rank 0)."""
    examples, out_dir = preflight(cfg)
    cfg, unavailable = _semantic_check(cfg)
    from .models import pick_device

    device = pick_device(cfg.device)
    settings = DecodeSettings(cfg.max_new_tokens, cfg.batch_size or (256 if device == "cuda" else 16))
    peak = PeakTracker("cuda" if device == "cuda" else "cpu")
    meta: dict = {"decoding": settings.as_dict(), "split": cfg.split, "examples": len(examples), "data": str(cfg.data),
                  "unavailable": unavailable}
    latencies: list[float] = []
    log, generated, new_tokens = None, len(examples), None
    if cfg.baseline in ("retrieval", "constant"):
        train_rows = load_split(cfg.data, "train")
        t0 = time.perf_counter()
        gens = _non_model_replies(cfg.baseline, examples, train_rows, cfg.retrieval)
        elapsed = time.perf_counter() - t0
        latencies = [g.latency_s for g in gens]
        meta.update(trainable_params=0, trainable_pct=0.0, name=cfg.baseline)
    else:
        from .engine import engine_for

        distributed.setup(device)
        with distributed.main_first():  # rank 0 fills the model cache if needed
            agent = load_agent(cfg.run, model=cfg.model, device=cfg.device,
                               spec=PromptSpec(cfg.prompt_format, cfg.tags, history=cfg.history))
        shots = None
        if cfg.baseline == "few-shot":
            retriever = ExemplarIndex(load_split(cfg.data, "train"), cfg.retrieval)
            shots = [retriever.nearest(ex, cfg.few_shot_k) for ex in examples]
        engine = engine_for(agent)
        t0 = time.perf_counter()
        gens, progress = _generate_logged(agent, cfg, examples, settings, shots, out_dir)
        elapsed = time.perf_counter() - t0
        log, generated = progress.pop("log", None), progress.get("generated_replies", len(examples))
        new_tokens = progress.pop("new_tokens", None)
        meta.update(progress)
        warm = engine.stats["compile_s"] + engine.stats["load_s"]  # paid once per process, reported apart
        meta.update(generation_wall_s=round(elapsed, 3), warmup_s=round(warm, 3))
        elapsed = max(elapsed - warm, 1e-9) if generated else 0.0
        if cfg.baseline != "few-shot" and distributed.is_main():
            latencies = batch1_latencies(agent, examples, settings, cfg.latency_samples)
        meta["perplexity"] = _perplexity_sharded(agent, examples) if cfg.perplexity else None
        meta["name"] = cfg.baseline or agent.name
        meta["prompt"] = agent.spec.as_dict()
        meta["engine"] = engine.report()
        if not cfg.run:
            meta.update(trainable_params=0, trainable_pct=0.0)
        del agent
        free_memory()
    if not distributed.is_main():
        distributed.barrier()  # wait until rank 0 has written the results
        return {}
    rows, metrics = score(examples, gens, latencies, cfg)
    new_tokens = sum(g.new_tokens for g in gens) if new_tokens is None else new_tokens
    # steady generation: the replies generated in this process over their time, warm-up/compile excluded
    metrics.update(throughput_samples_per_s=generated / elapsed if elapsed and generated else None,
                   throughput_tokens_per_s=new_tokens / elapsed if elapsed and generated else None,
                   generation_s=round(elapsed, 3), eval_memory=peak.result(), **meta)
    write_jsonl(out_dir / "predictions.jsonl", rows)
    write_json(out_dir / "metrics.json", metrics)
    if log is not None:
        log.remove()
    distributed.barrier()
    return metrics


__all__ = ["evaluate", "score", "rescore"]
