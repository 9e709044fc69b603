"""Minimum-Bayes-risk (MBR) reply selection: pick, among several candidate replies, the one the others agree with most.

A single greedy reply is the model's most likely next tokens, not its most representative reply;
MBR samples a pool of replies and returns the candidate with the highest expected utility against
the rest of the pool (the pool stands in for the unknown reference). This module is the pure part:
the decoding config (``DecodeSpec``), sentence-level utilities on a 0..1 scale, and ``select`` /
``mbr_replies``. It touches no model, so it is tested on hand-made candidates.

Design note for the engine (how candidates are made, what is recorded)
----------------------------------------------------------------------
* Pool per message = ``[greedy reply] + N samples`` (``spec.pool_size`` = N + 1 with
  ``include_greedy``). The greedy reply comes from the ordinary greedy pass (the same replies
  evaluate scores today) and goes FIRST: ``select`` breaks ties by the lowest index, so when the
  samples add nothing (all equal, all empty) MBR returns exactly the greedy reply.
* Samples: one extra generate pass with ``spec.generate_kwargs()`` (do_sample, temperature, top_p,
  top_k=0 so that only top_p truncates, as ``generate.sampling_kwargs`` does). Either HF
  ``generate(..., num_return_sequences=N)`` (rows come back prompt-major: row ``b*N + k`` is sample k
  of prompt b) or, for the static/compiled path that has fixed batch shapes, each prompt repeated N
  times in ``pad_left``; both are the same distribution. The KV cache grows with messages x N, so
  the engine should take ``batch_size // N`` messages (at least 1) per sampling call. Seed torch
  with ``spec.seed`` once before the pass: candidates are then reproducible for one device and
  batch plan. Cut each sample with ``generate.finish`` like any reply; the chosen candidate's own
  ``Generated`` (new_tokens, hit_max) is what the reply statistics see.
* Selection: ``mbr_replies(pools, spec.utility)`` once per batch (or once at the end); it is pure
  CPU work and can overlap the next batch's generation.
* metrics.json should record ``spec.record()`` under ``decode`` (strategy, candidates, pool_size,
  utility, temperature, top_p, include_greedy, seed; only the fields the strategy uses, so a
  greedy run's record is unchanged), and, for mbr, ``mbr_candidates_time_s`` (wall time of the
  sampling pass, the greedy pass counted as today) next to ``mbr_selection_time_s`` (wall time of
  ``mbr_replies``), plus two diagnostics: ``mbr_greedy_share`` (share of messages where index 0
  won) and ``mbr_distinct_candidates`` (mean distinct texts per pool; near 1 means the sampling
  collapsed and MBR = greedy). Latency per reply under mbr = greedy + sampling + selection, and
  ``DecodeSettings.replies_key`` must include ``spec.record()`` so greedy replies are never reused
  for an mbr run.

Utilities are the project's sentence scores (metrics.py): sacreBLEU chrF, sacreBLEU BLEU with
effective order (as ``metrics`` scores BLEU per example and ``sacrebleu.sentence_bleu`` does),
ROUGE-L F1 with Porter stemming (rouge-score's tokenizer), and ``mix`` = the mean of chrF and
ROUGE-L (character- and word-level agreement). They are computed for a whole pool at once from
features extracted once per candidate: n-gram match counts for every pair come from matrix
products, ROUGE-L's LCS from a bit-parallel LCS; the final formulas are sacreBLEU's and
rouge-score's, and tests check the values against theirs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import UserError

STRATEGIES = ("greedy", "sample", "beam", "mbr")
UTILITIES = ("chrf", "rouge_l", "bleu", "mix")
Strategy = Literal["greedy", "sample", "beam", "mbr"]
UtilityName = Literal["chrf", "rouge_l", "bleu", "mix"]
PairUtility = Callable[[str, str], float]  # u(hypothesis, pseudo_reference) -> 0..1
TIE_TOLERANCE = 1e-12  # expected utilities this close are a tie (summation order must not pick the winner)


# ---- the config ---------------------------------------------------------------------------------

class DecodeSpec(BaseModel):
    """How replies are decoded. Fields a strategy does not use are ignored (and left out of ``record``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Strategy = Field("greedy", description="greedy (reproducible; what evaluate scores), sample (one "
                                                      "sampled reply), beam (beam search), mbr (minimum Bayes risk "
                                                      "over the greedy reply + sampled candidates).")
    candidates: int = Field(16, ge=1, le=64, description="mbr: sampled candidates per message (the greedy reply "
                                                         "is added first, so the pool holds candidates + 1).")
    include_greedy: bool = Field(True, description="mbr: put the greedy reply first in the pool (it wins ties).")
    temperature: float = Field(0.7, gt=0, le=2, description="sample/mbr: sampling temperature.")
    top_p: float = Field(0.9, gt=0, le=1, description="sample/mbr: nucleus sampling mass (1 = off).")
    num_beams: int = Field(4, ge=1, le=64, description="beam: beams per message (at least 2).")
    utility: UtilityName = Field("chrf", description="mbr: agreement score between candidates: chrf, rouge_l, "
                                                     "bleu, or mix (mean of chrF and ROUGE-L).")
    seed: int = Field(0, ge=0, lt=2**32, description="sample/mbr: torch seed before sampling (reproducible pools).")

    @model_validator(mode="after")
    def _strategy_needs(self) -> DecodeSpec:
        if self.strategy == "beam" and self.num_beams < 2:
            raise ValueError(f"beam search needs num_beams >= 2 (got {self.num_beams}); use strategy greedy for 1")
        # a pool of one (candidates=1 without the greedy reply) is allowed: MBR then IS sampling (tested)
        return self

    @property
    def pool_size(self) -> int:
        """Replies per message that selection sees (1 for the single-reply strategies)."""
        return self.candidates + int(self.include_greedy) if self.strategy == "mbr" else 1

    def record(self) -> dict:
        """The fields that decide the replies, for metrics.json and the replies cache key."""
        out: dict = {"strategy": self.strategy}
        if self.strategy in ("sample", "mbr"):
            out.update(temperature=self.temperature, top_p=self.top_p, seed=self.seed)
        if self.strategy == "beam":
            out["num_beams"] = self.num_beams
        if self.strategy == "mbr":
            out.update(candidates=self.candidates, include_greedy=self.include_greedy, pool_size=self.pool_size,
                       utility=self.utility)
        return out

    def generate_kwargs(self) -> dict:
        """HF ``generate`` kwargs of the strategy's own pass (for mbr: the sampling pass, N per prompt)."""
        if self.strategy in ("sample", "mbr"):
            return {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0,
                    "num_return_sequences": self.candidates if self.strategy == "mbr" else 1}
        if self.strategy == "beam":
            return {"do_sample": False, "num_beams": self.num_beams, "early_stopping": True}
        return {"do_sample": False}


def decode_spec(**fields) -> DecodeSpec:
    """A ``DecodeSpec`` from flags or a config mapping; a bad value is one ``UserError`` line."""
    from ..config import validation_message

    try:
        return DecodeSpec(**fields)
    except ValidationError as e:
        raise UserError(f"decoding: {validation_message(e)}") from None


# ---- pool features (extracted once per distinct text) -------------------------------------------

@lru_cache(maxsize=1)
def _chrf_metric():
    from sacrebleu.metrics import CHRF

    return CHRF()  # the settings of metrics' chrF (sacreBLEU defaults: chrF, not chrF++)


@lru_cache(maxsize=1)
def _bleu_metric():
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)  # as metrics' per-example BLEU and sacrebleu.sentence_bleu


