"""Training on a tiny random Llama: builders, resume, NaN guard, memory, bad flags."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from supporttune.config import TrainConfig
from supporttune.errors import RunFailed, UserError
from supporttune.memory import rss_bytes
from supporttune.train import train


@pytest.mark.parametrize("method,extra", [
    ("lora", {}), ("qlora", {}), ("dora", {}), ("ia3", {"targets": ["k_proj", "v_proj", "down_proj"]}),
    ("prompt-tuning", {"virtual_tokens": 4}), ("prompt-tuning", {"virtual_tokens": 4, "prompt_init": "random"}),
    ("prefix-tuning", {"virtual_tokens": 4}),
])
def test_each_method_trains_and_saves_a_loadable_adapter(tiny_train_cfg, method, extra):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg = tiny_train_cfg(method=method, max_steps=3, **extra)
    s = train(cfg)
    assert s["steps"] == 3 and s["trainable_params"] > 0
    assert (cfg.out / "adapter_model.safetensors").is_file() and (cfg.out / "adapter_config.json").is_file()
    base = AutoModelForCausalLM.from_pretrained(cfg.model)
    loaded = PeftModel.from_pretrained(base, cfg.out)
    # the trainable share we report is what PEFT reports for the same adapter
    trainable = sum(p.numel() for n, p in loaded.named_parameters() if any(k in n for k in ("lora_", "prompt_encoder", "ia3_")))
    assert trainable == s["trainable_params"] or method == "qlora"
    assert abs(s["trainable_pct"] - 100 * s["trainable_params"] / s["total_params"]) < 1e-3
    rows = [json.loads(x) for x in (cfg.out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train_loss" in r] == [1, 2, 3]
    assert any("val_loss" in r for r in rows)


def test_qlora_counts_packed_4bit_weights_at_their_true_size(tiny_train_cfg, tmp_path):
    lora = train(tiny_train_cfg(method="lora", max_steps=1, out=tmp_path / "a"))
    qlora = train(tiny_train_cfg(method="qlora", max_steps=1, out=tmp_path / "b"))
    assert qlora["total_params"] == lora["total_params"]
    assert qlora["trainable_params"] == lora["trainable_params"]


def test_loss_falls_on_the_tiny_model(tiny_train_cfg):
    cfg = tiny_train_cfg(max_steps=12, lr=2e-2, r=8, alpha=16, targets=["q_proj", "k_proj", "v_proj", "o_proj",
                         "gate_proj", "up_proj", "down_proj"], max_train_samples=8, batch_size=4)
    train(cfg)
    losses = [json.loads(x).get("train_loss") for x in (cfg.out / "loss.jsonl").read_text().splitlines()]
    losses = [x for x in losses if x is not None]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


class _Interrupt(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupt_then_resume_matches_uninterrupted_run(tiny_train_cfg, tmp_path):
    straight = tiny_train_cfg(out=tmp_path / "straight", max_steps=6)
    train(straight)
    broken = tiny_train_cfg(out=tmp_path / "broken", max_steps=6)
    with pytest.raises(RunFailed, match="--resume"):
        train(broken, callbacks=[_Interrupt(at=4)])
    # the signal lands after step 4's bookkeeping: the run saves and stops at the end of step 5
    assert (tmp_path / "broken" / "checkpoints" / "checkpoint-5").is_dir()
    with pytest.raises(UserError, match="--resume"):
        train(broken)  # never overwritten silently
    s = train(broken.model_copy(update={"resume": True}))
    assert s["resumed_from"].endswith("checkpoint-5") and s["steps"] == 6
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(tmp_path / "broken" / "adapter_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    la = [json.loads(x) for x in (tmp_path / "straight" / "loss.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "broken" / "loss.jsonl").read_text().splitlines()]
    ta = [r["train_loss"] for r in la if "train_loss" in r]
    tb = [r["train_loss"] for r in lb if "train_loss" in r]
    assert len(ta) == len(tb) == 6 and max(abs(x - y) for x, y in zip(ta, tb)) < 1e-4


class _Poison(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == 4:
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_train_cfg):
    cfg = tiny_train_cfg(max_steps=8, save_steps=2)
    with pytest.raises(RunFailed, match=r"loss became nan at step 5.*checkpoint-4"):
        train(cfg, callbacks=[_Poison()])
    assert not (cfg.out / "adapter_model.safetensors").exists()


def test_memory_does_not_grow_across_runs(tiny_train_cfg, tmp_path):
    rss = []
    for i in range(3):
        train(tiny_train_cfg(out=tmp_path / f"r{i}", max_steps=2))
        rss.append(rss_bytes())
    assert rss[2] - rss[0] < 150 * 2**20, [r / 2**20 for r in rss]  # no model left behind (each run ~= 100 MB)


@pytest.mark.parametrize("overrides,message", [
    ({"r": 0}, "r"), ({"method": "magic"}, "unknown method"), ({"dropout": 1.5}, "dropout"),
    ({"targets": ""}, "target"),
])
def test_bad_flags_fail_in_config(overrides, message, tiny_train_cfg):
    with pytest.raises(ValueError, match=message):
        tiny_train_cfg(**overrides)


def test_unknown_target_module_fails_before_loading(tiny_train_cfg, monkeypatch):
    import supporttune.models as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model was loaded"))
    with pytest.raises(UserError, match="target module.*c_attn.*q_proj"):
        train(tiny_train_cfg(targets=["c_attn"]))


def test_hub_id_without_network_gets_a_clear_error(builtin_data, tmp_path):
    cfg = TrainConfig(model="no-such-org/no-such-model", data=builtin_data, out=tmp_path / "x")
    with pytest.raises(UserError, match="Hugging Face Hub.*smollm2-135m"):
        train(cfg)
