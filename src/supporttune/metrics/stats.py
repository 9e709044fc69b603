"""Uncertainty: bootstrap confidence intervals and paired significance tests between entries.

CIs resample test examples with replacement (B resamples, percentile interval). Corpus-level
metrics (``Metric.corpus`` in the metrics table: BLEU, chrF) are recomputed from per-example
sufficient statistics on every resample, so their intervals are those of the corpus metric
itself, not of sentence-level averages. Paired tests resample the same example indices for both
entries (Koehn 2004) and report a two-sided p-value.
"""

from __future__ import annotations

import numpy as np

from .scores import CorpusStats


def bootstrap_ci(rows: list[dict], keys: tuple[str, ...], corpus: CorpusStats | None = None,
                 n_resamples: int = 1000, seed: int = 0, alpha: float = 0.05) -> dict[str, list[float]]:
    n = len(rows)
    if n == 0:
        return {}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    out = {}
    for key in keys:
        if corpus is not None and key in corpus.stats:
            samples = np.array([corpus.score(i, (key,))[key] for i in idx])
        else:
            vals = np.array([r[key] if r[key] is not None else np.nan for r in rows], dtype=float)
            if np.isnan(vals).all():
                continue
            samples = np.nanmean(vals[idx], axis=1)
        lo, hi = np.percentile(samples, [100 * alpha / 2, 100 * (1 - alpha / 2)])
        out[key] = [float(lo), float(hi)]
    return out


def paired_bootstrap(a: list[float], b: list[float], n_resamples: int = 1000, seed: int = 0) -> dict:
    """Mean difference a-b, its 95% CI, and a two-sided p-value for 'no difference'."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("paired test needs two equally long, non-empty score lists")
    d = x - y
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    p = 2 * min((means <= 0).mean(), (means >= 0).mean())
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"diff": float(d.mean()), "ci": [float(lo), float(hi)], "p_value": float(min(1.0, p))}


def paired_corpus_bootstrap(sa: CorpusStats, sb: CorpusStats, key: str, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Paired bootstrap of a corpus metric (BLEU/chrF) recomputed on each resample."""
    n = len(sa)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    diffs = np.array([sa.score(i, (key,))[key] - sb.score(i, (key,))[key] for i in idx])
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return {"diff": sa.score(keys=(key,))[key] - sb.score(keys=(key,))[key], "ci": [float(lo), float(hi)],
            "p_value": float(min(1.0, p))}


def paired_test(key: str, a: list, b: list, corpus_a: CorpusStats | None = None, corpus_b: CorpusStats | None = None,
                n_resamples: int = 1000, seed: int = 0) -> dict | None:
    """Paired bootstrap of one metric, a - b: on its corpus statistic when it has one, else on per-example
    scores; None when either side lacks scores (e.g. semantic similarity turned off)."""
    if corpus_a is not None and corpus_b is not None and key in corpus_a.stats:
        return paired_corpus_bootstrap(corpus_a, corpus_b, key, n_resamples, seed)
    if not a or None in a or None in b:
        return None
    return paired_bootstrap(a, b, n_resamples, seed)


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order): controls the chance of any false 'different'
    across a family of tests, e.g. the shipped entry against every other."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    out, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        out[i] = running
    return out
