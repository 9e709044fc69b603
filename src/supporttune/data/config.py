"""The prepare stage's typed config: input, format, filters, split shares. A bad value fails here, before any file is read."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..config import StageConfig


class PrepareConfig(StageConfig):
    input: str = Field("builtin", description="Data file, or 'builtin' for the generated demo set.")
    format: Literal["auto", "twcs", "jsonl", "csv", "json", "messages"] = Field(
        "auto", description="Input format; auto picks from the extension and columns (messages = JSONL of "
                            "OpenAI-style 'messages' or ShareGPT 'conversations', one conversation per line).")
    out: Path = Field(Path("data"), description="Output directory for train/val/test.jsonl.")
    max_pairs: int | None = Field(None, gt=0, description="Keep at most this many pairs (whole threads).")
    val_frac: float = Field(0.1, ge=0, le=1, description="Share of pairs for validation.")
    test_frac: float = Field(0.1, ge=0, le=1, description="Share of pairs for test.")
    seed: int = Field(42, ge=0, lt=2**32, description="Seed of the thread shuffle (and of the built-in generator).")
    sentiment: Literal["vader", "textblob"] = Field("vader", description="Sentiment lexicon of the tagger.")
    input_col: str = Field("input", description="Input column/field for csv/jsonl/json.")
    output_col: str = Field("output", description="Reply column/field for csv/jsonl/json.")
    brand_col: str = Field("brand", description="Optional brand column/field.")
    instruction_col: str = Field("instruction", description="Alpaca-style instruction column/field: put before the "
                                                           "input, or used alone when the input is empty ('' ignores it).")
    min_chars: int = Field(3, ge=1, description="Drop pairs whose input or reply has fewer content characters.")
    max_input_chars: int = Field(1000, gt=0, description="Drop pairs with a longer (cleaned) input.")
    max_output_chars: int = Field(600, gt=0, description="Drop pairs with a longer (cleaned) reply.")
    builtin_threads: int = Field(450, gt=0, description="Conversations in the built-in set.")
    force: bool = Field(False, description="Overwrite a non-empty output directory.")

    @model_validator(mode="after")
    def _fractions(self) -> "PrepareConfig":
        if self.val_frac + self.test_frac > 1 + 1e-9:
            raise ValueError(f"val_frac + test_frac must be <= 1 (got {self.val_frac} + {self.test_frac})")
        return self

