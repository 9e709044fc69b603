"""The active rating scheduler and the simulated rater: where the votes go, and that the ranking comes out right.

Uses test_rate_logic's hand-made suite (4 entries x 12 messages) and, for the simulator, an
in-memory suite whose entries copy ever fewer words of the reference (a clear quality order).
"""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest
from test_rate_logic import make_suite

STRENGTHS = {"constant-dm": 3.0, "qlora-r8": 0.2, "retrieval-tfidf": 0.0, "pt-10": -3.0}
CLOSE = ("qlora-r8", "retrieval-tfidf")  # the one pair whose order is uncertain


@pytest.fixture()
def suite(tmp_path):
    return make_suite(tmp_path / "suite")


def _active(suite_dir, **kw):
    from supporttune.rate.active import ActiveScheduler
    from supporttune.rate.replies import load_replies
    from supporttune.rate.store import FILENAME, Store

    return ActiveScheduler(load_replies(suite_dir), Store(suite_dir / FILENAME), rng=random.Random(kw.pop("seed", 0)), **kw)


def _vote(sched, task, rater, choice):
    sched.store.append({"rater": rater, "message_id": task.message_id, "left": task.left, "right": task.right,
                        "choice": choice, "flags": {}})


def _prefers(task) -> str:
    """A rater who always agrees with STRENGTHS."""
    return "left" if STRENGTHS[task.left] > STRENGTHS[task.right] else "right"


def _pair(task):
    return tuple(sorted((task.left, task.right)))


def _known_votes(sched, per_pair: int = 10):
    """``per_pair`` votes on every pair by another rater, won in proportion to the Bradley-Terry probability."""
    from supporttune.rate.schedule import Task

    for (a, b), ids in sched.suite.pairs.items():
        wins = round(per_pair / (1 + math.exp(STRENGTHS[b] - STRENGTHS[a])))
        for k, mid in enumerate(ids[:per_pair]):
            _vote(sched, Task(mid, a, b), "other", "left" if k < wins else "right")


def test_active_picks_the_closest_pair_when_strengths_are_known(suite):
    from supporttune.rate.active import pair_scores

    sched = _active(suite)
    _known_votes(sched)
    scores = pair_scores(sched.suite.entries, sched.store.votes)
    assert max(scores, key=scores.get) == CLOSE
    assert scores[CLOSE] > 5 * scores[("constant-dm", "pt-10")]
    for seed in range(5):
        assert _pair(_active(suite, seed=seed).next_task("ann")) == CLOSE


def test_active_never_repeats_stays_balanced_and_spends_votes_on_the_close_pair(suite):
    sched = _active(suite)
    counts, seen, sides = {p: 0 for p in sched.suite.pairs}, set(), set()
    while (task := sched.next_task("ann")) is not None:
        item = (task.message_id, _pair(task))
        assert item not in seen
        seen.add(item)
        sides.add((task.left, task.right))
        counts[_pair(task)] += 1
        _vote(sched, task, "ann", _prefers(task))
        exposure = {e: sum(c for p, c in counts.items() if e in p) for e in STRENGTHS}
        if len(seen) <= 36:  # while every pair still has messages left, no entry falls far behind
            assert min(exposure.values()) >= 0.5 * sum(exposure.values()) / 4 - 2, (len(seen), exposure)
        if len(seen) == 24:
            assert counts[CLOSE] > counts[("constant-dm", "pt-10")]  # the obvious pair gets fewer votes
    assert len(seen) == 72 and len(sides) == 12  # everything once, both left/right orders of every pair


def test_active_is_deterministic_given_a_seed(tmp_path):
    def run(root: Path, seed: int) -> list:
        sched = _active(make_suite(root), seed=seed)
        tasks = []
        for _ in range(25):
            t = sched.next_task("ann")
            tasks.append(t)
            _vote(sched, t, "ann", _prefers(t))
        return tasks

    first = run(tmp_path / "a", 7)
    assert run(tmp_path / "b", 7) == first
    assert run(tmp_path / "c", 8) != first


def test_active_prefers_messages_whose_replies_differ_and_keeps_the_overlap_share(suite):
    pair = ("pt-10", "qlora-r8")
    ids = [f"m{i:02d}" for i in range(12)]
    sched = _active(suite, overlap=0.0, differences={(mid, pair): 0.0 for mid in ids} | {("m03", pair): 0.9, ("m07", pair): 0.1})
    drawn = [sched._message(pair, set(), {}) for _ in range(200)]
    assert set(drawn) == {"m03", "m07"} and drawn.count("m03") > 4 * drawn.count("m07")  # identical replies never
    sched = _active(suite, overlap=0.0)
    assert sched.difference("m00", pair) == 1.0  # pt-10 is empty on m00
    assert 0 < sched.difference("m01", pair) < 1 and sched.difference("m01", ("constant-dm", "constant-dm")) == 0.0
    ann = set()
    for _ in range(12):
        t = sched.next_task("ann")
        _vote(sched, t, "ann", _prefers(t))
        ann.add((t.message_id, _pair(t)))
    for _ in range(6):  # overlap 0: bob gets messages ann has not judged for that pair
        t = sched.next_task("bob")
        assert (t.message_id, _pair(t)) not in ann
        _vote(sched, t, "bob", _prefers(t))
    sched.overlap = 1.0  # overlap 1: bob gets ann's items
    for _ in range(6):
        t = sched.next_task("bob")
        assert (t.message_id, _pair(t)) in ann
        _vote(sched, t, "bob", _prefers(t))


def test_open_comparisons_count_as_information_already_asked_for(suite):
    from supporttune.rate.active import pair_scores

    sched = _active(suite)
    first = sched.next_task("ann")  # nothing known yet: every pair is equally uncertain
    second = sched.next_task("bob", busy={_pair(first): 1})
    assert _pair(second) != _pair(first)  # so a second rater at once gets another pair
    _known_votes(sched, per_pair=2)
    calm, busy = pair_scores(sched.suite.entries, sched.store.votes), pair_scores(sched.suite.entries, sched.store.votes, {CLOSE: 3})
    assert busy[CLOSE] < calm[CLOSE]


def test_the_scheduler_kind_is_chosen_by_name(suite):
    from supporttune.rate.active import ActiveScheduler
    from supporttune.rate.app import RatingSession
    from supporttune.rate.schedule import Scheduler

    assert type(RatingSession(suite, seed=0).scheduler) is ActiveScheduler  # the default
    assert type(RatingSession(suite, seed=0, scheduler="uniform").scheduler) is Scheduler
    with pytest.raises(ValueError, match="choose one of active, uniform"):
        RatingSession(suite, scheduler="random")
    assert RatingSession(suite, seed=0).scheduler.criterion == "settle"
    assert RatingSession(suite, seed=0, pair_rule="neighbours").scheduler.criterion == "neighbours"
    with pytest.raises(ValueError, match="criterion 'best'"):
        RatingSession(suite, pair_rule="best")


def test_rate_pair_rule_flag_is_validated(tmp_path):
    """`rate --pair-rule` picks the active scheduler's rule; with --scheduler uniform it is refused in one line."""
    from supporttune.rate.config import RateConfig

    assert RateConfig(suite=tmp_path).pair_rule == "settle"
    assert RateConfig(suite=tmp_path, pair_rule="flip").pair_rule == "flip"
    with pytest.raises(ValueError, match="needs --scheduler active"):
        RateConfig(suite=tmp_path, scheduler="uniform", pair_rule="flip")
    with pytest.raises(ValueError):
        RateConfig(suite=tmp_path, pair_rule="best")


def synthetic_suite(n_entries: int = 5, n_messages: int = 16, seed: int = 0):
    """Entry k keeps each reference word with probability 0.95 - 0.2k, else writes filler: a clear quality order."""
    from supporttune.rate.replies import SuiteReplies

    rng = random.Random(seed)
    words = ["order", "parcel", "refund", "tracking", "delivery", "sorry", "help", "account", "payment", "label"]
    messages = {f"m{i:02d}": {"id": f"m{i:02d}", "reference": " ".join(rng.choice(words) for _ in range(12))}
                for i in range(n_messages)}
    replies = {f"e{k}": {mid: " ".join(w if rng.random() < 0.95 - 0.2 * k else "xyzzy" for w in m["reference"].split())
                         for mid, m in messages.items()} for k in range(n_entries)}
    pairs = {p: sorted(messages) for p in itertools.combinations(sorted(replies), 2)}
    return SuiteReplies(Path("."), replies, messages, pairs)


def test_simulated_rater_ranks_by_the_metric_and_the_fit_reaches_its_ranking():
    from supporttune.rate.simulate import RaterModel, compare, simulate, votes_to

    suite = synthetic_suite()
    model = RaterModel.from_suite(suite)
    true = model.true_strengths(suite)
    assert list(true) == sorted(true, reverse=True)  # e0 best ... e4 worst, as built
    assert model.choice("m00", "e0", "e0", None) == "tie"
    differences: dict = {}
    for kind in ("uniform", "active"):
        curve = simulate(suite, kind, votes=80, seed=0, every=10, model=model, differences=differences)
        assert curve[0] == {"votes": 0, "tau": 0.0} and curve[-1]["votes"] == 80
        assert votes_to(curve) is not None and curve[-1]["tau"] >= 0.9
    result = compare(suite, seeds=2, votes=40, every=20, model=model)
    assert set(result["kinds"]) == {"uniform", "active"}
    assert [p["votes"] for p in result["kinds"]["active"]["mean_curve"]] == [0, 20, 40]


def _votes(pairs: dict) -> list[dict]:
    """Decided votes from {(a, b): (wins of a, wins of b)}."""
    out = []
    for (a, b), (wa, wb) in pairs.items():
        out += [{"left": a, "right": b, "choice": "left"}] * wa + [{"left": a, "right": b, "choice": "right"}] * wb
    return out


def test_the_ranking_gain_goes_to_neighbours_whose_order_is_open():
    from supporttune.rate.active import ranking_gains

    # a >> b ~ c >> d: only b-c is open; a-d is settled however it is asked
    votes = _votes({("a", "b"): (9, 1), ("b", "c"): (3, 3), ("c", "d"): (9, 1), ("a", "d"): (5, 0)})
    gains = ranking_gains(["a", "b", "c", "d"], votes)
    assert max(gains, key=gains.get) == ("b", "c")
    assert gains[("b", "c")] > 5 * gains[("a", "d")] and gains[("b", "c")] > 2 * max(gains[("a", "b")], gains[("c", "d")])


def test_a_tie_the_suite_cannot_settle_loses_weight_as_its_comparisons_run_out():
    from supporttune.rate.active import ranking_gains

    entries = ["a", "b", "c"]
    votes = _votes({("a", "b"): (10, 10), ("b", "c"): (2, 1), ("a", "c"): (2, 1)})  # a ~ b after 20 even votes
    blind = ranking_gains(entries, votes)
    spent = ranking_gains(entries, votes, available={("a", "b"): 21, ("b", "c"): 30, ("a", "c"): 30})
    roomy = ranking_gains(entries, votes, available={("a", "b"): 150, ("b", "c"): 30, ("a", "c"): 30})
    assert max(blind, key=blind.get) == ("a", "b")  # a knowledge-gradient step alone feeds the tie 2:1
    assert blind[("a", "b")] / blind[("b", "c")] > 1.9
    assert spent[("a", "b")] / spent[("b", "c")] < 1.6  # with 1 comparison left it can hardly be settled
    assert spent[("a", "b")] < 0.3 * roomy[("a", "b")]  # with 130 left it still may


def test_active_reaches_the_true_ranking_with_fewer_votes_than_uniform():
    from supporttune.rate.simulate import RaterModel, simulate, votes_to

    suite = synthetic_suite(6, 40)
    model = RaterModel.from_suite(suite)
    differences: dict = {}
    mean = {}
    for kind in ("uniform", "active"):
        hit = [votes_to(simulate(suite, kind, 80, seed, 5, model=model, differences=differences)) for seed in range(8)]
        mean[kind] = sum(85 if h is None else h for h in hit) / len(hit)
    assert mean["active"] <= 0.85 * mean["uniform"], mean


def test_expected_truth_resolvable_pairs_and_partial_tau():
    import numpy as np

    from supporttune.rate.replies import SuiteReplies
    from supporttune.rate.simulate import RaterModel, resolvable, tau

    ids = [f"m{i}" for i in range(3)]
    suite = SuiteReplies(Path("."), {"a": dict.fromkeys(ids, ""), "b": dict.fromkeys(ids, "")},
                         {m: {"id": m} for m in ids}, {("a", "b"): ids})
    # a wins two messages narrowly, loses one by a lot: more wins, but the rater's votes favour b
    scores = {"a": {"m0": 2.0, "m1": 2.0, "m2": 0.0}, "b": {"m0": 0.0, "m1": 0.0, "m2": 40.0}}
    noiseless = RaterModel(scores, truth="noiseless").true_strengths(suite)
    expected = RaterModel(scores).true_strengths(suite)
    assert noiseless[0] > noiseless[1] and expected[0] < expected[1]
    assert not resolvable(suite, expected, 1.0).any() and resolvable(suite, expected, 0.01).all()
    true = np.array([3.0, 2.0, 1.0, 0.0])
    assert tau(np.array([3.0, 1.0, 2.0, 0.0]), true) < 0.9
    assert tau(np.array([3.0, 1.0, 2.0, 0.0]), true, np.array([1, 1, 1, 0, 1, 1], bool)) == 1.0  # (1, 2) not scored


def test_neighbours_asks_the_adjacent_pair_whose_intervals_overlap(suite):
    sched = _active(suite, criterion="neighbours")
    _known_votes(sched)  # constant-dm >> qlora-r8 ~ retrieval-tfidf >> pt-10
    for seed in range(5):
        assert _pair(_active(suite, seed=seed, criterion="neighbours").next_task("ann")) == CLOSE
    with pytest.raises(ValueError, match="choose one of settle"):
        _active(suite, criterion="best")
