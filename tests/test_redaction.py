"""Redaction on real-traffic shapes (issue 24): phones, ids, sign-offs, invisible characters, counts.

Table-driven cases come from the shapes seen in the TWCS sample; a seeded random loop checks the
property that no 7+ digit run survives cleaning, whatever separators and words surround it.
"""

import json
import random
import re
import sys
import unicodedata

import pytest

from supporttune.data.clean import (
    FORMAT_CHARS_RE,
    CleanCounts,
    clean_text,
    remove_invisible,
)

REDACT_CASES = [
    # phones, international and national
    ("My phone number is +91-90002-89198. Please help", "My phone number is __phone__. Please help", "phone"),
    ("call +44 20 7946 0958 today", "call __phone__ today", "phone"),
    ("ring (555) 123-4567 or 555.123.4567", "ring __phone__ or __phone__", "phone"),
    ("Aftersales team on 0800 123 4567 from 8am", "Aftersales team on __phone__ from 8am", "phone"),
    ("3:00 pm (706)614-7640", "3:00 pm __phone__", "phone"),
    ("call 1-800-956-4442 immediately", "call __phone__ immediately", "phone"),
    ("Sergii/02152/+380671277946", "Sergii/02152/__phone__", "phone"),
    ("reach me on 00447900248601, anytime", "reach me on __phone__, anytime", "phone"),
    # identifiers next to a keyword, whole digit chains, carrier tracking ids
    ("Order# 3632693-6196346. You couldn't deliver", "Order# __id__. You couldn't deliver", "id"),
    ("return started. Order 111-5014070-4118645", "return started. Order __id__", "id"),
    ("PayPal case ID is PP-006-234-348-863", "PayPal case ID is __id__", "id"),
    ("CRM:0326600 please check", "CRM:__id__ please check", "id"),
    ("my case number 494610", "my case number __id__", "id"),
    ("booking ref: XK2J9Q, thanks", "booking ref: __id__, thanks", "id"),
    ("ticket #A1B2C3D4 is open", "ticket #__id__ is open", "id"),
    ("Reference number is 16934380.", "Reference number is __id__.", "id"),
    ("tracking 1Z999AA10123456784 stuck", "tracking __id__ stuck", "id"),
    ("where is 1Z999AA10123456784?", "where is __id__?", "id"),
    ("CAS-19708536-CB92N2 still open", "__id__ still open", "id"),
    ("Here its 615787351 and go", "Here its __number__ and go", "number"),
]

SIGNOFF_CASES = [
    ("We can help. ^MM", "We can help.", "caret"),
    ("We can help. ^ MM", "We can help.", "caret"),
    ("Please DM us.^kl", "Please DM us.", "caret"),
    ("Anything else? ^AP .", "Anything else?", "caret"),
    ("DM us please -Becky", "DM us please", "hyphen"),
    ("DM us please - Becky", "DM us please", "hyphen"),
    ("Thanks for waiting.--JV", "Thanks for waiting.", "hyphen"),
    ("Happy to help-Tabby", "Happy to help", "hyphen"),
    ("Let us know ~ Derrick", "Let us know", "tilde"),
    ("Let us know ~AT", "Let us know", "tilde"),
    ("Please DM your address. –SLM", "Please DM your address.", "en_dash"),
    ("Please DM your address. —Name", "Please DM your address.", "em_dash"),
    ("Full, sorry. *JD", "Full, sorry.", "asterisk"),
    ("Take a look! *KellenF", "Take a look!", "asterisk"),
    ("Sorry! /AY", "Sorry!", "slash"),
    ("Thanks for waiting 2/2", "Thanks for waiting", "part_marker"),
]

MUST_STAY = [
    "It was $19.99 and now £5, a 50% rise",
    "Ordered on 12/25/2017, shipped 2017-12-25 at 10:30am",
    "My iPhone 8 and Galaxy S9 and PS4 all fail",
    "Since iOS 11.2.1 and v2.3.4 the app crashes; Spotify 1.0.65.320 too",
    "Waited 2 days, then 48 hours, for 3 items",
    "Everything from 1982 - 2017 is there",
    "order iPhone10 twice, flight 4459 today",
    "Thanks -",
    "Just do a heads-up",
    "Welcome to T-Mobile",
    "Back in stock mid-December",
    "Call us on 0-800",
    "We love it :-)",
]


@pytest.mark.parametrize("raw,expected,kind", REDACT_CASES)
def test_redaction_table(raw, expected, kind):
    counts = CleanCounts()
    assert clean_text(raw, counts=counts) == expected
    assert counts.redacted[kind] >= 1


