"""The `supporttune` Typer app and what every command shares: the root options, running a stage in place
or as ``--nproc`` workers, and the small checks commands make before any work."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ..cliopts import App
from ..core.errors import UserError
from ..core.io import check_out_dir

app = App(
    name="supporttune",
    help="Fine-tune small open LLMs into customer-support reply agents, and prove which variant to ship.\n\n"
         "Typical flow: prepare -> train -> evaluate -> report, or all of it with `supporttune run`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", metavar="", is_eager=True, callback=_version,
                                       help="Print the version and exit.")) -> None:
    """Runs before every command (--version is handled as it is parsed): quiet libraries when progress is off."""
    from ..core.progress import silence_libraries

    silence_libraries()


def staged(stage, result: Path, nproc: int, device: str, preflight, launch_one: bool = False) -> dict | None:
    """Run ``stage()`` here, or relaunch this very command as ``nproc`` workers and read ``result``.

    Returns the stage's result document to print, or None inside a worker (the launching process
    reports). One process runs in place, unless ``launch_one`` (FSDP needs the launcher even on one GPU).
    """
    from ..core import distributed
    from ..core.io import read_json

    if nproc < 1:
        raise UserError(f"--nproc must be at least 1 (got {nproc})")
    if distributed.launched():
        stage()
        return None
    if nproc == 1 and not launch_one:
        return stage()
    from ..models.loading import pick_device

    preflight()
    distributed.launch(sys.argv[1:], nproc, pick_device(device))
    return read_json(result)


def _this_command() -> str:
    """The command line as typed, to show as the one that resumes."""
    import shlex

    return "supporttune " + shlex.join(sys.argv[1:])


def _num(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _check_port_free(host: str, port: int) -> None:
    """Bind once before the model loads, so a taken port fails in milliseconds."""
    import socket

    try:
        with socket.create_server((host, port)):
            pass
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); choose another --port or --host") from None


def _check_out_file(out: Path | None, force: bool, flag: str = "--out") -> None:
    """An output file: not a directory, not overwritten unless --force, in a writable folder."""
    if out is None:
        return
    if out.is_dir():
        raise UserError(f"{out}: is a directory; give a file path for {flag}")
    if out.exists() and not force:
        raise UserError(f"{out}: exists (use --force to overwrite it)")
    check_out_dir(out.parent, flag)
