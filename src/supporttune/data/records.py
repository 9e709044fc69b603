"""The record every reader yields: one customer message and the agent reply to it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RawPair:
    id: str
    thread_id: str
    input: str
    output: str
    brand: str = ""
    meta: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)  # earlier turns, oldest first: {"role", "content"}


@dataclass
class ReadResult:
    """Pairs a reader produced plus the rows it could not turn into pairs, counted by reason."""

    pairs: list[RawPair]
    dropped: dict[str, int] = field(default_factory=dict)
    rows_read: int = 0

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n
