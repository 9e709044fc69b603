"""Entry point of the `supporttune` command (the console script): one line per user or disk error, no traceback.

The commands live in cli.py, which never imports this module.

Also the worker side of ``--nproc`` runs: a worker leaves its error for the launcher (which prints
it once, naming the rank) and keeps other ranks' output out of the terminal.
"""

from __future__ import annotations

import os
import sys

from .core.errors import RunFailed, UserError


def _quiet_libraries() -> None:
    """Keep library chatter that users cannot act on out of the terminal (set SUPPORTTUNE_DEBUG for it)."""
    import logging

    if not os.environ.get("SUPPORTTUNE_DEBUG"):
        logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # "no `kernels` package" on CPU


def main() -> None:
    """Entry point: user errors become one line on stderr and a non-zero exit.

    In a worker of a ``--nproc`` run, an error is recorded for the launcher, which prints it once.
    """
    from .core import distributed

    distributed.worker_prologue()
    try:
        _main()
    except SystemExit as e:
        if distributed.launched() and e.code not in (0, None) and _last_error is not None:
            distributed.record_failure(_last_error, int(e.code))
        elif e.code in (0, None):
            distributed.teardown()
        raise
    except BaseException as e:  # a bug or a library error: its traceback goes to the rank's log
        if not distributed.launched():
            raise
        distributed.record_failure(e, 1)
        sys.exit(1)
    distributed.teardown()


_last_error: BaseException | None = None


def _say(e: BaseException, line: str, code: int) -> None:
    """Print the one-line error (a worker leaves that to its launcher) and exit."""
    global _last_error
    from .core import distributed

    _last_error = e
    if not distributed.launched():
        print(line, file=sys.stderr)
    sys.exit(code)


def _main() -> None:
    _quiet_libraries()
    try:  # typer >= 0.16 vendors click
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover
        from click import exceptions as click_errors
    if len(sys.argv) == 1:
        sys.argv.append("--help")
    from .cli import app

    try:
        code = app(prog_name="supporttune", standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except click_errors.UsageError as e:  # bad flag or value: one line, not a box
        where = f"supporttune {e.ctx.command_path.split(' ', 1)[1]}" if e.ctx and " " in e.ctx.command_path else "supporttune"
        _say(e, f"supporttune: error: {e.format_message()} (see `{where} --help`)", 2)
    except click_errors.ClickException as e:
        _say(e, f"supporttune: error: {e.format_message()}", e.exit_code or 1)
    except (UserError, RunFailed) as e:
        if os.environ.get("SUPPORTTUNE_DEBUG"):
            raise
        _say(e, f"supporttune: error: {e}", e.exit_code)
    except KeyboardInterrupt as e:
        _say(e, "supporttune: interrupted", 130)
    except OSError as e:  # the machine, not the code: a full disk, a folder made read-only mid-run
        if os.environ.get("SUPPORTTUNE_DEBUG"):
            raise
        _say(e, f"supporttune: error: {e.filename + ': ' if e.filename else ''}{e.strerror or e}", 1)

