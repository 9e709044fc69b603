"""MBR selection (inference/mbr.py) on hand-made candidate pools: no model, runs in about a second."""

import random

import pytest
from rouge_score import rouge_scorer
from sacrebleu import sentence_bleu, sentence_chrf

from supporttune.core.errors import UserError
from supporttune.inference.mbr import (UTILITIES, DecodeSpec, bleu, chrf, decode_spec, mbr_replies, mix, rouge_l,
                                       select, utility_matrix)
from supporttune.metrics.scores import get

CONSENSUS = [
    "Please send us a DM with your order number so we can check.",
    "Please DM us your order number and we will look into it.",
    "Please DM us your order number and we will check the status.",  # shares most with every other one
    "Please DM us the order number and we can check the status.",
    "DM us your order number and we will check the status for you.",
]
OUTLIER = "Our stores open at nine on weekdays, see you soon!"


@pytest.mark.parametrize("utility", UTILITIES)
def test_consensus_candidate_wins(utility):
    index, expected = select(CONSENSUS, utility)
    assert index == 2, (utility, expected)
    assert len(expected) == len(CONSENSUS) and all(0 <= e <= 1 for e in expected)


@pytest.mark.parametrize("utility", UTILITIES)
@pytest.mark.parametrize("position", [0, 3, 5])
def test_outlier_never_wins_even_in_the_greedy_slot(utility, position):
    pool = CONSENSUS[:position] + [OUTLIER] + CONSENSUS[position:]
    index, expected = select(pool, utility)
    assert index != position
    assert expected[position] == min(expected)


@pytest.mark.parametrize("utility", UTILITIES)
def test_ties_go_to_the_first_candidate(utility):
    assert select(["Thanks, we are on it.", "Thanks, we are on it."], utility)[0] == 0
    assert select(["", "", ""], utility) == (0, [0.0, 0.0, 0.0])  # all empty: nothing to agree with, greedy kept


def test_symmetric_tie_goes_to_the_first():
    a, b = "Please DM us your order number.", "We have refunded your order."
    index, expected = select([a, b, a, b], "rouge_l")  # ROUGE-L F1 is symmetric: all four tie exactly
    assert index == 0 and len(set(expected)) == 1


def test_duplicates_are_pool_members():
    x, y = "Please DM us your order number.", "Please DM us your account email."
    index, expected = select([x, y, y], "chrf")
    assert index == 1  # the repeated reply supports itself
    assert expected[1] == pytest.approx((chrf(y, x) + 1.0) / 2)
    assert expected[0] == pytest.approx(chrf(x, y))


def test_one_candidate_and_empty_pool():
    assert select(["only reply"], "mix") == (0, [0.0])
    assert mbr_replies([["only reply"]], "mix") == [(0, "only reply")]
    with pytest.raises(ValueError, match="at least one candidate"):
        select([], "chrf")


def test_empty_reply_never_beats_a_real_one():
    index, expected = select(["", "We are sorry to hear that.", "We are sorry about that."], "chrf")
    assert index in (1, 2) and expected[0] == 0.0


def test_mbr_replies_in_message_order():
    pools = [CONSENSUS, ["a b c", "x y z", "a b c d"], ["solo"]]
    assert mbr_replies(pools, "rouge_l") == [(2, CONSENSUS[2]), (0, "a b c"), (0, "solo")]


def test_expected_utility_is_the_mean_against_the_others():
    """The fast pool path equals the plain estimator run on sacreBLEU's own sentence chrF."""
    def library_chrf(hyp, ref):
        return sentence_chrf(hyp, [ref]).score / 100

    fast = select(CONSENSUS + [OUTLIER], "chrf")
    slow = select(CONSENSUS + [OUTLIER], library_chrf)
    assert fast[0] == slow[0]
    assert fast[1] == pytest.approx(slow[1], abs=1e-12)
    matrix = utility_matrix(CONSENSUS + [OUTLIER], "chrf")
    assert fast[1][0] == pytest.approx(sum(matrix[0, 1:6]) / 5)
    assert matrix[0, 1] != pytest.approx(matrix[1, 0])  # chrF is recall-weighted: direction matters


PAIRS = [("Please DM us your order number.", "Please send us a DM with your order number and email."),
         ("We're sorry! Your refund is on its way :)", "Sorry, the refund has been processed."),
         ("Thanks", "Thanks for reaching out, happy to help."),
         ("", "anything"), ("a", "a")]


