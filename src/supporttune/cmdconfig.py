"""Typed configs of the commands that are not pipeline stages: run, report, export, chat, serve, rate.

Like the stage configs in config.py (kept apart so neither file grows past a screenful of fields),
each field is one command-line option: its name, type, bounds, default and help text (cliopts.py
builds the option from it). A bad value fails here, before anything is read or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from .config import StageConfig


class ChatConfig(StageConfig):
    """`supporttune chat RUN`: talk to a trained agent in the terminal, or pipe messages through it."""

    run: Path = Field(..., description="Trained run directory.")
    brand: str | None = Field(None, description="The company answering (as in the training data).")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Longest reply, in tokens.")
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 = greedy (what evaluate scores).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")


class ServeConfig(StageConfig):
    """`supporttune serve RUN`: the agent over HTTP, with dynamic batching."""

    run: Path = Field(..., description="Trained run directory.")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default; 0.0.0.0 opens it to the network).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    api_key: str | None = Field(None, description="Require this key as a Bearer token (or set SUPPORTTUNE_API_KEY).")
    max_batch: int = Field(16, ge=1, le=1024, description="Most requests answered by one generate call.")
    max_wait_ms: float = Field(10.0, ge=0, le=60000, description="How long a request waits for others to batch with.")
    max_new_tokens: int = Field(64, gt=0, le=4096, description="Default reply budget (a request may ask for another).")
    batching: bool = Field(True, description="Answer concurrent requests with one generate call (off: one at a time).")
    batcher: Literal["auto", "window", "continuous"] = Field(
        "auto", description="window: queue requests for --max-wait-ms, one engine call per batch; continuous: "
                            "transformers' continuous batching for greedy requests; auto: continuous on a CPU, "
                            "window on a GPU (measured: docs/BENCHMARKS.md).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")


class LaunchConfig(StageConfig):
    """How many processes a stage runs on (``--nproc``); not part of any result's identity."""

    nproc: int = Field(1, ge=1, le=1024, description="Processes to spread the work over (one per GPU; on CPU, gloo "
                                                     "processes), launched like torchrun: training runs DDP (FSDP with "
                                                     "--fsdp) with the same global batch; evaluation shards generation.")


SUITE_PRESETS = ("quick", "full", "seed-recipe", "ablations", "rag-ablation")  # configs/<name>.yaml; full = default.yaml


class RunConfig(StageConfig):
    """`supporttune run`: which suite, where it goes, and whether to continue one."""

    config: Path | None = Field(None, description="Suite YAML: shared defaults plus a diff per variant (as in "
                                                  "src/supporttune/configs/).")
    preset: Literal[SUITE_PRESETS] = Field("quick", description="Built-in suite: quick = the embedded demo, full = "
                                                                "the seed's variants plus the measured recipe, "
                                                                "ablations and rag-ablation = grids (see each file).")
    data: str | None = Field(None, description="Raw data file, 'builtin', or a prepared directory (overrides the suite's).")
    model: str | None = Field(None, description="Base model of every variant (overrides the suite's).")
    out: Path = Field(Path("runs/suite"), description="Suite directory.")
    resume: bool = Field(False, description="Continue a suite in an existing directory (finished entries are skipped).")
    force: bool = Field(False, description="Delete an existing suite directory first.")

    @model_validator(mode="after")
    def _one_source(self) -> "RunConfig":
        if self.config is not None and "preset" in self.model_fields_set:
            raise ValueError("give --config or --preset, not both")
        return self


class TuneRunConfig(StageConfig):
    """`supporttune tune`: which search, how many trials, where the study lives."""

    config: Path = Field(..., description="Tune YAML: train defaults, search space, objective (example: "
                                          "src/supporttune/configs/tune.yaml).")
    trials: int = Field(..., ge=1, description="Trials to finish in total; rerun the same command to continue an "
                                               "interrupted study or raise this.")
    out: Path = Field(..., description="Study directory: study.db, trials/, tune_results.json, tune_report.md.")
    timeout: float | None = Field(None, gt=0, description="Start no new trial after this many seconds.")
    data: str | None = Field(None, description="Raw data file, 'builtin', or a prepared directory (overrides the config's).")
    model: str | None = Field(None, description="Base model of every trial (overrides the config's).")
    force: bool = Field(False, description="Delete an existing study directory first.")


class ReportConfig(StageConfig):
    """`supporttune report SUITE`: rebuild results.json, report.md and report.html."""

    suite: Path = Field(..., description="Suite directory made by `supporttune run` (variants/, baselines/).")
    rescore: bool = Field(False, description="Recompute every entry's scores from its predictions first.")


class ExportConfig(StageConfig):
    """`supporttune export RUN --out DIR`: the adapter plus its base reference, or a merged checkpoint."""

    run: Path = Field(..., description="Trained run directory.")
    out: Path = Field(..., description="Export directory.")
    merge: bool = Field(False, description="Merge LoRA/DoRA/IA3 weights into a bf16 copy of the base (QLoRA: into a "
                                           "dequantized base, and the replies' drift is measured).")
    data: Path | None = Field(None, description="Prepared data for the QLoRA drift check (default: the run's data).")
    force: bool = Field(False, description="Overwrite a non-empty export directory.")


class RateConfig(StageConfig):
    """`supporttune rate SUITE`: blind side-by-side human rating of two entries' replies."""

    suite: Path = Field(..., description="Suite directory (entries with eval/predictions.jsonl); votes go to "
                                         "SUITE/ratings.jsonl.")
    rater: str | None = Field(None, description="Your name, stored with each vote (default: the page asks for one).")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(8100, ge=1, le=65535, description="TCP port.")
    api_key: str | None = Field(None, description="Require this key (the page asks for it once per tab, or open it "
                                                  "with ?key=KEY; or set SUPPORTTUNE_API_KEY).")
    planned: int = Field(200, ge=1, description="Votes each rater is asked for (the progress bar's target).")
    overlap: float = Field(0.25, ge=0, le=1, description="Share of comparisons drawn from messages another rater "
                                                         "judged (for kappa).")
    scheduler: Literal["active", "uniform"] = Field("active", description="Which comparison comes next: 'active' (the pair "
                                                    "whose order is least certain) or 'uniform' (every pair equally often).")
    export_preferences: Path | None = Field(None, description="Write the decided votes as TRL preference pairs "
                                                              "(JSONL) and exit.")
    prompt_from: Path | None = Field(None, description="With --export-preferences: build prompts as this run does "
                                                       "(history, retrieval); default: the standard chat prompt.")
