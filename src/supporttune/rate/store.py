"""The append-only vote store: ``SUITE/ratings.jsonl``, one JSON line per decision, never rewritten.

Why it looks like this: votes are human time, the most expensive data in the project, so each one
is on disk (``O_APPEND`` + ``fsync``) before the page hears "saved". Two raters' server processes
may write the same file at once; an exclusive ``flock`` around "read what others appended, check
for a duplicate, append" makes the duplicate check and the write one step. A write cut short
(power loss, kill -9) leaves a fragment without a newline: the next writer ends that fragment with
a newline before its own line, and readers skip lines that are not valid votes, so one broken
write never costs a later vote.

A line: ``{"v": 1, "rater", "time", "message_id", "left", "right", "choice", "flags", "seconds"}``
with ``choice`` one of ``left`` / ``right`` / ``tie`` / ``both_bad`` / ``skip`` (a skip is kept so
that a restarted page does not show that message and pair again; analysis ignores it).
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..suitedir import RATINGS

CHOICES = ("left", "right", "tie", "both_bad", "skip")
DECISIONS = ("left", "right", "tie", "both_bad")  # everything but skip
FLAG_LABELS = {"wrong_info": "wrong info", "rude": "rude", "off_topic": "off-topic", "unsafe": "unsafe"}  # page and report
FLAGS = tuple(FLAG_LABELS)
FILENAME = RATINGS  # the suite directory's votes file (suitedir.py owns the name)


class DuplicateVote(Exception):
    """This rater already decided this message for this pair of entries."""


def pair_key(a: str, b: str) -> tuple[str, str]:
    """An unordered pair of entry names, as a sorted tuple."""
    return (a, b) if a <= b else (b, a)


def item_key(vote: dict) -> tuple[str, tuple[str, str]]:
    """What a rater judges once: one message for one unordered pair of entries."""
    return str(vote["message_id"]), pair_key(vote["left"], vote["right"])


def valid_vote(row) -> bool:
    return (isinstance(row, dict) and isinstance(row.get("rater"), str) and isinstance(row.get("left"), str)
            and isinstance(row.get("right"), str) and row.get("choice") in CHOICES and "message_id" in row)


def parse_lines(data: bytes) -> tuple[list[dict], int]:
    """Votes in ``data`` (complete lines only) and the number of bad lines skipped."""
    votes, bad = [], 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if valid_vote(row):
            votes.append(row)
        else:
            bad += 1
    return votes, bad


def read_votes(path: Path) -> list[dict]:
    """Every valid line of a ratings file (skips and all); [] when there is no file."""
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1  # a last line without its newline is a write still under way, or cut short
    return parse_lines(data[:end])[0]


@dataclass
class Store:
    """One process's handle on ``ratings.jsonl``: appends under a lock, follows what others append."""

    path: Path
    votes: list[dict] = field(default_factory=list)
    skipped_lines: int = 0
    _offset: int = 0
    _seen: set = field(default_factory=set)  # (rater, message id, pair) of every line read: the duplicate check
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self):
        self.path = Path(self.path)
        self.refresh()

    def _read_new(self) -> list[dict]:
        """Complete lines appended since the last read (by this process or another)."""
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return []
        if size <= self._offset:
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        end = data.rfind(b"\n") + 1
        new, bad = parse_lines(data[:end])
        self._offset += end
        self.skipped_lines += bad
        self.votes.extend(new)
        self._seen.update((v["rater"], *item_key(v)) for v in new)
        return new

    def refresh(self) -> list[dict]:
        with self._lock:
            return self._read_new()

    def append(self, vote: dict) -> None:
        """Write one vote durably; raises DuplicateVote (nothing written) if this rater decided that item already."""
        if not valid_vote(vote):
            raise ValueError(f"not a vote: {vote!r}")
        line = (json.dumps(vote, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                self._read_new()
                key = (vote["rater"], *item_key(vote))
                if key in self._seen:
                    raise DuplicateVote(f"{vote['rater']} already rated message {key[1]} for this pair")
                size = os.fstat(fd).st_size
                if size > self._offset:  # a fragment without newline (an interrupted write): end it
                    os.write(fd, b"\n")
                    self.skipped_lines += 1
                    size += 1
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"{self.path}: short write ({written} of {len(line)} bytes)")
                os.fsync(fd)
                self._offset = size + len(line)
                self.votes.append(vote)
                self._seen.add(key)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