Grams = tuple[np.ndarray, np.ndarray]  # one n-gram order of one text: (n-gram hashes, counts)


def _grams(counter: Counter) -> Grams:
    """A Counter as arrays: Python's 64-bit hash names each n-gram (a collision among one pool's few thousand
    n-grams has odds ~1e-12), so a pool's vocabulary is built by numpy, not by a dictionary walk per pair."""
    return (np.fromiter(map(hash, counter.keys()), dtype=np.int64, count=len(counter)),
            np.fromiter(counter.values(), dtype=np.float64, count=len(counter)))


@lru_cache(maxsize=65536)
def _chrf_features(text: str) -> tuple[Grams, ...]:
    m = _chrf_metric()
    return tuple(_grams(c) for c in m._extract_reference_info([m._preprocess_segment(text)])["ref_ngrams"][0])


@lru_cache(maxsize=65536)
def _bleu_features(text: str) -> tuple[tuple[Grams, ...], int]:
    """Word 1..4-gram arrays per order after sacreBLEU's 13a tokenization, and the token count."""
    from sacrebleu.metrics.helpers import extract_all_word_ngrams

    m = _bleu_metric()
    ngrams, length = extract_all_word_ngrams(m._preprocess_segment(text), 1, m.max_ngram_order)
    by_order: list[Counter] = [Counter() for _ in range(m.max_ngram_order)]
    for gram, count in ngrams.items():
        by_order[len(gram) - 1][gram] = count
    return tuple(_grams(c) for c in by_order), length


