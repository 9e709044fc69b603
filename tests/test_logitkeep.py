"""Logits at labelled positions only (train/logitkeep.py): the same loss and gradients, fewer logits.

Tiny random Llama models from a LlamaConfig (no files); padded and packed batches, LoRA through
PEFT, and SupportTrainer's training_step, which applies it, against the same steps on full logits.
"""

from __future__ import annotations

import torch
from tinyllama import PAD
from tinyllama import tiny_items as _items
from tinyllama import tiny_llama as _model

from supporttune.train.collate import PadCollator
from supporttune.train.logitkeep import accepts_logits_to_keep, keep_labelled_logits
from supporttune.train.packing import PackCollator


def _lora():
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(2)
    return get_peft_model(_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                               init_lora_weights=False)).train()


def test_kept_positions_are_those_that_predict_a_label():
    batch = PadCollator(PAD)(_items())
    kept = keep_labelled_logits(batch)
    shift = torch.nn.functional.pad(batch["labels"], (0, 1), value=-100)[:, 1:]
    want = [p for p in range(shift.shape[1]) if (shift[:, p] != -100).any()]
    assert kept["logits_to_keep"].tolist() == want and len(want) < shift.shape[1]
    assert int((kept["shift_labels"] != -100).sum()) == int((batch["labels"] != -100).sum())
    assert keep_labelled_logits({"input_ids": batch["input_ids"]}).keys() == {"input_ids"}


def test_same_loss_and_gradients_padded_and_packed():
    for collate in (PadCollator(PAD), PackCollator()):
        batch = collate(_items())
        results = []
        for inputs in (batch, keep_labelled_logits(batch)):
            model = _lora()
            out = model(**inputs)
            out.loss.backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
            results.append((out.loss.detach(), out.logits.shape[1], grads))
        (full, full_width, g_full), (kept, kept_width, g_kept) = results
        assert kept_width < full_width
        assert torch.allclose(full, kept, rtol=1e-6, atol=1e-6), (full, kept)
        worst = max(float((g_full[k] - g_kept[k]).abs().max() / g_full[k].abs().max()) for k in g_full)
        assert worst < 1e-5, worst


def test_prompt_learning_keeps_full_logits():
    from peft import PromptTuningConfig, TaskType, get_peft_model

    assert accepts_logits_to_keep(_lora())
    assert accepts_logits_to_keep(_model())
    tuned = get_peft_model(_model(), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3))
    assert not accepts_logits_to_keep(tuned)


def test_support_trainer_steps_match_full_logits(tmp_path):
    """Two accumulated steps (num_items_in_batch path) of SupportTrainer, kept vs full logits: same weights."""
    from transformers import TrainingArguments

    from supporttune.train.trainer import trainer_classes

    SupportTrainer, _ = trainer_classes()
    weights = []
    for only in (False, None):  # None: decided on the first step, True for a LoRA Llama
        model = _lora()
        args = TrainingArguments(output_dir=str(tmp_path / str(only)), per_device_train_batch_size=2,
                                 gradient_accumulation_steps=2, max_steps=2, learning_rate=1e-2, use_cpu=True,
                                 report_to="none", save_strategy="no", remove_unused_columns=False, seed=0,
                                 data_seed=0, disable_tqdm=True, dataloader_num_workers=0)
        trainer = SupportTrainer(model=model, args=args, train_dataset=_items() * 2, data_collator=PadCollator(PAD))
        trainer.global_batch = 4
        trainer.labelled_logits_only = only
        trainer.train()
        assert trainer.labelled_logits_only is (only is None)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    moved = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    start = max(float((weights[0][k] - _lora().state_dict()[k]).abs().max()) for k in weights[0])
    assert moved < 1e-5 < start, (moved, start)
