"""Command-line options generated from the typed configs: each flag has one owner, its config field.

``@options(SomeConfig)`` gives a command one option per field of the config: the flag name, type,
choices (a ``Literal`` field), help text (the field's description) and the shown default (the
field's default) all come from the field. Flags default to "not given" (None), so the config's own
default applies, and a YAML file (``yaml=True`` adds ``--config``) sits between the two. Adding a
field to a config adds its flag; changing a default changes the command line and its ``--help``.

A command then reads, in full::

    @app.command()
    @options(TuneConfig, arguments=("suite",))
    def tune(cfg: TuneConfig):
        \"\"\"What the command does (its --help text).\"\"\"

The decorated function receives the validated config in each parameter annotated with a config
class (several configs may share one command: ``@options(TrainConfig, LaunchConfig)``), or the raw
given values in a parameter named ``given`` (a dict), plus any parameters of its own, declared as
usual with ``typer.Option``. An invalid value fails in the config, before any work, as one line.
"""

from __future__ import annotations

import inspect
import shutil
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional, get_args, get_origin

import typer
from pydantic import BaseModel, ValidationError
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from .config import validation_message
from .core.errors import UserError

SHORT = {"out": "-o", "data": "-d", "input": "-i", "format": "-f", "method": "-m", "run": "-r", "baseline": "-b"}
ENVVARS = {"api_key": "SUPPORTTUNE_API_KEY"}


def build(config: type[BaseModel], /, **values):
    """Construct a config from given values (None = not given); a validation error becomes one line."""
    try:
        return config(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as e:
        raise UserError(validation_message(e)) from None


def _unwrap(annotation) -> tuple[Any, bool]:
    """The type a flag parses into, and whether the field is a list (typed comma-separated)."""
    if get_origin(annotation) in (typing.Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(annotation) is list:
        return str, True
    if get_origin(annotation) is Literal or annotation in (bool, int, float, str, Path):
        return annotation, False
    raise TypeError(f"no command-line form for a field of type {annotation}")


def _dash(name: str) -> str:
    return name.replace("_", "-")


def _flag_decls(name: str, info, flags: dict) -> tuple[list[str], str | None]:
    """Option names of a bool field, and its default as the user would type it (None: a plain flag)."""
    if name in flags:
        on, _, off = flags[name].partition("/")
        return [flags[name]], (on if info.default else off or None)
    if info.default is True:
        return [f"--{_dash(name)}/--no-{_dash(name)}"], f"--{_dash(name)}"
    return [f"--{_dash(name)}"], None


def _label(default, is_list: bool) -> str | None:
    """A default as it is typed on the command line."""
    if default is None:
        return None
    if is_list:
        return ",".join(map(str, default)) or "none"
    return str(default)


def _help(info, label: str | None) -> str:
    text = " ".join(str(info.description or "").split())
    return escape(f"{text}  [default: {label}]" if label is not None else text)  # typer renders rich markup


def _parameter(name: str, info, *, argument: bool, required: bool, flags: dict) -> inspect.Parameter:
    kind, is_list = _unwrap(info.annotation)
    required = required or info.is_required()
    label = None if required else _label(info.default, is_list)
    if argument:
        spec = typer.Argument(help=_help(info, label), show_default=False, metavar=name.upper())
        if is_list:  # a list argument takes the rest of the command line: `serve RUN_A RUN_B`
            return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Optional[list[str]], spec],
                                     **({} if required else {"default": None}))
    elif kind is bool:
        decls, label = _flag_decls(name, info, flags)
        spec = typer.Option(*decls, help=_help(info, label), show_default=False, metavar="")
    else:
        decls = [flags.get(name, f"--{_dash(name)}"), *([SHORT[name]] if name in SHORT else [])]
        spec = typer.Option(*decls, help=_help(info, label), show_default=False, envvar=ENVVARS.get(name))
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[Optional[kind], spec],
                             **({} if required else {"default": None}))


def _given(config: type[BaseModel], values: dict, two_way: dict) -> dict:
    """The fields the user gave: not None, and a plain flag only when set (its absence means the default)."""
    out = {}
    for name, info in config.model_fields.items():
        value = values.get(name)
        if value is None or (value is False and info.default is False and name not in two_way):
            continue
        if isinstance(value, str) and _unwrap(info.annotation)[1]:
            value = [v.strip() for v in value.split(",") if v.strip()]
        out[name] = value
    return out


def load_yaml(path: Path | None) -> dict:
    from .core.io import read_yaml_mapping

    return read_yaml_mapping(path) if path is not None else {}


