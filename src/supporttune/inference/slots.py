"""The plain models the generation engine decodes with: one per architecture per process.

A *slot* is an ordinary ``transformers`` model of the base architecture, in the agent's dtype on
its device, with no PEFT wrapper and no quantization. Each agent copies its weights into the slot
in place (same tensors, same addresses), so a decode step compiled (and CUDA-graph captured) for
one variant serves the next variant of the same base: a suite pays compilation once.

What an agent puts into the slot (``plain_weights``):

* LoRA / DoRA / IA3: the base weights with the adapter merged in. The merge runs in float32 on a
  plain copy (peft's own ``merge_and_unload``), so each weight is rounded to bf16 once.
* QLoRA: the NF4 weights dequantized exactly as bitsandbytes dequantizes them in every forward
  (``dequantize_4bit``), then the adapter merged as above. This is the model the adapter was
  trained against, not the original bf16 base (merging into that is what ``export --merge``
  measured to drift); what is left is bf16 rounding, reported as the share of identical replies.
* prompt tuning and base models: the base weights (virtual tokens enter as input embeddings).
"""

from __future__ import annotations

import copy
import time

import torch

from ..train import methods

_SLOTS: dict[tuple, "Slot"] = {}


def fast_kind(model) -> str | None:
    """merged | dequantized | prompt | base, or None where only the eager path applies (prefix tuning)."""
    config = getattr(model, "active_peft_config", None)
    if config is None:
        return None if _is_4bit(model) else "base"
    kind = methods.fast_path_of(getattr(config.peft_type, "value", str(config.peft_type)))  # the registry says
    if kind == "merged" and _is_4bit(model.get_base_model()):
        return "dequantized"
    return kind


def _is_4bit(model) -> bool:
    return any(type(m).__name__ == "Linear4bit" and hasattr(getattr(m, "weight", None), "quant_state")
               for m in model.modules())


def base_of(model):
    return model.get_base_model() if getattr(model, "active_peft_config", None) is not None else model


def plain_config(model):
    """The base architecture's config without quantization settings."""
    cfg = base_of(model).config
    data = {k: v for k, v in cfg.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    return type(cfg).from_dict(data)


def _dequantized_base(model, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The base model's weights as plain tensors: NF4 layers dequantized, adapter tensors left out."""
    base = base_of(model)
    out: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        weight = getattr(module, "weight", None)
        if type(module).__name__ == "Linear4bit" and hasattr(weight, "quant_state"):
            import bitsandbytes.functional as bnbf

            key = name.replace(".base_layer", "")
            out[key + ".weight"] = bnbf.dequantize_4bit(weight.data, weight.quant_state).to(dtype)
            if module.bias is not None:
                out[key + ".bias"] = module.bias.data.to(dtype)
    skip = ("lora_", "ia3_", ".absmax", "quant_map", "quant_state", "nested_", "prompt_encoder")
    for key, tensor in base.state_dict().items():
        plain = key.replace(".base_layer", "")
        if plain not in out and not any(s in key for s in skip):
            out[plain] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


@torch.no_grad()
def plain_weights(model, kind: str) -> dict[str, torch.Tensor]:
    """The weights an agent puts into its slot (see the module docstring)."""
    if kind in ("base", "prompt"):
        return _dequantized_base(model, base_of(model).dtype)
    from peft import (
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )
    from transformers import AutoModelForCausalLM

    device = next(base_of(model).parameters()).device
    weights = _dequantized_base(model, torch.float32)
    with torch.device(device):
        plain = AutoModelForCausalLM.from_config(plain_config(model), dtype=torch.float32)
    plain.load_state_dict(weights, strict=False, assign=True)
    plain.tie_weights()
    del weights
    config = copy.deepcopy(model.active_peft_config)
    adapter = get_peft_model(plain, config)
    state = {k: v.float() for k, v in get_peft_model_state_dict(model, adapter_name=model.active_adapter).items()}
    set_peft_model_state_dict(adapter, state)
    merged = adapter.merge_and_unload()
    return merged.state_dict()


def slot_bytes(model) -> int:
    """Bytes the fast path needs on top of the agent: the slot plus a float32 copy while merging."""
    n = sum(p.numel() for p in base_of(model).parameters())
    if _is_4bit(model):
        n *= 2  # packed NF4 counts half a parameter per element
    return n * (2 + 4 + 4)


class Slot:
    """One plain model with its static caches, the shapes compiled for it, and who loaded it last."""

    def __init__(self, model):
        self.model = model
        self.owner = None  # the engine whose weights are loaded
        self.caches: dict[tuple[int, int], object] = {}
        self.compiled: dict[tuple[int, int], float] = {}  # (rows, cache length) -> warm-up seconds
        self.eager_step_s: dict[int, float] = {}  # rows -> measured seconds per eager decode step
        self.loads = 0  # agents whose weights were copied in: > 1 means a later variant reused the compiled slot

    def cache(self, rows: int, length: int):
        """The static cache for this shape, emptied (kept across calls: stable addresses for CUDA graphs)."""
        from transformers import StaticCache

        key = (rows, length)
        if key not in self.caches:
            self.caches[key] = StaticCache(config=self.model.config, max_cache_len=length)
        cache = self.caches[key]
        cache.reset()
        return cache


def slot_for(model, kind: str, owner) -> tuple[Slot, float]:
    """The process's slot for this architecture with ``owner``'s weights loaded; seconds spent loading."""
    from transformers import AutoModelForCausalLM

    base = base_of(model)
    device = next(base.parameters()).device
    dtype = base.dtype
    config = plain_config(model)
    key = (config.to_json_string(), str(dtype), str(device))
    t0 = time.perf_counter()
    slot = _SLOTS.get(key)
    if slot is not None and slot.owner is owner:
        return slot, 0.0
    weights = plain_weights(model, kind)
    if slot is None:
        with torch.device(device):
            plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
        plain.generation_config.cache_implementation = None
        plain.eval()
        slot = _SLOTS[key] = Slot(plain)
    missing, unexpected = slot.model.load_state_dict(weights, strict=False)  # copies in place: addresses kept
    bad = [k for k in missing if "rotary" not in k and k != "lm_head.weight"] + list(unexpected)
    if bad:
        raise RuntimeError(f"engine: weights do not fit the plain model ({', '.join(bad[:3])} ...)")
    slot.owner = owner
    slot.loads += 1
    return slot, time.perf_counter() - t0


def drop_slots() -> None:
    """Forget every slot (tests; a process that is done generating)."""
    _SLOTS.clear()
