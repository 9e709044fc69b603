"""Honest baselines, scored by the same evaluation code as the trained variants.

* ``zero-shot``: the untuned base model with the very same prompt.
* ``few-shot``: the base model with the k most similar training exchanges in the prompt.
* ``retrieval``: the reply of the most similar training input (TF-IDF cosine; same brand when known).
* ``constant``: the single most common training reply, for every message.
"""

from __future__ import annotations

from collections import Counter


class Retriever:
    """TF-IDF nearest neighbours over training inputs, restricted to the same brand when possible."""

    def __init__(self, train_rows: list[dict]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.rows = train_rows
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
        self.matrix = self.vectorizer.fit_transform([r["input"] for r in train_rows])
        self.by_brand: dict[str, list[int]] = {}
        for i, r in enumerate(train_rows):
            self.by_brand.setdefault(r.get("brand") or "", []).append(i)

    def nearest(self, example: dict, k: int = 1) -> list[dict]:
        scores = (self.matrix @ self.vectorizer.transform([example["input"]]).T).toarray().ravel()
        pool = self.by_brand.get(example.get("brand") or "") or range(len(self.rows))
        ranked = sorted(pool, key=lambda i: (-scores[i], i))
        return [self.rows[i] for i in ranked[:k]]


def constant_reply(train_rows: list[dict]) -> str:
    """The most common training reply (ties broken by first appearance)."""
    counts = Counter(r["output"] for r in train_rows)
    return counts.most_common(1)[0][0]
