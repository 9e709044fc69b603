"""Collect every entry of a suite directory into ``results.json``: the one source of the report.

Each entry carries every metric of the metrics table (``metrics.METRICS``; training figures joined
from its run directory), CIs, breakdowns, worst cases and flags on its speed figures. Every pair
of entries evaluated on the same examples is compared with a paired bootstrap on each metric the
table marks ``test``. Then ``verdict.decide`` turns this into the decision the report opens with.
Renderers (``render.py``, the CLI) only format what this file writes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import yaml

from .. import rundir, suitedir
from ..core.io import read_json, read_jsonl, write_json
from ..core.provenance import provenance
from ..data.split import PREPARE_REPORT
from ..metrics.scores import PRIMARY, CorpusStats, select
from ..metrics.stats import paired_test
from .verdict import decide

ALPHA = 0.05
MIN_LATENCY_SAMPLES = 10  # fewer timed replies than this: the p50/p95 figures are flagged
RUNAWAY_MAJORITY = 0.5  # replies cut at the token limit on more than this share: the entry's scores are flagged


def _generated(metrics: dict) -> bool:
    """Whether the entry's replies were generated (and so have latency and throughput)."""
    if "generated" in metrics:
        return bool(metrics["generated"])
    return "perplexity" in metrics  # metrics.json from before the flag: only model evaluations have this key


def _figures(d: Path, metrics: dict) -> dict:
    """Every metric of the table: from eval/metrics.json, or the run's training summary for training figures."""
    summary = rundir.summary(d)
    generated = _generated(metrics)
    out = {}
    for m in select():
        if m.train_key and summary is not None:
            value = summary.get(m.train_key)
        else:
            value = metrics.get(m.key)
        out[m.key] = None if (m.generated_only and not generated) else value
    return out


def _speed_flags(metrics: dict) -> list[str]:
    """Why the speed figures of an entry should not be trusted (empty: nothing known against them)."""
    flags = []
    n = metrics.get("latency_samples")
    if n is not None and 0 < n < MIN_LATENCY_SAMPLES:
        flags.append(f"latency from {n} timed replies (fewer than {MIN_LATENCY_SAMPLES})")
    load, cpus = metrics.get("latency_load_1m"), metrics.get("latency_cpus")
    if load is not None and cpus and load > cpus:
        flags.append(f"machine busy while measuring (load {load:.1f} on {cpus} CPUs)")
    return flags


def _split_size(out: Path, metrics: dict) -> int | None:
    """How many messages the evaluated split holds (the sample is smaller when `limit` was used)."""
    from ..data.split import split_path

    split = metrics.get("split", "test")
    for data in (metrics.get("data"), out / suitedir.DATA):  # the path evaluate read, else the suite's own copy
        if data and split_path(Path(data), split).is_file():
            with split_path(Path(data), split).open(encoding="utf-8") as f:
                return sum(1 for line in f if line.strip())
    return None


def _runaway(metrics: dict) -> float | None:
    """The share of replies cut at the token limit, when most were (their scores measure cut-off text)."""
    share = metrics.get("runaway_share")
    return share if metrics.get("generated", True) and share is not None and share > RUNAWAY_MAJORITY else None


def _significance(loaded: dict[str, dict], n_resamples: int = 1000, parents: dict[str, str] | None = None) -> list[dict]:
    """Paired tests of every two entries on the same examples; a preference child and its parent are named
    (``child_of``: which of a/b is the parent's child), so the report can show that comparison first."""
    out, parents = [], parents or {}
    for a, b in itertools.combinations(sorted(loaded), 2):
        pa, pb = loaded[a]["predictions"], loaded[b]["predictions"]
        if [r["id"] for r in pa] != [r["id"] for r in pb]:
            continue  # evaluated on different examples: not comparable pairwise
        row = {"a": a, "b": b}
        if parents.get(a) == b or parents.get(b) == a:
            row["child_of"] = {"child": a if parents.get(a) == b else b, "parent": b if parents.get(a) == b else a}
        for m in select(test=True):
            res = paired_test(m.key, [r["scores"].get(m.key) for r in pa], [r["scores"].get(m.key) for r in pb],
                              loaded[a]["corpus"], loaded[b]["corpus"], n_resamples)
            if res is not None:
                row[m.key] = {**res, "significant": res["p_value"] < ALPHA}
        out.append(row)
    return out


