"""The tune command's typed config: which search space, how many trials, where the study lives."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from ..config import StageConfig


class TuneRunConfig(StageConfig):
    """`supporttune tune`: which search, how many trials, where the study lives."""

    config: Path = Field(..., description="Tune YAML: train defaults, search space, objective (example: "
                                          "src/supporttune/configs/tune.yaml).")
    trials: int = Field(..., ge=1, description="Trials to finish in total; rerun the same command to continue an "
                                               "interrupted study or raise this.")
    out: Path = Field(..., description="Study directory: study.db, trials/, tune_results.json, tune_report.md.")
    jobs: int = Field(1, ge=1, le=64, description="Trials at once, each in its own process sharing the study (a small "
                                                  "base leaves a GPU mostly idle); draws then depend on timing.")
    timeout: float | None = Field(None, gt=0, description="Start no new trial after this many seconds.")
    data: str | None = Field(None, description="Raw data file, 'builtin', or a prepared directory (overrides the config's).")
    model: str | None = Field(None, description="Base model of every trial (overrides the config's).")
    force: bool = Field(False, description="Delete an existing study directory first.")

