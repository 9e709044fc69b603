"""The train stage: one PEFT run on one base model, resumable, NaN-guarded, memory-clean.

Why the HF ``Trainer`` and not TRL's ``SFTTrainer``: our one prompt builder (prompts.py) must
produce the exact token ids used later by evaluation and serving, and completion-only labels are
built there. SFTTrainer would re-tokenize with its own template/masking logic (and pull in
``datasets``); the plain Trainer takes our encoded examples as they are, and still gives us
checkpointing, exact resume (optimizer, scheduler, RNG and data order), grad accumulation, mixed
precision and accelerate underneath. PEFT prompt-learning models work with it unchanged (PEFT
prepends the virtual tokens and pads the labels itself).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import torch

from .. import rundir
from ..core import distributed
from ..core.errors import Interrupted, RunFailed, UserError
from ..core.io import check_out_dir, read_json, read_jsonl, write_json, write_jsonl
from ..core.memory import PeakTracker, free_memory
from ..core.provenance import provenance
from ..data.split import PREPARE_REPORT, load_split
from ..models.loading import local_dir, module_names, pick_device, pick_dtype, resolve
from ..prompting.spec import PromptSpec
from ..rundir import CHECKPOINTS, RunRecord
from . import methods
from .collate import EncodedDataset, PadCollator, split_global_batch
from .config import TrainConfig
from .packing import PackCollator, packing_problem
from .publish import publish
from .trainer import (
    NonFiniteLoss,
    install_signal_handlers,
    one_gpu_per_process,
    restore_signal_handlers,
    steady_throughput,
    trainer_classes,
)


def check_run_dir(cfg: TrainConfig) -> None:
    """Refuse to touch an existing run directory unless asked to (--resume / --force); no side effects."""
    out = Path(cfg.out)
    check_out_dir(out)
    if not out.exists() or not any(out.iterdir()) or (cfg.force and not cfg.resume):
        return
    if not cfg.resume:
        raise UserError(f"{out}: run directory exists (use --resume to continue it or --force to start over)")
    previous = rundir.saved_identity(out)
    if previous and previous != cfg.identity():
        raise UserError(f"{out}: was made with a different config; use --force to start over or another --out")


def _check_run_dir(cfg: TrainConfig) -> Path | None:
    """Guard the run directory (clearing it on --force); returns the checkpoint to resume from, if any."""
    check_run_dir(cfg)
    out = Path(cfg.out)
    if out.exists() and any(out.iterdir()) and cfg.force and not cfg.resume:
        shutil.rmtree(out)
    last = _last_checkpoint(out) if out.exists() else None
    return Path(last) if last else None


def validate(cfg: TrainConfig):
    """Everything checkable without loading weights: method, data files, target modules."""
    method = methods.get(cfg.method)
    ref = resolve(cfg.model)
    _check_report_to(cfg.report_to)
    train_rows = load_split(cfg.data, "train")
    val_rows = load_split(cfg.data, "val", required=False)
    check_targets(cfg, method, ref)
    return method, ref, train_rows, val_rows


def check_targets(cfg: TrainConfig, method, ref) -> None:
    """The method's target modules exist in the base model (from a weightless instance; `run` checks every variant)."""
    if method.uses_targets:
        names = module_names(ref)
        missing = [t for t in cfg.targets if t not in names]
        if missing:
            linear = sorted(n for n in names if n.endswith("proj"))
            raise UserError(f"target module(s) {', '.join(missing)} not in {cfg.model} (it has: {', '.join(linear)})")


def _check_report_to(targets: list[str]) -> None:
    import importlib.util

    needs = {"tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",)}
    for target in targets:
        if not any(importlib.util.find_spec(m) for m in needs[target]):
            raise UserError(f"--report-to {target} needs the {needs[target][0]} package (pip install {needs[target][0]})")


def _check_fsdp(cfg: TrainConfig, device: str) -> None:
    if cfg.fsdp and device != "cuda":
        raise UserError("--fsdp needs GPUs (accelerate shards with FSDP on accelerators only); on CPU leave it off (DDP)")


