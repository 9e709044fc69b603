"""The train stage's typed config: a base model, a PEFT method and its hyper-parameters, the prompt options.

Every field carries its help text (``description``), which the CLI shows, so docs cannot drift from the
code. Method rules (default lr, FSDP, checkpointing) come from the method registry (methods.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ..config import StageConfig, split_csv
from ..models.presets import DEFAULT_MODEL, model_help
from ..prompting.spec import PromptOptions
from . import methods


# Preference objectives move an already tuned adapter: by default a tenth of the method's SFT rate
# (LoRA: 2e-5, in the range TRL's DPO examples use for adapters).
PREFERENCE_LR_SCALE = 0.1


def _default_lrs() -> str:
    """The registry's default learning rates, for help text: '0.0002 for lora/qlora/..., 0.03 for ...'."""
    from .methods import REGISTRY

    by_rate: dict[float, list[str]] = {}
    for method in REGISTRY.values():
        by_rate.setdefault(method.default_lr, []).append(method.name)
    return ", ".join(f"{lr:g} for {'/'.join(names)}" for lr, names in by_rate.items())


class TrainConfig(StageConfig, PromptOptions):
    """One training run: a base model, a PEFT method and its hyper-parameters, and the prompt (PromptOptions)."""

    name: str | None = Field(None, description="Variant name (defaults to the method).")
    data: Path = Field(Path("data"), description="Prepared data directory (train.jsonl, val.jsonl).")
    model: str = Field(DEFAULT_MODEL, description=model_help())
    method: str = Field("lora", description=f"PEFT method: {methods.names()}.")
    objective: Literal["sft", "dpo", "kto", "orpo"] = Field(
        "sft", description="sft = supervised on the reference replies; dpo / kto / orpo = preference training (TRL) "
                           "of a finished SFT run's adapter (--from) on --preferences.")
    from_run: Path | None = Field(None, description="With a preference objective: the finished SFT run whose adapter "
                                                    "the policy starts from (and, frozen, the reference); its base, "
                                                    "method, adapter shape and prompt are the child's.")
    preferences: Path | None = Field(None, description="With a preference objective: JSONL of {prompt|messages|id, "
                                                       "chosen, rejected} (kto also {prompt, completion, label}), "
                                                       "e.g. from `rate --export-preferences` or `preferences`.")
    beta: float = Field(0.1, gt=0, le=10, description="Preference objectives: strength of the pull toward the "
                                                      "reference (DPO/KTO beta; ORPO's odds-ratio weight).")
    # DPO lowered the reference replies' own likelihood on the TWCS recipe (docs/RESULTS.md, issue 22): an SFT term
    # on the chosen reply (RPO; TRL's loss_type [sigmoid, sft]) is the standard counterweight
    sft_weight: float = Field(0.0, ge=0, le=10, description="DPO only: weight of an added SFT (NLL) term on the chosen "
                                                           "reply (RPO), so its likelihood does not fall; 0 = plain DPO.")
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
                             description=f"Peak learning rate (linear decay); default: the method's ({_default_lrs()}); "
                                         f"a preference objective: a tenth of that.")
    warmup: float = Field(0.03, ge=0, lt=1, description="Warm-up share of the steps.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    batch_size: int = Field(4, gt=0, description="Sequences per device per micro-batch.")
    grad_accum: int = Field(4, gt=0, description="Micro-batches per optimizer step.")
    max_length: int = Field(512, ge=16, description="Longest prompt+reply in tokens; longer pairs are skipped.")
    pad_to_max_length: bool = Field(False, description="Pad every sequence to max_length (the seed recipe; slow).")
    # Off by default, measured: with PyTorch SDPA attention transformers turns a packed row into one dense
    # block-diagonal mask over all its tokens, so packed steps were slower than padded ones on an H100
    # (2.5x on TinyLlama, 1.03-1.1x on the recipe) and on this CPU (1.4x); docs/BENCHMARKS.md, issue 23.
    packing: bool = Field(False, description="Padding-free packed micro-batches (same loss per token; pays off with "
                                             "a variable-length attention kernel such as flash-attention; methods that "
                                             "cannot pack, prompt and prefix tuning, keep padded batches).")
    group_by_length: bool = Field(True, description="Batch similar lengths together (less padding).")
    distract_share: float = Field(0.0, ge=0, le=1, description="RAFT-style: share of training examples shown random "
                                                               "(unrelated) past exchanges instead of the retrieved ones.")
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
            values = {**values, **{k: split_csv(values[k]) for k in ("targets", "report_to") if k in values}}
            if values.get("report_to") in (["none"], "none", None):
                values["report_to"] = []
        return values

    @field_validator("lr")
    @classmethod
    def _default_lr(cls, lr: float | None, info: ValidationInfo) -> float | None:
        """No lr given: the method's own default, resolved here so config.yaml records the rate used."""
        from .methods import REGISTRY

        method = REGISTRY.get(info.data.get("method"))  # unknown: _check below says so
        if lr is None and method and info.data.get("objective", "sft") != "sft":
            return method.default_lr * PREFERENCE_LR_SCALE
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
        if self.objective == "sft" and (self.from_run or self.preferences):
            raise ValueError("--from and --preferences go with a preference objective (--objective dpo, kto or orpo)")
        if self.objective != "sft":
            if self.from_run is None or self.preferences is None:
                raise ValueError(f"--objective {self.objective} needs --from RUN (a finished SFT run) and "
                                 f"--preferences FILE")
            if self.sft_weight and self.objective != "dpo":
                raise ValueError(f"--sft-weight goes with --objective dpo (not {self.objective})")
            if self.fsdp:
                raise ValueError(f"--objective {self.objective} runs without --fsdp (TRL's frozen reference adapter "
                                 f"is not sharded here)")
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

