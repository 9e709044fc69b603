"""Padding-free packing (train/packing.py) gives the padded batch's loss, logits and gradients.

The fast tests build a 2-layer, 32-wide random Llama from a LlamaConfig (no tokenizer, no files).
The slow one measures tokens/s of a few LoRA steps, padded vs packed, on the built-in data's lengths
(``pytest -q -s -m slow tests/test_packing.py`` prints the numbers).
"""

from __future__ import annotations

import time

import pytest
import torch
from tinyllama import LENGTHS, PAD, VOCAB
from tinyllama import tiny_items as _items
from tinyllama import tiny_llama as _model

from supporttune.core.errors import UserError
from supporttune.train import methods
from supporttune.train.collate import PadCollator
from supporttune.train.packing import (
    PackCollator,
    pack_by_tokens,
    packing_problem,
    padding_share,
    real_tokens,
    token_budget_batches,
)


def _nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(summed NLL of the next-token predictions over labelled tokens, how many) for one batch."""
    shift_logits, shift_labels = logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1)
    total = torch.nn.functional.cross_entropy(shift_logits.float(), shift_labels, ignore_index=-100, reduction="sum")
    return total, int((shift_labels != -100).sum())


def test_pack_collator_lays_sequences_end_to_end():
    items = _items()
    batch = PackCollator()(items)
    n = sum(len(x["input_ids"]) for x in items)
    assert set(batch) == {"input_ids", "labels", "position_ids"}  # no attention_mask: that turns packing on
    assert batch["input_ids"].shape == batch["position_ids"].shape == (1, n)
    assert batch["input_ids"][0].tolist() == [t for x in items for t in x["input_ids"]]
    assert batch["position_ids"][0].tolist() == [p for x in items for p in range(len(x["input_ids"]))]
    # every sequence's first label is -100, so no sequence learns to predict the next one's start
    starts = [0, 9, 13, 29]
    assert all(batch["labels"][0, s] == -100 for s in starts)
    assert real_tokens(batch) == n == real_tokens(PadCollator(PAD)(items))
    with pytest.raises(ValueError):
        PackCollator()([{"input_ids": [], "labels": []}])


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_and_logits_equal_padded(attn):
    model = _model(attn).eval()
    items = _items()
    padded, packed = PadCollator(PAD)(items), PackCollator()(items)
    with torch.no_grad():
        pad_out = model(**padded)
        pack_out = model(**packed)
    total_pad, count_pad = _nll(pad_out.logits, padded["labels"])
    total_pack, count_pack = _nll(pack_out.logits, packed["labels"])
    assert count_pad == count_pack == sum(t - p for p, t in LENGTHS)
    assert abs(float(total_pad) - float(total_pack)) < 1e-4 * count_pad
    assert abs(float(pad_out.loss) - float(pack_out.loss)) < 1e-5  # HF's own loss: sum / labelled tokens
    # each packed sequence's logits are those of the sequence run alone: nothing leaks across boundaries
    start = 0
    with torch.no_grad():
        for item in items:
            n = len(item["input_ids"])
            alone = model(input_ids=torch.tensor([item["input_ids"]])).logits[0]
            assert torch.allclose(pack_out.logits[0, start:start + n], alone, atol=1e-5), f"sequence at {start}"
            start += n


def test_kv_cache_breaks_packing_and_is_refused():
    """The guard is real: with use_cache on, transformers skips the packed-sequence mask."""
    model = _model(use_cache=True).eval()
    items = _items()
    with torch.no_grad():
        packed = model(**PackCollator()(items)).logits[0]
        second = model(input_ids=torch.tensor([items[1]["input_ids"]])).logits[0]
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    assert not torch.allclose(packed[n0:n0 + n1], second, atol=1e-3)  # attention leaked from sequence 0
    assert "use_cache" in packing_problem(methods.get("lora"), model)
    assert packing_problem(methods.get("lora"), _model()) is None


def test_lora_gradients_equal_padded():
    from peft import LoraConfig, get_peft_model

    grads = []
    for collate in (PadCollator(PAD), PackCollator()):
        config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                            init_lora_weights=False)  # random B too, so every LoRA weight gets a gradient
        torch.manual_seed(2)
        model = get_peft_model(_model(), config).train()
        model(**collate(_items())).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    padded, packed = grads
    assert padded.keys() == packed.keys() and len(padded) == 12
    worst = max(float((padded[k] - packed[k]).abs().max() / padded[k].abs().max()) for k in padded)
    assert worst < 1e-5, worst
    assert all(float(padded[k].abs().max()) > 0 for k in padded)


def test_hf_trainer_steps_match_padded(tmp_path):
    """Two accumulated LoRA steps through HF's Trainer (its num_items_in_batch loss path): same weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    items = _items() * 2
    weights = []
    for name, collate in (("padded", PadCollator(PAD)), ("packed", PackCollator())):
        torch.manual_seed(5)
        model = get_peft_model(_model(), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                    init_lora_weights=False))
        args = TrainingArguments(output_dir=str(tmp_path / name), per_device_train_batch_size=2,
                                 gradient_accumulation_steps=2, max_steps=2, learning_rate=1e-2, use_cpu=True,
                                 report_to="none", save_strategy="no", remove_unused_columns=False, seed=0,
                                 data_seed=0, train_sampling_strategy="sequential", disable_tqdm=True,
                                 dataloader_num_workers=0)
        Trainer(model=model, args=args, train_dataset=items, data_collator=collate).train()
        weights.append({n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    moved = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    assert moved < 1e-5, moved


def test_registry_refuses_packing_for_prompt_methods():
    flags = {name: methods.get(name).supports_packing for name in methods.REGISTRY}
    assert flags == {"lora": True, "qlora": True, "dora": True, "ia3": True,
                     "prompt-tuning": False, "prefix-tuning": False}
    assert "virtual tokens" in packing_problem(methods.get("prompt-tuning"), _model())


def test_prompt_tuning_really_cannot_pack():
    """Why the flag is False: peft drops position_ids for prompt tuning, so sequences see each other."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    torch.manual_seed(3)
    model = get_peft_model(_model(), PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=3)).eval()
    items = _items()
    n0, n1 = len(items[0]["input_ids"]), len(items[1]["input_ids"])
    with torch.no_grad(), pytest.warns(UserWarning, match="Position ids are not supported"):
        packed = model(**PackCollator()(items)).logits[0, 3:]  # after the virtual tokens
    with torch.no_grad():
        second = model(input_ids=torch.tensor([items[1]["input_ids"]])).logits[0, 3:]
    assert not torch.allclose(packed[n0:n0 + n1], second, atol=1e-3)


def test_pack_by_tokens_is_a_deterministic_partition():
    g = torch.Generator().manual_seed(4)
    lengths = torch.randint(5, 200, (500,), generator=g).tolist()
    bins = pack_by_tokens(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(500))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert len(bins) <= 1.1 * sum(lengths) / 512 + 1  # first-fit fills bins well
    assert bins == pack_by_tokens(lengths, 512)
    epoch = token_budget_batches(lengths, 512, seed=7, epoch=1)
    assert epoch == token_budget_batches(lengths, 512, seed=7, epoch=1)
    assert epoch != token_budget_batches(lengths, 512, seed=7, epoch=2)
    assert sorted(i for b in epoch for i in b) == list(range(500))
    with pytest.raises(UserError, match="more than the packing budget"):
        pack_by_tokens([10, 600], 512)
    with pytest.raises(UserError):
        pack_by_tokens([10], 0)
    assert padding_share([[0, 1]], [3, 5]) == pytest.approx(0.2)


def _steps(model, batches, collate, items) -> tuple[float, int]:
    """Seconds and real tokens of one optimizer step per micro-batch (the first is warm-up)."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    tokens, started = 0, None
    for k, b in enumerate(batches):
        if k == 1:
            started, tokens = time.perf_counter(), 0
        batch = collate([items[i] for i in b])
        model(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
        tokens += real_tokens(batch)
    return time.perf_counter() - started, tokens


@pytest.mark.slow
def test_packed_throughput_on_builtin_lengths(tiny_model_dir, builtin_data):
    """tokens/s of LoRA steps on the tiny model, padded (length-grouped, as training does) vs packed."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from supporttune.data.split import load_split
    from supporttune.prompting.spec import PromptSpec
    from supporttune.train.collate import EncodedDataset, GlobalOrderSampler

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ds = EncodedDataset(load_split(builtin_data, "train"), tok, PromptSpec(), 512)
    lengths = [len(x["input_ids"]) for x in ds.items]
    micro, steps = 4, 8
    for group in (True, False):
        order = list(GlobalOrderSampler(lengths, micro, seed=0, group_by_length=group))
        batches = [order[i:i + micro] for i in range(0, len(order), micro)]
        share = padding_share(batches, lengths)
        rates = {}
        for name, collate in (("padded", PadCollator(tok.pad_token_id)), ("packed", PackCollator())):
            base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
            base.config.use_cache = False
            model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
            seconds, tokens = _steps(model.train(), batches[:steps + 1], collate, ds.items)
            rates[name] = tokens / seconds
        print(f"\ngroup_by_length={group}: {len(lengths)} pairs, mean {sum(lengths) / len(lengths):.0f} tokens, "
              f"padding share {share:.1%}; real tokens/s padded {rates['padded']:.0f}, packed {rates['packed']:.0f} "
              f"(x{rates['packed'] / rates['padded']:.2f})")
        assert 0 <= share < 1
