"""report/build.py: results.json from a suite directory made by hand (no model, no training)."""

import json

import pytest
import yaml

from supporttune.io import write_json, write_jsonl
from supporttune.report.build import TABLE_KEYS, build_results

REFS = [f"reply number {i} about the order status" for i in range(12)]


def _entry(d, predictions, ids=None, rouge=100.0, extra=None, loss=None, config=None):
    """An evaluated entry: predictions.jsonl with per-example scores, metrics.json, optional run files."""
    ids = ids or [f"e{i}" for i in range(len(REFS))]
    rows = [{"id": i, "brand": "Acme", "input": f"question {i}", "reference": r, "prediction": p,
             "scores": {"rougeL": rouge, "chrf": rouge, "semantic_sim": rouge / 100}}
            for i, r, p in zip(ids, REFS, predictions)]
    (d / "eval").mkdir(parents=True)
    write_jsonl(d / "eval" / "predictions.jsonl", rows)
    write_json(d / "eval" / "metrics.json", {"rougeL": rouge, "bleu": rouge / 2, "latency_p50_s": 0.5,
                                             "ci": {"rougeL": [rouge - 1, rouge + 1]}, "by_category": {"question": {"count": 12}},
                                             "worst": {"rougeL": []}, "decoding": {"max_new_tokens": 8}, **(extra or {})})
    if loss:
        write_jsonl(d / "loss.jsonl", loss)
    if config:
        (d / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture()
def suite_dir(tmp_path):
    out = tmp_path / "suite"
    _entry(out / "variants" / "good", REFS, rouge=90.0, loss=[{"step": 1, "train_loss": 2.5}],
           config={"train": {"method": "lora", "r": 8}, "config_hash": "abc123"})
    _entry(out / "variants" / "bad", ["no idea"] * 12, rouge=0.0)
    _entry(out / "variants" / "elsewhere", REFS, ids=[f"x{i}" for i in range(12)], rouge=50.0)  # other examples
    (out / "variants" / "broken").mkdir(parents=True)
    write_json(out / "variants" / "broken" / "failed.json", {"error": "RunFailed: loss became nan"})
    _entry(out / "baselines" / "retrieval", REFS, rouge=90.0)  # the same replies as "good"
    _entry(out / "baselines" / "constant", ["no idea"] * 12, rouge=95.0, extra={"trainable_params": 0})
    write_json(out / "data" / "prepare_report.json", {"pairs_kept": 120})
    return out


def test_entries_metrics_and_run_files(suite_dir):
    res = build_results(suite_dir)
    assert json.loads((suite_dir / "results.json").read_text()) == json.loads(json.dumps(res))
    by = {e["name"]: e for e in res["entries"]}
    assert {n: (e["kind"], e["status"]) for n, e in by.items()} == {
        "bad": ("variant", "ok"), "broken": ("variant", "failed"), "elsewhere": ("variant", "ok"), "good": ("variant", "ok"),
        "constant": ("baseline", "ok"), "retrieval": ("baseline", "ok")}
    assert by["broken"]["error"] == "RunFailed: loss became nan" and "metrics" not in by["broken"]
    good = by["good"]
    assert set(good["metrics"]) == set(TABLE_KEYS)
    assert good["metrics"]["rougeL"] == 90.0 and good["metrics"]["latency_p50_s"] == 0.5 and good["metrics"]["perplexity"] is None
    assert good["ci"] == {"rougeL": [89.0, 91.0]} and good["breakdown"]["category"] == {"question": {"count": 12}}
    assert good["breakdown"]["priority"] is None and good["decoding"] == {"max_new_tokens": 8}
    assert [s["id"] for s in good["samples"]] == [f"e{i}" for i in range(6)] and good["samples"][0]["prediction"] == REFS[0]
    assert good["loss"] == [{"step": 1, "train_loss": 2.5}]
    assert good["config"] == {"method": "lora", "r": 8} and good["config_hash"] == "abc123"
    assert "loss" not in by["bad"] and "config" not in by["bad"]
    assert res["data"] == {"pairs_kept": 120} and res["suite"] is None and res["environment"]["versions"]["supporttune"]


def test_best_variant_and_significance(suite_dir):
    res = build_results(suite_dir)
    assert res["best_variant"] == "good" and res["best_by"] == "rougeL"  # a baseline never wins, even with more
    pairs = {(r["a"], r["b"]): r for r in res["significance"]}
    assert all("elsewhere" not in p for p in pairs)  # evaluated on other examples: not compared pairwise
    assert set(pairs) == {("bad", "constant"), ("bad", "good"), ("bad", "retrieval"), ("constant", "good"),
                          ("constant", "retrieval"), ("good", "retrieval")}
    same = pairs[("good", "retrieval")]
    assert same["rougeL"]["diff"] == 0 and not same["rougeL"]["significant"] and same["bleu"]["p_value"] == 1.0
    apart = pairs[("bad", "good")]
    assert apart["rougeL"]["diff"] == -90 and apart["rougeL"]["significant"] and apart["semantic_sim"]["significant"]
    assert apart["bleu"]["significant"]  # corpus BLEU recomputed from the texts: 0 vs 100
    assert res["ties_with_best"] == ["retrieval"]


def test_suite_status_decides_the_entries(suite_dir):
    write_json(suite_dir / "suite_status.json", {"entries": [
        {"name": "good", "kind": "variant", "dir": "variants/good", "status": "ok"},
        {"name": "broken", "kind": "variant", "dir": "variants/broken", "status": "failed", "error": "from status"},
        {"name": "constant", "kind": "baseline", "dir": "baselines/constant", "status": "ok"}]})
    (suite_dir / "suite.yaml").write_text("name: hand-made\n")
    res = build_results(suite_dir)
    assert [e["name"] for e in res["entries"]] == ["good", "broken", "constant"]
    assert next(e for e in res["entries"] if e["name"] == "broken")["error"] == "RunFailed: loss became nan"
    assert res["suite"] == "name: hand-made\n" and [(r["a"], r["b"]) for r in res["significance"]] == [("constant", "good")]


def test_no_finished_variant_means_no_best(tmp_path):
    out = tmp_path / "s"
    _entry(out / "baselines" / "constant", ["no idea"] * 12, rouge=10.0)
    res = build_results(out)
    assert res["best_variant"] is None and res["ties_with_best"] == [] and res["significance"] == []
