"""One exception type for problems the user can fix (bad input, bad flags, missing files).

The CLI prints its message as one line and exits non-zero; anything else is a bug and keeps
its traceback (set SUPPORTTUNE_DEBUG=1 to see tracebacks for user errors too).
"""


class UserError(Exception):
    """A problem with the user's input, flags or environment, explained in one line."""

    exit_code = 2


class RunFailed(Exception):
    """A training or evaluation run could not finish (NaN loss, out of memory, ...)."""

    exit_code = 1


class Interrupted(RunFailed):
    """Ctrl-C or SIGTERM during training: a checkpoint was saved; the whole job must stop."""

    exit_code = 130
