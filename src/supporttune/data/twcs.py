"""Kaggle "Customer Support on Twitter" (TWCS) ingestion: rebuild reply threads from id links.

Each brand reply (``inbound == False``) answering a customer tweet becomes one pair. When the
customer wrote several tweets in a row before that reply (a tweet answering their own tweet),
they are joined, oldest first, into one input. The tweets before those (customer and brand, up
to ``MAX_HISTORY``, oldest first) are the pair's ``history``. ``thread_id`` is the id of the
conversation's root tweet, so every pair of one conversation shares it and the split can keep threads whole.
"""

from __future__ import annotations

from pathlib import Path

from .readers import read_csv, require_columns
from .records import RawPair, ReadResult

TWCS_COLUMNS = ["tweet_id", "author_id", "inbound", "created_at", "text", "response_tweet_id", "in_response_to_tweet_id"]
MAX_JOINED = 3  # at most this many consecutive customer tweets form one input
MAX_HISTORY = 8  # earlier turns of the thread kept per pair (the prompt shows at most `history` of them)


def _is_inbound(value: str) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


def _clean_id(value: str) -> str:
    value = str(value).strip()
    return value[:-2] if value.endswith(".0") else value


def read_twcs(path: Path) -> ReadResult:
    df = read_csv(path)
    require_columns(path, list(df.columns), ["tweet_id", "author_id", "inbound", "text", "in_response_to_tweet_id"])
    tweets: dict[str, dict] = {}
    for row in df.to_dict("records"):
        tid = _clean_id(row["tweet_id"])
        if tid:
            tweets[tid] = {
                "author": str(row["author_id"]).strip(),
                "inbound": _is_inbound(row["inbound"]),
                "text": row["text"],
                "parent": _clean_id(row["in_response_to_tweet_id"]),
                "created_at": row.get("created_at", ""),
            }
    result = ReadResult(pairs=[], rows_read=len(df))
    roots: dict[str, str] = {}

    def root_of(tid: str) -> str:
        path_ids = []
        cur = tid
        while cur not in roots:
            path_ids.append(cur)
            parent = tweets.get(cur, {}).get("parent", "")
            if not parent or parent not in tweets or parent in path_ids:
                roots[cur] = cur
                break
            cur = parent
        root = roots[cur]
        for p in path_ids:
            roots[p] = root
        return root

    for tid, tw in tweets.items():
        if tw["inbound"]:
            continue
        parent_id = tw["parent"]
        if not parent_id:
            result.drop("brand_tweet_not_a_reply")
            continue
        parent = tweets.get(parent_id)
        if parent is None:
            result.drop("reply_to_tweet_not_in_file")
            continue
        if not parent["inbound"]:
            result.drop("reply_to_brand_tweet")
            continue
        chain = [parent]
        cur = parent
        while len(chain) < MAX_JOINED:
            prev = tweets.get(cur["parent"])
            if prev is None or not prev["inbound"] or prev["author"] != parent["author"]:
                break
            chain.append(prev)
            cur = prev
        chain.reverse()
        history = []
        prev = tweets.get(chain[0]["parent"])
        seen: set[int] = set()  # guards against a cycle of parent links
        while prev is not None and len(history) < MAX_HISTORY and id(prev) not in seen:
            seen.add(id(prev))
            history.append({"role": "user" if prev["inbound"] else "assistant", "content": prev["text"]})
            prev = tweets.get(prev["parent"])
        history.reverse()
        result.pairs.append(
            RawPair(
                id=f"twcs-{tid}",
                thread_id=f"twcs-{root_of(tid)}",
                input="\n".join(t["text"] for t in chain),
                output=tw["text"],
                brand=tw["author"],
                meta={"customer_tweets": len(chain), "created_at": tw["created_at"]},
                history=history,
            )
        )
    result.pairs.sort(key=lambda p: int(p.id[5:]) if p.id[5:].isdigit() else 0)
    return result
