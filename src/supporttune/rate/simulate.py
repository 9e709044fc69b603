"""A simulated rater, to measure how many votes a scheduler needs before the ranking is right.

Human votes are the scarce resource, so schedulers are compared without humans: the simulated
rater prefers the reply closer to the message's reference on a sentence metric (chrF by default,
from supporttune.metrics), with logistic noise on the score gap: P(a preferred) = 1 / (1 +
exp(-(score_a - score_b) / temperature)); replies scoring within ``tie`` points are a tie. Its
*true* ranking (``truth="expected"``, the default) is Bradley-Terry fitted to its expected votes on
every message of every pair (each counts P(a preferred) of a win for a): the ranking its own votes
converge to. ``truth="noiseless"`` (the first definition) fits the sign of each score gap instead;
for near-tied entries that order can differ from the one the noisy votes converge to (on the
model-free TWCS suite bm25-1 beats retrieval-1 on more messages, yet the rater prefers retrieval-1
more often than not), so no number of votes reaches it and votes-to-tau measures luck. ``simulate`` lets a scheduler pick the comparisons,
fits Bradley-Terry to the votes so far every ``every`` votes and records Kendall's tau against the
true ranking.

    PYTHONPATH=src python -m supporttune.rate.simulate SUITE --votes 600 --seeds 10 --out curves.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

from ..metrics.scores import get as get_metric
from .active import ActiveScheduler
from .prefs import SCORE, fit_strengths, laplace_cov, win_probabilities
from .replies import SuiteReplies, load_replies
from .schedule import CRITERIA, CRITERION, KINDS, Scheduler

TARGET = 0.9
TRUTHS = ("expected", "noiseless")


@dataclass
class MemoryStore:
    """The two things a scheduler uses of store.Store (``votes``, ``refresh``), without a file or fsync."""

    votes: list[dict] = field(default_factory=list)

    def refresh(self) -> list[dict]:
        return []

    def append(self, vote: dict) -> None:
        self.votes.append(vote)


@dataclass
class RaterModel:
    """Per entry and message the metric score of the reply; the preference and true ranking follow from it."""

    scores: dict[str, dict[str, float]]  # entry -> message id -> score (0-100)
    temperature: float = 10.0
    tie: float = 0.5
    truth: str = "expected"  # or "noiseless": see the module docstring

    @classmethod
    def from_suite(cls, suite: SuiteReplies, metric: str = "chrf", **kw) -> RaterModel:
        score = get_metric(metric).per_example
        ids = sorted({mid for ms in suite.pairs.values() for mid in ms})
        refs = [str(suite.messages[mid].get("reference") or "") for mid in ids]
        return cls({e: dict(zip(ids, score([suite.replies[e].get(mid, "") for mid in ids], refs)))
                    for e in suite.entries}, **kw)

    def p_left(self, mid: str, left: str, right: str) -> float:
        """The probability that ``left`` is preferred (0.5 for a tie)."""
        gap = self.scores[left][mid] - self.scores[right][mid]
        return 0.5 if abs(gap) < self.tie else float(1.0 / (1.0 + np.exp(-gap / self.temperature)))

    def choice(self, mid: str, left: str, right: str, rng: np.random.Generator | None) -> str:
        """``left``, ``right`` or ``tie``; noiseless when ``rng`` is None."""
        gap = self.scores[left][mid] - self.scores[right][mid]
        if abs(gap) < self.tie:
            return "tie"
        if rng is None:
            return "left" if gap > 0 else "right"
        return "left" if rng.random() < self.p_left(mid, left, right) else "right"

    def true_strengths(self, suite: SuiteReplies) -> np.ndarray:
        """Bradley-Terry strengths (in ``suite.entries`` order) of the rater on every message of every pair.

        ``truth="expected"``: each comparison counts as P(a preferred) of a win for a (the limit of its
        noisy votes); ``"noiseless"``: as the sign of the score gap.
        """
        if self.truth not in TRUTHS:
            raise ValueError(f"truth '{self.truth}': choose one of {', '.join(TRUTHS)}")
        index = {e: k for k, e in enumerate(suite.entries)}
        wins = np.zeros((len(index), len(index)))
        for (a, b), ids in suite.pairs.items():
            for mid in ids:
                s = self.p_left(mid, a, b) if self.truth == "expected" else SCORE[self.choice(mid, a, b, None)]
                wins[index[a], index[b]] += s
                wins[index[b], index[a]] += 1 - s
        return fit_strengths(wins)


def fit(entries: list[str], votes: list[dict]) -> np.ndarray:
    """The Bradley-Terry MAP strengths of ``votes`` (no bootstrap: the curve needs the point estimate only)."""
    index = {e: k for k, e in enumerate(entries)}
    wins = np.zeros((len(entries), len(entries)))
    for v in votes:
        s = SCORE.get(v["choice"])
        if s is not None:
            wins[index[v["left"]], index[v["right"]]] += s
            wins[index[v["right"]], index[v["left"]]] += 1 - s
    return fit_strengths(wins)


def tau(fitted: np.ndarray, true: np.ndarray, scored: np.ndarray | None = None) -> float:
    """Kendall's tau-b; 0 while the fit has no order yet (all strengths equal).

    ``scored``: a mask over the pairs ``np.triu_indices(n, 1)``; then tau counts only those pairs,
    (concordant - discordant) / scored pairs (a tie in the fit counts neither way).
    """
    if scored is None:
        t = kendalltau(fitted, true).statistic
        return 0.0 if np.isnan(t) else float(t)
    i, j = np.triu_indices(len(true), 1)
    agree = np.sign(fitted[i] - fitted[j]) * np.sign(true[i] - true[j])
    return float(agree[scored].sum() / max(int(scored.sum()), 1))


def resolvable(suite: SuiteReplies, true: np.ndarray, z: float) -> np.ndarray:
    """Mask of the pairs (``np.triu_indices``) whose true gap is at least ``z`` standard errors of the fit of every comparison.

    The standard error is the Laplace one at the true strengths with one vote on every message of
    every pair: what a rater who judged the whole suite would know. A pair below it is one no
    budget of this suite's comparisons can order reliably, so its order is luck for any scheduler.
    """
    n = len(true)
    index = {e: k for k, e in enumerate(suite.entries)}
    total = np.zeros((n, n))
    for (a, b), ids in suite.pairs.items():
        total[index[a], index[b]] = total[index[b], index[a]] = len(ids)
    cov = laplace_cov(total, win_probabilities(true))
    i, j = np.triu_indices(n, 1)
    se = np.sqrt(cov[i, i] + cov[j, j] - 2 * cov[i, j])
    return np.abs(true[i] - true[j]) >= z * se


def make(kind: str, suite: SuiteReplies, store: MemoryStore, seed: int, differences: dict,
         criterion: str = CRITERION) -> Scheduler:
    """A scheduler of ``kind`` on the in-memory store; ``differences`` (active) is shared across seeds."""
    rng = random.Random(seed)
    if kind == "active":
        return ActiveScheduler(suite, store, rng=rng, differences=differences,  # type: ignore[arg-type]
                               criterion=criterion)
    if kind == "uniform":
        return Scheduler(suite, store, rng=rng)  # type: ignore[arg-type]
    raise ValueError(f"scheduler '{kind}': choose one of {', '.join(KINDS)}")


def simulate(suite: SuiteReplies, scheduler_kind: str, votes: int, seed: int, every: int = 10, raters: int = 1,
             model: RaterModel | None = None, differences: dict | None = None, z: float = 0.0,
             criterion: str = CRITERION) -> list[dict]:
    """Kendall's tau of the fitted ranking against the rater's true ranking, every ``every`` votes.

    ``z`` > 0: tau over the pairs ``resolvable`` at ``z`` only (0: every pair, the plain tau-b).

    Returns ``[{"votes": k, "tau": t}, ...]`` from 0 votes on; it stops early when the raters have
    seen everything. ``raters`` simulated raters (identical taste, own noise) take turns.
    """
    model = model or RaterModel.from_suite(suite)
    true = model.true_strengths(suite)
    scored = resolvable(suite, true, z) if z > 0 else None
    store = MemoryStore()
    sched = make(scheduler_kind, suite, store, seed, {} if differences is None else differences, criterion)
    noise = np.random.default_rng(seed)
    curve = [{"votes": 0, "tau": 0.0}]
    for k in range(1, votes + 1):
        rater = f"sim{k % raters}"
        task = sched.next_task(rater)
        if task is None:
            break
        store.append({"rater": rater, "message_id": task.message_id, "left": task.left, "right": task.right,
                      "choice": model.choice(task.message_id, task.left, task.right, noise), "flags": {}})
        if k % every == 0:
            curve.append({"votes": k, "tau": round(tau(fit(suite.entries, store.votes), true, scored), 4)})
    return curve


def votes_to(curve: list[dict], target: float = TARGET, stay: bool = False) -> int | None:
    """The first checkpoint with tau >= target (None if never reached); ``stay``: from which on it never drops below."""
    if not stay:
        return next((p["votes"] for p in curve if p["tau"] >= target), None)
    below = [i for i, p in enumerate(curve) if p["tau"] < target]
    last = below[-1] if below else -1
    return curve[last + 1]["votes"] if last + 1 < len(curve) else None


def _mean(values: list) -> float | None:
    hit = [v for v in values if v is not None]
    return round(float(np.mean(hit)), 1) if hit else None


def compare(suite: SuiteReplies, seeds: int, votes: int, every: int = 10, model: RaterModel | None = None,
            target: float = TARGET, z: float = 0.0, criterion: str = CRITERION) -> dict:
    """Both schedulers over ``seeds`` seeds: mean curves and votes-to-target per seed (numbers only)."""
    model = model or RaterModel.from_suite(suite)
    true = model.true_strengths(suite)
    differences: dict = {}
    out = {"entries": len(suite.entries), "pairs": len(suite.pairs),
           "comparisons": sum(map(len, suite.pairs.values())), "target_tau": target, "seeds": seeds,
           "temperature": model.temperature, "truth": model.truth,
           "true_strengths": {e: round(float(t), 4) for e, t in zip(suite.entries, true)},
           "criterion": criterion, "resolvable_z": z, "pairs_scored": int(resolvable(suite, true, z).sum()) if z > 0 else len(suite.pairs),
           "kinds": {}}
    for kind in ("uniform", "active"):
        curves = [simulate(suite, kind, votes, s, every, model=model, differences=differences, z=z, criterion=criterion)
                  for s in range(seeds)]
        length = min(map(len, curves))
        reached = [votes_to(c, target) for c in curves]
        stayed = [votes_to(c, target, stay=True) for c in curves]
        out["kinds"][kind] = {
            "votes_to_target": reached,
            "mean_votes_to_target": _mean(reached),  # over the seeds that reached it
            "mean_votes_to_target_never_as_limit": _mean([votes + every if r is None else r for r in reached]),
            "reached": f"{sum(r is not None for r in reached)}/{seeds}",
            "votes_to_stay_above_target": stayed,
            "mean_votes_to_stay_above_target": _mean(stayed),
            "mean_votes_to_stay_never_as_limit": _mean([votes + every if r is None else r for r in stayed]),
            "mean_tau_over_curve": round(float(np.mean([c[i]["tau"] for c in curves for i in range(1, length)])), 4),
            "mean_curve": [{"votes": curves[0][i]["votes"],
                            "tau": round(float(np.mean([c[i]["tau"] for c in curves])), 4),
                            "share_at_target": round(float(np.mean([c[i]["tau"] >= target for c in curves])), 3)}
                           for i in range(length)],
        }
    return out


def table(result: dict, step: int = 1) -> str:
    """The two mean curves side by side, as text."""
    u, a = (result["kinds"][k]["mean_curve"] for k in ("uniform", "active"))
    lines = ["votes  uniform  active"]
    lines += [f"{p['votes']:5d}  {p['tau']:7.3f}  {q['tau']:6.3f}" for p, q in list(zip(u, a))[::step]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite", type=Path)
    ap.add_argument("--votes", type=int, default=600)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--metric", default="chrf")
    ap.add_argument("--temperature", type=float, default=10.0)
    ap.add_argument("--truth", choices=TRUTHS, default="expected", help="the true ranking: see the module docstring")
    ap.add_argument("--resolvable", type=float, default=0.0, metavar="Z",
                    help="score tau over the pairs whose true gap is at least Z standard errors of a fit of every "
                         "comparison of the suite (0: every pair)")
    ap.add_argument("--criterion", choices=CRITERIA, default=CRITERION, help="the active scheduler's pair rule")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    suite = load_replies(args.suite)
    result = compare(suite, args.seeds, args.votes, args.every,
                     RaterModel.from_suite(suite, args.metric, temperature=args.temperature, truth=args.truth),
                     z=args.resolvable, criterion=args.criterion)
    result["metric"] = args.metric
    result["command"] = "PYTHONPATH=src python -m supporttune.rate.simulate " + " ".join(map(str, argv or sys.argv[1:]))
    for kind, r in result["kinds"].items():
        print(f"{kind:8s} votes to tau>={result['target_tau']}: first {r['mean_votes_to_target']} "
              f"(reached {r['reached']}; per seed {r['votes_to_target']}), "
              f"for good {r['mean_votes_to_stay_above_target']} (per seed {r['votes_to_stay_above_target']}); "
              f"mean tau over the curve {r['mean_tau_over_curve']}")
    print(table(result, step=max(1, len(result["kinds"]["uniform"]["mean_curve"]) // 20)))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