def _entry(out: Path, e: dict, loaded: dict) -> dict:
    d = out / e["dir"]
    item = {**e}
    if e.get("status") == "ok" and suitedir.evaluated(d):
        metrics = read_json(suitedir.metrics_path(d))
        preds = read_jsonl(suitedir.predictions_path(d))
        item["metrics"] = _figures(d, metrics)
        item["ci"] = metrics.get("ci", {})
        item["generated"] = _generated(metrics)
        item["speed_flags"] = _speed_flags(metrics) if item["generated"] else []
        item["examples"] = len(preds)
        item["split"] = metrics.get("split", "test")
        item["split_examples"] = _split_size(out, metrics)
        item["runaway"] = _runaway(metrics)
        item["breakdown"] = {k[3:]: v for k, v in metrics.items() if k.startswith("by_")}
        item["worst"] = metrics.get("worst")
        item["decoding"] = metrics.get("decoding")
        item["timing"] = {**(metrics.get("timing") or {}), **{k: (metrics.get("engine") or {}).get(k)
                                                              for k in ("from_cache", "slot_reused")}}
        item["latency_context"] = {k: metrics.get(k) for k in ("latency_samples", "latency_load_1m", "latency_cpus")}
        item["samples"] = [{k: r[k] for k in ("id", "brand", "input", "reference", "prediction")} for r in preds[:6]]
        if rundir.loss_log(d):
            item["loss"] = rundir.loss_log(d)
        if (d / rundir.CONFIG).is_file():
            record = rundir.read_record(d, finished=False)
            item["config"] = record.train
            item["config_hash"] = record.config_hash
            item["prompt"] = record.prompt
            if record.parent:  # a preference child (train --objective): its parent entry and objective
                item["parent"], item["objective"] = record.parent.get("variant"), record.objective
        loaded[e["name"]] = {"predictions": preds, "corpus": CorpusStats([r["prediction"] for r in preds],
                                                                           [r["reference"] for r in preds])}
    elif suitedir.failed(d):
        item["error"] = read_json(d / suitedir.FAILED).get("error")
        item["status"] = "failed"
    else:
        item["status"] = "failed"
        item.setdefault("error", f"no {suitedir.EVAL}/{suitedir.METRICS}")
    return item


def build_results(out: Path, n_resamples: int = 1000) -> dict:
    """Read the suite directory ``out``, write ``out/results.json`` and return it."""
    out = Path(out)
    loaded: dict[str, dict] = {}
    entries = [_entry(out, e, loaded) for e in suitedir.entries(out)]
    variants = [e for e in entries if "metrics" in e and e["kind"] == "variant" and e["metrics"].get(PRIMARY) is not None]
    status = out / suitedir.STATUS
    suite = (out / suitedir.SUITE_YAML).read_text() if (out / suitedir.SUITE_YAML).is_file() else None
    results = {
        "name": (yaml.safe_load(suite) or {}).get("name", out.name) if suite else out.name, "suite": suite,
        "suite_seconds": read_json(status).get("seconds") if status.is_file() else None,
        "entries": entries, "primary": PRIMARY, "alpha": ALPHA,
        "best_variant": max(variants, key=lambda e: e["metrics"][PRIMARY])["name"] if variants else None,
        "significance": _significance(loaded, n_resamples, {e["name"]: e["parent"] for e in entries if e.get("parent")}),
        "environment": provenance(),
        "data": read_json(out / suitedir.DATA / PREPARE_REPORT) if (out / suitedir.DATA / PREPARE_REPORT).is_file() else None,
    }
    # Optional sections: one call each, adding one key (None when it has nothing to say).
    # render.py shows them (its OPTIONAL_SECTIONS); the verdict below may cite them, so they come first.
    from .preference import (
        human_preference,  # ratings.jsonl from `supporttune rate` (None without votes)
    )

    results["human_preference"] = human_preference(out, entries)
    results["verdict"] = decide(results)
    write_json(out / suitedir.RESULTS, results)
    return results
