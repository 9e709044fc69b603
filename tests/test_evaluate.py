"""The evaluate stage without a model: scoring hand-made replies, the non-model baselines, rescoring."""

import json

import numpy as np
import pytest
import sacrebleu

from supporttune.evaluate.config import EvalConfig
from supporttune.core.errors import UserError
from supporttune.evaluate.stage import evaluate, rescore, score
from supporttune.inference.decode import Generated
from supporttune.core.io import read_json, read_jsonl, write_jsonl

REF = "please send us a direct message with your order number"


def _ex(i, output, category="question", sentiment="neutral", priority="low"):
    return {"id": f"e{i}", "thread_id": f"t{i}", "brand": "Acme", "input": f"where is my order {i}?", "output": output,
            "category": category, "sentiment": sentiment, "priority": priority}


EXAMPLES = [_ex(0, REF), _ex(1, REF, category="complaint", sentiment="negative", priority="high"),
            _ex(2, "sorry to hear that, we will refund you today", category="complaint"), _ex(3, "thanks for waiting")]
REPLIES = [REF, "please send us a message", "", "thanks for your patience"]


@pytest.fixture(scope="module")
def scored():
    gens = [Generated(t, len(t.split()), i == 3, 0.1) for i, t in enumerate(REPLIES)]
    cfg = EvalConfig(baseline="constant", out=".", semantic=False, bootstrap=200, worst_k=2)
    return score(EXAMPLES, gens, [1.0, 2.0, 3.0, 4.0], cfg)


def test_rows_keep_order_and_carry_their_own_scores(scored):
    rows, _ = scored
    assert [r["id"] for r in rows] == ["e0", "e1", "e2", "e3"] and [r["prediction"] for r in rows] == REPLIES
    assert rows[0]["scores"]["bleu"] == 100 and rows[0]["scores"]["rougeL"] == 100 and rows[0]["scores"]["chrf"] == 100
    assert rows[2]["scores"]["bleu"] == 0 and rows[2]["scores"]["rougeL"] == 0
    assert 0 < rows[1]["scores"]["rougeL"] < 100 and rows[1]["scores"]["semantic_sim"] is None  # semantic off
    assert rows[3]["hit_max"] and not rows[0]["hit_max"]
    assert all(v is None or round(v, 4) == v for r in rows for v in r["scores"].values())


def test_headline_numbers_are_corpus_bleu_and_mean_rouge(scored):
    rows, m = scored
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(REPLIES, [[e["output"] for e in EXAMPLES]]).score)
    assert m["rougeL"] == pytest.approx(np.mean([r["scores"]["rougeL"] for r in rows]), abs=1e-3)
    assert m["semantic_sim"] is None and "semantic_sim" not in m["ci"]  # no interval for a metric not computed
    for key in ("bleu", "rougeL", "chrf"):
        lo, hi = m["ci"][key]
        assert lo <= m[key] <= hi and lo < hi, key
    assert m["empty_share"] == 0.25 and m["runaway_share"] == 0.25


def test_breakdowns_and_worst_cases(scored):
    rows, m = scored
    cats = m["by_category"]
    assert {k: v["count"] for k, v in cats.items()} == {"complaint": 2, "question": 2}
    assert cats["question"]["rougeL"] == pytest.approx((rows[0]["scores"]["rougeL"] + rows[3]["scores"]["rougeL"]) / 2,
                                                       abs=1e-3)
    assert {k: v["count"] for k, v in m["by_priority"].items()} == {"high": 1, "low": 3}
    assert set(m["by_sentiment"]) == {"negative", "neutral"}
    assert [w["id"] for w in m["worst"]["rougeL"]] == ["e2", "e3"]  # the empty reply first, k = 2
    assert m["worst"]["bleu"][0] == {**{k: rows[2][k] for k in ("id", "input", "reference", "prediction", "brand",
                                                                 "category")}, "bleu": 0}


def test_latency_percentiles_and_none_without_timings(scored):
    _, m = scored
    assert m["latency_p50_s"] == 2.5 and m["latency_p95_s"] == pytest.approx(3.85) and m["latency_samples"] == 4
    gens = [Generated(t, len(t.split()), False) for t in REPLIES]
    _, m2 = score(EXAMPLES, gens, [], EvalConfig(baseline="constant", out=".", semantic=False, bootstrap=100))
    assert not any(k.startswith("latency") for k in m2)


