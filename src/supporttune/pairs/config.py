"""The `preferences` command's typed config: which run samples, which utility and margin decide a pair."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import StageConfig, split_csv

AUTO_BASELINES = ("constant", "retrieval")  # the looked-up baselines (evaluate/baselines.py) a pair may take
SAMPLING = ("data", "utility", "margin", "samples", "temperature", "baselines", "max_new_tokens", "limit",
            "batch_size", "seed")  # the options of automatic pairs; --feedback samples nothing


class PairsConfig(StageConfig):
    """`supporttune preferences`: the reference reply chosen, a worse sampled (or baseline) reply rejected."""

    run: Path = Field(..., description="A finished SFT run: its replies are sampled with its own prompt.")
    data: Path | None = Field(None, description="Prepared data directory (default: the run's); its training split "
                                                "is what the pairs are made of.")
    out: Path = Field(..., description="The preference file to write (JSONL, TRL's format plus the message id).")
    utility: Literal["chrf", "rouge_l", "bleu", "mix"] = Field(
        "chrf", description="Sentence score of a reply against the reference (0-100; inference/mbr.py utilities).")
    margin: float = Field(10.0, ge=0, le=100, description="A candidate is rejected when it scores at least this "
                                                          "many points below the reference (which scores 100).")
    samples: int = Field(1, ge=0, le=16, description="Replies sampled from the run per message.")
    temperature: float = Field(1.0, gt=0, le=5, description="Sampling temperature.")
    baselines: list[str] = Field([], description=f"Also take these baselines' replies as rejected where they "
                                                 f"score worse ({', '.join(AUTO_BASELINES)}; comma-separated).")
    max_new_tokens: int = Field(64, gt=0, description="Longest sampled reply, in tokens.")
    limit: int | None = Field(None, gt=0, description="Use the first N training messages only.")
    batch_size: int = Field(16, gt=0, description="Generation batch size.")
    seed: int = Field(0, ge=0, lt=2**32, description="Sampling seed.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to sample.")
    force: bool = Field(False, description="Overwrite an existing --out file.")
    feedback: Path | None = Field(None, description="Make the file from serve's feedback store instead (RUN/feedback."
                                                    "jsonl, or serve's --feedback FILE): each correction chosen over "
                                                    "the served reply; nothing is sampled, no model loads.")
    feedback_model: str | None = Field(None, description="With --feedback: take the records served as this model "
                                       "name instead of those whose recorded run path is RUN (a store from another "
                                       "machine, or a run that moved).")
    shape: Literal["pairs", "kto"] = Field("pairs", description="With --feedback: pairs = {prompt, chosen, rejected} "
                                           "(corrections; DPO/ORPO/KTO); kto = {prompt, completion, label} (thumbs "
                                           "up/down and corrections as desirable/undesirable replies; KTO).")

    @field_validator("baselines", mode="before")
    @classmethod
    def _csv(cls, value):
        return split_csv(value)

    @model_validator(mode="after")
    def _check(self) -> "PairsConfig":
        if self.feedback is not None:
            foreign = [k for k in SAMPLING if k in self.model_fields_set]
            if foreign:
                raise ValueError(f"--{foreign[0].replace('_', '-')} is an option of automatic pairs; --feedback "
                                 f"samples nothing")
            return self
        if self.shape != "pairs" or self.feedback_model is not None:
            raise ValueError("--shape and --feedback-model go with --feedback")
        unknown = [b for b in self.baselines if b not in AUTO_BASELINES]
        if unknown:
            raise ValueError(f"unknown baseline(s) {', '.join(unknown)} for pairs (choose from {', '.join(AUTO_BASELINES)})")
        if not self.samples and not self.baselines:
            raise ValueError("samples=0 and no baselines leave nothing to reject")
        return self
