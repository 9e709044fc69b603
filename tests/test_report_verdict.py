"""The verdict rule on results documents written by hand: who ships, ties, Holm, the baseline sentence."""

from __future__ import annotations

from supporttune.report.verdict import decide, summary_lines


def entry(name, kind, score, **extra):
    return {"name": name, "kind": kind, "status": "ok", "metrics": {"rougeL": score}, "ci": {"rougeL": [score - 1, score + 1]},
            **extra}


def paired(a, b, diff, p):
    return {"a": a, "b": b, "rougeL": {"diff": diff, "ci": [diff - 1, diff + 1], "p_value": p, "significant": p < 0.05}}


def results(entries, sig, **extra):
    return {"entries": entries, "significance": sig, "alpha": 0.05, **extra}


def test_ship_the_top_entry_even_a_baseline_and_orient_every_comparison():
    r = results([entry("qlora", "variant", 12.5), entry("retrieval", "baseline", 16.3), entry("zero-shot", "baseline", 9.7)],
                [paired("qlora", "retrieval", -3.8, 0.0), paired("qlora", "zero-shot", 2.8, 0.0), paired("retrieval", "zero-shot", 6.6, 0.0)])
    v = decide(r)
    assert v["ship"]["name"] == "retrieval" and v["best_variant"] == "qlora" and v["best_baseline"] == "retrieval"
    assert [(x["name"], x["diff"]) for x in v["versus"]] == [("qlora", 3.8), ("zero-shot", 6.6)]  # ship minus other
    assert v["versus"][0]["ci"] == [2.8, 4.8]
    assert v["fine_tuning_wins"] is False and v["indistinguishable"] == []
    assert v["lines"][0] == ("It is significantly better than all 2 other entries, ahead of the runner-up, qlora, "
                             "by 3.8 points (95% CI 2.8 to 4.8, p<0.001).")
    assert v["lines"][1] == ("No fine-tuned variant beats the best baseline: the best variant, qlora (12.5), "
                             "is 3.8 ROUGE-L points below retrieval (p<0.001, significant).")
    assert summary_lines(v)[0] == "Ship retrieval (baseline): ROUGE-L 16.3 [15.3, 17.3]."


def test_holm_decides_what_is_distinguishable():
    # raw p 0.03 and 0.04: each below 0.05, but Holm over the two gives 0.06 and 0.06 -> both ties
    r = results([entry("a", "variant", 20.0), entry("b", "variant", 19.0), entry("c", "baseline", 18.0)],
                [paired("a", "b", 1.0, 0.03), paired("a", "c", 2.0, 0.04), paired("b", "c", 1.0, 0.5)])
    v = decide(r)
    assert [round(x["p_adjusted"], 3) for x in v["versus"]] == [0.06, 0.06]
    assert v["indistinguishable"] == ["b", "c"] and v["fine_tuning_wins"] is False
    assert v["lines"][0] == "Not distinguishable from it: b (19.0, p=0.06); c (18.0, p=0.06)."
    assert v["lines"][1].startswith("No fine-tuned variant beats the best baseline: a is ahead of c by 2.0 points")
    assert v["lines"][1].endswith("which is not significant.")


def test_fine_tuning_pays_off_and_failures_and_human_caution_are_said():
    pref = {"disagrees_with_metrics": True, "verdict": "Human preference disagrees with the automatic metrics: raters prefer b."}
    r = results([entry("a", "variant", 30.0), entry("b", "baseline", 20.0),
                 {"name": "x", "kind": "variant", "status": "failed", "error": "boom"}],
                [paired("a", "b", 10.0, 0.0)], human_preference=pref)
    v = decide(r)
    assert v["fine_tuning_wins"] is True and v["human_preference_disagrees"] is True
    assert "Fine-tuning pays off: a beats the best baseline, b, by 10.0 points (95% CI 9.0 to 11.0, p<0.001)." in v["lines"]
    assert "Caution: " + pref["verdict"] in v["lines"]
    assert "1 entry failed and is not compared: x." in v["lines"]


def test_entries_without_a_paired_test_and_one_sided_suites():
    r = results([entry("a", "variant", 30.0), entry("b", "variant", 20.0)], [])
    v = decide(r)
    assert v["versus"][0]["compared"] is False and "Not compared (evaluated on other test examples): b." in v["lines"]
    assert v["lines"][-1] == "No baseline finished, so nothing says whether fine-tuning beats a simple alternative."
    only = decide(results([entry("c", "baseline", 5.0)], []))
    assert only["lines"] == ["It is the only entry that finished: there is nothing to compare it with.",
                             "No fine-tuned variant finished: this compares baselines only."]


def test_nothing_finished():
    v = decide(results([{"name": "x", "kind": "variant", "status": "failed"}], []))
    assert v["status"] == "no_entries" and v["lines"] == ["Every entry failed: x."]
