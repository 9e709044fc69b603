"""Multi-turn conversations: JSONL with an OpenAI-style ``messages`` list (or ShareGPT ``conversations``).

This is what help desks export and what other fine-tuning tools read::

    {"messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."},
                  {"role": "assistant", "content": "..."}, ...], "brand": "ShopNest", "id": "c-17"}

Every assistant turn that answers a user turn becomes one pair: the user turns since the previous
assistant turn, joined, are the input; everything before them is the pair's ``history``. ShareGPT
rows (``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}``) are read the same
way. System turns are not customer text and are left out. All pairs of one conversation share a
``thread_id``, so the split keeps conversations whole.
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import UserError
from .readers import read_json_records
from .records import RawPair, ReadResult

SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}


def _turns(path: Path, lineno: int, row: dict) -> list[dict]:
    if isinstance(row.get("messages"), list):
        raw = [(m.get("role"), m.get("content")) for m in row["messages"] if isinstance(m, dict)]
    elif isinstance(row.get("conversations"), list):
        raw = [(SHAREGPT_ROLES.get(str(m.get("from")), m.get("from")), m.get("value"))
               for m in row["conversations"] if isinstance(m, dict)]
    else:
        raise UserError(f"{path}:{lineno}: no 'messages' (or 'conversations') list")
    turns = []
    for role, content in raw:
        if role not in ("system", "user", "assistant"):
            raise UserError(f"{path}:{lineno}: unknown role '{role}' (expected system, user or assistant)")
        if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        if isinstance(content, str) and role != "system":
            turns.append({"role": role, "content": content})
    return turns


def is_messages_file(rows: list[dict]) -> bool:
    return bool(rows) and ("messages" in rows[0] or "conversations" in rows[0])


def read_messages(path: Path, brand_field: str = "brand") -> ReadResult:
    rows = read_json_records(path)
    result = ReadResult(pairs=[], rows_read=len(rows))
    for n, row in enumerate(rows, 1):
        turns = _turns(path, n, row)
        conv = str(row.get("id") or f"conv-{n}")
        brand = str(row.get(brand_field) or "")
        pending: list[str] = []
        for i, turn in enumerate(turns):
            if turn["role"] == "user":
                pending.append(turn["content"])
                continue
            if not pending:
                result.drop("assistant_turn_without_question")
                continue
            first = i - len(pending)
            result.pairs.append(RawPair(id=f"{conv}-{i}", thread_id=conv, input="\n".join(pending),
                                        output=turn["content"], brand=brand, history=turns[:first]))
            pending = []
        if pending:
            result.drop("unanswered_user_turn")
    return result