def preflight(cfg: TrainConfig, nproc: int) -> None:
    """Everything a multi-process launch can check in the launching process, before any worker starts."""
    if cfg.objective != "sft":
        raise UserError(f"--objective {cfg.objective} trains in one process here (no --nproc yet)")
    validate(cfg)
    _check_fsdp(cfg, pick_device(cfg.device))
    check_run_dir(cfg)
    split_global_batch(cfg.batch_size, cfg.grad_accum, nproc)


def parallel_plan(cfg: TrainConfig, device: str) -> dict:
    """How the global batch is spread: written to config.yaml and train_summary.json."""
    world = distributed.world_size()
    micro, accum = split_global_batch(cfg.batch_size, cfg.grad_accum, world)
    strategy = "single" if world == 1 and not cfg.fsdp else "fsdp" if cfg.fsdp else "ddp"
    return {"world_size": world, "strategy": strategy, "backend": distributed.backend(device) if world > 1 else None,
            "per_device_batch": micro, "grad_accum_per_device": accum, "global_batch": micro * accum * world}


def _fsdp_args(cfg: TrainConfig, model) -> dict:
    if not cfg.fsdp:
        return {}
    layer = type(model.get_base_model().model.layers[0]).__name__
    # the string form works on transformers 5.x before and after 5.20 (which prefers fsdp=True)
    return {"fsdp": "full_shard auto_wrap",
            "fsdp_config": {"version": 2, "transformer_layer_cls_to_wrap": [layer], "reshard_after_forward": True}}


def _training_args(cfg: TrainConfig, device: str, dtype: torch.dtype, has_val: bool, plan: dict, extra: dict,
                   args_class=None):
    """The Trainer's arguments from the config; ``args_class``: a subclass (TRL's DPOConfig, ...), ``extra`` wins."""
    from transformers import TrainingArguments

    return one_gpu_per_process((args_class or TrainingArguments)(**{**dict(
        output_dir=str(Path(cfg.out) / CHECKPOINTS),
        per_device_train_batch_size=plan["per_device_batch"], per_device_eval_batch_size=max(cfg.batch_size, 8),
        gradient_accumulation_steps=plan["grad_accum_per_device"], num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps or -1, learning_rate=cfg.lr, warmup_steps=cfg.warmup,
        weight_decay=cfg.weight_decay, lr_scheduler_type="linear",
        logging_steps=cfg.logging_steps, logging_first_step=True, logging_nan_inf_filter=False,
        eval_strategy="epoch" if has_val else "no", save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=2, seed=cfg.seed, data_seed=cfg.seed,
        bf16=dtype == torch.bfloat16 and device == "cuda", fp16=dtype == torch.float16 and device == "cuda",
        use_cpu=device == "cpu", report_to=cfg.report_to or "none", run_name=cfg.variant, remove_unused_columns=False,
        train_sampling_strategy="group_by_length" if cfg.group_by_length else "random",
        dataloader_num_workers=0, disable_tqdm=os.environ.get("SUPPORTTUNE_PROGRESS") == "0",
        optim="adamw_torch", ddp_backend=plan["backend"],
        # every trainable parameter (LoRA, virtual tokens) takes part in each step: skip DDP's search
        ddp_find_unused_parameters=False), **extra,
    }))