def options(*configs: type[BaseModel], arguments: tuple[str, ...] = (), required: tuple[str, ...] = (),
            exclude: tuple[str, ...] = (), flags: dict[str, str] | None = None, yaml: bool = False) -> Callable:
    """Give the decorated command one option per field of ``configs`` (see the module docstring).

    ``arguments``: fields taken as positional arguments; ``required``: fields the command insists on
    although the config has a default; ``exclude``: fields with no flag; ``flags``: a field's own
    flag name(s) (``{"fsdp": "--fsdp/--ddp", "from_run": "--from"}``); ``yaml``: add ``--config FILE`` (the first config's
    fields as YAML; flags override it).
    """
    flags = flags or {}

    def decorate(fn: Callable) -> Callable:
        own = inspect.signature(fn, eval_str=True).parameters
        targets = {n: p.annotation for n, p in own.items() if p.annotation in configs}
        extras = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for n, p in own.items()
                  if n not in targets and n != "given"]
        generated, owner = [], {}
        for config in configs:
            for name, info in config.model_fields.items():
                if name in exclude:
                    continue
                if name in owner or name in own or (yaml and name == "config"):
                    raise TypeError(f"{fn.__name__}: option --{_dash(name)} would be defined twice")
                owner[name] = config
                generated.append(_parameter(name, info, argument=name in arguments, required=name in required,
                                            flags=flags))
        if yaml:
            spec = typer.Option("--config", "-c", metavar="YAML",
                                help=f"YAML file of {fn.__name__} options by field name (r: 8, ...); flags override it.")
            generated.insert(0, inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                                                  annotation=Annotated[Optional[Path], spec]))
        generated.sort(key=lambda p: p.name not in arguments)  # arguments first, as in the usage line

        def command(**values):
            doc = load_yaml(values.pop("config", None)) if yaml else {}
            given = {c: _given(c, values, flags) for c in configs}
            given[configs[0]] = {**doc, **given[configs[0]]}
            call = {n: values[n] for n in (p.name for p in extras)}
            for n, config in targets.items():
                call[n] = build(config, **given[config])
            if "given" in own:
                call["given"] = given[configs[0]]
            return fn(**call)

        command.__name__, command.__doc__, command.__module__ = fn.__name__, fn.__doc__, fn.__module__
        command.configs = configs  # what its options were made from (tests compare the help with them)
        command.__signature__ = inspect.Signature([*generated, *extras])
        return command

    return decorate


# --- --help that stays readable on an 80-column terminal ---------------------------------------------------------
# typer draws a command's options as a rich table of six columns (long name, short name, the ``--no-`` form, its
# short form, the type, the help). When the terminal is narrower than the widest entries of the first five columns
# plus a usable help column, rich shrinks every column and cuts flag names with an ellipsis. Then click's plain
# layout is used instead: names on their own line when long, the help wrapped beneath, nothing cut.

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


class Command(TyperCommand):
    """A command whose usage line names its arguments as typed (``chat RUN``) and whose --help has no type.

    Its --help is rich's boxed table where the terminal is wide enough to show every flag name whole;
    on a narrower one (80 columns) it is click's plain layout, which wraps the help text and never cuts
    a flag name (rich shrinks every column of its table, so ``--pad-to-max-length`` became ``--pad-to-max-le…``).
    """

    def format_help(self, ctx, formatter) -> None:
        if fits_rich_table(self, ctx):
            return super().format_help(ctx, formatter)
        return plain_help(self, ctx, formatter)

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for p in self.get_params(ctx):
            if p.param_type_name == "argument":
                name = (p.metavar or p.name).upper() + ("..." if p.nargs == -1 else "")  # serve RUN...: several
                pieces.append(name if p.required else f"[{name}]")
        return pieces

    def get_help_option(self, ctx):
        return _untyped(super().get_help_option(ctx))


class Group(TyperGroup):
    def get_help_option(self, ctx):
        return _untyped(super().get_help_option(ctx))


def _untyped(option):
    if option is not None:
        option.metavar = ""  # a flag takes no value: no "<bool>" beside it
    return option


class App(typer.Typer):
    """``typer.Typer`` whose commands are ``Command``s, so ``@app.command()`` needs nothing more."""

    def __init__(self, **kwargs):
        super().__init__(cls=Group, **kwargs)

    def command(self, *args, cls=None, **kwargs):
        return super().command(*args, cls=cls or Command, **kwargs)
