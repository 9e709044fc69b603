"""The report command's typed config."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import StageConfig


class ReportConfig(StageConfig):
    """`supporttune report SUITE`: rebuild results.json, report.md and report.html."""

    suite: Path = Field(..., description="Suite directory made by `supporttune run` (variants/, baselines/).")
    rescore: bool = Field(False, description="Recompute every entry's scores from its predictions first.")

