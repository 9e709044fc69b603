"""--help that stays readable on an 80-column terminal: every flag name printed whole.

typer draws a command's options as a rich table of six columns (long name, short name, the ``--no-``
form, its short form, the type, the help). When the terminal is narrower than the widest entries of
the first five columns plus a usable help column, rich shrinks every column and cuts flag names
with an ellipsis. Then the plain click layout is used instead: names on their own line when long,
the help wrapped beneath, nothing cut.
"""

from __future__ import annotations

import shutil

HELP_MIN = 30
"""The narrowest help column worth reading; below it the plain layout is used."""

TABLE_CHROME = 2 * 6 + 4
"""Cell padding of the six columns plus the panel's borders and margins."""


def terminal_width() -> int:
    """The width rich would draw at: typer's TERMINAL_WIDTH setting, else COLUMNS / the terminal (80 when piped)."""
    from typer import rich_utils

    if rich_utils.MAX_WIDTH:
        return int(rich_utils.MAX_WIDTH)
    return shutil.get_terminal_size((80, 24)).columns


def fits_rich_table(command, ctx) -> bool:
    """Whether rich's options table would show every flag name of ``command`` whole at this width."""
    widest = [0, 0, 0, 0, 0]
    for p in command.get_params(ctx):
        longs = ",".join(o for o in p.opts if o.startswith("--"))
        shorts = ",".join(o for o in p.opts if not o.startswith("--"))
        second = ",".join(o for o in getattr(p, "secondary_opts", []) if o.startswith("--"))
        second_short = ",".join(o for o in getattr(p, "secondary_opts", []) if not o.startswith("--"))
        kind = p.display_type_rich(ctx) if hasattr(p, "display_type_rich") else ""
        for i, cell in enumerate((longs, shorts, second, second_short, kind or "")):
            widest[i] = max(widest[i], len(cell))
    return sum(widest) + TABLE_CHROME + HELP_MIN <= terminal_width()


def plain_help(command, ctx, formatter) -> None:
    """click's own layout (usage, text, options), with the rich-markup escapes of the help texts removed."""
    from typer.core import TyperCommand

    width = terminal_width()
    scratch = type(formatter)(width=width, max_width=width)
    super(TyperCommand, command).format_help(ctx, scratch)
    formatter.write(scratch.getvalue().replace("\\[", "["))
