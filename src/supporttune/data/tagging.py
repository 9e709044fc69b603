"""The tagging engine: sentiment, priority and category of a customer message.

Pure, fast functions (no model, no I/O): ``prepare`` tags every example with them, and the same
functions tag live messages in ``chat`` and ``serve``, so the tags a model sees at inference are
computed exactly as they were in training.

Sentiment thresholds (documented, and the same for both backends):
  * ``vader`` (default): VADER compound score, a lexicon built for social-media text.
    compound >= +0.05 -> positive, <= -0.05 -> negative, else neutral (VADER's own convention).
  * ``textblob``: the seed system's TextBlob polarity with the same +/-0.05 cut-offs.
    "My order never arrived and I am furious!!" -> VADER -0.65 (negative), TextBlob 0.0 (neutral).

Priority is rule based: ``high`` on urgency or outage cues ("asap", "urgent", "still waiting",
"outage", "hacked", ...) or on a strongly negative message with repeated "!!"/"??"; ``medium`` on
a negative message, on delay/fault cues, or on repeated punctuation; ``low`` otherwise.

Category: ``complaint`` on complaint cues (refund, cancel, broken, worst, ...) or a strongly
negative message; else ``question`` when the message asks something ("?" or a leading question
word); else ``other``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Literal

SentimentBackend = Literal["vader", "textblob"]

SENTIMENT_CUTOFF = 0.05
STRONG_NEGATIVE = -0.6

_HIGH = (
    r"asap|a\.s\.a\.p|urgent(?:ly)?|immediately|emergency|right now|right away|still waiting|"
    r"still (?:not|no|haven'?t|hasn'?t)|outage|"
    r"(?:is|are|went|goes|still|been|service|app|site|website|network|internet|everything) down|down again|"
    r"no (?:service|signal|internet|power|connection)|hacked|fraud(?:ulent)?|stolen|"
    r"locked out|can'?t (?:log ?in|access|sign in)|cannot (?:log ?in|access)|"
    r"charged twice|double charged|unauthori[sz]ed|(?:days?|weeks?|hours?) (?:now|already)"
)
_MEDIUM = (
    r"waiting|wait(?:ed)? for|delay(?:ed)?|late|not working|doesn'?t work|isn'?t working|"
    r"broken|error|issue|problem|crash(?:es|ed|ing)?|slow|missing|wrong|never (?:arrived|came|received)"
)
_COMPLAINT = (
    r"refund|cancel(?:led|ing|lation)?|broken|worst|terrible|horrible|awful|useless|"
    r"disappoint(?:ed|ing)|furious|angry|ridiculous|unacceptable|scam|rip(?:-| )?off|"
    r"never (?:arrived|came|received)|not working|doesn'?t work|still waiting|charged|"
    r"overcharged|complain|fed up|sick of|joke|pathetic|rude|damaged|lost my|hacked|fraud|stolen"
)
_QUESTION_START = r"^(?:how|what|why|when|where|who|which|can|could|would|will|is|are|do|does|did|should|any ?one)\b"

HIGH_RE = re.compile(rf"\b(?:{_HIGH})\b", re.I)
MEDIUM_RE = re.compile(rf"\b(?:{_MEDIUM})\b", re.I)
COMPLAINT_RE = re.compile(rf"\b(?:{_COMPLAINT})\b", re.I)
QUESTION_RE = re.compile(_QUESTION_START, re.I)
REPEATED_PUNCT_RE = re.compile(r"[!?]{2,}")


@dataclass(frozen=True)
class Tags:
    sentiment: str
    priority: str
    category: str
    score: float  # the raw sentiment score the label came from

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def _vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_score(text: str, backend: SentimentBackend = "vader") -> float:
    """Signed sentiment in [-1, 1] from the chosen lexicon."""
    if backend == "vader":
        return float(_vader().polarity_scores(text)["compound"])
    if backend == "textblob":
        from textblob import TextBlob

        return float(TextBlob(text).sentiment.polarity)
    raise ValueError(f"unknown sentiment backend {backend!r} (choose vader or textblob)")


def sentiment_label(score: float) -> str:
    if score >= SENTIMENT_CUTOFF:
        return "positive"
    if score <= -SENTIMENT_CUTOFF:
        return "negative"
    return "neutral"


def priority(text: str, score: float) -> str:
    repeated = bool(REPEATED_PUNCT_RE.search(text))
    if HIGH_RE.search(text) or (score <= STRONG_NEGATIVE and repeated):
        return "high"
    if score <= -SENTIMENT_CUTOFF or repeated or MEDIUM_RE.search(text):
        return "medium"
    return "low"


def category(text: str, score: float) -> str:
    if COMPLAINT_RE.search(text) or score <= STRONG_NEGATIVE:
        return "complaint"
    if "?" in text or QUESTION_RE.search(text.strip()):
        return "question"
    return "other"


def tag(text: str, backend: SentimentBackend = "vader") -> Tags:
    """Tag one customer message. Pure: the same text always gets the same tags."""
    score = sentiment_score(text, backend)
    return Tags(sentiment_label(score), priority(text, score), category(text, score), round(score, 4))