def train(cfg: TrainConfig, callbacks: list | None = None) -> dict:
    """Train one variant; write the adapter, config.yaml, loss.jsonl and train_summary.json.

    Under a multi-process launch every rank runs this; rank 0 alone touches the run directory.
    A preference objective (dpo, kto, orpo) is trained beside SFT, by preference.py.
    """
    if cfg.objective != "sft":
        from .preference import train_preference

        return train_preference(cfg, callbacks)
    if distributed.is_main():
        check_run_dir(cfg)  # a wrong --out fails before anything is read or loaded
    method, ref, train_rows, val_rows = validate(cfg)
    device = pick_device(cfg.device)
    _check_fsdp(cfg, device)
    if cfg.fsdp and not distributed.launched():
        raise UserError("--fsdp runs under the launcher: give --nproc N (1 works too)")
    distributed.setup(device)
    out = Path(cfg.out)
    resume_from = None
    if distributed.is_main():
        resume_from = _check_run_dir(cfg)
        out.mkdir(parents=True, exist_ok=True)
        local_dir(ref)  # fill the model cache once, before the other ranks read it
    resume_from = distributed.broadcast(resume_from)  # also holds the other ranks back until now
    if cfg.resume and (out / rundir.SUMMARY).is_file():
        return read_json(out / rundir.SUMMARY)
    if cfg.precision == "fp16" and device == "cpu":
        dtype, precision_note = torch.float32, "fp16 asked for, but fp16 training needs a GPU: ran fp32 on CPU"
    else:
        dtype, precision_note = pick_dtype(cfg.precision, device), None
    plan = parallel_plan(cfg, device)
    torch.manual_seed(cfg.seed)
    from ..models.loading import load_model, load_tokenizer

    tokenizer = load_tokenizer(ref)
    spec = prompt_spec(cfg)
    rows = train_rows[: cfg.max_train_samples] if cfg.max_train_samples else train_rows
    index = None
    if spec.retrieve:
        from ..prompting.retrieval import ExemplarIndex

        index = ExemplarIndex(rows, spec.retrieval)  # the training split only: nothing of val/test leaks in
    train_ds = EncodedDataset(rows, tokenizer, spec, cfg.max_length, index, cfg.distract_share, cfg.seed)
    val_ds = EncodedDataset(val_rows[: cfg.max_val_samples] if cfg.max_val_samples else val_rows, tokenizer, spec,
                            cfg.max_length, index)
    if not len(train_ds):
        raise UserError(f"{cfg.data}: no training pair fits max_length={cfg.max_length}")
    peak = PeakTracker(device)
    model = load_model(ref, dtype=dtype, device=device, quantize_4bit=method.quantize_4bit)
    model.config.use_cache = False
    model = method.build(model, cfg, local_dir(ref))
    trainable, total = model.get_nb_trainable_parameters()
    if distributed.is_main():
        _write_record(cfg, out, ref, spec, device, dtype, precision_note, trainable, total, plan)
        if index is not None:
            rundir.save_exemplars(out, index.rows)
        if resume_from is None and (out / rundir.LOSS).exists():
            (out / rundir.LOSS).unlink()
        elif resume_from is not None:
            _truncate_log(out / rundir.LOSS, int(resume_from.name.rsplit("-", 1)[-1]))

    SupportTrainer, RunLog = trainer_classes()
    log = RunLog(out / rundir.LOSS, peak)
    pad = PadCollator(tokenizer.pad_token_id, cfg.max_length if cfg.pad_to_max_length else None)
    packed = cfg.packing and not cfg.pad_to_max_length and packing_problem(method, model) is None
    trainer = SupportTrainer(
        model=model, args=_training_args(cfg, device, dtype, bool(len(val_ds)), plan, _fsdp_args(cfg, model)),
        train_dataset=train_ds, eval_dataset=val_ds if len(val_ds) else None,
        data_collator=PackCollator() if packed else pad, callbacks=[log, *(callbacks or [])])
    trainer.eval_collator = pad  # validation loss sums per sequence over a padded batch (nll_sums)
    trainer.global_batch = plan["global_batch"]
    log.trainer = trainer
    for cb in trainer.callback_handler.callbacks:  # its default folder is inside checkpoints/, deleted at the end
        if type(cb).__name__ == "TensorBoardCallback" and getattr(cb, "logging_dir", None) is None:
            cb.logging_dir = str(out / rundir.TENSORBOARD)
    if cfg.fsdp and not trainer.is_fsdp_enabled:
        raise RunFailed("--fsdp was asked for, but the Trainer did not enable FSDP (launch with --nproc)")
    result, wall = run_training(trainer, log, out, resume_from, "lower --lr, or check the data")
    final_val = None
    if distributed.is_main() and (out / rundir.LOSS).exists():
        logged = [r for r in rundir.loss_log(out) if "val_loss" in r]
        final_val = logged[-1]["val_loss"] if logged and logged[-1]["step"] == trainer.state.global_step else None
    final_val = distributed.broadcast(final_val)
    if final_val is None and len(val_ds):
        final_val = trainer.evaluate()["eval_loss"]  # every rank takes part; RunLog logs it on rank 0
    _save_adapter(trainer, model, cfg, out)
    real_tokens = sum(distributed.all_gather(trainer.real_tokens))
    steady = steady_throughput(log.marks, trainer.real_tokens)
    # ranks agree on logged steps; the unlogged tail is rank-local (and pre-scaled by N): average
    loss_mean = sum(distributed.all_gather(result.training_loss)) / distributed.world_size()
    peaks = distributed.all_gather(peak.result())
    summary = None
    if distributed.is_main():
        losses = [r["train_loss"] for r in rundir.loss_log(out) if "train_loss" in r]
        summary = {
            "variant": cfg.variant, "method": cfg.method, "model": cfg.model, "device": device, "dtype": str(dtype).split(".")[-1],
            "trainable_params": trainable, "total_params": total, "trainable_pct": round(100 * trainable / total, 4),
            "steps": trainer.state.global_step, "epochs": round(trainer.state.epoch or 0, 4),
            "train_examples": len(train_ds), "skipped_too_long": train_ds.skipped + val_ds.skipped,
            "val_examples": len(val_ds), "first_train_loss": losses[0] if losses else None,
            "final_train_loss": losses[-1] if losses else None, "train_loss_mean": loss_mean,
            "final_val_loss": final_val, "wall_time_s": round(wall, 2),
            "real_tokens": real_tokens, "tokens_per_s": round(real_tokens / wall, 1) if wall else None, **steady,
            "adapter_bytes": sum(f.stat().st_size for f in out.glob("adapter_model.*")),
            "resumed_from": str(resume_from) if resume_from else None, "precision_note": precision_note,
            "parallel": plan, "packed": packed, **{k: max(p[k] for p in peaks) for k in peaks[0]},  # peaks: the largest rank's
        }
        write_json(out / rundir.SUMMARY, summary)
        shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
        publish(out)  # a real README card and weight files others can read
    summary = distributed.broadcast(summary)  # and the other ranks wait until the run directory is final
    del trainer, model
    free_memory()
    return summary