@pytest.fixture()
def tiny_data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    train = [_ex(10, "please DM us your order number"), _ex(11, "please DM us your order number"),
             {**_ex(12, "we have reset your password"), "input": "how do I reset my password"}]
    write_jsonl(d / "train.jsonl", train)
    write_jsonl(d / "test.jsonl", [{**_ex(0, "use the reset link"), "input": "how do I reset my password"},
                                   _ex(1, "please DM us")])
    return d


def test_constant_and_retrieval_baselines_without_a_model(tiny_data, tmp_path):
    const = evaluate(EvalConfig(baseline="constant", data=tiny_data, out=tmp_path / "c", semantic=False, bootstrap=100))
    preds = read_jsonl(tmp_path / "c" / "eval" / "predictions.jsonl")
    assert [p["prediction"] for p in preds] == ["please DM us your order number"] * 2  # the most common reply
    assert const["name"] == "constant" and const["trainable_params"] == 0 and const["examples"] == 2
    assert read_json(tmp_path / "c" / "eval" / "metrics.json") == json.loads(json.dumps(const))
    evaluate(EvalConfig(baseline="retrieval", data=tiny_data, out=tmp_path / "r", semantic=False, bootstrap=100))
    preds = read_jsonl(tmp_path / "r" / "eval" / "predictions.jsonl")
    assert preds[0]["prediction"] == "we have reset your password"  # the reply to the nearest training input
    with pytest.raises(UserError, match="--force"):
        evaluate(EvalConfig(baseline="retrieval", data=tiny_data, out=tmp_path / "r", semantic=False, bootstrap=100))


def test_rescore_recomputes_scores_and_keeps_what_only_generation_measured(tiny_data, tmp_path):
    cfg = EvalConfig(baseline="constant", data=tiny_data, out=tmp_path / "c", semantic=False, bootstrap=100)
    before = evaluate(cfg)
    path = tmp_path / "c" / "eval" / "metrics.json"
    path.write_text(json.dumps({**before, "rougeL": -1.0, "bleu": -1.0, "latency_p50_s": 123.0}))
    after = rescore(tmp_path / "c" / "eval", cfg)
    assert after["rescored"] and after["rougeL"] == pytest.approx(before["rougeL"]) and after["bleu"] == before["bleu"]
    assert after["latency_p50_s"] == 123.0 and after["name"] == "constant"
    assert read_json(path) == json.loads(json.dumps(after))


def test_every_stage_of_an_evaluation_is_timed(tiny_model_dir, builtin_data, tmp_path):
    """metrics.json "timing": load, compile, generation, perplexity, scoring, latency, and the whole, in seconds."""
    from supporttune.evaluate.stage import TIMING

    m = evaluate(EvalConfig(baseline="zero-shot", model=str(tiny_model_dir), data=builtin_data, out=tmp_path / "z",
                            limit=4, batch_size=2, max_new_tokens=4, latency_samples=2, semantic=False, bootstrap=100,
                            device="cpu"))
    timing = m["timing"]
    assert tuple(timing) == TIMING and all(v >= 0 for v in timing.values())
    assert timing["load_s"] > 0 and timing["generation_s"] > 0 and timing["perplexity_s"] > 0
    assert timing["latency_s"] > 0 and timing["scoring_s"] > 0 and timing["compile_s"] == 0  # nothing compiles on a CPU
    parts = sum(v for k, v in timing.items() if k != "total_s")
    assert parts <= timing["total_s"] + 0.01 and timing["total_s"] < 3 * parts + 5  # the stages are where the time went
    assert m["engine"]["slot_reused"] is None and m["engine"]["from_cache"] is None  # eager path: no slot, no compile
    const = evaluate(EvalConfig(baseline="constant", data=builtin_data, out=tmp_path / "c", limit=4, semantic=False,
                                bootstrap=100))
    assert const["timing"]["load_s"] == 0 and const["timing"]["total_s"] > 0


@pytest.mark.parametrize("name", ["lora", "prompt-tuning"])
def test_reply_only_perplexity_is_the_full_forwards(tiny_runs, builtin_data, name):
    """Left padding + logits of the reply positions only: the same summed NLL over the same tokens."""
    from supporttune.evaluate.perplexity import reply_nll
    from supporttune.inference.agent import load_agent
    from supporttune.inference.generate import reference_nll

    agent = load_agent(tiny_runs(name)[0].out, device="cpu")
    examples = read_jsonl(builtin_data / "test.jsonl")[:7]
    fast, full = reply_nll(agent, examples, batch_size=3), reference_nll(agent, examples, batch_size=3)
    assert fast[1] == full[1] > 0 and fast[0] == pytest.approx(full[0], rel=1e-4)
