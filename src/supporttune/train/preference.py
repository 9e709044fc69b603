"""Preference training (``--objective dpo|kto|orpo``) of a finished SFT run's adapter, with TRL's trainers.

Beside the SFT stage, not inside it: the losses are TRL's (``DPOTrainer``, ``KTOTrainer``,
``trl.experimental.orpo.ORPOTrainer`` at trl 1.16); what is ours is what makes the child an
ordinary run directory:

* the policy is the parent's adapter loaded trainable on the parent's base (the child inherits the
  base, method, adapter shape, prompt spec and exemplar index: evaluate/chat/serve/export/rate read
  it like any run);
* the reference is the same SFT adapter, frozen: given a PeftModel and no ``ref_model``, TRL 1.16
  copies the trained ("default") adapter into a second adapter named "ref" and switches to it for
  the reference log-probs (ORPO has no reference);
* the token ids come from prefdata.py (THE prompt builder, SFT's reply encoding), not TRL's tokenizer;
* Ctrl-C, resume and the NaN guard are SFT's (``RunLog``, ``install_signal_handlers``, ``NonFiniteLoss``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from .. import rundir
from ..core.errors import UserError
from ..core.io import read_json, sha256_file, write_json
from ..core.memory import PeakTracker, free_memory
from ..core.provenance import provenance
from ..prompting.builder import PromptBuilder
from ..prompting.spec import PromptOptions
from ..rundir import CHECKPOINTS, RunRecord
from . import methods
from .collate import GlobalOrderSampler
from .config import TrainConfig
from .prefdata import encode, read_preferences, split_counts
from .stage import _check_run_dir, _training_args, _truncate_log, check_run_dir, parallel_plan, run_training
from .trainer import NonFiniteLoss, trainer_classes

# what a child takes from its parent: the adapter it continues and the prompt it was trained with
INHERITED = ("model", "method", "r", "alpha", "dropout", "targets", "virtual_tokens", "prompt_init", "init_text",
             *PromptOptions.model_fields)


def inherit(cfg: TrainConfig, parent: RunRecord) -> TrainConfig:
    """The child's config: the parent's base, adapter and prompt; its data unless --data was given."""
    doc = {**cfg.resolved(), **{k: parent.train[k] for k in INHERITED if k in parent.train}}
    if "data" not in cfg.model_fields_set:
        doc["data"] = parent.train.get("data", doc["data"])
    if "lr" not in cfg.model_fields_set:
        doc["lr"] = None  # the default follows the parent's method
    return TrainConfig(**doc)


def validate_preference(cfg: TrainConfig) -> tuple[TrainConfig, RunRecord, list]:
    """Everything checkable before a model loads: the parent run, the method, the preference file."""
    parent = rundir.read_record(cfg.from_run)  # a finished run (its adapter saved), or one line
    method = methods.get(parent.method)
    if not method.supports_preference:
        raise UserError(f"{cfg.from_run}: a {parent.method} run cannot be preference-trained here (virtual tokens "
                        f"have no frozen-copy reference in TRL); use a lora/qlora/dora/ia3 run")
    if cfg.objective == "kto" and cfg.batch_size < 2:
        raise UserError("--objective kto needs --batch-size of at least 2 (its KL estimate pairs each reply "
                        "with another one of its micro-batch)")
    child = inherit(cfg, parent)
    rows = read_preferences(child.preferences, child.objective, parent.spec, child.data)
    return child, parent, rows


def _trainer_class(objective: str):
    """TRL's trainer for the objective, with our ids, data order, token count and NaN guard."""
    if objective == "dpo":
        from trl import DPOConfig as Args
        from trl import DPOTrainer as Base
    elif objective == "kto":
        from trl import KTOConfig as Args
        from trl import KTOTrainer as Base
    else:
        import warnings

        with warnings.catch_warnings():  # "experimental" is the module's own warning, said once in the docs
            warnings.simplefilter("ignore")
            from trl.experimental.orpo import ORPOConfig as Args
            from trl.experimental.orpo import ORPOTrainer as Base

    class PreferenceTrainer(Base):
        real_tokens = 0
        global_batch = 1
        eval_seconds = 0.0  # RunLog's clock subtracts validation (none here)

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            """The ids are ready (prefdata.encode); KTO adds its KL completions as TRL does (the batch rotated by 1)."""
            if objective == "kto" and self.calculate_KL:
                def rotate(batch):
                    return {"KL_completion_ids": [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]}
                dataset = dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)
            return dataset

        def tokenize_row(self, feature, model=None):
            """ORPO: sequences of our ids (prompt masked in the labels)."""
            prompt = feature["prompt_ids"]
            out = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
            for side in ("chosen", "rejected"):
                reply = feature[f"{side}_ids"]
                out[f"{side}_input_ids"] = prompt + reply
                out[f"{side}_attention_mask"] = [1] * (len(prompt) + len(reply))
                out[f"{side}_labels"] = [-100] * len(prompt) + reply
            return out

        def _get_train_sampler(self, train_dataset=None):
            if objective == "kto":  # KTO's KL pairing needs TRL's fixed order (the rows were shuffled by seed)
                return super()._get_train_sampler(train_dataset)
            ds = train_dataset or self.train_dataset
            lengths = [len(p) + max(len(c), len(r)) for p, c, r in
                       zip(ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"])]
            return GlobalOrderSampler(lengths, self.global_batch, self.args.data_seed, False)

        def training_step(self, model, inputs, num_items_in_batch=None):
            mask = inputs.get("attention_mask", inputs.get("chosen_attention_mask"))
            self.real_tokens += int(mask.sum()) if mask is not None else 0
            loss = super().training_step(model, inputs, num_items_in_batch)
            if not torch.isfinite(loss).all():
                raise NonFiniteLoss(f"loss became {loss.item()} at step {self.state.global_step + 1}")
            return loss

    return PreferenceTrainer, Args


def load_policy(method, model, cfg: TrainConfig, parent: Path):
    """The parent's adapter, trainable, on ``model`` (the base prepared as the method's builder prepares it)."""
    from peft import PeftModel

    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if method.quantize_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return PeftModel.from_pretrained(model, str(parent), is_trainable=True)


def _dataset(items: list[dict], seed: int):
    from datasets import Dataset

    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    return Dataset.from_list([items[i] for i in order])


def train_preference(cfg: TrainConfig, callbacks: list | None = None) -> dict:
    """Train a preference child of ``cfg.from_run``; writes the run directory as SFT does (+ objective, parent, digest)."""
    from ..models.loading import load_model, load_tokenizer, pick_device, pick_dtype

    cfg, parent, rows = validate_preference(cfg)
    check_run_dir(cfg)
    out, parent_dir = Path(cfg.out), Path(cfg.from_run)
    resume_from = _check_run_dir(cfg)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.resume and (out / rundir.SUMMARY).is_file():
        return read_json(out / rundir.SUMMARY)
    device = pick_device(cfg.device)
    dtype = pick_dtype(cfg.precision if not (cfg.precision == "fp16" and device == "cpu") else "fp32", device)
    plan = parallel_plan(cfg, device)
    torch.manual_seed(cfg.seed)
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")  # TRL pings the hub when a trainer starts
    ref, spec, method = parent.model_ref, parent.spec, methods.get(parent.method)
    tokenizer = load_tokenizer(ref)
    index = rundir.exemplar_index(parent_dir, spec)
    enc = encode(rows, PromptBuilder(tokenizer, spec, index), cfg.objective, cfg.max_length)
    if not enc.items:
        raise UserError(f"{cfg.preferences}: no preference row fits max_length={cfg.max_length}")
    peak = PeakTracker(device)
    model = load_model(ref, dtype=dtype, device=device, quantize_4bit=method.quantize_4bit)
    model.config.use_cache = False
    policy = load_policy(method, model, cfg, parent_dir)
    trainable, total = policy.get_nb_trainable_parameters()
    digest = sha256_file(cfg.preferences)
    RunRecord(train=cfg.resolved(), identity=cfg.identity(), config_hash=cfg.digest(), parallel=plan,
              model={"name": ref.name, "kind": ref.kind, "location": ref.location}, prompt=spec.as_dict(),
              device=device, dtype=str(dtype).split(".")[-1], trainable_params=trainable, total_params=total,
              objective=cfg.objective,
              parent={"run": str(parent_dir), "variant": parent.variant, "config_hash": parent.config_hash},
              preferences={"path": str(cfg.preferences), "sha256": digest, "rows": len(rows),
                           "splits": split_counts(rows), "items": len(enc.items)},
              **provenance({s: Path(cfg.data) / f"{s}.jsonl" for s in ("train", "val", "test")})).write(out)
    if index is not None:
        shutil.copyfile(parent_dir / rundir.EXEMPLARS, out / rundir.EXEMPLARS)
    if resume_from is None and (out / rundir.LOSS).exists():
        (out / rundir.LOSS).unlink()
    elif resume_from is not None:
        _truncate_log(out / rundir.LOSS, int(resume_from.name.rsplit("-", 1)[-1]))

    Trainer, Args = _trainer_class(cfg.objective)
    extra = {"beta": cfg.beta, "max_length": cfg.max_length, "eval_strategy": "no",
             "train_sampling_strategy": "sequential" if cfg.objective == "kto" else "random"}
    if cfg.objective != "orpo":
        extra["precompute_ref_log_probs"] = False
    if cfg.sft_weight:  # RPO: DPO's sigmoid loss + sft_weight x the chosen reply's NLL
        extra.update(loss_type=["sigmoid", "sft"], loss_weights=[1.0, cfg.sft_weight])
    args = _training_args(cfg, device, dtype, False, plan, extra, args_class=Args)
    _, RunLog = trainer_classes()
    log = RunLog(out / rundir.LOSS, peak)
    tokenizer.padding_side = "left"  # TRL's requirement; our collators pad by ids (right), this only silences it
    trainer = Trainer(model=policy, args=args, train_dataset=_dataset(enc.items, cfg.seed), processing_class=tokenizer,
                      callbacks=[log, *(callbacks or [])])
    trainer.global_batch = plan["global_batch"]
    log.trainer = trainer
    result, wall = run_training(trainer, log, out, resume_from, "lower --lr or --beta, or check the preference data")
    policy.save_pretrained(out, selected_adapters=["default"])  # the child adapter; not TRL's frozen "ref" copy
    losses = [r["train_loss"] for r in rundir.loss_log(out) if "train_loss" in r]
    summary = {
        "variant": cfg.variant, "method": cfg.method, "model": cfg.model, "device": device,
        "dtype": str(dtype).split(".")[-1], "objective": cfg.objective, "parent": parent.variant,
        "trainable_params": trainable, "total_params": total, "trainable_pct": round(100 * trainable / total, 4),
        "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 4),
        "train_examples": len(enc.items), "skipped_too_long": enc.skipped, "prompts_rebuilt": enc.rebuilt,
        "preference_splits": split_counts(rows), "val_examples": 0,
        "first_train_loss": losses[0] if losses else None, "final_train_loss": losses[-1] if losses else None,
        "train_loss_mean": result.training_loss, "final_val_loss": None, "wall_time_s": round(wall, 2),
        "real_tokens": trainer.real_tokens, "tokens_per_s": round(trainer.real_tokens / wall, 1) if wall else None,
        "adapter_bytes": sum(f.stat().st_size for f in out.glob("adapter_model.*")),
        "resumed_from": str(resume_from) if resume_from else None, "parallel": plan, **peak.result(),
    }
    write_json(out / rundir.SUMMARY, summary)
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
    del trainer, policy, model
    free_memory()
    return summary
