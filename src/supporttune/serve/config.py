"""Typed configs of the agent's front doors: `chat` in the terminal and `serve` over HTTP.

Each field is one command-line option (cliopts.py builds the option from it) and the server's own
default: the server reads these, so a default is written once. Both take the decoding options
(inference/options.py: ``--decode greedy|sample|beam|mbr`` and its knobs); greedy is the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..config import StageConfig
from ..inference.options import DecodeOptions


class ChatConfig(StageConfig, DecodeOptions):
    """`supporttune chat RUN`: talk to a trained agent in the terminal, or pipe messages through it."""

    run: Path = Field(..., description="Trained run directory.")
    brand: str | None = Field(None, description="The company answering (as in the training data).")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Longest reply, in tokens.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")

    @model_validator(mode="before")
    @classmethod
    def _temperature_alone_samples(cls, values):
        """`chat --temperature T` without --decode keeps its old meaning: T > 0 samples, 0 is greedy."""
        if isinstance(values, dict) and values.get("temperature") is not None and values.get("decode") is None:
            values = dict(values)
            if values["temperature"] == 0:
                values.pop("temperature")
            else:
                values["decode"] = "sample"
        return values


class ServeOptions(StageConfig, DecodeOptions):
    """How the server answers (create_app takes these; tests build servers from them directly). The decoding
    options are the server's default for requests that do not sample (no ``temperature`` > 0)."""

    api_key: str | None = Field(None, description="Require this key as a Bearer token (or set SUPPORTTUNE_API_KEY).")
    max_batch: int = Field(16, ge=1, le=1024, description="Most requests answered by one generate call.")
    max_wait_ms: float = Field(10.0, ge=0, le=60000, description="How long a request waits for others to batch with.")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Default reply budget (a request may ask for another).")
    batching: bool = Field(True, description="Answer concurrent requests with one generate call (off: one at a time).")
    batcher: Literal["auto", "window", "continuous"] = Field(
        "auto", description="window: queue requests for --max-wait-ms, one engine call per batch; continuous: "
                            "transformers' continuous batching for greedy requests; auto: continuous on a CPU, "
                            "window on a GPU (measured: docs/BENCHMARKS.md).")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=64 * 1024 * 1024, description="Largest request body, in bytes "
                                                                              "(larger ones get 413).")
    warmup_prompt_tokens: int = Field(320, ge=16, le=32768, description="The compiled cache fits prompts this long "
                                                                        "(+ max_new_tokens); longer ones run eagerly.")

    @model_validator(mode="after")
    def _continuous_is_greedy(self) -> "ServeOptions":
        if self.batcher == "continuous" and self.decode != "greedy":
            raise ValueError(f"--batcher continuous decodes greedily; use --batcher window (or auto) with "
                             f"--decode {self.decode}")
        return self


class ServeConfig(ServeOptions):
    """`supporttune serve RUN`: the agent over HTTP, with dynamic batching."""

    run: Path = Field(..., description="Trained run directory.")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default; 0.0.0.0 opens it to the network).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")