def _save_adapter(trainer, model, cfg: TrainConfig, out: Path) -> None:
    """The adapter alone, once. Under FSDP the Trainer gathers the sharded weights first."""
    if cfg.fsdp:
        trainer.save_model(str(out))
        if distributed.is_main():
            (out / "training_args.bin").unlink(missing_ok=True)
    elif distributed.is_main():
        model.save_pretrained(out)


def prompt_spec(cfg: TrainConfig) -> PromptSpec:
    """The prompt a run trains with; saved in its record, so inference rebuilds exactly this prompt."""
    return cfg.prompt_spec(sentiment=_data_sentiment(cfg.data))


def _write_record(cfg, out, ref, spec, device, dtype, note, trainable, total, plan) -> None:
    RunRecord(train=cfg.resolved(), identity=cfg.identity(), config_hash=cfg.digest(), parallel=plan,
              model={"name": ref.name, "kind": ref.kind, "location": ref.location}, prompt=spec.as_dict(),
              device=device, dtype=str(dtype).split(".")[-1], precision_note=note, trainable_params=trainable,
              total_params=total, **provenance({s: Path(cfg.data) / f"{s}.jsonl" for s in ("train", "val", "test")})
              ).write(out)


def _data_sentiment(data: Path) -> str:
    report = Path(data) / PREPARE_REPORT
    if report.is_file():
        return read_json(report).get("config", {}).get("sentiment", "vader")
    return "vader"



def run_training(trainer, log, out: Path, resume_from, hint: str):
    """``trainer.train()`` with Ctrl-C/SIGTERM finishing the step and the NaN guard: (result, wall seconds).

    Shared by SFT and the preference objectives, so both stop, say and resume alike.
    """
    handlers = install_signal_handlers(log)
    t0 = time.perf_counter()
    try:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    except NonFiniteLoss as e:
        raise RunFailed(f"{e}; stopped. Last good checkpoint: {_last_checkpoint(out) or 'none yet'} ({hint})") from None
    finally:
        restore_signal_handlers(handlers)
    wall = time.perf_counter() - t0
    if log.interrupted:
        raise Interrupted(f"interrupted at step {trainer.state.global_step}; checkpoint saved in {out / CHECKPOINTS}. "
                          f"Rerun with --resume to continue.")
    return result, wall

def _last_checkpoint(out: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    d = out / CHECKPOINTS
    return get_last_checkpoint(str(d)) if d.is_dir() else None


def _truncate_log(path: Path, step: int) -> None:
    """On resume, drop log rows written after the checkpoint we restart from."""
    if path.is_file():
        rows = [r for r in read_jsonl(path) if r.get("step", 0) <= step]
        write_jsonl(path, rows)
