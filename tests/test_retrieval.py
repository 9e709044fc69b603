"""The exemplar index: same brand first, never the example's own thread, deterministic."""

import pytest

from supporttune.prompting.retrieval import ExemplarIndex, attach_exemplars

ROWS = [
    {"id": "a1", "thread_id": "A", "brand": "Acme", "input": "my parcel is late", "output": "Sorry, DM us the order."},
    {"id": "a2", "thread_id": "A", "brand": "Acme", "input": "parcel still late", "output": "Checking now."},
    {"id": "b1", "thread_id": "B", "brand": "Acme", "input": "refund for my parcel", "output": "Refund sent."},
    {"id": "c1", "thread_id": "C", "brand": "Other", "input": "my parcel is late again", "output": "Other brand reply."},
    {"id": "d1", "thread_id": "D", "brand": "Acme", "input": "password reset", "output": "Use the reset link."},
]


@pytest.mark.parametrize("scorer", ["tfidf", "bm25"])
def test_never_retrieves_from_own_thread_and_prefers_same_brand(scorer):
    index = ExemplarIndex(ROWS, scorer)
    got = index.nearest({"thread_id": "A", "brand": "Acme", "input": "my parcel is late"}, k=2)
    assert [r["thread_id"] for r in got] != [] and all(r["thread_id"] != "A" for r in got)
    assert got[0]["id"] == "b1"  # the closest same-brand message outside thread A
    assert all(r["brand"] == "Acme" for r in got)  # Acme has two other-thread rows: no other brand needed


def test_falls_back_to_other_brands_when_the_brand_has_too_few():
    index = ExemplarIndex(ROWS, "tfidf")
    got = index.nearest({"thread_id": "X", "brand": "Other", "input": "my parcel is late"}, k=3)
    assert got[0]["id"] == "c1" and len(got) == 3 and {r["brand"] for r in got[1:]} == {"Acme"}
    unknown = index.nearest({"thread_id": "X", "brand": "Nobody", "input": "password reset please"}, k=1)
    assert unknown[0]["id"] == "d1"


def test_attach_is_deterministic_and_distractors_come_from_other_threads():
    index = ExemplarIndex(ROWS, "bm25")
    examples = [dict(r) for r in ROWS]
    once, again = attach_exemplars(examples, index, 2), attach_exemplars(examples, index, 2)
    assert once == again and all(len(e["exemplars"]) == 2 for e in once)
    noisy = attach_exemplars(examples, index, 2, distract_share=1.0, seed=3)
    own = {r["thread_id"]: {x["output"] for x in ROWS if x["thread_id"] == r["thread_id"]} for r in ROWS}
    for ex in noisy:
        assert not {x["output"] for x in ex["exemplars"]} & own[ex["thread_id"]]
    assert attach_exemplars(examples, None, 2) is examples  # retrieval off: untouched


def test_unknown_scorer_is_refused():
    with pytest.raises(ValueError, match="unknown retrieval scorer 'bm26'"):
        ExemplarIndex(ROWS, "bm26")
