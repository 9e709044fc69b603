"""Cleaning and redaction rules, one small function each, applied to inputs and outputs alike.

Order matters: HTML entities are unescaped first (so ``&amp;`` cannot hide a URL), then personal
data is replaced by placeholders, then agent sign-offs are stripped, then whitespace is normalized.
``filter_reason`` decides whether a cleaned pair is kept, and names the reason when it is not.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import lru_cache

URL, EMAIL, USER, PHONE, NUMBER = "__url__", "__email__", "__user__", "__phone__", "__number__"
PLACEHOLDERS = (URL, EMAIL, USER, PHONE, NUMBER)

URL_RE = re.compile(r"(?:https?://|www\.|\b[\w-]+\.(?:com|net|org|co|io|ly|gl|me)/)\S*?(?=[.,;:!?)\]]*(?:\s|$))", re.I)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
LEADING_HANDLES_RE = re.compile(r"^(?:\s*\.?@\w+[,:]?(?=\s|$))+\s*")
HANDLE_RE = re.compile(r"(?<![\w@])@\w+")
# Phone numbers: 7+ digits with the usual separators, optionally with a country code.
PHONE_RE = re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{3}\)|\d{3})[\s.-]?\d{3}[\s.-]?\d{4}(?!\w)")
# Long digit runs are account, order or card numbers: personal too.
LONG_NUMBER_RE = re.compile(r"(?<![\w_])\d{8,}(?![\w_])")
# Agent sign-offs at the end of a reply: "^MM", "-Becky", "/AY", "*JS", "~Dan", "- FR".
SIGNOFF_RE = re.compile(r"(?:\s|^)(?:[\^/*~]\s?[A-Z][A-Za-z]{0,10}|-\s?[A-Z][a-zA-Z]{0,10})\s*$")
# Multi-tweet markers at the end of a reply: "1/2", "(2/2)".
PART_MARKER_RE = re.compile(r"\s*\(?\b\d/\d\)?\.?\s*$")
SPACE_RE = re.compile(r"[ \t\u00a0]+")
NEWLINES_RE = re.compile(r"\s*\n\s*")


def unescape(text: str) -> str:
    """``&amp;`` -> ``&`` (twice, for double-escaped dumps)."""
    return html.unescape(html.unescape(text))


def redact(text: str) -> str:
    """Replace URLs, e-mails, @handles, phone numbers and long digit runs with placeholders.

    Leading @handles are the reply-addressing prefix of a tweet and carry no content: they are
    dropped rather than replaced.
    """
    text = URL_RE.sub(URL, text)
    text = EMAIL_RE.sub(EMAIL, text)
    text = LEADING_HANDLES_RE.sub("", text)
    text = HANDLE_RE.sub(USER, text)
    text = PHONE_RE.sub(PHONE, text)
    return LONG_NUMBER_RE.sub(NUMBER, text)


def strip_signoff(text: str) -> str:
    """Remove trailing agent initials or names; repeats for stacked ones ("... ^HSB ^JL")."""
    previous = None
    while previous != text:
        previous = text
        text = PART_MARKER_RE.sub("", SIGNOFF_RE.sub("", text)).rstrip()
    return text


def normalize_space(text: str) -> str:
    text = NEWLINES_RE.sub(" ", text)
    return SPACE_RE.sub(" ", text).strip()


def clean_text(text: str, *, is_reply: bool = False) -> str:
    text = redact(unescape(text or ""))
    text = normalize_space(text)
    if is_reply:
        text = strip_signoff(text)
    return text


@dataclass(frozen=True)
class Limits:
    """What filter_reason keeps (the values and their defaults are PrepareConfig's)."""

    min_chars: int
    max_input_chars: int
    max_output_chars: int


def content_chars(text: str) -> int:
    """Characters that are not placeholders or spaces: '__url__' alone is no message."""
    for p in PLACEHOLDERS:
        text = text.replace(p, "")
    return len(re.sub(r"\W", "", text))


# Function words frequent in English tweets and rare in other Latin-script languages; a text
# with one of them is English whatever a detector says (detectors misjudge short texts).
_EN_WORDS = frozenset(
    "the and or to of for is are was be been you your we our my it this that not can does did have "
    "has with please thanks thank help us will would just what how why yes hi hello ok okay it's i'm "
    "don't didn't can't we've we're you're all any from i need".split()
)
_WORD_RE = re.compile(r"[a-zA-Z'’]+")


@lru_cache(maxsize=1)
def _detector_ready() -> bool:
    from langdetect import DetectorFactory

    DetectorFactory.seed = 0  # langdetect is random by default; make it deterministic
    return True


def is_english(text: str) -> bool:
    """English unless langdetect is sure it is not *and* the text has few English function words."""
    words = [w.lower() for w in _WORD_RE.findall(text)]
    letters = sum(c.isalpha() for c in text)
    if letters and sum(c.isascii() for c in text if c.isalpha()) / letters < 0.5:
        return False  # mostly non-Latin script
    if any(w.replace("’", "'") in _EN_WORDS for w in words):
        return True
    if len(words) < 3:
        return True  # too short to judge; keep
    _detector_ready()
    from langdetect import LangDetectException, detect_langs

    try:
        best = detect_langs(text)[0]
    except LangDetectException:
        return True
    return best.lang == "en" or best.prob < 0.9


def filter_reason(inp: str, out: str, limits: Limits) -> str | None:
    """Why a cleaned (input, output) pair is dropped, or None to keep it."""
    if not inp.strip() or not out.strip():
        return "empty"
    if content_chars(inp) < limits.min_chars or content_chars(out) < limits.min_chars:
        return "too_short"
    if len(inp) > limits.max_input_chars or len(out) > limits.max_output_chars:
        return "too_long"
    if not is_english(inp) or not is_english(out):
        return "non_english"
    return None
