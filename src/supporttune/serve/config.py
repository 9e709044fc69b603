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
    system: Literal["use", "refuse"] = Field(
        "use", description="A client's system message in /v1/chat/completions: use = added to the system turn the "
                           "agent was trained with (after brand, tags and retrieved replies); refuse = answered with 400.")
    backend: str | None = Field(None, description="Generate on this OpenAI-compatible server (vLLM, llama.cpp, Ollama, "
                                                  "another supporttune serve): its /v1/completions gets the finished "
                                                  "prompt; retrieval, history, tags and the template stay here.")
    backend_model: str | None = Field(None, description="The model name the backend serves (default: the first of its "
                                                        "/v1/models).")
    backend_timeout_s: float = Field(60.0, gt=0, le=3600, description="Seconds to wait for the backend before a 504.")
    split: str | None = Field(None, description="A/B traffic split over the served agents for requests that name no "
                                                "model, as NAME=SHARE,... (e.g. a=90,b=10).")
    feedback: Path | None = Field(None, description="Append POST /v1/feedback records to this JSONL file (default: "
                                                    "feedback.jsonl in the run directory of the agent that answered).")

    @model_validator(mode="after")
    def _continuous_is_greedy(self) -> "ServeOptions":
        if self.batcher == "continuous" and self.decode != "greedy":
            raise ValueError(f"--batcher continuous decodes greedily; use --batcher window (or auto) with "
                             f"--decode {self.decode}")
        return self


class ServeConfig(ServeOptions):
    """`supporttune serve RUN [RUN ...]`: the agents over HTTP, with dynamic batching."""

    run: list[Path] = Field(..., min_length=1, description="Trained run directories (several: the request's model "
                                                           "picks one; adapters of one base share it in memory).")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default; 0.0.0.0 opens it to the network).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")

