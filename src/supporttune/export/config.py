"""The export command's typed config: the adapter plus its base reference, or a merged checkpoint."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import StageConfig


class ExportConfig(StageConfig):
    """`supporttune export RUN --out DIR`: the adapter plus its base reference, or a merged checkpoint."""

    run: Path = Field(..., description="Trained run directory.")
    out: Path = Field(..., description="Export directory.")
    merge: bool = Field(False, description="Merge LoRA/DoRA/IA3 weights into a bf16 copy of the base (QLoRA: into a "
                                           "dequantized base, and the replies' drift is measured).")
    data: Path | None = Field(None, description="Prepared data for the QLoRA drift check (default: the run's data).")
    force: bool = Field(False, description="Overwrite a non-empty export directory.")

