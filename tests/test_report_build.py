"""report/build.py: results.json from a suite directory made by hand (no model, no training).

test_report.py covers what the report says (verdict, tables, formats, flags); this file covers
how build_results gathers it: which entries, which figures from where, which pairs are compared.
"""

import json

import pytest

from supporttune.metrics import scores as metrics
from supporttune.core.io import write_json, write_jsonl
from supporttune.report.build import build_results
from supporttune.rundir import RunRecord

REFS = [f"reply number {i} about the order status" for i in range(12)]


def _entry(d, predictions, ids=None, rouge=100.0, extra=None):
    """An evaluated entry: predictions.jsonl with per-example scores and metrics.json."""
    ids = ids or [f"e{i}" for i in range(len(REFS))]
    rows = [{"id": i, "brand": "Acme", "input": f"question {i}", "reference": r, "prediction": p,
             "scores": {"rougeL": rouge, "semantic_sim": rouge / 100}} for i, r, p in zip(ids, REFS, predictions)]
    (d / "eval").mkdir(parents=True)
    write_jsonl(d / "eval" / "predictions.jsonl", rows)
    write_json(d / "eval" / "metrics.json", {"rougeL": rouge, "bleu": rouge / 2, "generated": True, "latency_p50_s": 0.5,
                                             "trainable_pct": 99.0, "ci": {"rougeL": [rouge - 1, rouge + 1]},
                                             "by_category": {"question": {"count": 12}}, "worst": {"rougeL": []},
                                             "decoding": {"max_new_tokens": 8}, **(extra or {})})


@pytest.fixture()
def suite_dir(tmp_path):
    out = tmp_path / "suite"
    good = out / "variants" / "good"
    _entry(good, REFS, rouge=90.0)
    write_json(good / "train_summary.json", {"trainable_pct": 0.34, "trainable_params": 4600, "wall_time_s": 61.3})
    write_jsonl(good / "loss.jsonl", [{"step": 1, "train_loss": 2.5}])
    RunRecord(train={"method": "lora", "r": 8}, identity={"method": "lora"}, config_hash="abc123",
              model={"name": "tiny", "kind": "local", "location": "/m"}, prompt={"format": "chat", "tags": True}).write(good)
    _entry(out / "variants" / "bad", ["no idea"] * 12, rouge=0.0)
    _entry(out / "variants" / "elsewhere", REFS, ids=[f"x{i}" for i in range(12)], rouge=50.0)  # other examples
    (out / "variants" / "broken").mkdir(parents=True)
    write_json(out / "variants" / "broken" / "failed.json", {"error": "RunFailed: loss became nan"})
    (out / "variants" / "empty").mkdir(parents=True)  # neither results nor a failure record
    _entry(out / "baselines" / "retrieval", REFS, rouge=90.0, extra={"generated": False})  # the same replies as "good"
    _entry(out / "baselines" / "constant", ["no idea"] * 12, rouge=95.0)
    write_json(out / "data" / "prepare_report.json", {"pairs_kept": 120})
    return out


def test_a_directory_without_status_lists_its_folders(suite_dir):
    res = build_results(suite_dir, n_resamples=200)
    assert json.loads((suite_dir / "results.json").read_text()) == json.loads(json.dumps(res))
    by = {e["name"]: e for e in res["entries"]}
    assert {n: (e["kind"], e["status"]) for n, e in by.items()} == {
        "bad": ("variant", "ok"), "broken": ("variant", "failed"), "elsewhere": ("variant", "ok"), "empty": ("variant", "failed"),
        "good": ("variant", "ok"), "constant": ("baseline", "ok"), "retrieval": ("baseline", "ok")}
    assert by["broken"]["error"] == "RunFailed: loss became nan" and "metrics" not in by["broken"]
    assert by["empty"]["error"] == "no eval/metrics.json"
    assert res["data"] == {"pairs_kept": 120} and res["suite"] is None and res["name"] == "suite"


