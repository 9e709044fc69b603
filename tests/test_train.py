"""Training on a tiny random Llama: builders, resume, NaN guard, memory, bad flags."""

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from supporttune.train.config import TrainConfig
from supporttune.core.errors import RunFailed, UserError
from supporttune.core.memory import rss_bytes
from supporttune.train.stage import train


PEFT_TYPE = {"lora": ("LORA", False), "qlora": ("LORA", False), "dora": ("LORA", True), "ia3": ("IA3", False),
             "prompt-tuning": ("PROMPT_TUNING", False), "prefix-tuning": ("PREFIX_TUNING", False)}


@pytest.mark.parametrize("name", ["lora", "qlora", "dora", "ia3", "prompt-tuning", "prompt-tuning-random",
                                  "prefix-tuning"])
def test_each_method_trains_and_saves_a_loadable_adapter(tiny_runs, name):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    cfg, s = tiny_runs(name)
    assert s["steps"] == 3 and s["method"] == cfg.method and s["trainable_params"] > 0
    assert (cfg.out / "adapter_model.safetensors").is_file() and (cfg.out / "adapter_config.json").is_file()
    assert not (cfg.out / "checkpoints").exists()  # removed once the adapter is written
    base = AutoModelForCausalLM.from_pretrained(cfg.model)
    loaded = PeftModel.from_pretrained(base, cfg.out)
    saved = loaded.peft_config["default"]  # the adapter on disk is the method asked for
    assert (saved.peft_type.value, getattr(saved, "use_dora", False)) == PEFT_TYPE[cfg.method]
    # the trainable share we report is what PEFT reports for the same adapter
    trainable = sum(p.numel() for n, p in loaded.named_parameters() if any(k in n for k in ("lora_", "prompt_encoder", "ia3_")))
    assert trainable == s["trainable_params"] or cfg.method == "qlora"
    assert abs(s["trainable_pct"] - 100 * s["trainable_params"] / s["total_params"]) < 1e-3
    rows = [json.loads(x) for x in (cfg.out / "loss.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "train_loss" in r] == [1, 2, 3]
    assert any("val_loss" in r for r in rows)


def test_qlora_counts_packed_4bit_weights_at_their_true_size(tiny_runs):
    (lcfg, lora), (qcfg, qlora) = tiny_runs("lora"), tiny_runs("qlora")
    assert (lcfg.r, lcfg.targets) == (qcfg.r, qcfg.targets)  # the same adapter on both bases
    assert qlora["total_params"] == lora["total_params"]
    assert qlora["trainable_params"] == lora["trainable_params"]


@pytest.mark.slow
def test_loss_falls_on_the_tiny_model(tiny_train_cfg):
    # 6 steps over the same 4 pairs (3 epochs): the mean of the last 3 losses is ~0.2 under the first 3
    cfg = tiny_train_cfg(max_steps=6, lr=2e-2, r=8, alpha=16, targets=["q_proj", "k_proj", "v_proj", "o_proj",
                         "gate_proj", "up_proj", "down_proj"], max_train_samples=4, batch_size=2, save_steps=100,
                         max_val_samples=2)
    train(cfg)
    losses = [json.loads(x).get("train_loss") for x in (cfg.out / "loss.jsonl").read_text().splitlines()]
    losses = [x for x in losses if x is not None]
    assert len(losses) == 6 and sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses


class _Interrupt(TrainerCallback):
    def __init__(self, at):
        self.at = at

    def on_step_end(self, args, state, control, **kw):
        if state.global_step == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.slow
def test_interrupt_then_resume_matches_uninterrupted_run(tiny_train_cfg, tmp_path):
    common = dict(max_steps=4, save_steps=100, max_val_samples=2)  # the only checkpoint is the interrupt's
    straight = tiny_train_cfg(out=tmp_path / "straight", **common)
    train(straight)
    broken = tiny_train_cfg(out=tmp_path / "broken", **common)
    with pytest.raises(RunFailed, match="--resume"):
        train(broken, callbacks=[_Interrupt(at=2)])
    # the signal lands after step 2's bookkeeping: the run saves and stops at the end of step 3
    assert [p.name for p in (tmp_path / "broken" / "checkpoints").iterdir()] == ["checkpoint-3"]
    with pytest.raises(UserError, match="--resume"):
        train(broken)  # never overwritten silently
    s = train(broken.model_copy(update={"resume": True}))
    assert s["resumed_from"].endswith("checkpoint-3") and s["steps"] == 4
    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(tmp_path / "broken" / "adapter_model.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    la = [json.loads(x) for x in (tmp_path / "straight" / "loss.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "broken" / "loss.jsonl").read_text().splitlines()]
    ta = [r["train_loss"] for r in la if "train_loss" in r]
    tb = [r["train_loss"] for r in lb if "train_loss" in r]
    assert len(ta) == len(tb) == 4 and max(abs(x - y) for x, y in zip(ta, tb)) < 1e-4


class _Poison(TrainerCallback):
    def on_step_end(self, args, state, control, model=None, **kw):
        if state.global_step == 4:
            with torch.no_grad():
                for p in model.parameters():
                    if p.requires_grad:
                        p.fill_(float("nan"))


@pytest.mark.slow
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_train_cfg):
    cfg = tiny_train_cfg(max_steps=8, save_steps=2)
    with pytest.raises(RunFailed, match=r"loss became nan at step 5.*checkpoint-4"):
        train(cfg, callbacks=[_Poison()])
    assert not (cfg.out / "adapter_model.safetensors").exists()


@pytest.mark.slow
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
    import supporttune.models.loading as models

    monkeypatch.setattr(models, "load_model", lambda *a, **k: pytest.fail("model was loaded"))
    with pytest.raises(UserError, match="target module.*c_attn.*q_proj"):
        train(tiny_train_cfg(targets=["c_attn"]))


def test_hub_id_without_network_gets_a_clear_error(builtin_data, tmp_path):
    cfg = TrainConfig(model="no-such-org/no-such-model", data=builtin_data, out=tmp_path / "x")
    with pytest.raises(UserError, match="Hugging Face Hub.*smollm2-135m"):
        train(cfg)


def test_a_process_outside_a_launch_trains_on_one_gpu(tmp_path, monkeypatch):
    """HF's Trainer would use every visible GPU (DataParallel, and n_gpu x the loss of a 4-bit base)."""
    from transformers import TrainingArguments

    from supporttune.train.trainer import one_gpu_per_process

    for var in ("RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.n_gpu == 0
    args._n_gpu = 2  # what a 2-GPU host gives a plain process
    assert one_gpu_per_process(args).n_gpu == 1
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    args._n_gpu = 2  # under the launcher the count is left to accelerate (one device per rank)
    assert one_gpu_per_process(args).n_gpu == 2
