"""From votes to evidence: Bradley-Terry strengths with bootstrap intervals, win rates, flags, kappa.

Bradley-Terry: P(i beats j) = 1 / (1 + exp(theta_j - theta_i)), fitted by penalised maximum
likelihood with a few lines of numpy (Newton's method, batched over bootstrap resamples) rather
than a package: ``choix`` takes no fractional wins for ties and fits one data set per call, and
scipy's general optimiser needed 10 s for the 1000 bootstrap fits that the batched Newton does in
well under one (the tests check both give the same optimum). A tie and "both bad" count as half a
win for each side (neither reply was preferred); a weak Gaussian prior (``PRIOR``) keeps the
strength of an entry that won every vote finite and centres the strengths on 0. Intervals: 95%
percentile bootstrap over votes.

Votes are dicts as the store writes them (``left``, ``right``, ``choice``, ``flags``, ``rater``);
skips are ignored everywhere here.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import numpy as np

from .store import DECISIONS, FLAGS, item_key

PRIOR = 0.05  # ridge on theta: a N(0, 1/0.05) prior, i.e. strengths within about +-9 even for a perfect record
SCORE = {"left": 1.0, "right": 0.0, "tie": 0.5, "both_bad": 0.5}  # the left entry's share of the win


def decided(votes: list[dict]) -> list[dict]:
    return [v for v in votes if v.get("choice") in DECISIONS]


def win_probabilities(theta: np.ndarray) -> np.ndarray:
    """``p[i, j]`` = P(i beats j) under Bradley-Terry strengths ``theta``."""
    return 1.0 / (1.0 + np.exp(theta[None, :] - theta[:, None]))


def laplace_cov(total: np.ndarray, p: np.ndarray, prior: float = PRIOR) -> np.ndarray:
    """Covariance of the strengths (Laplace: the inverse Hessian of the penalised log-likelihood) given
    ``total[i, j]`` comparisons of i and j and the win probabilities ``p`` they are made at."""
    h = total * p * (1 - p)
    return np.linalg.inv(np.diag(h.sum(axis=1) + prior) - h)


def fit_strengths(wins: np.ndarray, prior: float = PRIOR, tol: float = 1e-9, max_iter: int = 100) -> np.ndarray:
    """Theta for a matrix of (fractional) wins, ``wins[i, j]`` = how often i beat j; or for a stack of them.

    Newton's method on the penalised log-likelihood (strictly convex thanks to the prior), vectorised
    over a stack of win matrices so that a thousand bootstrap fits take one loop of a few steps.
    Steps are scaled to at most 2 per coordinate, which keeps the first steps of a lopsided record
    from overshooting. The result sums to 0 (the prior's gradient balances the likelihood's).
    """
    w = np.asarray(wins, dtype=float)
    stack = w if w.ndim == 3 else w[None]
    n = stack.shape[-1]
    total = stack + stack.transpose(0, 2, 1)
    theta = np.zeros(stack.shape[:2])
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(theta[:, None, :] - theta[:, :, None]))  # p[b, i, j] = P(i beats j)
        grad = (total * p - stack).sum(axis=2) + prior * theta
        h = total * p * (1 - p)
        hess = -h + np.einsum("bi,ij->bij", h.sum(axis=2) + prior, np.eye(n))
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        step *= np.minimum(1.0, 2.0 / np.maximum(np.abs(step).max(axis=1, keepdims=True), 1e-300))
        theta -= step
        if np.abs(step).max() < tol:
            break
    theta -= theta.mean(axis=1, keepdims=True)
    return theta if w.ndim == 3 else theta[0]


def _contributions(index: dict[str, int], votes: list[dict]) -> np.ndarray:
    """Each vote's share of the win matrix, flattened: (votes, n*n)."""
    n = len(index)
    c = np.zeros((len(votes), n * n))
    for k, v in enumerate(votes):
        i, j, s = index[v["left"]], index[v["right"]], SCORE[v["choice"]]
        c[k, i * n + j] += s
        c[k, j * n + i] += 1 - s
    return c


