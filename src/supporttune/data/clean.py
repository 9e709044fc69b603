"""Cleaning and redaction rules, one small function each, applied to inputs and outputs alike.

Order matters: HTML entities are unescaped first (so ``&amp;`` cannot hide a URL), invisible
format characters are dropped next (so a zero-width space cannot split a phone number or hide a
sign-off), then personal data is replaced by placeholders, then whitespace is normalized, then
agent sign-offs are stripped. ``filter_reason`` decides whether a cleaned pair is kept, and
names the reason when it is not. Pass a ``CleanCounts`` to count what was replaced or stripped,
by kind, for the prepare report.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

URL, EMAIL, USER, PHONE, NUMBER, ID = "__url__", "__email__", "__user__", "__phone__", "__number__", "__id__"
PLACEHOLDERS = (URL, EMAIL, USER, PHONE, NUMBER, ID)

URL_RE = re.compile(r"(?:https?://|www\.|\b[\w-]+\.(?:com|net|org|co|io|ly|gl|me)/)\S*?(?=[.,;:!?)\]]*(?:\s|$))", re.I)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
LEADING_HANDLES_RE = re.compile(r"^(?:\s*\.?@\w+[,:]?(?=\s|$))+\s*")
HANDLE_RE = re.compile(r"(?<![\w@])@\w+")

# Identifiers named by the word before them: "order# 3632693-6196346", "case ID is PP-006-234-348",
# "CRM:0326600", "booking ref ABC123". The id is 6+ characters with 2+ digits and, when it has
# lowercase letters, 4+ digits (so "order iPhone10" stays a model name).
_ID_WORDS = (r"order|tracking|track|case|ticket|ref|reference|account|acct|a/c|crm|confirmation|conf|booking"
             r"|reservation|pnr|invoice|claim|incident|transaction|receipt|membership|member")
KEYWORD_ID_RE = re.compile(
    rf"\b((?:{_ID_WORDS})\b(?:[\s:#.-]*(?:{_ID_WORDS}|number|num|no|nr|id|code|is|was)\b)*[\s:#.-]*)"
    r"([A-Za-z0-9]+(?:[-/][A-Za-z0-9]+|\.[A-Za-z]*\d[A-Za-z0-9]*)*)(?![A-Za-z0-9_])", re.I)
# Carrier tracking numbers with letters: UPS "1Z999AA10123456784", Amazon Logistics "TBA123456789012".
TRACKING_RE = re.compile(r"\b(?:1Z[0-9A-Z]{16}|TBA\d{12})\b", re.I)
# Phones. Lookarounds refuse a match inside a longer digit chain ("111-5014070-4118645"), so an
# order number is never left half redacted as "__phone__-4118645"; such chains go to LONG_TOKEN_RE.
_NOT_BEFORE = r"(?<![\w+])(?<!\d[.-])"
_NOT_AFTER = r"(?!\w|[.-]\d)"
# International: "+44 20 7946 0958", "+91-90002-89198", "+380671277946", "0044 20 7946 0958".
INTL_PHONE_RE = re.compile(rf"{_NOT_BEFORE}(?:\+|\b00)\d{{1,4}}(?:[\s.-]?\(?\d{{1,6}}\)?){{1,5}}{_NOT_AFTER}")
# North American: "(555) 123-4567", "555.123.4567", "1-800-956-4442", "8106028994".
NANP_PHONE_RE = re.compile(rf"{_NOT_BEFORE}(?:1[\s.-]?)?(?:\(\s?\d{{3}}\s?\)|\d{{3}})[\s.-]?\d{{3}}[\s.-]?\d{{4}}{_NOT_AFTER}")
# National with a trunk 0: "0800 123 4567", "020 7946 0958", "07900 248601" (groups of 3+ after
# the first, so a date "05-11-2017" never qualifies).
TRUNK_PHONE_RE = re.compile(rf"{_NOT_BEFORE}0\d{{1,4}}(?:[\s.-]?\d{{3,6}}){{1,3}}{_NOT_AFTER}")
# Any word (letters and digits joined by single dashes, dots or underscores) holding a 7+ digit run
# is an account, order or card number: the whole word goes ("CAS-19708536-CB92N2" -> "__id__");
# a word of digits only becomes "__number__".
LONG_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9])(?<![A-Za-z0-9][-._])[A-Za-z0-9]+(?:[-._][A-Za-z0-9]+)*")
DIGITS7_RE = re.compile(r"\d{7,}")
# Cheap gate: no phone or long id without 7 digits close together.
SEVEN_DIGITS_RE = re.compile(r"\d(?:\D{0,4}\d){6}")

# Unicode general category Cf (format characters: zero-width, bidi controls, BOM, tags), as of
# Unicode 14 (Python 3.11); tests/test_redaction.py checks it against ``unicodedata``.
FORMAT_CHARS_RE = re.compile(
    "[\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110BD\U000110CD\U00013430-\U00013438"
    "\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A\U000E0001\U000E0020-\U000E007F]")
# Kept inside emoji sequences: a ZWJ between emoji ("🤦🏻\u200d♂️") and the tag run of a subdivision
# flag ("🏴" + tags). Emoji are recognised by the code point blocks that hold them (plus the emoji
# variation selector U+FE0F on the left), which is enough to tell them from letters and digits.
_EMOJI = ("\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa\u231a-\u23ff\u24c2\u25aa-\u27bf"
          "\u2934\u2935\u2b05-\u2b55\u3030\u303d\u3297\u3299\U0001F000-\U0001FAFF")
_EMOJI_KEEP_RE = re.compile(f"(?<=[{_EMOJI}\ufe0f])\u200d(?=[{_EMOJI}])|(?<=\U0001F3F4)[\U000E0020-\U000E007F]+")

# Agent sign-offs at the end of a reply, by kind. Caret initials are never prose, so any case and
# no space before ("up.^SB", "^kl"); other markers need a capitalised name and a non-word before
# them, so "Wi-Fi", "heads-up", ":-)" and a lone "Thanks -" stay.
_PREFIXES = ("mid", "pre", "post", "non", "anti", "pro", "un", "all", "ex", "e", "i", "re", "co", "self", "semi",
             "multi", "pan", "trans", "sub", "super", "inter", "in", "over", "under", "well", "x")
_NAME = r"(?:[A-Z][A-Za-z]{0,20}|(?:[A-Z]\.){1,3})"  # a sign-off may end in dots: "*TLT...", "^AP ."
SIGNOFF_RES = (
    ("caret", re.compile(r"\^\s?[A-Za-z]{0,20}[\s.]*$")),
    ("asterisk", re.compile(rf"(?<!\w)\*\s?{_NAME}[\s.]*$")),
    ("tilde", re.compile(rf"(?<!\w)~\s?{_NAME}[\s.]*$")),
    ("slash", re.compile(rf"(?<![\w/:])/\s?[A-Z][A-Za-z]{{0,10}}[\s.]*$")),
    ("en_dash", re.compile(rf"(?<!\w)\u2013\s?{_NAME}[\s.]*$")),
    ("em_dash", re.compile(rf"(?<!\w)\u2014\s?{_NAME}[\s.]*$")),
    ("hyphen", re.compile(rf"(?<![\w-])-{{1,2}}\s?{_NAME}[\s.]*$")),
    # "...go-DD", "it-Tabby", "Thanks-Sha": a name glued to an all-lowercase word that is not a
    # prefix ("mid-December", "e-Gift", "non-Prime" stay), or to a thanks; only the "-Name" goes.
    ("hyphen", re.compile(rf"(?:(?<![\w-])(?!(?:{'|'.join(_PREFIXES)})-)[a-z]+|\b(?:Thanks|Thx|Cheers))"
                          rf"(?P<cut>-(?!(?:Thanks|Thx|Cheers)\b){_NAME}[\s.]*$)")),
)
_SIGNOFF_WINDOW = 64  # sign-offs are short: search only the tail (lookbehinds still see before it)
# Multi-tweet markers at the end of a reply: "1/2", "(2/2)".
PART_MARKER_RE = re.compile(r"\s*\(?\b\d/\d\)?\.?\s*$")
SPACE_RE = re.compile(r"[ \t\u00a0]+")
NEWLINES_RE = re.compile(r"\s*\n\s*")


@dataclass
class CleanCounts:
    """What cleaning replaced or stripped, by kind; one object can be passed to many calls."""

    redacted: Counter = field(default_factory=Counter)  # url, email, handle, reply_handle, id, phone, number
    signoffs: Counter = field(default_factory=Counter)  # caret, asterisk, tilde, slash, hyphen, en_dash, em_dash, part_marker
    invisible: int = 0  # format/bidi characters dropped

    def add(self, other: CleanCounts) -> None:
        self.redacted.update(other.redacted)
        self.signoffs.update(other.signoffs)
        self.invisible += other.invisible

    def as_report(self) -> dict:
        return {
            "redacted": dict(self.redacted.most_common()), "redacted_total": sum(self.redacted.values()),
            "signoffs_stripped": dict(self.signoffs.most_common()), "signoffs_total": sum(self.signoffs.values()),
            "invisible_chars_removed": self.invisible,
        }


def unescape(text: str) -> str:
    """``&amp;`` -> ``&`` (twice, for double-escaped dumps)."""
    return html.unescape(html.unescape(text))


def remove_invisible(text: str, counts: CleanCounts | None = None) -> str:
    """Drop Unicode format characters (zero-width, bidi controls, BOM) except inside emoji sequences.

    The rule: every category-Cf character goes, except a ZWJ (U+200D) with an emoji on both sides
    and the tag characters right after a black flag (subdivision flags); those render as one glyph.
    """
    if not FORMAT_CHARS_RE.search(text):
        return text
    keep = {m.start() + i for m in _EMOJI_KEEP_RE.finditer(text) for i in range(len(m.group()))}
    out = []
    for i, ch in enumerate(text):
        if i not in keep and FORMAT_CHARS_RE.match(ch):
            if counts is not None:
                counts.invisible += 1
            continue
        out.append(ch)
    return "".join(out)


def _sub(pattern: re.Pattern, repl, text: str, kind: str, counts: CleanCounts | None) -> str:
    text, n = pattern.subn(repl, text)
    if counts is not None and n:
        counts.redacted[kind] += n
    return text


def _keyword_id(m: re.Match) -> str:
    token = m.group(2)
    digits = sum(c.isdigit() for c in token)
    has_lower = any(c.islower() for c in token)
    if len(token) >= 6 and digits >= 2 and (digits >= 4 or not has_lower):
        return m.group(1) + ID
    return m.group(0)


def _phone(m: re.Match) -> str:
    """A phone has 7 to 15 digits (E.164); fewer is a version or a date part."""
    return PHONE if 7 <= sum(c.isdigit() for c in m.group()) <= 15 else m.group()


def redact(text: str, counts: CleanCounts | None = None) -> str:
    """Replace URLs, e-mails, @handles, identifiers, phone numbers and long digit runs with placeholders.

    Leading @handles are the reply-addressing prefix of a tweet and carry no content: they are
    dropped rather than replaced. Identifiers go before phones, so a digit chain is replaced whole;
    a last pass replaces any 7+ digit run that survived (e.g. glued to a placeholder).
    """
    text = _sub(URL_RE, URL, text, "url", counts)
    text = _sub(EMAIL_RE, EMAIL, text, "email", counts)
    lead = LEADING_HANDLES_RE.match(text)
    if lead:
        if counts is not None:
            counts.redacted["reply_handle"] += lead.group().count("@")
        text = text[lead.end():]
    text = _sub(HANDLE_RE, USER, text, "handle", counts)
    if not any(c.isdigit() for c in text):
        return text  # the rest is about digits; most texts have none
    text = _counted(KEYWORD_ID_RE, _keyword_id, text, counts)
    text = _sub(TRACKING_RE, ID, text, "id", counts)
    if SEVEN_DIGITS_RE.search(text):
        for pattern in (INTL_PHONE_RE, NANP_PHONE_RE, TRUNK_PHONE_RE):
            text = _counted(pattern, _phone, text, counts)
    if DIGITS7_RE.search(text):
        text = _counted(LONG_TOKEN_RE, _long_token, text, counts)
    return _sub(DIGITS7_RE, NUMBER, text, "number", counts)


def _long_token(m: re.Match) -> str:
    token = m.group()
    if not DIGITS7_RE.search(token):
        return token
    return NUMBER if token.isdigit() else ID


_KINDS = {ID: "id", NUMBER: "number", PHONE: "phone"}


def _counted(pattern: re.Pattern, fn, text: str, counts: CleanCounts | None) -> str:
    """``pattern.sub(fn, text)``, counting each replacement by the placeholder ``fn`` ended it with."""
    def repl(m: re.Match) -> str:
        new = fn(m)
        if counts is not None and new != m.group():
            counts.redacted[next(k for p, k in _KINDS.items() if new.endswith(p))] += 1
        return new

    return pattern.sub(repl, text)


def strip_signoff(text: str, counts: CleanCounts | None = None) -> str:
    """Remove trailing agent initials or names and part markers; repeats for stacked ones ("... ^HSB ^JL")."""
    while True:
        for kind, pattern in (*SIGNOFF_RES, ("part_marker", PART_MARKER_RE)):
            m = pattern.search(text, max(0, len(text) - _SIGNOFF_WINDOW))
            if m:
                break
        else:
            return text
        if counts is not None:
            counts.signoffs[kind] += 1
        text = text[:m.start("cut") if "cut" in m.re.groupindex else m.start()].rstrip()


def normalize_space(text: str) -> str:
    text = NEWLINES_RE.sub(" ", text)
    return SPACE_RE.sub(" ", text).strip()


def clean_text(text: str, *, is_reply: bool = False, counts: CleanCounts | None = None) -> str:
    """Cleaned text; ``is_reply`` (an agent's turn) also strips sign-offs. ``counts`` tallies changes."""
    text = redact(remove_invisible(unescape(text or ""), counts), counts)
    text = normalize_space(text)
    if is_reply:
        text = strip_signoff(text, counts)
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
