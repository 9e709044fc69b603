"""Small file helpers shared by every stage: JSON/JSONL, output-directory guards, hashing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator

from .errors import UserError


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file + rename), so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None


def write_jsonl(path: Path, rows: Iterable[dict]) -> int:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def append_jsonl(path: Path, row: dict) -> None:
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")


def iter_jsonl(path: Path) -> Iterator[dict]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None


def read_jsonl(path: Path) -> list[dict]:
    return list(iter_jsonl(path))


def prepare_out_dir(path: Path, force: bool, *, what: str = "output directory") -> Path:
    """Create ``path``; refuse to touch an existing non-empty one unless ``force``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: exists and is not a directory")
    if path.is_dir() and any(path.iterdir()):
        if not force:
            raise UserError(f"{path}: {what} exists and is not empty (use --force to overwrite)")
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def read_yaml_mapping(path: Path, what: str = "config file") -> dict:
    """A YAML file holding a mapping, with one-line errors for a missing or malformed file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} not found")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: expected a mapping of config fields")
    return doc


def check_out_dir(path: Path, flag: str = "--out") -> None:
    """Fail now, in one line, unless ``path`` is or can become a writable directory. Touches nothing.

    Stages call it before any work, so a wrong --out costs milliseconds, not a finished run.
    """
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:  # the nearest part that exists
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"{probe}: exists and is not a directory (give a directory for {flag})")
    if not os.access(probe, os.W_OK | os.X_OK):
        why = "read-only file system" if os.statvfs(probe).f_flag & os.ST_RDONLY else "no write permission"
        raise UserError(f"{probe}: cannot write there ({why})" + (f"; give another {flag}" if flag else ""))
