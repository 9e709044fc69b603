"""Which message and which two entries a rater sees next.

Rules, in order:
  1. the pair of entries with the fewest decided votes so far (all raters; ties broken at random),
     among pairs that still have a message this rater has not seen for that pair: every pair ends
     up compared about equally often, which is what keeps the Bradley-Terry intervals even;
  2. a random message of that pair this rater has not seen (voted or skipped) - except that with
     probability ``overlap`` it picks one another rater has already judged, so that agreement
     between raters (Cohen's kappa) can be measured;
  3. random left/right order, so position bias cancels out.

The scheduler keeps no state of its own: it reads the store, so a restarted page continues where
each rater stopped, and a second server process's votes count at once.

This is the ``uniform`` kind; ``active`` (active.py, the default) spends the votes where the ranking
is still uncertain. ``make_scheduler`` picks one by name.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .replies import SuiteReplies
from .store import Store, item_key


@dataclass(frozen=True)
class Task:
    """One comparison to show: the message and the entries on the left and right."""

    message_id: str
    left: str
    right: str


class Scheduler:
    def __init__(self, suite: SuiteReplies, store: Store, planned: int = 200, overlap: float = 0.25,
                 rng: random.Random | None = None):
        if planned < 1:
            raise ValueError("planned must be at least 1")
        if not 0 <= overlap <= 1:
            raise ValueError("overlap must be between 0 and 1")
        self.suite, self.store, self.planned, self.overlap = suite, store, planned, overlap
        self.rng = rng or random.Random()

    def _tallies(self, rater: str) -> tuple[dict, set, dict]:
        """Decided votes per pair (all raters), items this rater has seen, items others decided per pair."""
        decided: dict[tuple[str, str], int] = {p: 0 for p in self.suite.pairs}
        seen, others = set(), {}
        for v in self.store.votes:
            mid, pair = item_key(v)
            if pair not in decided:
                continue  # an entry no longer in the suite
            if v["rater"] == rater:
                seen.add((mid, pair))
            if v["choice"] != "skip":
                decided[pair] += 1
                if v["rater"] != rater:
                    others.setdefault(pair, set()).add(mid)
        return decided, seen, others

    def next_task(self, rater: str, busy: dict[tuple[str, str], int] | None = None) -> Task | None:
        """The next comparison for ``rater``, or None when they have seen every message of every pair.

        ``busy``: comparisons handed out but not yet answered, per pair; counted like votes so that
        two raters working at once do not both get the least-compared pair.
        """
        self.store.refresh()
        decided, seen, others = self._tallies(rater)
        busy = busy or {}
        best, best_count = [], None
        for pair, ids in self.suite.pairs.items():
            if all((mid, pair) in seen for mid in ids):
                continue
            count = decided[pair] + busy.get(pair, 0)
            if best_count is None or count < best_count:
                best, best_count = [pair], count
            elif count == best_count:
                best.append(pair)
        if not best:
            return None
        pair = self.rng.choice(sorted(best))
        fresh = [mid for mid in self.suite.pairs[pair] if (mid, pair) not in seen]
        shared = [mid for mid in fresh if mid in others.get(pair, ())]
        pool = shared if shared and self.rng.random() < self.overlap else fresh
        mid = self.rng.choice(pool)
        return self._blind(mid, pair)

    def _blind(self, mid: str, pair: tuple[str, str]) -> Task:
        """The task with the two entries on random sides, so position bias cancels out."""
        left, right = pair if self.rng.random() < 0.5 else pair[::-1]
        return Task(mid, left, right)

    def progress(self, rater: str) -> dict:
        """rated (decided votes), skipped, planned (this rater's target, at most what exists), available."""
        mine = [v for v in self.store.votes if v["rater"] == rater and item_key(v)[1] in self.suite.pairs]
        rated = sum(v["choice"] != "skip" for v in mine)
        available = sum(len(ids) for ids in self.suite.pairs.values())
        return {"rated": rated, "skipped": len(mine) - rated, "planned": min(self.planned, available),
                "available": available}


KINDS = ("active", "uniform")
# the active scheduler's pair rules (active.py): ranking_gains with the suite's comparisons; pair_scores (the first version)
CRITERIA = ("settle", "flip", "overlap", "neighbours")
CRITERION = "settle"


def make_scheduler(kind: str, suite: SuiteReplies, store: Store, planned: int = 200, overlap: float = 0.25,
                   rng: random.Random | None = None, pair_rule: str = CRITERION) -> Scheduler:
    """The scheduler of that kind: ``active`` (uncertainty-driven, active.py; ``pair_rule``: its criterion) or
    ``uniform`` (this file)."""
    if kind == "uniform":
        return Scheduler(suite, store, planned, overlap, rng)
    if kind == "active":
        # imported here, not at the top: active.py builds on Scheduler
        from supporttune.rate.active import ActiveScheduler

        return ActiveScheduler(suite, store, planned, overlap, rng, criterion=pair_rule)
    raise ValueError(f"scheduler '{kind}': choose one of {', '.join(KINDS)}")
