"""``POST /v1/feedback``: a thumbs up or down (and optionally a corrected reply) for a served response.

The server remembers its last ``RECENT`` responses (id -> agent, message, history, reply); feedback
quoting one of them is appended, one JSON object a line, to the feedback store: ``--feedback FILE``,
else ``feedback.jsonl`` in the run directory of the agent that answered (rundir.FEEDBACK). A record::

    {"id": "chatcmpl-...", "time": "2025-01-01T12:00:00+00:00", "model": "lora-r8", "run": "/abs/run",
     "rating": "up" | "down", "correction": "the reply it should have given" | null, "comment": str | null,
     "message": "the customer's message", "history": [{"role", "content"}, ...], "brand": str | null,
     "instructions": "a client's system message" | null, "reply": "what the agent said"}

``read_feedback`` reads a store back as it is; ``load_feedback`` reads it for an export and checks
every line first (one line naming FILE:LINE on the first bad one). ``supporttune preferences RUN
--feedback FILE`` (pairs/feedback.py) turns it into a preference file: a correction is preferred
over ``reply``, and thumbs are KTO's desirable/undesirable labels.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..core.errors import UserError
from ..core.io import append_jsonl, iter_jsonl
from ..rundir import FEEDBACK, feedback_path

RECENT = 10000


class FeedbackRequest(BaseModel):
    id: str = Field(..., min_length=1, description="The response's id (chat completion id or /v1/reply id).")
    rating: Literal["up", "down"]
    correction: str | None = Field(None, max_length=8000, description="The reply the agent should have given.")
    comment: str | None = Field(None, max_length=2000)


class Recent:
    """The last responses served, by id (bounded: the oldest are forgotten first)."""

    def __init__(self, size: int = RECENT):
        self.size, self.items = size, OrderedDict()
        self.lock = threading.Lock()

    def remember(self, rid: str, record: dict) -> None:
        with self.lock:
            self.items[rid] = record
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def get(self, rid: str) -> dict | None:
        with self.lock:
            return self.items.get(rid)


def store_for(fixed: Path | None, run: str | None) -> Path | None:
    if fixed is not None:
        return Path(fixed)
    return feedback_path(Path(run)) if run else None


def record(req: FeedbackRequest, served: dict) -> dict:
    return {"id": req.id, "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "model": served["model"],
            "run": str(Path(served["run"]).resolve()) if served.get("run") else None, "rating": req.rating, "correction": req.correction,
            "comment": req.comment, "message": served.get("message"), "history": served.get("history") or [],
            "brand": served.get("brand"), "instructions": served.get("instructions") or None,
            "reply": served.get("reply")}


_WRITE = threading.Lock()


def append(path: Path, row: dict) -> None:
    with _WRITE:  # one line at a time, whole
        append_jsonl(path, row)


def read_feedback(path: Path) -> list[dict]:
    return list(iter_jsonl(Path(path))) if Path(path).is_file() else []


REQUIRED = ("id", "model", "rating", "message", "reply")  # what an export cannot do without


def check_record(row, where: str) -> dict:
    """One record, checked for what an export reads; one line saying what is wrong (``where`` = FILE:LINE)."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: not a JSON object (a feedback record)")
    missing = [k for k in REQUIRED if not isinstance(row.get(k), str) or not row[k].strip()]
    if missing:
        raise UserError(f"{where}: feedback record without {', '.join(repr(k) for k in missing)} "
                        f"(each line is one POST /v1/feedback record; serve/feedback.py documents the format)")
    if row["rating"] not in ("up", "down"):
        raise UserError(f"{where}: rating {row['rating']!r} is not 'up' or 'down'")
    for key in ("correction", "brand", "instructions", "run"):
        if row.get(key) is not None and not isinstance(row[key], str):
            raise UserError(f"{where}: {key!r} must be text or null")
    history = row.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(t, dict) and t.get("role") in ("user", "assistant") and isinstance(t.get("content"), str)
            for t in history):
        raise UserError(f"{where}: 'history' must be a list of {{\"role\": \"user\"|\"assistant\", \"content\": text}}")
    return row


def load_feedback(path: Path) -> list[tuple[int, dict]]:
    """``(line number, record)`` of every record of a store, each checked; blank lines are skipped."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory (give the feedback JSONL file, e.g. RUN/{FEEDBACK})")
    if not path.is_file():
        raise UserError(f"{path}: file not found (serve writes RUN/{FEEDBACK}, or --feedback FILE)")
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: not valid JSON ({e.msg})") from None
            out.append((i, check_record(row, f"{path}:{i}")))
    if not out:
        raise UserError(f"{path}: no feedback records (an empty file)")
    return out