class _CachedStemmer:
    """rouge-score's Porter stemmer with a memory: stemming is most of ROUGE's cost and words repeat."""

    def __init__(self, stemmer):
        self.stem = lru_cache(maxsize=131072)(stemmer.stem)


@lru_cache(maxsize=1)
def _rouge_tokenizer():
    from rouge_score.tokenizers import DefaultTokenizer

    tok = DefaultTokenizer(use_stemmer=True)  # as metrics' RougeScorer(use_stemmer=True)
    tok._stemmer = _CachedStemmer(tok._stemmer)
    return tok


@lru_cache(maxsize=65536)
def _rouge_tokens(text: str) -> tuple[str, ...]:
    return tuple(_rouge_tokenizer().tokenize(text))


# ---- pool utility matrices: U[i, j] = u(hypothesis i, pseudo-reference j) ------------------------

def _min_sums(grams: list[Grams]) -> tuple[np.ndarray, np.ndarray]:
    """Clipped matches sum_g min(c_i[g], c_j[g]) for every pair of texts, and each text's n-gram total.

    min(a, b) = sum over t >= 1 of [a >= t][b >= t], so the match matrix is a few 0/1 matrix
    products (t up to the largest count, usually 1-3) instead of N^2 dictionary walks.
    """
    n = len(grams)
    sizes = [len(keys) for keys, _ in grams]
    vocabulary, column = np.unique(np.concatenate([keys for keys, _ in grams]), return_inverse=True)
    counts = np.zeros((n, max(len(vocabulary), 1)))
    counts[np.repeat(np.arange(n), sizes), column] = np.concatenate([values for _, values in grams])
    matches = np.zeros((n, n))
    for t in range(1, int(counts.max()) + 1):
        at_least = (counts >= t).astype(np.float64)
        matches += at_least @ at_least.T
    return matches, counts.sum(axis=1)


