"""The method registry answers every per-method question, and what it says takes effect.

Model-building tests build the PEFT model on the tiny random Llama only (no training step).
"""

import dataclasses

import pytest
import torch

from supporttune.core.errors import UserError
from supporttune.train import methods
from supporttune.train.config import TrainConfig

EXTRA = {"ia3": {"targets": ["k_proj", "v_proj", "down_proj"]}, "prompt-tuning": {"virtual_tokens": 4},
         "prefix-tuning": {"virtual_tokens": 4}}


def _built(tiny_model_dir, method: str, **overrides):
    from supporttune.models.loading import load_model, resolve

    cfg = TrainConfig(model=str(tiny_model_dir), method=method, r=4, alpha=8, device="cpu",
                      **{**EXTRA.get(method, {}), **overrides})
    entry = methods.get(method)
    base = load_model(resolve(cfg.model), dtype=torch.float32, device="cpu", quantize_4bit=entry.quantize_4bit)
    base.config.use_cache = False
    return entry.build(base, cfg, str(tiny_model_dir))


def _checkpointing(model) -> bool:
    """``model.is_gradient_checkpointing``, under its newer name where transformers has it."""
    return getattr(model, "is_activation_checkpointing", None) or model.is_gradient_checkpointing


@pytest.mark.parametrize("method", [m for m, e in methods.REGISTRY.items() if e.supports_checkpointing])
def test_gradient_checkpointing_takes_effect_for_every_method_that_supports_it(tiny_model_dir, method):
    assert _checkpointing(_built(tiny_model_dir, method, gradient_checkpointing=True).get_base_model())
    assert not _checkpointing(_built(tiny_model_dir, method, gradient_checkpointing=False).get_base_model())


def test_every_registered_method_is_covered_and_prefix_tuning_refuses_checkpointing():
    assert set(methods.REGISTRY) == {"lora", "qlora", "dora", "ia3", "prompt-tuning", "prefix-tuning"}
    assert [m for m, e in methods.REGISTRY.items() if not e.supports_checkpointing] == ["prefix-tuning"]
    with pytest.raises(ValueError, match="gradient checkpointing is not supported with prefix-tuning"):
        TrainConfig(method="prefix-tuning", gradient_checkpointing=True)


@pytest.mark.parametrize("method,lr", [("lora", 2e-4), ("qlora", 2e-4), ("dora", 2e-4), ("ia3", 2e-4),
                                       ("prompt-tuning", 3e-2), ("prefix-tuning", 3e-2)])
def test_default_lr_comes_from_the_registry_and_is_recorded(method, lr):
    cfg = TrainConfig(method=method)
    assert cfg.lr == methods.get(method).default_lr == lr
    assert cfg.resolved()["lr"] == lr  # what config.yaml records is the rate the run used
    assert TrainConfig(method=method, lr=1e-3).lr == 1e-3
    assert TrainConfig(method=method, lr=None).lr == lr


def test_config_asks_the_registry_about_fsdp(monkeypatch):
    assert [m for m, e in methods.REGISTRY.items() if not e.supports_fsdp] == ["qlora"]
    with pytest.raises(ValueError, match="fsdp is not supported with qlora"):
        TrainConfig(method="qlora", fsdp=True)
    monkeypatch.setitem(methods.REGISTRY, "lora", dataclasses.replace(methods.get("lora"), supports_fsdp=False))
    with pytest.raises(ValueError, match="fsdp is not supported with lora"):
        TrainConfig(method="lora", fsdp=True)


def test_export_asks_the_registry_whether_a_method_merges(tiny_run, tmp_path, monkeypatch):
    from supporttune.export.checkpoint import export
    from supporttune.export.config import ExportConfig

    monkeypatch.setitem(methods.REGISTRY, "lora", dataclasses.replace(methods.get("lora"), mergeable=False))
    with pytest.raises(UserError, match="lora learns .*nothing to merge"):
        export(ExportConfig(run=tiny_run, out=tmp_path / "m", merge=True))
    assert not (tmp_path / "m").exists()
