"""PEFT methods, registered by name: one builder function and the method's rules in one place.

Adding a method = one function + ``@register``. Each registry entry answers every per-method
question the rest of the code asks: its default learning rate (config.py), whether it needs a 4-bit
base (models.py loads it), whether its adapter merges into the base weights (export.py), whether it
works under FSDP (config.py) and with gradient checkpointing (config.py, and ``Method.build``
applies it), and whether it trains on padding-free packed rows (train/packing.py). peft is imported inside the builders so that configs can check method names without
importing it. QLoRA is LoRA on a 4-bit base: the registry entry says ``quantize_4bit``, the loader
does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

REGISTRY: dict[str, "Method"] = {}

ADAPTER_LR = 2e-4  # weight adapters: a small change to a big matrix
PROMPT_LR = 3e-2  # virtual tokens start far from any useful embedding and need a far higher rate


@dataclass(frozen=True)
class Method:
    name: str
    builder: Callable  # (base model, TrainConfig, tokenizer path) -> PeftModel
    family: Literal["adapter", "prompt"] = "adapter"  # weights inside layers, or virtual tokens
    quantize_4bit: bool = False  # load the base in NF4 4-bit first
    uses_targets: bool = True  # takes TrainConfig.targets (the modules that get adapters)
    default_lr: float = ADAPTER_LR  # TrainConfig.lr when none is given
    mergeable: bool = True  # export --merge can fold the adapter into the base weights
    supports_fsdp: bool = True  # trains with --fsdp (weights sharded across GPUs)
    supports_checkpointing: bool = True  # trains with gradient checkpointing
    supports_packing: bool = True  # trains on padding-free packed rows (train/packing.py)
    # preference objectives (train/preference.py): TRL copies the adapter's weights into a frozen "ref" adapter
    # and switches to it for the reference; virtual-token adapters do not switch that way
    supports_preference: bool = True
    peft_type: str = "LORA"  # peft's name for the adapter type (how a loaded adapter is recognised)
    # the generation engine's fast path (inference/slots.py): "merged" folds the adapter into a plain
    # copy of the base, "prompt" feeds the virtual tokens as input embeddings, None = eager only
    fast_path: Literal["merged", "prompt"] | None = "merged"

    def build(self, model, cfg, tokenizer_path: str):
        """The trainable PeftModel on ``model``, with gradient checkpointing on when ``cfg`` asks for it.

        Checkpointing is switched on here, for every method, before peft wraps the model: peft then
        makes the input embeddings require grads where checkpointing needs it (not on 4-bit bases).
        """
        if cfg.gradient_checkpointing:
            if not self.supports_checkpointing:  # configs refuse this first; a guard for direct callers
                raise ValueError(f"{self.name} does not support gradient checkpointing")
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return self.builder(model, cfg, tokenizer_path)


# Virtual tokens are prepended once per row, so a packed row would give them to its first sequence
# only; and peft drops position_ids for prompt tuning (and passes a KV cache for prefix tuning), so
# transformers no longer sees the sequence boundaries and attention leaks across them: no packing.
PROMPT = dict(family="prompt", uses_targets=False, mergeable=False, default_lr=PROMPT_LR, fast_path=None,
              supports_packing=False, supports_preference=False)


def register(name: str, **rules) -> Callable:
    def wrap(fn: Callable) -> Callable:
        REGISTRY[name] = Method(name=name, builder=fn, **rules)
        return fn

    return wrap


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}' (choose from {', '.join(REGISTRY)})")
    return REGISTRY[name]


def names() -> str:
    """'qlora, lora, dora, ...' for help text."""
    return ", ".join(REGISTRY)


def fast_path_of(peft_type: str) -> str | None:
    """The engine's fast path for a loaded adapter of this peft type (None: eager only)."""
    return next((m.fast_path for m in REGISTRY.values() if m.peft_type == peft_type), None)


def _lora_config(cfg, **extra):
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.targets), bias="none", **extra)


@register("lora")
def build_lora(model, cfg, tokenizer_path: str):
    """LoRA adapters on the unquantized base."""
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(cfg))


# Merging QLoRA means dequantizing the base first; export measures how far the replies drift.
# Its packed 4-bit weights cannot be sharded, hence no FSDP.
@register("qlora", quantize_4bit=True, supports_fsdp=False)
def build_qlora(model, cfg, tokenizer_path: str):
    """LoRA adapters on an NF4 4-bit base (bitsandbytes, double quantization)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    # freezes the base and upcasts its non-4-bit weights; checkpointing is Method.build's job
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return get_peft_model(model, _lora_config(cfg))


@register("dora")
def build_dora(model, cfg, tokenizer_path: str):
    """Weight-decomposed LoRA (DoRA): LoRA direction + learned magnitude."""
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(cfg, use_dora=True))


@register("ia3", peft_type="IA3")
def build_ia3(model, cfg, tokenizer_path: str):
    """IA3: learned rescaling vectors on the target modules (fewest parameters)."""
    from peft import IA3Config, TaskType, get_peft_model

    ff = [t for t in cfg.targets if t in {"down_proj", "up_proj", "gate_proj", "fc2", "mlp"}]
    return get_peft_model(model, IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=list(cfg.targets),
                                           feedforward_modules=ff))


@register("prompt-tuning", **{**PROMPT, "fast_path": "prompt"}, peft_type="PROMPT_TUNING")
def build_prompt_tuning(model, cfg, tokenizer_path: str):
    """Prompt tuning: N trainable virtual-token embeddings, initialised from text or at random."""
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    text_init = cfg.prompt_init == "text"
    config = PromptTuningConfig(
        task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT if text_init else PromptTuningInit.RANDOM,
        prompt_tuning_init_text=cfg.init_text if text_init else None,
        tokenizer_name_or_path=tokenizer_path if text_init else None)
    return get_peft_model(model, config)


# peft keeps the prefixes in a KV cache, which gradient checkpointing cannot recompute (peft refuses).
@register("prefix-tuning", **PROMPT, supports_checkpointing=False, peft_type="PREFIX_TUNING")
def build_prefix_tuning(model, cfg, tokenizer_path: str):
    """Prefix tuning: trainable key/value prefixes in every attention layer."""
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.virtual_tokens))