def _chrf_matrix(texts: list[str]) -> np.ndarray:
    """sacreBLEU sentence chrF / 100 for every ordered pair (its ``_compute_f_score``, vectorised)."""
    m = _chrf_metric()
    feats = [_chrf_features(t) for t in texts]
    eps, factor = 1e-16, m.beta ** 2
    n = len(texts)
    avg_prec, avg_rec, effective = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    eps_score = np.zeros((n, n))
    for k in range(m.order):
        match, total = _min_sums([f[k] for f in feats])
        n_ref = np.broadcast_to(total[None, :], (n, n))
        n_hyp = np.where(n_ref > 0, total[:, None], 0)  # sacreBLEU: no hyp counts without ref n-grams
        prec = np.divide(match, n_hyp, out=np.full((n, n), eps), where=n_hyp > 0)
        rec = np.divide(match, n_ref, out=np.full((n, n), eps), where=n_ref > 0)
        both = (n_hyp > 0) & (n_ref > 0)
        avg_prec += np.where(both, prec, 0)
        avg_rec += np.where(both, rec, 0)
        effective += both
        denom = factor * prec + rec
        eps_score += np.divide((1 + factor) * prec * rec, denom, out=np.full((n, n), eps), where=denom > 0)
    if m.eps_smoothing:
        return eps_score / m.order
    avg_prec = np.divide(avg_prec, effective, out=np.zeros((n, n)), where=effective > 0)
    avg_rec = np.divide(avg_rec, effective, out=np.zeros((n, n)), where=effective > 0)
    num = (1 + factor) * avg_prec * avg_rec
    den = factor * avg_prec + avg_rec
    return np.divide(num, den, out=np.zeros((n, n)), where=(avg_prec + avg_rec) > 0)


def _bleu_matrix(texts: list[str]) -> np.ndarray:
    """sacreBLEU sentence BLEU / 100 for every ordered pair: its ``compute_bleu`` with effective order and
    'exp' smoothing (each order without a match counts 1 / (2^k * total), k = such orders so far), vectorised."""
    m = _bleu_metric()
    if (m.smooth_method, m.effective_order) != ("exp", True):
        raise NotImplementedError("the vectorised BLEU follows sacreBLEU's exp smoothing with effective order")
    feats = [_bleu_features(t) for t in texts]
    n = len(texts)
    hyp_len = np.array([f[1] for f in feats], dtype=np.float64)[:, None] * np.ones((1, n))
    ref_len = hyp_len.T
    bp = np.where(hyp_len >= ref_len, 1.0,
                  np.exp(1 - np.divide(ref_len, hyp_len, out=np.ones((n, n)), where=hyp_len > 0)))
    bp = np.where(hyp_len > 0, bp, 0.0)
    log_sum, order, smooth, any_match = np.zeros((n, n)), np.zeros((n, n)), np.ones((n, n)), np.zeros((n, n), bool)
    for k in range(m.max_ngram_order):
        match, total = _min_sums([f[0][k] for f in feats])
        total = np.broadcast_to(total[:, None], (n, n))  # the hypothesis' n-grams of this order
        active = total > 0  # sacreBLEU stops at the first order the hypothesis has no n-grams of
        missed = active & (match == 0)
        smooth = np.where(missed, smooth * 2, smooth)
        safe_total = np.where(active, total, 1.0)
        precision = np.where(missed, 1 / (smooth * safe_total), match / safe_total)
        log_sum += np.where(active, np.log(np.where(active, precision, 1.0)), 0.0)
        order += active
        any_match |= match > 0
    score = bp * np.exp(np.divide(log_sum, order, out=np.zeros((n, n)), where=order > 0))
    out = np.where(any_match & (order > 0), score, 0.0)
    np.fill_diagonal(out, 1.0)
    return np.clip(out, 0.0, 1.0)  # exp/log round-off could give a hair over 1 for identical texts


def _lcs_length(masks: dict[str, int], length: int, other: tuple[str, ...]) -> int:
    """Longest common subsequence of a token sequence (given as per-token position bit masks) and ``other``.

    Bit-parallel LCS (Hyyrö 2004): one pass over ``other`` with a few big-int operations per token.
    """
    v = (1 << length) - 1
    for token in other:
        u = v & masks.get(token, 0)
        v = (v + u) | (v - u)
    return length - (v & ((1 << length) - 1)).bit_count()