def test_figures_come_from_the_evaluation_and_training_figures_from_the_run(suite_dir):
    by = {e["name"]: e for e in build_results(suite_dir, n_resamples=200)["entries"]}
    good, retrieval = by["good"], by["retrieval"]
    assert set(good["metrics"]) == {m.key for m in metrics.METRICS}  # every metric of the table, None if unknown
    assert good["metrics"]["rougeL"] == 90.0 and good["metrics"]["perplexity"] is None
    # training figures from train_summary.json, not from metrics.json (which says 99 here)
    assert (good["metrics"]["trainable_pct"], good["metrics"]["trainable_params"]) == (0.34, 4600)
    assert good["metrics"]["train_wall_time_s"] == 61.3 and by["bad"]["metrics"]["trainable_pct"] == 99.0
    # speed is only shown for replies that were generated
    assert good["metrics"]["latency_p50_s"] == 0.5 and retrieval["metrics"]["latency_p50_s"] is None
    assert good["generated"] and not retrieval["generated"]
    assert good["ci"] == {"rougeL": [89.0, 91.0]} and good["breakdown"] == {"category": {"question": {"count": 12}}}
    assert good["examples"] == 12 and [s["id"] for s in good["samples"]] == [f"e{i}" for i in range(6)]
    assert good["loss"] == [{"step": 1, "train_loss": 2.5}]
    assert good["config"] == {"method": "lora", "r": 8} and good["config_hash"] == "abc123"
    assert good["prompt"] == {"format": "chat", "tags": True}
    assert "loss" not in by["bad"] and "config" not in by["bad"]


def test_pairs_on_the_same_examples_are_tested_and_the_best_variant_is_a_variant(suite_dir):
    res = build_results(suite_dir, n_resamples=200)
    assert res["best_variant"] == "good" and res["primary"] == "rougeL"  # the constant baseline scores more
    pairs = {(r["a"], r["b"]): r for r in res["significance"]}
    assert set(pairs) == {("bad", "constant"), ("bad", "good"), ("bad", "retrieval"), ("constant", "good"),
                          ("constant", "retrieval"), ("good", "retrieval")}  # "elsewhere" answered other examples
    tested = {m.key for m in metrics.select(test=True)}
    same = pairs[("good", "retrieval")]
    assert set(same) - {"a", "b"} == tested
    assert all(same[k]["diff"] == 0 and not same[k]["significant"] for k in tested)
    apart = pairs[("bad", "good")]
    assert apart["rougeL"]["diff"] == -90 and all(apart[k]["significant"] for k in tested)
    assert apart["bleu"]["diff"] < -50  # corpus BLEU recomputed from the texts, not the metrics.json figure


def test_suite_status_decides_the_entries(suite_dir):
    write_json(suite_dir / "suite_status.json", {"seconds": 12.5, "entries": [
        {"name": "good", "kind": "variant", "dir": "variants/good", "status": "ok"},
        {"name": "broken", "kind": "variant", "dir": "variants/broken", "status": "failed"},
        {"name": "constant", "kind": "baseline", "dir": "baselines/constant", "status": "ok"}]})
    (suite_dir / "suite.yaml").write_text("name: hand-made\n")
    res = build_results(suite_dir, n_resamples=200)
    assert [e["name"] for e in res["entries"]] == ["good", "broken", "constant"]
    assert res["entries"][1]["error"] == "RunFailed: loss became nan"
    assert (res["name"], res["suite"], res["suite_seconds"]) == ("hand-made", "name: hand-made\n", 12.5)
    assert [(r["a"], r["b"]) for r in res["significance"]] == [("constant", "good")]


def test_no_finished_variant_means_no_best(tmp_path):
    out = tmp_path / "s"
    _entry(out / "baselines" / "constant", ["no idea"] * 12, rouge=10.0)
    res = build_results(out, n_resamples=200)
    assert res["best_variant"] is None and res["significance"] == []
