"""Shared file-reading helpers: decode text safely, load CSV/JSON with one-line errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from ..core.errors import UserError


def read_text(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a data file")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"{path}: file is empty")
    if b"\x00" in raw[:4096]:
        raise UserError(f"{path}: looks like a binary file, not text (CSV/JSON/JSONL expected)")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: unreadable encoding (not UTF-8: byte {e.start})") from None


def read_csv(path: Path) -> pd.DataFrame:
    text = read_text(path)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no columns"
        raise UserError(f"{path}: not a valid CSV ({first})") from None
    if df.shape[1] < 2:
        raise UserError(f"{path}: not a valid CSV (found {df.shape[1]} column; need at least 2)")
    return df


def read_json_records(path: Path) -> list[dict]:
    """A JSON list of objects (the seed's train_data.json) or JSON Lines, one object per line."""
    text = read_text(path)
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        rows = data
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON Lines ({e.msg})") from None
    if not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: expected a list of objects with input/output fields")
    return rows


def require_columns(path: Path, have: list[str], need: list[str]) -> None:
    missing = [c for c in need if c not in have]
    if missing:
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, have)) or 'none'})"
        )
