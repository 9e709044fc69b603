"""The suite directory and every entry's eval/ folder: their layout, in one place.

``supporttune run`` writes a suite; report, rate, the CLI, evaluate and tune read it. This module
alone spells the file and folder names (the run directory of a trained variant is rundir.py's)::

    SUITE/
      suite.yaml              the resolved SuiteConfig
      suite_status.json       every entry's status after a run (ok / failed, seconds, error)
      data/                   the prepared data, when the suite prepared it
      variants/NAME/          a run directory (rundir.py) + eval/ + suite_entry.json
      baselines/NAME/         eval/ + suite_entry.json
        failed.json           the entry's last attempt failed: error and traceback
      results.json            the report's data (report/build.py); report.md, report.html, figures/
      ratings.jsonl           votes from `supporttune rate`
    ENTRY/eval/
      metrics.json            scores, CIs, breakdowns, decoding settings (evaluate writes it last)
      predictions.jsonl       one line per message with its reply and scores
      predictions.partial.jsonl  replies appended batch by batch while generating (resume reads it)
"""

from __future__ import annotations

from pathlib import Path

from .core.io import read_json

SUITE_YAML = "suite.yaml"
STATUS = "suite_status.json"
DATA = "data"
KINDS = {"variant": "variants", "baseline": "baselines"}  # entry kind -> its folder
ENTRY = "suite_entry.json"
FAILED = "failed.json"
RESULTS = "results.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
FIGURES = "figures"
RATINGS = "ratings.jsonl"

EVAL = "eval"
METRICS = "metrics.json"
PREDICTIONS = "predictions.jsonl"
PARTIAL = "predictions.partial.jsonl"


def preferences_path(suite: Path, name: str) -> Path:
    """The automatic preference pairs a suite made for the preference entry ``name`` (`preferences: auto`)."""
    return Path(suite) / "preferences" / f"{name}.jsonl"


def entry_dir(suite: Path, kind: str, name: str) -> Path:
    return Path(suite) / KINDS[kind] / name


def eval_dir(entry: Path) -> Path:
    """The eval/ folder of a run directory or a baseline's folder."""
    return Path(entry) / EVAL


def metrics_path(entry: Path) -> Path:
    return eval_dir(entry) / METRICS


def predictions_path(entry: Path) -> Path:
    return eval_dir(entry) / PREDICTIONS


def evaluated(entry: Path) -> bool:
    return metrics_path(entry).is_file()


def failed(entry: Path) -> bool:
    """Whether the entry's last attempt in a suite failed (its older predictions may be stale)."""
    return (Path(entry) / FAILED).is_file()


def entries(suite: Path) -> list[dict]:
    """Every entry of a suite: from suite_status.json, or (a directory made by hand) every folder found.

    Each entry: ``name``, ``kind`` (variant / baseline), ``dir`` (relative to the suite), ``status``.
    """
    suite = Path(suite)
    status = suite / STATUS
    if status.is_file():
        return read_json(status)["entries"]
    found = []
    for kind, folder in KINDS.items():
        for d in sorted((suite / folder).glob("*")) if (suite / folder).is_dir() else []:
            found.append({"name": d.name, "kind": kind, "dir": str(d.relative_to(suite)),
                          "status": "ok" if evaluated(d) else "failed"})
    return found


def is_suite(suite: Path) -> bool:
    """A suite directory: a status file, or at least one evaluated entry."""
    suite = Path(suite)
    return (suite / STATUS).is_file() or any(evaluated(d) for folder in KINDS.values() for d in (suite / folder).glob("*"))
