"""The `supporttune` command: a thin layer that builds a typed config and calls one stage function.

Every option is generated from a config field (cliopts.py), so the flags, their help and their
defaults cannot drift from the code. Output locations are checked before any work. The console
script is ``supporttune.entry:main``, which turns errors into one line; this package only defines
the commands: app.py (the app and shared helpers), pipeline.py (prepare ... tune), deploy.py
(chat, serve, export, rate, bench).
"""

# isort: skip_file
from .app import app
from . import pipeline  # noqa: F401  (importing registers the commands: the pipeline's first, as --help lists them)
from . import deploy  # noqa: F401

__all__ = ["app"]
