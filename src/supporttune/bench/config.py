"""The benchmarks' typed configs: `supporttune bench` (seed recipe vs fast path) and `bench --scaling`.

Stage configs like those in config.py (same base class, same validation and hashing); they live
apart because only the bench package and its command read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from ..config import StageConfig, split_csv


class _BenchStage(StageConfig):
    """What both benchmarks share; ``QUICK`` holds the values ``--quick`` gives fields left unset."""

    QUICK: ClassVar[dict] = {}

    model: str = Field("tinyllama-arch", description="tinyllama-arch, smollm2-arch, tiny-arch, or a model preset/path (random weights of its config).")
    methods: list[str] = Field(["qlora", "lora", "prompt-tuning"], description="Methods to measure (comma-separated).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to measure.")
    data: str = Field("builtin", description="Prepared data directory, or 'builtin'.")
    tokenizer: str | None = Field(None, description="Tokenizer directory (default: the embedded model's).")
    quick: bool = Field(False, description="Tiny random model, few steps: checks the harness in under a minute on a CPU.")
    out: Path | None = Field(None, description="Write the JSON result here.")

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, values):
        if not isinstance(values, dict):
            return values
        values = {k: v for k, v in values.items() if v is not None}
        if isinstance(values.get("methods"), str):
            values["methods"] = split_csv(values["methods"])
        return {**cls.QUICK, **values} if values.get("quick") else values

    @field_validator("out")
    @classmethod
    def _json_file(cls, out: Path | None) -> Path | None:
        if out is not None and Path(out).is_dir():
            raise ValueError(f"{out}: is a directory; give a JSON file path")
        return out

    @model_validator(mode="after")
    def _known_methods(self):
        from ..train.methods import REGISTRY

        unknown = [m for m in self.methods if m not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}")
        return self


class BenchConfig(_BenchStage):
    """`supporttune bench`: seed recipe vs fast path, same data and steps, one process."""

    QUICK: ClassVar[dict] = dict(model="tiny-arch", steps=2, warmup=1, repeats=1, new_tokens=16, seed_loop_samples=4)

    steps: int = Field(12, gt=0, description="Measured optimizer steps per path (after warm-up).")
    warmup: int = Field(3, ge=0, description="Unmeasured warm-up steps.")
    repeats: int = Field(3, gt=0, description="Measured steps are split into this many repeats; the median is reported.")
    compile: bool = Field(False, description="Also measure the fast path under torch.compile.")
    liger: bool = Field(False, description="Also measure the fast path with Liger fused kernels.")
    generation: bool = Field(True, description="Also benchmark generation.")
    training: bool = Field(True, description="Benchmark training (off: generation only).")
    new_tokens: int = Field(64, gt=1, description="Generated tokens per reply in the generation benchmark.")
    seed_loop_samples: int = Field(16, gt=0, description="Prompts timed in the seed's one-at-a-time loop.")
    static_cache: bool = Field(False, description="Use a static KV cache in batched generation.")
    seed: int = Field(0, description="Seed of data order and initial weights.")


class ScalingConfig(_BenchStage):
    """`supporttune bench --scaling 1,2,4`: training throughput of real `train --nproc N` runs, N = 1..max."""

    QUICK: ClassVar[dict] = dict(model="tiny-arch", steps=6, batch_size=4, repeats=1)

    processes: list[int] = Field(..., description="Process counts, e.g. 1,2,4: increasing, starting at 1.")
    model: str = Field("tinyllama-arch", description="Architecture of the random-weight model: tinyllama-arch, smollm2-arch or tiny-arch.")
    methods: list[str] = Field(["lora", "qlora"], description="Methods to measure (comma-separated).")
    steps: int = Field(30, gt=0, description="Optimizer steps per run.")
    batch_size: int = Field(16, gt=0, description="Sequences per process per micro-batch; the global batch is this x the largest process count.")
    repeats: int = Field(3, gt=0, description="Measured runs per point, the median reported (after one unmeasured warm-up run when > 1 or on GPUs).")
    global_batch: int | None = Field(None, gt=0, description="Sequences per optimizer step, the same for every process "
                                                             "count [default: batch_size x the largest count].")

    @field_validator("processes", mode="before")
    @classmethod
    def _parse_counts(cls, value):
        if isinstance(value, str):
            try:
                return [int(x) for x in split_csv(value)]
            except ValueError:
                raise ValueError(f"--scaling takes comma-separated process counts, e.g. 1,2,4 (got '{value}')") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> "ScalingConfig":
        from .archs import ARCHS

        if not self.processes or sorted(set(self.processes)) != self.processes or self.processes[0] != 1:
            raise ValueError(f"--scaling takes increasing process counts starting at 1 (got {','.join(map(str, self.processes))})")
        if self.model not in ARCHS:
            raise ValueError(f"--scaling needs an architecture name ({', '.join(ARCHS)}), got '{self.model}'")
        if self.global_batch is not None and self.global_batch % (self.batch_size * self.processes[-1]):
            raise ValueError(f"--global-batch {self.global_batch} must be a multiple of {self.batch_size} sequences per "
                             f"GPU x {self.processes[-1]} processes, so that every count runs the same micro-batch")
        return self

    @property
    def steps_batch(self) -> int:
        return self.global_batch or self.batch_size * self.processes[-1]


class SpeedConfig(_BenchStage):
    """`supporttune bench --speed RUN|base`: the issue-23 rows. (a) evaluate twice, each in its own process,
    sharing one empty compile cache (cold, then warm); (b) LoRA training tokens/s and MFU, padded vs packed."""

    QUICK: ClassVar[dict] = dict(model="tiny-arch", steps=2, warmup=1, repeats=1, new_tokens=8, limit=8,
                                 latency_samples=2)

    run: str = Field("base", description="Trained run directory to evaluate, or 'base' (zero-shot on the random-weight model).")
    methods: list[str] = Field(["lora"], description="Methods to train padded and packed (comma-separated).")
    steps: int = Field(12, gt=0, description="Measured optimizer steps per path (after warm-up).")
    warmup: int = Field(3, ge=0, description="Unmeasured warm-up steps.")
    repeats: int = Field(3, gt=0, description="Measured steps are split into this many repeats; the median is reported.")
    per_step: int = Field(16, gt=0, description="Sequences per optimizer step (one micro-batch).")
    new_tokens: int = Field(64, gt=1, description="Longest reply of the evaluations, in tokens.")
    limit: int | None = Field(None, gt=0, description="Evaluate the first N test messages only.")
    latency_samples: int = Field(10, ge=0, description="Batch-1 latency samples of each evaluation.")
    engine: Literal["auto", "static", "eager"] = Field("static", description="Generation engine of the evaluations "
                                                      "(static: always compile, so cold vs warm compile is measured).")
    generation: bool = Field(True, description="Measure the cold/warm evaluations.")
    training: bool = Field(True, description="Measure padded vs packed training.")
    seed: int = Field(0, description="Seed of data order and initial weights.")

    @field_validator("run")
    @classmethod
    def _run_dir(cls, run: str) -> str:
        from ..rundir import CONFIG

        if run != "base" and not (Path(run) / CONFIG).is_file():
            raise ValueError(f"--speed {run}: not a run directory (no {CONFIG}); give a trained run or 'base'")
        return run
