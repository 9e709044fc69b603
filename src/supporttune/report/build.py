"""Collect every entry of a suite directory into ``results.json``: the one source of the report.

Significance: every pair of entries is compared with a paired bootstrap on the same test
examples (per-example ROUGE-L, chrF-sentence and semantic similarity; corpus BLEU recomputed on
each resample). A difference is called significant at p < 0.05.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from .. import rundir
from ..io import read_json, read_jsonl, write_json
from ..metrics import CorpusStats
from ..provenance import provenance
from ..stats import paired_bootstrap, paired_corpus_bootstrap

ALPHA = 0.05
SIG_METRICS = ("rougeL", "bleu", "chrf", "semantic_sim")
TABLE_KEYS = ("bleu", "bleu_nltk", "rouge1", "rouge2", "rougeL", "chrf", "semantic_sim", "perplexity", "length_ratio",
              "empty_share", "runaway_share", "latency_p50_s", "latency_p95_s", "throughput_samples_per_s",
              "throughput_tokens_per_s", "trainable_params", "trainable_pct", "adapter_bytes", "train_wall_time_s",
              "train_tokens_per_s", "train_peak_rss_mb", "train_peak_cuda_mb")


def _entries(out: Path) -> list[dict]:
    status = out / "suite_status.json"
    if status.is_file():
        return read_json(status)["entries"]
    entries = []  # a directory made by hand: every folder with eval/metrics.json
    for kind in ("variants", "baselines"):
        for d in sorted((out / kind).glob("*")) if (out / kind).is_dir() else []:
            ok = (d / "eval" / "metrics.json").is_file()
            entries.append({"name": d.name, "kind": kind[:-1], "dir": str(d.relative_to(out)), "status": "ok" if ok else "failed"})
    return entries


def _training_figures(d: Path) -> dict:
    """A variant's training figures, joined from its run directory (baselines have none: 0 trainable)."""
    summary = rundir.summary(d)
    if summary is None:
        return {"trainable_params": 0, "trainable_pct": 0.0}
    return {"trainable_params": summary.get("trainable_params"), "trainable_pct": summary.get("trainable_pct"),
            "adapter_bytes": summary.get("adapter_bytes"),
            **{f"train_{k}": summary.get(k) for k in ("wall_time_s", "tokens_per_s", "peak_rss_mb", "peak_cuda_mb")}}


def _significance(loaded: dict[str, dict], n_resamples: int = 1000) -> list[dict]:
    out = []
    for a, b in itertools.combinations(sorted(loaded), 2):
        pa, pb = loaded[a]["predictions"], loaded[b]["predictions"]
        if [r["id"] for r in pa] != [r["id"] for r in pb]:
            continue  # evaluated on different examples: not comparable pairwise
        row = {"a": a, "b": b}
        for m in SIG_METRICS:
            if m == "bleu":
                res = paired_corpus_bootstrap(loaded[a]["corpus"], loaded[b]["corpus"], "bleu", n_resamples)
            else:
                xa, xb = [r["scores"][m] for r in pa], [r["scores"][m] for r in pb]
                if None in xa or None in xb:
                    continue
                res = paired_bootstrap(xa, xb, n_resamples)
            row[m] = {**res, "significant": res["p_value"] < ALPHA}
        out.append(row)
    return out


def build_results(out: Path) -> dict:
    out = Path(out)
    entries = []
    loaded = {}
    for e in _entries(out):
        d = out / e["dir"]
        item = {**e}
        if e.get("status") == "ok" and (d / "eval" / "metrics.json").is_file():
            metrics = read_json(d / "eval" / "metrics.json")
            preds = read_jsonl(d / "eval" / "predictions.jsonl")
            item["metrics"] = {k: metrics.get(k) for k in TABLE_KEYS} | _training_figures(d)
            item["ci"] = metrics.get("ci", {})
            item["breakdown"] = {k: metrics.get(f"by_{k}") for k in ("category", "priority", "sentiment")}
            item["worst"] = metrics.get("worst")
            item["decoding"] = metrics.get("decoding")
            item["samples"] = [{k: r[k] for k in ("id", "brand", "input", "reference", "prediction")} for r in preds[:6]]
            if rundir.loss_log(d):
                item["loss"] = rundir.loss_log(d)
            if (d / rundir.CONFIG).is_file():
                record = rundir.read_record(d, finished=False)
                item["config"] = record.train
                item["config_hash"] = record.config_hash
                item["prompt"] = record.prompt
            loaded[e["name"]] = {"predictions": preds, "corpus": CorpusStats([r["prediction"] for r in preds],
                                                                               [r["reference"] for r in preds])}
        elif (d / "failed.json").is_file():
            item["error"] = read_json(d / "failed.json").get("error")
            item["status"] = "failed"
        entries.append(item)
    ok = [e for e in entries if "metrics" in e]
    variants = [e for e in ok if e["kind"] == "variant"]
    best = max(variants, key=lambda e: e["metrics"]["rougeL"] or 0)["name"] if variants else None
    sig = _significance(loaded)
    results = {
        "suite": (out / "suite.yaml").read_text() if (out / "suite.yaml").is_file() else None,
        "entries": entries, "best_variant": best, "best_by": "rougeL",
        "significance": sig, "alpha": ALPHA,
        "ties_with_best": sorted({r["b"] if r["a"] == best else r["a"] for r in sig if best in (r["a"], r["b"])
                                  and not r.get("rougeL", {}).get("significant", True)}) if best else [],
        "environment": provenance(),
        "data": read_json(out / "data" / "prepare_report.json") if (out / "data" / "prepare_report.json").is_file() else None,
    }
    from .preference import human_preference  # ratings.jsonl from `supporttune rate` (None without votes)

    results["human_preference"] = human_preference(out, entries)
    write_json(out / "results.json", results)
    return results