@pytest.mark.parametrize("raw,expected,kind", SIGNOFF_CASES)
def test_signoff_table(raw, expected, kind):
    counts = CleanCounts()
    assert clean_text(raw, is_reply=True, counts=counts) == expected
    assert counts.signoffs[kind] >= 1
    assert clean_text(raw) != expected or kind == "none"  # a customer's text keeps it


@pytest.mark.parametrize("text", MUST_STAY)
def test_must_stay_unchanged(text):
    counts = CleanCounts()
    assert clean_text(text, is_reply=True, counts=counts) == text
    assert not counts.redacted and not counts.signoffs


def test_invisible_and_bidi_characters_removed_but_emoji_zwj_kept():
    counts = CleanCounts()
    raw = "call\u2066 555\u200b1234567\u2069 now\ufeff \u202eok \U0001F926\U0001F3FB\u200d\u2642\ufe0f a\u200db"
    # the zero-width space no longer splits the number, so it is redacted whole
    assert clean_text(raw, counts=counts) == "call __phone__ now ok \U0001F926\U0001F3FB\u200d\u2642\ufe0f ab"
    assert counts.invisible == 6  # the ZWJ between emoji stays, the one between letters goes
    england = "\U0001F3F4\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F"
    assert remove_invisible(england) == england


def test_format_chars_class_matches_unicode_category_cf():
    cf = {c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"}
    ours = {c for c in range(sys.maxunicode + 1) if FORMAT_CHARS_RE.match(chr(c))}
    assert ours == cf


def test_no_long_digit_run_survives_random_texts():
    rng = random.Random(24)
    seps = ["", "", " ", "-", ".", "/", "(", ")", "+", "#", ":", "_", "\u200b", "\u2066", ",", "-", "__id__"]
    words = ["order", "call", "ref", "case", "at", "iPhone", "x", "CRM", "1Z", "AB", "tracking", "^MM", "-Becky", "$"]
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(1, 12)):
            r = rng.random()
            if r < 0.6:
                parts.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 9))))
            elif r < 0.8:
                parts.append(rng.choice(words))
            parts.append(rng.choice(seps))
        raw = "".join(parts)
        for is_reply in (False, True):
            out = clean_text(raw, is_reply=is_reply)
            assert not re.search(r"\d{7,}", out), (raw, out)
            if "_" not in raw:  # no half-redacted "__phone__-4118645" leftovers (placeholders hold "_")
                assert not re.search(r"__\w+__[.-]?\d{3,}|\d{3,}[.-]?__\w+__", out), (raw, out)


def test_prepare_report_counts_redactions_and_signoffs(tmp_path):
    from supporttune.data.config import PrepareConfig
    from supporttune.data.prepare import cleaning_summary, prepare

    rows = [
        ("1", "brand", "False", "@115 So sorry! Please DM your order number and phone. ^MM", "", "2"),
        ("2", "115", "True", "@brand my order 111-5014070-4118645 never came, call me on +44 20 7946 0958", "1", ""),
        ("3", "brand", "False", "@116 We can help with that \u2066today\u2069 -Becky", "", "4"),
        ("4", "116", "True", "@brand my tracking 1Z999AA10123456784 has not moved for a week", "3", ""),
    ]
    csv = tmp_path / "t.csv"
    lines = ["tweet_id,author_id,inbound,created_at,text,response_tweet_id,in_response_to_tweet_id"]
    lines += [f'{i},{a},{inb},Tue Oct 31 22:10:47 +0000 2017,"{t}",{resp},{parent}' for i, a, inb, t, resp, parent in rows]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rep = prepare(PrepareConfig(input=str(csv), format="twcs", out=tmp_path / "d", val_frac=0, test_frac=0))
    assert rep["pairs_kept"] == 2
    on_disk = json.loads((tmp_path / "d" / "prepare_report.json").read_text())
    c = on_disk["cleaning"]
    assert c["redacted"] == {"reply_handle": 4, "id": 2, "phone": 1}
    assert c["signoffs_stripped"] == {"caret": 1, "hyphen": 1}
    assert c["invisible_chars_removed"] == 2 and c["redacted_total"] == 7 and c["signoffs_total"] == 2
    assert "phone 1" in cleaning_summary(on_disk) and "caret 1" in cleaning_summary(on_disk)
    text = (tmp_path / "d" / "train.jsonl").read_text()
    assert "__id__" in text and "^MM" not in text and "\u2066" not in text and not re.search(r"\d{7,}", text)
