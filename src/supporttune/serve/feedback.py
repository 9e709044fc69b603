"""``POST /v1/feedback``: a thumbs up or down (and optionally a corrected reply) for a served response.

The server remembers its last ``RECENT`` responses (id -> agent, message, history, reply); feedback
quoting one of them is appended, one JSON object a line, to the feedback store: ``--feedback FILE``,
else ``feedback.jsonl`` in the run directory of the agent that answered (rundir.FEEDBACK). A record::

    {"id": "chatcmpl-...", "time": "2025-01-01T12:00:00+00:00", "model": "lora-r8", "run": "/abs/run",
     "rating": "up" | "down", "correction": "the reply it should have given" | null, "comment": str | null,
     "message": "the customer's message", "history": [{"role", "content"}, ...], "brand": str | null,
     "reply": "what the agent said"}

``read_feedback`` reads a store back (the rating export and the preference pairs can use it:
a correction is a preferred reply over ``reply``).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from ..core.io import append_jsonl, iter_jsonl
from ..rundir import feedback_path

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
            "model": served["model"], "run": served.get("run"), "rating": req.rating, "correction": req.correction,
            "comment": req.comment, "message": served.get("message"), "history": served.get("history") or [],
            "brand": served.get("brand"), "reply": served.get("reply")}


_WRITE = threading.Lock()


def append(path: Path, row: dict) -> None:
    with _WRITE:  # one line at a time, whole
        append_jsonl(path, row)


def read_feedback(path: Path) -> list[dict]:
    return list(iter_jsonl(Path(path))) if Path(path).is_file() else []
