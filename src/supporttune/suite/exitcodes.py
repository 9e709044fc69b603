"""How `supporttune run` ends: one exit status per outcome, so a script or CI job never mistakes a
suite with a failed entry for a finished one (the report is written either way).

Kept apart from run.py so that `--help` can state the codes without importing the suite's machinery.
"""

from __future__ import annotations

from supporttune.core.errors import RunFailed


class EntriesFailed(RunFailed):
    """Some entries of a suite failed, others finished: the report is written and names the failed ones."""

    exit_code = 3


EXIT_CODES = ("Exit status: 0 every entry finished; 3 some entry failed (the report is written and names it); "
              "1 every entry failed; 2 bad input (nothing trained); 130 interrupted (--resume continues).")
