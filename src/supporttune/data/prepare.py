"""The prepare stage: read -> clean -> filter -> dedupe -> tag -> split -> write.

Each example keeps the earlier turns of its conversation (``history``, oldest first, redacted like
the rest) so that prompts can show them (``--history N``).

``prepare(cfg)`` is the whole stage as one typed function; the CLI only builds the config.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

from ..core.errors import UserError
from ..core.io import (
    check_out_dir,
    prepare_out_dir,
    sha256_file,
    write_json,
    write_jsonl,
)
from ..core.progress import track
from .builtin import generate
from .clean import CleanCounts, Limits, clean_text, filter_reason
from .config import PrepareConfig
from .messages import read_messages
from .records import ReadResult
from .split import PREPARE_REPORT, SPLITS, split_by_thread
from .tabular import read_tabular
from .tagging import tag
from .twcs import read_twcs


def detect_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "messages" if _first_row_has(path, ("messages", "conversations")) else "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in {".csv", ".tsv", ".txt"}:
        from .readers import header_columns

        cols = header_columns(path)  # any encoding or separator read_csv reads
        return "twcs" if {"tweet_id", "inbound", "in_response_to_tweet_id"} <= set(cols) else "csv"
    raise UserError(f"{path}: cannot tell the format from the extension '{suffix}' (pass --format twcs|jsonl|csv|json)")


HEAD = 1 << 16
"""Bytes read to tell a JSONL file's format from its first row."""


def _first_row_has(path: Path, keys: tuple[str, ...]) -> bool:
    import json

    from .readers import decode

    with path.open("rb") as f:
        head = f.read(HEAD)  # enough for a first row; decode() knows UTF-16/32 files as the readers do
    cut = len(head) == HEAD
    try:
        text = decode(path, head)
    except UserError:  # the chunk may end inside a character: decode up to its last line break
        if not cut:
            raise
        end = head.rfind(b"\n")
        text = decode(path, head[:end + (2 if head[end + 1:end + 2] == b"\x00" else 1)])
    lines = text.splitlines()
    for line in lines[:-1] if cut else lines:  # a cut last line is not a row
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return False
            return isinstance(row, dict) and any(k in row for k in keys)
    return False


def read_source(cfg: PrepareConfig) -> tuple[ReadResult, str]:
    if cfg.input == "builtin":
        return generate(cfg.builtin_threads, seed=cfg.seed), "builtin"
    path = Path(cfg.input)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory; give a data file (a prepared directory needs no prepare)")
    fmt = detect_format(path) if cfg.format == "auto" else cfg.format
    if fmt == "twcs":
        return read_twcs(path), fmt
    if fmt == "messages":
        return read_messages(path, cfg.brand_col), fmt
    return read_tabular(path, fmt, cfg.input_col, cfg.output_col, cfg.brand_col, instruction_col=cfg.instruction_col), fmt


def clean_and_tag(raw: ReadResult, cfg: PrepareConfig,
                  counts: dict[int, CleanCounts] | None = None) -> tuple[list[dict], Counter]:
    """Cleaned, filtered, tagged examples and the drop reasons; ``counts`` (when given) receives what
    cleaning replaced or stripped in each kept example, keyed by ``id(example)``."""
    limits = Limits(cfg.min_chars, cfg.max_input_chars, cfg.max_output_chars)
    dropped: Counter = Counter(raw.dropped)
    seen: set[tuple[str, str, str]] = set()
    examples = []
    for pair in track(raw.pairs, "cleaning + tagging"):
        pair_counts = CleanCounts()
        inp = clean_text(pair.input, counts=pair_counts)
        out = clean_text(pair.output, is_reply=True, counts=pair_counts)
        reason = filter_reason(inp, out, limits)
        if reason is None and (inp.lower(), out.lower(), pair.brand) in seen:
            reason = "duplicate"
        if reason:
            dropped[reason] += 1
            continue
        seen.add((inp.lower(), out.lower(), pair.brand))
        tags = tag(inp, cfg.sentiment)
        example = {
            "id": pair.id, "thread_id": pair.thread_id, "input": inp, "output": out, "brand": pair.brand,
            "sentiment": tags.sentiment, "priority": tags.priority, "category": tags.category,
            "sentiment_score": tags.score, "history": clean_history(pair.history, pair_counts),
        }
        examples.append(example)
        if counts is not None:
            counts[id(example)] = pair_counts
    return examples, dropped


