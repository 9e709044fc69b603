"""`supporttune rate SUITE`: blind side-by-side human rating of a suite's replies.

replies.py (what to rate) -> schedule.py (which pair next) -> app.py + page.html (the page) ->
store.py (ratings.jsonl, append-only) -> prefs.py (Bradley-Terry, win rates, kappa) -> the
report's Human preference section (report/preference.py) and export.py (TRL preference pairs).
"""

from __future__ import annotations

from pathlib import Path


def export(suite: Path, out: Path) -> tuple[int, int]:
    """Write SUITE's decided votes as preference pairs to ``out``; (pairs written, decided votes)."""
    from .export import export_preferences
    from .prefs import decided
    from .replies import load_replies
    from .store import FILENAME, read_votes

    votes = decided(read_votes(Path(suite) / FILENAME))
    return export_preferences(load_replies(suite), votes, out), len(votes)
