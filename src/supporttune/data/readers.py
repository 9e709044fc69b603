"""Shared file-reading helpers: decode text safely, load CSV/JSON with one-line errors."""

from __future__ import annotations

import codecs
import io
import json
from pathlib import Path

import pandas as pd

from ..core.errors import UserError

# UTF-32 first: its little-endian mark begins with UTF-16's.
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
"""Column separators a CSV may use (Excel writes ';' where ',' is the decimal mark)."""


def _utf16_without_mark(raw: bytes) -> str | None:
    """The codec of UTF-16 text with no byte-order mark (ASCII-heavy text: every other byte is 0), else None."""
    head = raw[:4096]
    if len(head) < 4:
        return None
    if head[1::2].count(0) > 0.8 * len(head[1::2]) and not head[0::2].count(0):
        return "utf-16-le"
    if head[0::2].count(0) > 0.8 * len(head[0::2]) and not head[1::2].count(0):
        return "utf-16-be"
    return None


def decode(path: Path, raw: bytes) -> str:
    """Text of a data file: UTF-8 (with or without a BOM), or UTF-16/32 as Excel and Windows tools save it."""
    for bom, codec in BOMS:
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError:
                raise UserError(f"{path}: {codec.upper()} with errors: convert it to UTF-8") from None
    if b"\x00" in raw[:4096]:
        codec = _utf16_without_mark(raw)
        if codec is None:
            raise UserError(f"{path}: looks like a binary file, not text (CSV/JSON/JSONL expected)")
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            raise UserError(f"{path}: UTF-16 with errors: convert it to UTF-8") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: unreadable encoding (not UTF-8: byte {e.start})") from None


def read_text(path: Path) -> str:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: file not found")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a data file")
    raw = path.read_bytes()
    if not raw.strip():
        raise UserError(f"{path}: file is empty")
    return decode(path, raw)


def delimiter(header: str) -> str:
    """The CSV's column separator: the candidate the header line uses most (a comma when it uses none)."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def header_columns(path: Path) -> list[str]:
    """The first line's column names (for format detection), whatever the encoding and separator."""
    with Path(path).open("rb") as f:
        raw = f.read(65536)
    try:
        text = decode(path, raw)
    except UserError:
        return []
    header = text.splitlines()[0] if text.strip() else ""
    return [c.strip().strip('"') for c in header.split(delimiter(header))]


def read_csv(path: Path) -> pd.DataFrame:
    text = read_text(path)
    header = text.lstrip().splitlines()[0] if text.strip() else ""
    sep = delimiter(header)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no columns"
        raise UserError(f"{path}: not a valid CSV ({first}; columns separated by {DELIMITERS[sep]}s)") from None
    if df.shape[1] < 2:
        raise UserError(f"{path}: not a valid CSV (found {df.shape[1]} column; need at least 2, separated by "
                        f"{', '.join(f'{n}s' for n in DELIMITERS.values())})")
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


def require_columns(path: Path, have: list[str], need: list[str], flags: dict[str, str] | None = None) -> None:
    """Every needed column is there; ``flags`` names the option that renames each (``{"input": "--input-col"}``)."""
    missing = [c for c in need if c not in have]
    if missing:
        hint = [flags[c] for c in missing if flags and c in flags]
        raise UserError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {', '.join(map(str, have)) or 'none'})"
            + (f"; name yours with {' and '.join(hint)}" if hint else "")
        )