def clean_history(turns: list[dict], counts: CleanCounts | None = None) -> list[dict]:
    """Earlier turns, cleaned and redacted like the pair itself; turns left empty are dropped."""
    out = []
    for t in turns:
        text = clean_text(t["content"], is_reply=t["role"] == "assistant", counts=counts)
        if text:
            out.append({"role": t["role"], "content": text})
    return out


def cap_pairs(examples: list[dict], max_pairs: int | None, seed: int) -> tuple[list[dict], int]:
    """Keep at most ``max_pairs`` examples, taking whole threads in a seeded order."""
    if max_pairs is None or len(examples) <= max_pairs:
        return examples, 0
    threads: dict[str, list[dict]] = {}
    for ex in examples:
        threads.setdefault(ex["thread_id"], []).append(ex)
    ids = sorted(threads)
    random.Random(seed + 1).shuffle(ids)
    kept: list[dict] = []
    for tid in ids:
        if len(kept) >= max_pairs:
            break
        kept.extend(threads[tid])
    kept = kept[:max_pairs] if len(threads) == 1 else kept
    return kept, len(examples) - len(kept)


def prepare(cfg: PrepareConfig) -> dict:
    """Run the data stage; returns the report that is also written to ``prepare_report.json``."""
    t0 = time.perf_counter()
    out = Path(cfg.out)
    check_out_dir(out)
    if out.is_dir() and any(out.iterdir()) and not cfg.force:
        raise UserError(f"{out}: output directory exists and is not empty (use --force to overwrite)")
    raw, fmt = read_source(cfg)
    source = cfg.input if cfg.input == "builtin" else str(Path(cfg.input).resolve())
    if not raw.pairs:
        raise UserError(f"{cfg.input}: no customer->agent pairs found ({raw.rows_read} rows read, format {fmt})")
    per_example: dict[int, CleanCounts] = {}
    examples, dropped = clean_and_tag(raw, cfg, per_example)
    examples, over_cap = cap_pairs(examples, cfg.max_pairs, cfg.seed)
    if over_cap:
        dropped["over_max_pairs"] += over_cap
    if not examples:
        detail = ", ".join(f"{k}={v}" for k, v in dropped.most_common())
        raise UserError(f"{cfg.input}: no pairs left after cleaning ({detail})")
    cleaning = CleanCounts()  # over the examples written (input, output and history), for audit
    for ex in examples:
        cleaning.add(per_example[id(ex)])
    splits = split_by_thread(examples, cfg.val_frac, cfg.test_frac, cfg.seed)
    prepare_out_dir(out, cfg.force)
    for name in SPLITS:
        write_jsonl(out / f"{name}.jsonl", splits[name])
    report = {
        "source": source,
        "source_sha256": None if cfg.input == "builtin" else sha256_file(Path(cfg.input)),
        "format": fmt,
        "rows_read": raw.rows_read,
        "pairs_found": len(raw.pairs) + sum(v for k, v in raw.dropped.items()),
        "pairs_kept": len(examples),
        "dropped": dict(sorted(dropped.items(), key=lambda kv: -kv[1])),
        "dropped_total": sum(dropped.values()),
        "splits": {n: {"pairs": len(splits[n]), "threads": len({e["thread_id"] for e in splits[n]})} for n in SPLITS},
        "tags": {key: dict(Counter(e[key] for e in examples)) for key in ("sentiment", "priority", "category")},
        "cleaning": cleaning.as_report(),
        "brands": dict(Counter(e["brand"] for e in examples).most_common(20)),
        "config": cfg.resolved(),
        "seconds": round(time.perf_counter() - t0, 2),
    }
    write_json(out / PREPARE_REPORT, report)
    return report


def cleaning_summary(report: dict) -> str:
    """One line for the CLI: what cleaning replaced and stripped, by kind."""
    c = report["cleaning"]
    kinds = ", ".join(f"{k} {v}" for k, v in {**c["redacted"], **c["signoffs_stripped"]}.items())
    return (f"redacted {c['redacted_total']}, sign-offs stripped {c['signoffs_total']}, "
            f"invisible chars removed {c['invisible_chars_removed']}" + (f" ({kinds})" if kinds else ""))
