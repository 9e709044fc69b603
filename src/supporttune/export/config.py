"""The export command's typed config: the adapter plus its base reference, a merged checkpoint, or GGUF."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StageConfig


class ExportConfig(StageConfig):
    """`supporttune export RUN --out DIR`: the adapter plus its base reference, a merged checkpoint, or GGUF."""

    run: Path = Field(..., description="Trained run directory.")
    out: Path = Field(..., description="Export directory (written beside it first, renamed when complete).")
    merge: bool = Field(False, description="Merge LoRA/DoRA/IA3 weights into a copy of the base (QLoRA: into a "
                                           "dequantized base, and the replies' drift is checked).")
    format: Literal["hf", "gguf"] = Field("hf", description="hf = transformers/PEFT folder; gguf = merged, plus a "
                                                            "GGUF file and an Ollama Modelfile (Llama bases only).")
    gguf_type: Literal["f16", "q8_0", "q4_0"] = Field("f16", description="Weight type of the GGUF file.")
    merge_dtype: Literal["bf16", "fp32"] = Field("bf16", description="Precision of the merged weights (fp32: twice "
                                                                     "the size, no rounding of the merged update).")
    brand: str | None = Field(None, description="The company the agent answers for when a client names none (in the "
                                                "chat template's and the Modelfile's default system turn).")
    data: Path | None = Field(None, description="Prepared data for the QLoRA drift check and the GGUF logits check "
                                                "(default: the run's data).")
    drift_examples: int = Field(32, ge=1, le=10000, description="Test messages the QLoRA drift check replies to.")
    min_identical: float = Field(0.9, ge=0, le=1, description="A QLoRA merge fails unless at least this share of "
                                                              "greedy replies are identical to the 4-bit adapter's.")
    check_prompts: int = Field(4, ge=1, le=256, description="Test prompts the GGUF logits check runs.")
    force: bool = Field(False, description="Replace an existing non-empty export directory.")