@pytest.mark.parametrize("hyp,ref", PAIRS)
def test_utilities_match_the_libraries_and_metrics_module(hyp, ref):
    assert chrf(hyp, ref) == pytest.approx(sentence_chrf(hyp, [ref]).score / 100, abs=1e-12)
    assert bleu(hyp, ref) == pytest.approx(min(sentence_bleu(hyp, [ref]).score / 100, 1.0), abs=1e-12)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    assert rouge_l(hyp, ref) == pytest.approx(scorer.score(ref, hyp)["rougeL"].fmeasure, abs=1e-12)
    # the report's own per-example scorers (0-100)
    assert 100 * chrf(hyp, ref) == pytest.approx(get("chrf").per_example([hyp], [ref])[0], abs=1e-9)
    assert 100 * rouge_l(hyp, ref) == pytest.approx(get("rougeL").per_example([hyp], [ref])[0], abs=1e-9)
    assert min(100 * bleu(hyp, ref), 100) == pytest.approx(min(get("bleu").per_example([hyp], [ref])[0], 100), abs=1e-9)
    assert mix(hyp, ref) == pytest.approx((chrf(hyp, ref) + rouge_l(hyp, ref)) / 2)


def test_utilities_match_the_libraries_on_random_pairs():
    """Vectorised chrF/BLEU and the bit-parallel LCS against the libraries on varied (and degenerate) texts."""
    rng = random.Random(7)
    words = "the a your order has been shipped please dm us sorry refund 3-5 days thanks! running runs ran ? .".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 18))) for _ in range(60)] + ["", " ", "!!"]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    for _ in range(150):
        hyp, ref = rng.choice(texts), rng.choice(texts)
        assert chrf(hyp, ref) == pytest.approx(sentence_chrf(hyp, [ref]).score / 100, abs=1e-9), (hyp, ref)
        assert bleu(hyp, ref) == pytest.approx(min(sentence_bleu(hyp, [ref]).score / 100, 1), abs=1e-9), (hyp, ref)
        assert rouge_l(hyp, ref) == pytest.approx(scorer.score(ref, hyp)["rougeL"].fmeasure, abs=1e-9), (hyp, ref)


def test_unknown_utility_is_one_line():
    with pytest.raises(UserError, match="unknown MBR utility 'meteor'"):
        select(["a", "b"], "meteor")


# ---- the config ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fields,message", [
    (dict(strategy="beam", num_beams=1), "num_beams >= 2"),
    (dict(strategy="mbr", candidates=0), "candidates"),
    (dict(strategy="mbr", candidates=65), "candidates"),
    (dict(strategy="nucleus"), "strategy"),
    (dict(strategy="mbr", utility="meteor"), "utility"),
    (dict(strategy="sample", temperature=0), "temperature"),
    (dict(strategy="sample", top_p=1.5), "top_p"),
    (dict(strategy="greedy", beams=2), "beams"),
])
def test_bad_decode_settings_are_one_line(fields, message):
    with pytest.raises(UserError, match=message) as err:
        decode_spec(**fields)
    assert "\n" not in str(err.value)


def test_record_keeps_only_what_the_strategy_uses():
    assert decode_spec(strategy="greedy", num_beams=1, candidates=3).record() == {"strategy": "greedy"}
    assert DecodeSpec().record() == {"strategy": "greedy"}
    beam = decode_spec(strategy="beam", num_beams=3)
    assert beam.record() == {"strategy": "beam", "num_beams": 3} and beam.pool_size == 1
    spec = decode_spec(strategy="mbr", candidates=16, utility="mix", temperature=0.8, top_p=0.95)
    assert spec.pool_size == 17
    assert spec.record() == {"strategy": "mbr", "temperature": 0.8, "top_p": 0.95, "seed": 0, "candidates": 16,
                             "include_greedy": True, "pool_size": 17, "utility": "mix"}
    assert spec.generate_kwargs() == {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "top_k": 0,
                                      "num_return_sequences": 16}
    assert decode_spec(strategy="sample").generate_kwargs()["num_return_sequences"] == 1
    assert decode_spec(strategy="mbr", candidates=1).pool_size == 2  # greedy + one sample
    assert decode_spec(strategy="mbr", candidates=1, include_greedy=False).pool_size == 1  # = sampling
