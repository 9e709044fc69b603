"""A simulated rater, to measure how many votes a scheduler needs before the ranking is right.

Human votes are the scarce resource, so schedulers are compared without humans: the simulated
rater prefers the reply closer to the message's reference on a sentence metric (chrF by default,
from supporttune.metrics), with logistic noise on the score gap: P(a preferred) = 1 / (1 +
exp(-(score_a - score_b) / temperature)); replies scoring within ``tie`` points are a tie. Its
*true* ranking is the one its noiseless preference implies over every message of every pair
(Bradley-Terry fitted to all those outcomes). ``simulate`` lets a scheduler pick the comparisons,
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
from .prefs import SCORE, fit_strengths
from .replies import SuiteReplies, load_replies
from .schedule import KINDS, Scheduler

TARGET = 0.9


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

    @classmethod
    def from_suite(cls, suite: SuiteReplies, metric: str = "chrf", **kw) -> RaterModel:
        score = get_metric(metric).per_example
        ids = sorted({mid for ms in suite.pairs.values() for mid in ms})
        refs = [str(suite.messages[mid].get("reference") or "") for mid in ids]
        return cls({e: dict(zip(ids, score([suite.replies[e].get(mid, "") for mid in ids], refs)))
                    for e in suite.entries}, **kw)

    def choice(self, mid: str, left: str, right: str, rng: np.random.Generator | None) -> str:
        """``left``, ``right`` or ``tie``; noiseless when ``rng`` is None."""
        gap = self.scores[left][mid] - self.scores[right][mid]
        if abs(gap) < self.tie:
            return "tie"
        if rng is None:
            return "left" if gap > 0 else "right"
        return "left" if rng.random() < 1.0 / (1.0 + np.exp(-gap / self.temperature)) else "right"

    def true_strengths(self, suite: SuiteReplies) -> np.ndarray:
        """Bradley-Terry strengths (in ``suite.entries`` order) of the noiseless preference on every message of every pair."""
        votes = [{"left": a, "right": b, "choice": self.choice(mid, a, b, None)}
                 for (a, b), ids in suite.pairs.items() for mid in ids]
        return fit(suite.entries, votes)


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


def tau(fitted: np.ndarray, true: np.ndarray) -> float:
    """Kendall's tau-b; 0 while the fit has no order yet (all strengths equal)."""
    t = kendalltau(fitted, true).statistic
    return 0.0 if np.isnan(t) else float(t)


def make(kind: str, suite: SuiteReplies, store: MemoryStore, seed: int, differences: dict) -> Scheduler:
    """A scheduler of ``kind`` on the in-memory store; ``differences`` (active) is shared across seeds."""
    rng = random.Random(seed)
    if kind == "active":
        return ActiveScheduler(suite, store, rng=rng, differences=differences)  # type: ignore[arg-type]
    if kind == "uniform":
        return Scheduler(suite, store, rng=rng)  # type: ignore[arg-type]
    raise ValueError(f"scheduler '{kind}': choose one of {', '.join(KINDS)}")


def simulate(suite: SuiteReplies, scheduler_kind: str, votes: int, seed: int, every: int = 10, raters: int = 1,
             model: RaterModel | None = None, differences: dict | None = None) -> list[dict]:
    """Kendall's tau of the fitted ranking against the rater's true ranking, every ``every`` votes.

    Returns ``[{"votes": k, "tau": t}, ...]`` from 0 votes on; it stops early when the raters have
    seen everything. ``raters`` simulated raters (identical taste, own noise) take turns.
    """
    model = model or RaterModel.from_suite(suite)
    true = model.true_strengths(suite)
    store = MemoryStore()
    sched = make(scheduler_kind, suite, store, seed, {} if differences is None else differences)
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
            curve.append({"votes": k, "tau": round(tau(fit(suite.entries, store.votes), true), 4)})
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
            target: float = TARGET) -> dict:
    """Both schedulers over ``seeds`` seeds: mean curves and votes-to-target per seed (numbers only)."""
    model = model or RaterModel.from_suite(suite)
    differences: dict = {}
    out = {"entries": len(suite.entries), "pairs": len(suite.pairs),
           "comparisons": sum(map(len, suite.pairs.values())), "target_tau": target, "seeds": seeds,
           "temperature": model.temperature, "kinds": {}}
    for kind in ("uniform", "active"):
        curves = [simulate(suite, kind, votes, s, every, model=model, differences=differences) for s in range(seeds)]
        length = min(map(len, curves))
        reached = [votes_to(c, target) for c in curves]
        stayed = [votes_to(c, target, stay=True) for c in curves]
        out["kinds"][kind] = {
            "votes_to_target": reached,
            "mean_votes_to_target": _mean(reached),
            "reached": f"{sum(r is not None for r in reached)}/{seeds}",
            "votes_to_stay_above_target": stayed,
            "mean_votes_to_stay_above_target": _mean(stayed),
            "mean_tau_over_curve": round(float(np.mean([c[i]["tau"] for c in curves for i in range(1, length)])), 4),
            "mean_curve": [{"votes": curves[0][i]["votes"],
                            "tau": round(float(np.mean([c[i]["tau"] for c in curves])), 4)} for i in range(length)],
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
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    suite = load_replies(args.suite)
    result = compare(suite, args.seeds, args.votes, args.every,
                     RaterModel.from_suite(suite, args.metric, temperature=args.temperature))
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
