"""The evaluate stage's typed configs: how replies are scored, how every entry is evaluated, and what.

``ScoringOptions`` is what scoring needs (rescoring saved predictions uses it alone); ``EvalOptions``
adds generation, the decoding strategy (inference/options.py: greedy, sample, beam, mbr) and the
baselines' prompt (the prompt options of prompting/spec.py, one set of defaults) and is a suite's
``eval:`` block; ``EvalConfig`` names the entry: a trained run or a
registered baseline (baselines.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import StageConfig
from ..inference.options import DecodeOptions
from ..models.presets import DEFAULT_MODEL
from ..prompting.spec import PromptOptions
from . import baselines


class ScoringOptions(StageConfig):
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples for confidence intervals.")
    worst_k: int = Field(5, gt=0, description="Worst examples kept per metric.")
    semantic: bool = Field(True, description="Compute semantic similarity (MiniLM embeddings).")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the bootstrap.")


class EvalOptions(ScoringOptions, PromptOptions, DecodeOptions):
    """How every entry of a suite is evaluated (the prompt options apply to the generating baselines)."""

    data: Path = Field(Path("data"), description="Prepared data directory.")
    split: Literal["train", "val", "test"] = Field("test", description="Split to evaluate on.")
    limit: int | None = Field(None, gt=0, description="Evaluate the first N examples only.")
    model: str = Field(DEFAULT_MODEL, description="Base model of the baselines that generate.")
    max_new_tokens: int = Field(64, gt=0, description="Longest generated reply, in tokens.")
    batch_size: int | None = Field(None, gt=0, description="Generation batch size (default: 256 on a GPU, 16 on a CPU).")
    latency_samples: int = Field(10, ge=0, description="Examples timed one at a time for p50/p95 latency.")
    few_shot_k: int = Field(3, gt=0, description="Retrieved examples in the few-shot prompt.")
    perplexity: bool = Field(True, description="Compute the perplexity of the references.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")


class EvalConfig(EvalOptions):
    """Evaluate a trained run or a baseline on a prepared split."""

    run: Path | None = Field(None, description="Run directory to evaluate.")
    baseline: str | None = Field(None, description=f"Evaluate a baseline instead of a run ({baselines.describe()}).")
    out: Path | None = Field(None, description="Output directory for a baseline (eval/ goes inside).")
    force: bool = Field(False, description="Re-evaluate even if metrics exist.")

    @field_validator("baseline")
    @classmethod
    def _known(cls, name: str | None) -> str | None:
        if name is not None:
            baselines.get(name)
        return name

    @model_validator(mode="after")
    def _one_target(self) -> "EvalConfig":
        if (self.run is None) == (self.baseline is None):
            raise ValueError("give exactly one of --run or --baseline")
        if self.baseline and self.out is None:
            raise ValueError("a baseline needs --out (where its eval/ folder goes)")
        return self

    def options(self) -> EvalOptions:
        return EvalOptions(**self.model_dump(include=set(EvalOptions.model_fields)))
