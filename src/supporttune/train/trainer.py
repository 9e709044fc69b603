"""The pieces supporttune adds to the HF ``Trainer``: its subclass and the run-log callback.

- ``SupportTrainer``: counts real (non-pad) tokens, stops on a non-finite loss, computes logits
  only at labelled positions (``logitkeep``), draws one data
  order whatever the number of processes (``GlobalOrderSampler``), and validates with a
  token-weighted loss sharded over the ranks;
- ``RunLog``: loss.jsonl as it goes (rank 0), peak memory, per-step clock for steady throughput,
  and checkpoint-then-stop on SIGINT/SIGTERM, agreed between ranks so all stop at one step (and
  said on the terminal at once: Ctrl-C with no feedback reads as a hang); the last step's loss is
  always logged, so short runs have real first and final losses.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import torch

from ..core import distributed
from ..core.io import append_jsonl
from ..core.memory import PeakTracker
from .collate import GlobalOrderSampler, nll_sums
from .logitkeep import accepts_logits_to_keep, keep_labelled_logits
from .packing import real_tokens as count_real_tokens


class NonFiniteLoss(Exception):
    pass


def trainer_classes():
    """Build the Trainer subclass and callbacks lazily (transformers is a heavy import)."""
    from transformers import Trainer, TrainerCallback

    class SupportTrainer(Trainer):
        real_tokens = 0
        global_batch = 1
        eval_collator = None  # the padded collator (training batches may be packed)
        eval_seconds = 0.0  # validation time inside train(), left out of the steady throughput
        labelled_logits_only = None  # decided on the first step (logitkeep.accepts_logits_to_keep)

        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            """Token-weighted validation loss, sharded over the ranks (HF's averages per-batch means,
            which changes with the batch split and the number of processes)."""
            started = time.perf_counter()
            ds = eval_dataset if eval_dataset is not None else self.eval_dataset
            mine = [ds[i] for i in distributed.shard(list(range(len(ds))))]
            size = self.args.per_device_eval_batch_size
            forwards = max(distributed.all_gather(-(-len(mine) // size)))
            model = self.model  # not the DDP wrapper: no collectives in here (FSDP: equal forward counts)
            was_training = model.training
            model.eval()
            _keep_4bit_kernels(model)
            with torch.no_grad(), self.compute_loss_context_manager():
                sums = distributed.all_gather(nll_sums(model, mine, self.eval_collator or self.data_collator, size,
                                                           self.args.device, forwards))
            model.train(was_training)
            metrics = {f"{metric_key_prefix}_loss": sum(s[0] for s in sums) / max(1, sum(s[1] for s in sums))}
            self.log(metrics)
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
            self.eval_seconds += time.perf_counter() - started
            return metrics

        def _get_train_sampler(self, train_dataset=None):
            ds = train_dataset or self.train_dataset
            return GlobalOrderSampler([len(x["input_ids"]) for x in ds], self.global_batch, self.args.data_seed,
                                      self.args.train_sampling_strategy == "group_by_length",
                                      self.args.per_device_train_batch_size, distributed.world_size())

        def training_step(self, model, inputs, num_items_in_batch=None):
            self.real_tokens += count_real_tokens(inputs)
            if self.labelled_logits_only is None:
                self.labelled_logits_only = accepts_logits_to_keep(self.model)
            if self.labelled_logits_only:  # same loss, no vocabulary projection of prompt tokens
                inputs = keep_labelled_logits(inputs)
            loss = super().training_step(model, inputs, num_items_in_batch)
            if not torch.isfinite(loss).all():
                raise NonFiniteLoss(f"loss became {loss.item()} at step {self.state.global_step + 1}")
            return loss

    class RunLog(TrainerCallback):
        """loss.jsonl as it goes, peak memory sampling, and checkpoint-then-stop on SIGINT/SIGTERM."""

        def __init__(self, path: Path, peak: PeakTracker):
            self.path, self.peak, self.interrupted = path, peak, False
            self.trainer = None  # set once the trainer exists: its token count is sampled per step
            self.marks: list[tuple[float, int]] = []  # (training clock, this rank's real tokens) per step end

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero:
                return
            logs = logs or {}
            row = {"step": state.global_step, "epoch": round(state.epoch or 0, 4)}
            if "loss" in logs:
                row.update(train_loss=logs["loss"], lr=logs.get("learning_rate"))
            if "eval_loss" in logs:
                row["val_loss"] = logs["eval_loss"]
            if len(row) > 2:
                append_jsonl(self.path, row)

        def on_step_end(self, args, state, control, **kw):
            if state.max_steps and state.global_step >= state.max_steps:
                control.should_log = True  # the last step's loss, whatever logging_steps (short runs had none)
            self.peak.sample()
            if self.trainer is not None:  # the clock stands still while validating
                self.marks.append((time.perf_counter() - self.trainer.eval_seconds, self.trainer.real_tokens))
            # a signal reaches the ranks at different moments: agree, so all stop at the same step
            self.interrupted = distributed.any_rank(self.interrupted)
            if self.interrupted:
                control.should_save = True
                control.should_training_stop = True

    return SupportTrainer, RunLog


def one_gpu_per_process(args):
    """Keep a process that was not launched with ``--nproc`` on one GPU.

    Outside a launch, HF's Trainer sets ``n_gpu`` to every visible GPU and wraps the model in
    torch's DataParallel; for a 4-bit base it skips the wrapping but still multiplies the loss by
    ``n_gpu``. On a 2-GPU host that doubled QLoRA's loss and gradients and silently made "one GPU"
    LoRA runs DataParallel over both (found by ``bench --scaling`` on 2 x H200). Several GPUs are
    what ``--nproc N`` (DDP or FSDP, one process per GPU) is for.
    """
    if not distributed.launched() and args.n_gpu > 1:
        args._n_gpu = 1  # the Trainer does the same itself for model-parallel models
    return args


def _keep_4bit_kernels(model) -> None:
    """Leave bitsandbytes' 4-bit layers in training mode during validation.

    On CPUs with AVX512-BF16, bnb repacks a Linear4bit's weights for its inference kernel the first
    time it runs in eval mode, and training then goes on with the repacked layout: the loss curve
    after the first validation depends on that (it no longer matched across process counts). The
    layers hold no dropout, so their training flag changes nothing else.
    """
    for module in model.modules():
        if type(module).__name__ == "Linear4bit":
            module.train()


def steady_throughput(marks: list[tuple[float, int]], tokens_now: int) -> dict:
    """Real tokens/s over all ranks after the first steps (warm-up, allocator growth) are left out.

    ``tokens_per_s`` divides by the whole ``train()`` wall time (start-up, evaluation, saving included);
    this one times optimizer steps only (validation inside training is subtracted), which is what
    scaling across GPUs is judged by.
    """
    skip = max(1, min(3, len(marks) // 4))
    if len(marks) <= skip:
        return {"steady_tokens_per_s": None}
    (t0, before), (t1, _) = marks[skip - 1], marks[-1]
    tokens = sum(distributed.all_gather(tokens_now - before))
    return {"steady_tokens_per_s": round(tokens / (t1 - t0), 1) if t1 > t0 else None, "steady_from_step": skip + 1}


STOPPING = ("stopping after this step and saving a checkpoint (`--resume` continues from it); "
            "press Ctrl-C again to quit without saving")


def install_signal_handlers(log, say=None) -> dict:
    """Ctrl-C / SIGTERM: finish the current step, save, stop (``RunLog``). Says so once, on rank 0.

    A second Ctrl-C in a single process quits at once (without a checkpoint of the current step);
    launched ranks keep to the agreed stop, so that all of them save the same step.
    """
    import sys

    say = say or (lambda line: print(line, file=sys.stderr, flush=True))

    def handler(signum, frame):
        if log.interrupted and signum == signal.SIGINT and not distributed.launched():
            raise KeyboardInterrupt
        if not log.interrupted and distributed.is_main():
            say(f"\nsupporttune: {signal.Signals(signum).name}: {STOPPING}")
        log.interrupted = True

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not in the main thread
            pass
    return previous


def restore_signal_handlers(previous: dict) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)
