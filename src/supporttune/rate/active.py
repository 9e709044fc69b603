"""The ``active`` scheduler: spend each human vote where it most reduces uncertainty about the ranking.

Uniform scheduling (schedule.py) gives every pair of entries the same number of votes, so most
votes go to pairs whose order is already obvious (the fine-tuned model against an empty-reply
baseline). Here, rules in order:
  1. balance: an entry shown less than ``floor`` x the mean exposure (decided votes it was in) is
     shown next, so every entry keeps appearing and no entry is starved by a confident ranking;
  2. the pair whose order is least settled and most learnable: a Laplace approximation of the
     Bradley-Terry posterior (the MAP from prefs.fit_strengths, covariance = the inverse Hessian of
     the penalised log-likelihood) gives each pair's gap d and its variance v; the score is
     P(order flips) = Phi(-|d|/sqrt(v)) times the share of v one more vote removes,
     w*v/(1+w*v) with w = p(1-p). The second factor keeps two truly equal entries from absorbing
     every vote (their flip probability stays 1/2 however much they are compared). Comparisons
     handed out but not answered yet (``busy``) add their expected information to the Hessian
     (it needs no outcome), so two raters at once get different pairs;
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

import math
import random

import numpy as np
from sacrebleu.metrics import CHRF

from .prefs import PRIOR, SCORE, fit_strengths
from .replies import SuiteReplies
from .schedule import Scheduler, Task
from .store import Store

FLOOR = 0.5  # an entry below half the mean exposure is shown next


def reply_difference(a: str, b: str, chrf: CHRF | None = None) -> float:
    """1 - chrF/100 between two replies: 0 for identical, 1 for nothing in common (or one empty)."""
    if a == b:
        return 0.0
    return 1.0 - (chrf or CHRF()).sentence_score(a, [b]).score / 100.0


def pair_scores(entries: list[str], votes: list[dict], busy: dict[tuple[str, str], int] | None = None) -> dict:
    """Per sorted pair of entries: P(its fitted order is wrong) x the share of its gap's variance one vote removes.

    ``votes``: decided votes (skips and unknown entries are ignored); ``busy``: open comparisons per pair.
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
    p = 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))  # p[i, j] = P(i beats j)
    h = total * p * (1 - p)
    cov = np.linalg.inv(np.diag(h.sum(axis=1) + PRIOR) - h)
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


class ActiveScheduler(Scheduler):
    """Same interface and store as the uniform Scheduler; chooses pairs and messages by expected information."""

    def __init__(self, suite: SuiteReplies, store: Store, planned: int = 200, overlap: float = 0.25,
                 rng: random.Random | None = None, floor: float = FLOOR, differences: dict | None = None):
        super().__init__(suite, store, planned, overlap, rng)
        if floor < 0:
            raise ValueError("floor must be at least 0")
        self.floor = floor
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
        scores = pair_scores(self.suite.entries, self.store.votes, busy)  # it skips skips and unknown entries
        top = max(scores[p] for p in candidates)
        pair = self.rng.choice(sorted(p for p in candidates if scores[p] >= top - 1e-12))
        return self._blind(self._message(pair, seen, others), pair)

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
