"""PEFT method builders, registered by name. Adding a method = one function + ``@register``.

Each builder takes the loaded base model and the train config and returns a PeftModel. peft is
imported inside the builders so that configs can check method names without importing it.
QLoRA is LoRA on a 4-bit base: the registry entry says ``quantize_4bit``, the loader does the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

REGISTRY: dict[str, "Method"] = {}


@dataclass(frozen=True)
class Method:
    name: str
    build: Callable
    quantize_4bit: bool = False
    family: str = "adapter"  # "adapter" (weights inside layers) or "prompt" (virtual tokens)
    uses_targets: bool = True
    mergeable: bool = True
    summary: str = ""


def register(name: str, **kwargs) -> Callable:
    def wrap(fn: Callable) -> Callable:
        REGISTRY[name] = Method(name=name, build=fn, summary=(fn.__doc__ or "").strip().splitlines()[0], **kwargs)
        return fn

    return wrap


def get(name: str) -> Method:
    if name not in REGISTRY:
        raise KeyError(f"unknown method '{name}' (choose from {', '.join(REGISTRY)})")
    return REGISTRY[name]


def _lora_config(cfg, **extra):
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                      target_modules=list(cfg.targets), bias="none", **extra)


@register("lora")
def build_lora(model, cfg, tokenizer_path: str):
    """LoRA adapters on the unquantized base."""
    from peft import get_peft_model

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    return get_peft_model(model, _lora_config(cfg))


@register("qlora", quantize_4bit=True, mergeable=False)
def build_qlora(model, cfg, tokenizer_path: str):
    """LoRA adapters on an NF4 4-bit base (bitsandbytes, double quantization)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False})
    return get_peft_model(model, _lora_config(cfg))


@register("dora")
def build_dora(model, cfg, tokenizer_path: str):
    """Weight-decomposed LoRA (DoRA): LoRA direction + learned magnitude."""
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(cfg, use_dora=True))


@register("ia3")
def build_ia3(model, cfg, tokenizer_path: str):
    """IA3: learned rescaling vectors on the target modules (fewest parameters)."""
    from peft import IA3Config, TaskType, get_peft_model

    ff = [t for t in cfg.targets if t in {"down_proj", "up_proj", "gate_proj", "fc2", "mlp"}]
    return get_peft_model(model, IA3Config(task_type=TaskType.CAUSAL_LM, target_modules=list(cfg.targets),
                                           feedforward_modules=ff))


@register("prompt-tuning", family="prompt", uses_targets=False, mergeable=False)
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


@register("prefix-tuning", family="prompt", uses_targets=False, mergeable=False)
def build_prefix_tuning(model, cfg, tokenizer_path: str):
    """Prefix tuning: trainable key/value prefixes in every attention layer."""
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    return get_peft_model(model, PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=cfg.virtual_tokens))