def bradley_terry(entries: list[str], votes: list[dict], n_boot: int = 1000, seed: int = 0) -> dict:
    """Strength, 95% bootstrap interval and rank per entry, plus the bootstrap draws (for comparisons).

    Returns ``{"strengths": {name: {"theta", "ci", "rank"}}, "draws": (n_boot x entries), "index": {name: column}}``.
    """
    votes = [v for v in decided(votes) if v["left"] in entries and v["right"] in entries]
    index = {name: k for k, name in enumerate(entries)}
    n = len(entries)
    contrib = _contributions(index, votes)
    theta = fit_strengths(contrib.sum(axis=0).reshape(n, n))
    if votes:
        counts = np.random.default_rng(seed).multinomial(len(votes), np.full(len(votes), 1 / len(votes)), size=n_boot)
        draws = fit_strengths((counts @ contrib).reshape(n_boot, n, n))
    else:
        draws = np.tile(theta, (n_boot, 1))
    lo, hi = np.percentile(draws, [2.5, 97.5], axis=0)
    order = sorted(entries, key=lambda e: -theta[index[e]])
    strengths = {e: {"theta": round(float(theta[index[e]]), 4),
                     "ci": [round(float(lo[index[e]]), 4), round(float(hi[index[e]]), 4)],
                     "rank": order.index(e) + 1} for e in entries}
    return {"strengths": strengths, "draws": draws, "index": index}


def win_rates(entries: list[str], votes: list[dict]) -> dict:
    """Per entry: overall record, and against each other entry (wins, losses, ties, both_bad, win_rate).

    ``win_rate`` = (wins + half of ties and both-bad) / votes, the same scoring as the BT fit.
    """
    table: dict[str, dict] = {e: {"overall": Counter(), "vs": defaultdict(Counter)} for e in entries}
    for v in decided(votes):
        a, b = v["left"], v["right"]
        if a not in table or b not in table:
            continue
        for me, other, side in ((a, b, "left"), (b, a, "right")):
            outcome = v["choice"] if v["choice"] in ("tie", "both_bad") else ("wins" if v["choice"] == side else "losses")
            for c in (table[me]["overall"], table[me]["vs"][other]):
                c[outcome] += 1
                c["votes"] += 1

    def record(c: Counter) -> dict:
        n = c["votes"]
        out = {k: c[k] for k in ("votes", "wins", "losses", "tie", "both_bad")}
        out["win_rate"] = round((c["wins"] + 0.5 * (c["tie"] + c["both_bad"])) / n, 4) if n else None
        return out

    return {e: {"overall": record(t["overall"]), "vs": {o: record(t["vs"][o]) for o in entries if o != e and t["vs"][o]["votes"]}}
            for e, t in table.items()}


def flag_counts(entries: list[str], votes: list[dict]) -> dict:
    """Per entry: how many of its rated replies carried each flag, and how many were rated."""
    out = {e: {"rated": 0, **{f: 0 for f in FLAGS}} for e in entries}
    for v in decided(votes):
        flags = v.get("flags") or {}
        for side in ("left", "right"):
            name = v[side]
            if name in out:
                out[name]["rated"] += 1
                for f in set(flags.get(side) or ()):
                    if f in FLAGS:
                        out[name][f] += 1
    return out


def _relative(v: dict) -> str:
    """The choice in terms of the sorted pair (so two raters who saw opposite sides compare alike)."""
    if v["choice"] in ("tie", "both_bad"):
        return v["choice"]
    winner = v[v["choice"]]
    return "first" if winner == item_key(v)[1][0] else "second"


def cohen_kappa(x: list[str], y: list[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items; None when chance agreement is 1."""
    n = len(x)
    if n == 0:
        return None
    po = sum(a == b for a, b in zip(x, y)) / n
    cx, cy = Counter(x), Counter(y)
    pe = sum(cx[k] * cy[k] for k in cx) / (n * n)
    return None if pe >= 1 else round((po - pe) / (1 - pe), 4)


def agreement(votes: list[dict]) -> dict:
    """Kappa for every two raters who decided the same message for the same pair (last vote counts)."""
    by_rater: dict[str, dict] = defaultdict(dict)
    for v in decided(votes):
        by_rater[v["rater"]][item_key(v)] = _relative(v)
    pairs = []
    for r1, r2 in itertools.combinations(sorted(by_rater), 2):
        shared = sorted(set(by_rater[r1]) & set(by_rater[r2]))
        if shared:
            x, y = [by_rater[r1][k] for k in shared], [by_rater[r2][k] for k in shared]
            pairs.append({"raters": [r1, r2], "items": len(shared), "kappa": cohen_kappa(x, y),
                          "raw_agreement": round(sum(a == b for a, b in zip(x, y)) / len(shared), 4)})
    return {"raters": sorted(by_rater), "pairs": pairs}
