"""Every metric against values computed by hand, and the bootstrap on known cases."""

import math

import numpy as np
import pytest
import sacrebleu

from supporttune.metrics.scores import CorpusStats, corpus_scores, length_stats, nltk_bleu, per_example_scores
from supporttune.metrics.stats import bootstrap_ci, paired_bootstrap, paired_corpus_bootstrap

REF = "the cat sat on the mat"
PRED = "the cat sat"


@pytest.fixture(scope="module")
def scores():
    return per_example_scores([PRED, REF, ""], [REF, REF, REF])


def test_rouge_by_hand(scores):
    s = scores[0]
    # unigrams: 3 of 3 predicted match, 3 of 6 reference covered: P=1, R=.5, F=2PR/(P+R)
    assert s["rouge1"] == pytest.approx(100 * 2 * 0.5 / 1.5)
    # bigrams: 2 of 2 predicted, 2 of 5 reference
    assert s["rouge2"] == pytest.approx(100 * 2 * 0.4 / 1.4)
    # LCS = 3 tokens
    assert s["rougeL"] == pytest.approx(100 * 2 * 0.5 / 1.5)


def test_bleu_by_hand(scores):
    # sacreBLEU with effective order: 1-3-gram precisions are all 1, brevity penalty exp(1 - 6/3)
    assert scores[0]["bleu"] == pytest.approx(100 * math.exp(1 - 6 / 3), rel=1e-4)
    assert scores[1]["bleu"] == pytest.approx(100)
    assert scores[2]["bleu"] == 0
    # NLTK smoothing method1: a zero 4-gram count becomes 0.1; precisions .75, 2/3, .5, .1
    assert nltk_bleu("a b c d", "a b c e") == pytest.approx(100 * (0.75 * (2 / 3) * 0.5 * 0.1) ** 0.25, rel=1e-6)
    assert nltk_bleu("", REF) == 0


def test_chrf_and_semantic_similarity(scores):
    assert scores[1]["chrf"] == pytest.approx(100)
    assert scores[2]["chrf"] == 0
    assert 0 < scores[0]["chrf"] < 100
    assert scores[1]["semantic_sim"] == pytest.approx(1.0, abs=1e-5)
    assert scores[0]["semantic_sim"] > per_example_scores(["my invoice is wrong"], [REF])[0]["semantic_sim"]


def test_corpus_scores_match_sacrebleu():
    preds, refs = [PRED, "a dog ran home", "hello"], [REF, "the dog ran home fast", "hello there"]
    rows = per_example_scores(preds, refs, semantic=False)
    c = corpus_scores(preds, refs, rows)
    assert c["bleu"] == pytest.approx(sacrebleu.corpus_bleu(preds, [refs]).score)
    assert c["chrf"] == pytest.approx(sacrebleu.corpus_chrf(preds, [refs]).score)
    assert c["rougeL"] == pytest.approx(np.mean([r["rougeL"] for r in rows]))


def test_length_stats():
    s = length_stats(["a b", ""], ["a b c d", "x y"], [False, True])
    assert s == {"length_ratio": pytest.approx(0.25), "empty_share": 0.5, "runaway_share": 0.5}


def test_bootstrap_known_cases():
    const = [{"m": 7.0} for _ in range(50)]
    assert bootstrap_ci(const, ("m",)) == {"m": [7.0, 7.0]}
    coin = [{"m": float(i % 2)} for i in range(400)]  # mean .5, se = .5/sqrt(400) = .025
    lo, hi = bootstrap_ci(coin, ("m",), n_resamples=2000)["m"]
    assert lo == pytest.approx(0.5 - 1.96 * 0.025, abs=0.01) and hi == pytest.approx(0.5 + 1.96 * 0.025, abs=0.01)


def test_corpus_bleu_ci_contains_point_estimate():
    preds = [PRED, "a dog ran home", "hello", "thanks for the message"] * 5
    refs = [REF, "the dog ran home fast", "hello there", "thanks for your message"] * 5
    stats = CorpusStats(preds, refs)
    ci = bootstrap_ci([{"bleu": 0}] * len(preds), ("bleu",), stats)["bleu"]
    assert ci[0] <= stats.score()["bleu"] <= ci[1] and ci[0] < ci[1]


def test_paired_tests():
    a = list(np.linspace(0, 1, 100))
    same = paired_bootstrap(a, a)
    assert same["diff"] == 0 and same["p_value"] == 1.0
    better = paired_bootstrap([x + 1 for x in a], a)
    assert better["diff"] == pytest.approx(1) and better["p_value"] == 0.0
    noisy = paired_bootstrap([x + (0.01 if i % 2 else -0.01) for i, x in enumerate(a)], a)
    assert noisy["p_value"] > 0.5  # a difference that averages to ~0 is not significant
    s = CorpusStats([PRED] * 10, [REF] * 10)
    assert paired_corpus_bootstrap(s, s, "bleu")["p_value"] == 1.0


def test_holm_adjustment_by_hand():
    from supporttune.metrics.stats import holm

    # sorted p: .01 x3 = .03, .02 x2 = .04, .04 x1 = .04 (monotone), back in the given order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []
