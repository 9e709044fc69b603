"""The ``active`` scheduler: spend each human vote where it most reduces uncertainty about the ranking.

Uniform scheduling (schedule.py) gives every pair of entries the same number of votes, so most
votes go to pairs whose order is already obvious (the fine-tuned model against an empty-reply
baseline). Here, rules in order:
  1. balance: an entry shown less than ``floor`` x the mean exposure (decided votes it was in) is
     shown next, so every entry keeps appearing and no entry is starved by a confident ranking;
  2. the pair, by ``criterion``, on a Laplace approximation of the Bradley-Terry posterior (the MAP
     from prefs.fit_strengths, covariance = the inverse Hessian of the penalised log-likelihood),
     which gives each pair's gap d and its variance v:
       ``settle`` (default, ranking_gains): the vote expected to add most correctly ordered pairs
       to the whole ranking (a knowledge-gradient step: Kendall tau counts every pair once), each
       pair weighted by the chance that the suite's comparisons can settle it at all;
       ``neighbours``: the least-asked pair adjacent in the fitted order whose gap is under ``z``
       standard deviations (intervals overlap), else any such pair, else any pair;
       ``flip`` (the first version, pair_scores): P(order flips) x the share of v one vote removes.
     Comparisons handed out but not answered yet (``busy``) add their expected information to the
     Hessian (it needs no outcome), so two raters at once get different pairs. Measured against
     uniform with a simulated rater: docs/results/active_rating_v2.json;
  3. a message of that pair this rater has not seen, drawn with weight 1 - chrF(reply a, reply b)/100:
     identical replies (weight 0) teach the ranking nothing and are never drawn while others are
     left, near-identical ones rarely. A draw rather than the most different message: always taking
     the most different ones judges the entries on an unrepresentative slice of messages, and with
     the simulated rater (simulate.py) that biased the fit away from the all-message ranking. With
     probability ``overlap`` it is one another rater already judged (for kappa), as in uniform;
     otherwise one no rater has judged for that pair, when there is one, so coverage spreads;
  4. random left/right order (blind), ties broken with the scheduler's seeded rng (deterministic).
"""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
from sacrebleu.metrics import CHRF
from scipy.special import ndtr

from .prefs import SCORE, fit_strengths, laplace_cov, win_probabilities
from .replies import SuiteReplies
from .schedule import CRITERIA, CRITERION, Scheduler, Task
from .store import Store

FLOOR = 0.5  # an entry below half the mean exposure is shown next


def reply_difference(a: str, b: str, chrf: CHRF | None = None) -> float:
    """1 - chrF/100 between two replies: 0 for identical, 1 for nothing in common (or one empty)."""
    if a == b:
        return 0.0
    return 1.0 - (chrf or CHRF()).sentence_score(a, [b]).score / 100.0


def posterior(entries: list[str], votes: list[dict], busy: dict[tuple[str, str], int] | None = None):
    """Laplace approximation of the Bradley-Terry posterior: MAP strengths, their covariance, P(i beats j).

    ``votes``: decided votes (skips and unknown entries are ignored); ``busy``: open comparisons per
    pair, counted in the Hessian (their expected information needs no outcome).
    """
    index = {e: k for k, e in enumerate(entries)}
    n = len(entries)
    wins = np.zeros((n, n))
    for v in votes:
        s = SCORE.get(v.get("choice"))
        if s is None or v["left"] not in index or v["right"] not in index:
            continue
        i, j = index[v["left"]], index[v["right"]]
        wins[i, j] += s
        wins[j, i] += 1 - s
    theta = fit_strengths(wins)
    total = wins + wins.T
    for (a, b), k in (busy or {}).items():
        if a in index and b in index:
            total[index[a], index[b]] += k
            total[index[b], index[a]] += k
    p = win_probabilities(theta)
    return theta, laplace_cov(total, p), p


def pair_scores(entries: list[str], votes: list[dict], busy: dict[tuple[str, str], int] | None = None) -> dict:
    """Per sorted pair of entries: P(its fitted order is wrong) x the share of its gap's variance one vote removes."""
    index = {e: k for k, e in enumerate(entries)}
    theta, cov, p = posterior(entries, votes, busy)
    out = {}
    for a in entries:
        for b in entries:
            if a >= b:
                continue
            i, j = index[a], index[b]
            var = max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12)
            flip = 0.5 * math.erfc(abs(theta[i] - theta[j]) / math.sqrt(2 * var))
            w = p[i, j] * (1 - p[i, j])
            out[(a, b)] = flip * w * var / (1 + w * var)
    return out


_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(24)


def ranking_gains(entries: list[str], votes: list[dict], busy: dict[tuple[str, str], int] | None = None,
                  available: dict[tuple[str, str], int] | None = None) -> dict:
    """Per sorted pair of entries: how many more pairs of the whole ranking one vote on it is expected to order right.

    A knowledge-gradient step on the Laplace posterior: a vote on (a, b) adds w = p(1-p) along
    e_a - e_b to the Hessian, which shrinks every pair's gap variance v to v' (Sherman-Morrison)
    and moves its gap d by a N(0, v - v') amount before the outcome is known. The chance that pair
    (k, l) is ordered right is Phi(|d|/sqrt(v)) now and E[Phi(|d + shift|/sqrt(v'))] after; the gain
    sums the change over all pairs (Kendall tau counts each pair once). Pairs far apart gain nothing
    (they are right already), so the votes go to neighbours whose intervals overlap, and to the
    comparisons that inform them indirectly.

    ``available``: comparisons the suite has per pair (messages both entries answered). Then a pair
    counts in the sum only as far as it can be settled at all: weighted by the probability that, once
    a vote is in on every available comparison, its estimated gap will exceed its standard error
    then (the estimate drifts by N(0, v - v_final) on the way). Entries tied within what the suite can
    show (seeds of one recipe) would otherwise absorb the votes - a knowledge-gradient step favours
    an even pair, whose every vote may tip it - while the pairs that can be ordered wait.
    """
    theta, cov, p = posterior(entries, votes, busy)
    n = len(entries)
    ii, jj = np.triu_indices(n, 1)
    z = np.zeros((len(ii), n))
    z[np.arange(len(ii)), ii] = 1.0
    z[np.arange(len(ii)), jj] = -1.0
    d = np.abs(theta[ii] - theta[jj])
    v = np.maximum(np.einsum("pi,ij,pj->p", z, cov, z), 1e-12)
    now = ndtr(d / np.sqrt(v))
    settle = np.ones(len(ii))
    if available:
        index = {e: k for k, e in enumerate(entries)}
        total = np.zeros((n, n))
        for (a, b), k in available.items():
            if a in index and b in index:
                total[index[a], index[b]] = total[index[b], index[a]] = k
        final = np.maximum(np.einsum("pi,ij,pj->p", z, laplace_cov(total, p), z), 1e-12)
        # the gap's estimate once every comparison is in: N(d, v - final); settled when it clears its final SE
        drift = np.sqrt(np.maximum(v - final, 1e-12))
        settle = ndtr((d - np.sqrt(final)) / drift) + ndtr((-d - np.sqrt(final)) / drift)
    zc = z @ cov  # row p: cov applied to pair p's direction
    out = {}
    for c, (a, b) in enumerate(zip(ii, jj)):
        w = p[a, b] * (1 - p[a, b])
        shrink = w * (zc @ z[c]) ** 2 / (1 + w * v[c])  # v - v' for every pair
        after_v = np.maximum(v - shrink, 1e-12)
        moved = d[:, None] + np.sqrt(2 * shrink)[:, None] * _NODES[None, :]
        after = (ndtr(np.abs(moved) / np.sqrt(after_v)[:, None]) * _WEIGHTS).sum(axis=1) / math.sqrt(math.pi)
        out[(entries[a], entries[b])] = float((settle * (after - now)).sum())
    return out




class ActiveScheduler(Scheduler):
    """Same interface and store as the uniform Scheduler; chooses pairs and messages by expected information."""

    def __init__(self, suite: SuiteReplies, store: Store, planned: int = 200, overlap: float = 0.25,
                 rng: random.Random | None = None, floor: float = FLOOR, differences: dict | None = None,
                 criterion: str = CRITERION, z: float = 2.5):
        super().__init__(suite, store, planned, overlap, rng)
        if floor < 0:
            raise ValueError("floor must be at least 0")
        if criterion not in CRITERIA:
            raise ValueError(f"criterion '{criterion}': choose one of {', '.join(CRITERIA)}")
        self.floor, self.criterion, self.z = floor, criterion, z
        self.differences = {} if differences is None else differences  # (message id, pair) -> reply difference
        self._chrf = CHRF()

    def difference(self, mid: str, pair: tuple[str, str]) -> float:
        key = (mid, pair)
        if key not in self.differences:
            a, b = (self.suite.replies[e][mid] for e in pair)
            self.differences[key] = reply_difference(a, b, self._chrf)
        return self.differences[key]

    def _balanced(self, open_pairs: list, decided: dict, busy: dict) -> list:
        """The open pairs with an under-shown entry when there is one (rule 1), else all open pairs."""
        exposure = {e: 0 for pair in open_pairs for e in pair}
        for pair, count in decided.items():
            for e in pair:
                if e in exposure:
                    exposure[e] += count + busy.get(pair, 0)
        mean = sum(exposure.values()) / len(exposure)
        low = min(exposure.values())
        if low >= self.floor * mean:
            return open_pairs
        starved = {e for e, x in exposure.items() if x == low}
        return [p for p in open_pairs if starved & set(p)]

    def next_task(self, rater: str, busy: dict[tuple[str, str], int] | None = None) -> Task | None:
        self.store.refresh()
        decided, seen, others = self._tallies(rater)
        busy = busy or {}
        open_pairs = [p for p, ids in self.suite.pairs.items() if any((mid, p) not in seen for mid in ids)]
        if not open_pairs:
            return None
        candidates = self._balanced(open_pairs, decided, busy)
        if self.criterion in ("overlap", "neighbours"):
            pair = self._unsettled(candidates, decided, busy)
            return self._blind(self._message(pair, seen, others), pair)
        if self.criterion == "settle":  # both skip skips and unknown entries
            available = {p: len(ids) for p, ids in self.suite.pairs.items()}
            scores = ranking_gains(self.suite.entries, self.store.votes, busy, available)
        else:
            scores = pair_scores(self.suite.entries, self.store.votes, busy)
        top = max(scores[p] for p in candidates)
        pair = self.rng.choice(sorted(p for p in candidates if scores[p] >= top - 1e-12))
        return self._blind(self._message(pair, seen, others), pair)

    def _unsettled(self, candidates: list, decided: dict, busy: dict) -> tuple[str, str]:
        """The least-asked pair whose order is still open (gap under ``self.z`` SDs), neighbours in the fit first.

        Least-asked rather than closest: a tie the suite cannot settle would otherwise take every vote.
        """
        theta, cov, _ = posterior(self.suite.entries, self.store.votes, busy)
        index = {e: k for k, e in enumerate(self.suite.entries)}
        order = sorted(self.suite.entries, key=lambda e: -theta[index[e]])
        neighbours = {tuple(sorted(q)) for q in itertools.pairwise(order)}

        def separation(pair: tuple[str, str]) -> float:
            i, j = index[pair[0]], index[pair[1]]
            return abs(theta[i] - theta[j]) / math.sqrt(max(cov[i, i] + cov[j, j] - 2 * cov[i, j], 1e-12))

        unsettled = [q for q in candidates if separation(q) < self.z]
        pool = [q for q in unsettled if q in neighbours] if self.criterion == "neighbours" else []
        pool = pool or unsettled or candidates
        return min(pool, key=lambda q: (decided[q] + busy.get(q, 0), separation(q)))  # ties: the closer pair

    def _message(self, pair: tuple[str, str], seen: set, others: dict) -> str:
        """Rule 3: an unseen message drawn by how much its two replies differ, from the overlap or the unjudged pool."""
        fresh = [mid for mid in self.suite.pairs[pair] if (mid, pair) not in seen]
        judged = others.get(pair, set())
        shared = [mid for mid in fresh if mid in judged]
        unjudged = [mid for mid in fresh if mid not in judged]
        pool = shared if shared and self.rng.random() < self.overlap else (unjudged or fresh)
        weights = [self.difference(mid, pair) for mid in pool]
        if sum(weights) <= 0:
            return self.rng.choice(pool)  # every reply pair identical: any of them (a tie is still a vote)
        return self.rng.choices(pool, weights=weights)[0]
