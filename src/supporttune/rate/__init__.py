"""`supporttune rate SUITE`: blind side-by-side human rating of a suite's replies.

replies.py (what to rate) -> schedule.py (which pair next) -> app.py + page.html (the page) ->
store.py (ratings.jsonl, append-only) -> prefs.py (Bradley-Terry, win rates, kappa) -> the
report's Human preference section (report/preference.py) and export.py (TRL preference pairs).
"""

from __future__ import annotations

from pathlib import Path


def export_votes(suite: Path, out: Path, prompt_from: Path | None = None, shape: str = "pairs") -> tuple[int, int, str]:
    """Write SUITE's decided votes as preference pairs to ``out``: (pairs written, decided votes, whose prompt)."""
    from .export import PromptSource, export_preferences
    from .prefs import decided
    from .replies import load_replies
    from .store import FILENAME, read_votes

    votes = decided(read_votes(Path(suite) / FILENAME))
    source = PromptSource.from_run(prompt_from) if prompt_from is not None else PromptSource()
    return export_preferences(load_replies(suite), votes, out, source, shape), len(votes), source.name
