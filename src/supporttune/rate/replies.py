"""What there is to rate: every finished entry's replies of a suite directory, keyed by message id.

The entry list comes from ``suitedir.entries`` (the suite's status file, or the folders of a suite
made by hand), the report's reader too, so the rating page and the report agree on which entries a suite has. An entry
counts when its ``eval/predictions.jsonl`` exists and it has no ``failed.json``; empty replies are
kept (a blank answer is a legitimate thing to lose a comparison with). A message's thread history
comes with its prediction line when evaluate wrote it there, else from the suite's prepared data
(``SUITE/data/``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from .. import suitedir
from ..core.errors import UserError
from ..core.io import read_jsonl
from ..data.split import split_path

MESSAGE_KEYS = ("id", "thread_id", "brand", "input", "reference", "category", "sentiment", "priority", "history")


@dataclass
class SuiteReplies:
    """Replies by entry and message, the messages themselves, and the comparable pairs."""

    suite: Path
    replies: dict[str, dict[str, str]]  # entry -> message id -> reply
    messages: dict[str, dict]  # message id -> the message's fields (MESSAGE_KEYS)
    pairs: dict[tuple[str, str], list[str]]  # sorted pair of entries -> message ids both answered

    @property
    def entries(self) -> list[str]:
        return sorted(self.replies)


def _add_history(suite: Path, messages: dict[str, dict]) -> None:
    """Thread history from the suite's prepared data (``SUITE/data/*.jsonl``) for messages whose predictions lack it."""
    missing = {mid for mid, m in messages.items() if not m.get("history")}
    for split in ("test", "val"):
        path = split_path(suite / suitedir.DATA, split)
        if not missing or not path.is_file():
            continue
        for row in read_jsonl(path):
            mid = str(row.get("id"))
            if mid in missing and row.get("history"):
                messages[mid]["history"] = row["history"]
                missing.discard(mid)


def load_replies(suite: Path) -> SuiteReplies:
    """Read a suite directory; fails with one line when fewer than two entries have predictions."""
    suite = Path(suite)
    if not suite.is_dir():
        raise UserError(f"{suite}: not a directory")
    replies: dict[str, dict[str, str]] = {}
    messages: dict[str, dict] = {}
    for e in suitedir.entries(suite):
        path = suitedir.predictions_path(suite / e["dir"])
        if not path.is_file() or suitedir.failed(suite / e["dir"]):
            continue  # never evaluated, or its last run failed (its predictions may be stale)
        rows = read_jsonl(path)
        got = {}
        for r in rows:
            if "id" not in r or "input" not in r:
                raise UserError(f"{path}: every line needs 'id' and 'input'")
            mid = str(r["id"])
            got[mid] = r.get("prediction") or ""
            messages.setdefault(mid, {k: r.get(k) for k in MESSAGE_KEYS} | {"id": mid})
        replies[e["name"]] = got
    _add_history(suite, messages)
    if len(replies) < 2:
        raise UserError(f"{suite}: rating needs at least two entries with eval/predictions.jsonl "
                        f"(found {len(replies)}: {', '.join(replies) or 'none'})")
    pairs = {}
    for a, b in itertools.combinations(sorted(replies), 2):
        common = sorted(set(replies[a]) & set(replies[b]))
        if common:
            pairs[(a, b)] = common
    if not pairs:
        raise UserError(f"{suite}: no two entries answered the same messages; nothing to compare")
    return SuiteReplies(suite, replies, messages, pairs)