def _rouge_l_matrix(texts: list[str]) -> np.ndarray:
    """rouge-score's ROUGE-L F1 for every pair (symmetric: F1 of LCS precision and recall)."""
    tokens = [_rouge_tokens(t) for t in texts]
    masks = []
    for toks in tokens:
        mask: dict[str, int] = {}
        for pos, token in enumerate(toks):
            mask[token] = mask.get(token, 0) | (1 << pos)
        masks.append(mask)
    n = len(texts)
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            if not tokens[i] or not tokens[j]:
                out[i, j] = out[j, i] = 0.0
                continue
            lcs = _lcs_length(masks[i], len(tokens[i]), tokens[j])
            precision, recall = lcs / len(tokens[i]), lcs / len(tokens[j])
            out[i, j] = out[j, i] = 2 * precision * recall / (precision + recall) if lcs else 0.0
    return out


_MATRICES: dict[str, Callable[[list[str]], np.ndarray]] = {
    "chrf": _chrf_matrix,
    "rouge_l": _rouge_l_matrix,
    "bleu": _bleu_matrix,
    "mix": lambda texts: (_chrf_matrix(texts) + _rouge_l_matrix(texts)) / 2,  # character + word agreement
}


def utility_matrix(candidates: list[str], utility: UtilityName | PairUtility = "chrf") -> np.ndarray:
    """``U[i, j]`` = utility of candidate i scored against candidate j as the reference (0..1)."""
    if callable(utility):
        n = len(candidates)
        return np.array([[1.0 if i == j else float(utility(candidates[i], candidates[j])) for j in range(n)]
                         for i in range(n)]).reshape(n, n)
    if utility not in _MATRICES:
        raise UserError(f"unknown MBR utility '{utility}' (choose from {', '.join(UTILITIES)})")
    return _MATRICES[utility](list(candidates))


def pair_utility(name: UtilityName) -> PairUtility:
    """The named utility as a function u(hypothesis, reference) -> 0..1 (the pool code on a pool of two)."""
    def u(hypothesis: str, reference: str) -> float:
        return float(utility_matrix([hypothesis, reference], name)[0, 1])
    u.__name__ = name
    return u


def chrf(hypothesis: str, reference: str) -> float:
    return pair_utility("chrf")(hypothesis, reference)


def rouge_l(hypothesis: str, reference: str) -> float:
    return pair_utility("rouge_l")(hypothesis, reference)


def bleu(hypothesis: str, reference: str) -> float:
    return pair_utility("bleu")(hypothesis, reference)


def mix(hypothesis: str, reference: str) -> float:
    """The mean of chrF and ROUGE-L."""
    return pair_utility("mix")(hypothesis, reference)


# ---- selection ----------------------------------------------------------------------------------

def select(candidates: list[str], utility: UtilityName | PairUtility = "chrf") -> tuple[int, list[float]]:
    """The MBR choice: (index of the winner, each candidate's expected utility).

    A candidate's expected utility is its mean utility against every OTHER pool member (the pool
    is the sample of pseudo-references; a duplicate is a member like any other, so repeated replies
    support each other). Ties, within ``TIE_TOLERANCE``, go to the lowest index: the caller puts
    the greedy reply first. A pool of one returns it with expected utility 0 (nothing to agree
    with); an empty pool is a caller bug and raises ValueError.
    """
    n = len(candidates)
    if n == 0:
        raise ValueError("MBR selection needs at least one candidate")
    if n == 1:
        return 0, [0.0]
    matrix = utility_matrix(candidates, utility)
    expected = (matrix.sum(axis=1) - np.diag(matrix)) / (n - 1)
    best = int(np.flatnonzero(expected >= expected.max() - TIE_TOLERANCE)[0])
    return best, [float(x) for x in expected]


def mbr_replies(candidates_per_message: list[list[str]],
                utility: UtilityName | PairUtility = "chrf") -> list[tuple[int, str]]:
    """(winner index, winner text) per message, in order."""
    out = []
    for pool in candidates_per_message:
        index, _ = select(pool, utility)
        out.append((index, pool[index]))
    return out
