"""Progress bars for long steps (rich), quiet when not attached to a terminal or when asked."""

from __future__ import annotations

import os
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


def enabled() -> bool:
    return os.environ.get("SUPPORTTUNE_PROGRESS", "auto") != "0" and (
        sys.stderr.isatty() or os.environ.get("SUPPORTTUNE_PROGRESS") == "1")


QUIET_WARNINGS = (
    r"`is_gradient_checkpointing` is deprecated",  # transformers 5.x, once per model load by PEFT
)
"""FutureWarnings of libraries, not of anything a user does: kept off the terminal when progress is off."""


def silence_libraries() -> None:
    """With progress off (SUPPORTTUNE_PROGRESS=0, or no terminal): no third-party bars ("Loading weights",
    "Writing model shards", downloads) and no deprecation notes meant for library authors.

    Imports nothing heavy: the environment switch covers libraries not imported yet, the calls
    those already imported (transformers copies huggingface_hub's switch when it is imported).
    """
    if enabled():
        return
    import warnings

    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    for text in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=text, category=FutureWarning)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar and ETA on stderr when interactive."""
    if not enabled():
        yield from items
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
