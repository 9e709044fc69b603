"""Multi-process runs on the CPU (gloo): same results as one process, rank-0 writes, clear failures.

The launched tests run the real command (`python -m supporttune ... --nproc 2`); the one-process
reference runs in-process with the same config, so each comparison costs one launch.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from supporttune.train.collate import GlobalOrderSampler, split_global_batch
from supporttune.evaluate.config import EvalConfig
from supporttune.train.config import TrainConfig
from supporttune.core.errors import UserError
from supporttune.evaluate.stage import evaluate
from supporttune.train.stage import train

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize("batch,accum,world,expected", [
    (4, 2, 1, (4, 2)), (4, 2, 2, (4, 1)), (4, 4, 2, (4, 2)), (16, 1, 2, (8, 1)), (6, 1, 3, (2, 1)), (4, 3, 2, (3, 2)),
])
def test_global_batch_is_kept_whatever_the_number_of_processes(batch, accum, world, expected):
    micro, per_rank_accum = split_global_batch(batch, accum, world)
    assert (micro, per_rank_accum) == expected
    assert micro * per_rank_accum * world == batch * accum and micro <= batch


def test_a_global_batch_that_cannot_be_split_is_a_user_error():
    with pytest.raises(UserError, match=r"3 x 1 = 3 sequences per step.*over 2 processes"):
        split_global_batch(3, 1, 2)


@pytest.mark.parametrize("group", [True, False])
@pytest.mark.parametrize("world,micro,accum", [(2, 4, 1), (2, 2, 2), (4, 2, 1)])
def test_each_step_sees_the_same_sequences_with_1_or_n_processes(group, world, micro, accum):
    """What accelerate does to our sampler: deal micro-batches to the ranks in turn."""
    lengths = [int(x) for x in torch.randint(5, 200, (53,), generator=torch.Generator().manual_seed(1))]
    global_batch = world * micro * accum
    sampler = GlobalOrderSampler(lengths, global_batch, seed=7, group_by_length=group)
    sampler.set_epoch(3)
    order = list(sampler)
    assert len(order) == 48 and len(set(order)) == 48  # a full number of global batches, no repeats
    single = [order[i:i + global_batch] for i in range(0, len(order), global_batch)]  # 1 process: micro x accum
    micro_batches = [order[i:i + micro] for i in range(0, len(order), micro)]
    per_rank = [micro_batches[r::world] for r in range(world)]
    for step, expected in enumerate(single):
        got = [i for r in range(world) for mb in per_rank[r][step * accum:(step + 1) * accum] for i in mb]
        assert sorted(got) == sorted(expected)
    sampler.set_epoch(4)
    assert list(sampler) != order  # a new order each epoch


def _dealt(lengths, global_batch, micro, world, group=True, epoch=0):
    """Per step, per rank: the micro-batches accelerate hands each rank from the sampler's order."""
    sampler = GlobalOrderSampler(lengths, global_batch, seed=5, group_by_length=group, micro_batch=micro, world=world)
    sampler.set_epoch(epoch)
    order = list(sampler)
    micro_batches = [order[i:i + micro] for i in range(0, len(order), micro)]
    per_step = global_batch // micro
    return [[micro_batches[s + r::world][:per_step // world] for r in range(world)]
            for s in range(0, len(micro_batches), per_step)]


LENGTHS = [int(x) for x in torch.randint(8, 400, (203,), generator=torch.Generator().manual_seed(3))]


@pytest.mark.parametrize("group", [True, False])
def test_balanced_dealing_keeps_every_steps_sequences_whatever_the_number_of_processes(group):
    """World sizes 1, 2, 4 with one global batch (32): the same sequences per step, in the same step order."""
    reference = None
    for world, micro in ((1, 8), (2, 8), (4, 8), (4, 4)):
        for epoch in (0, 1):
            steps = [sorted(i for hand in step for mb in hand for i in mb) for step in _dealt(LENGTHS, 32, micro, world, group, epoch)]
            assert len(steps) == 6 and all(len(s) == 32 for s in steps)
            if world == 1 and micro == 8:
                reference = reference or {}
                reference[epoch] = steps
            assert steps == reference[epoch], (world, micro, epoch)
    plain = list(GlobalOrderSampler(LENGTHS, 32, seed=5, group_by_length=group))
    assert reference[0] == [sorted(plain[i:i + 32]) for i in range(0, len(plain), 32)]  # as without dealing
    assert reference[0] != reference[1]  # a new order each epoch


@pytest.mark.parametrize("world", [2, 4])
def test_every_rank_gets_about_the_same_tokens_per_step(world):
    """Padded (longest x rows) and packed (real) tokens per rank per step: the slowest rank is close to the mean."""
    micro = 8
    for step in _dealt(LENGTHS, micro * world * 2, micro, world):
        padded = [sum(max(LENGTHS[i] for i in mb) * len(mb) for mb in hand) for hand in step]
        real = [sum(LENGTHS[i] for mb in hand for i in mb) for hand in step]
        assert max(real) / (sum(real) / world) < 1.08 and max(padded) / (sum(padded) / world) < 1.12
    sampler = GlobalOrderSampler(LENGTHS, micro * world * 2, seed=5)  # consecutive micro-batches, as before
    order = list(sampler)
    batches = [order[i:i + micro] for i in range(0, len(order), micro)]
    before = [sum(LENGTHS[i] for mb in batches[r::world] for i in mb) for r in range(world)]
    after = [sum(LENGTHS[i] for step in _dealt(LENGTHS, micro * world * 2, micro, world) for mb in step[r] for i in mb)
             for r in range(world)]
    assert max(after) / min(after) < max(before) / min(before)


def test_quantized_base_goes_whole_onto_the_ranks_own_gpu(monkeypatch):
    from supporttune.models.loading import device_map

    monkeypatch.setenv("LOCAL_RANK", "1")
    assert device_map("cuda") == {"": "cuda:1"}  # not "auto", not cuda:0 for every rank
    assert device_map("cpu") == {"": "cpu"}


# ------------------------------------------------------------------ launched runs


def _cli(*args, env_extra=None, timeout=240):
    env = {**os.environ, "SUPPORTTUNE_PROGRESS": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "supporttune", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


def _train_args(cfg: TrainConfig, tmp_path: Path) -> list:
    """The same config as a YAML file for the launched command."""
    path = tmp_path / f"{cfg.variant}-{cfg.out.name}.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in cfg.resolved().items() if k not in ("resume", "force")}))
    return ["train", "--config", path]


def _losses(run: Path) -> list[tuple[int, float]]:
    rows = [json.loads(x) for x in (run / "loss.jsonl").read_text().splitlines()]
    return [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]


def _rel_diff(a: Path, b: Path) -> float:
    """|A - B| / |A| over all adapter tensors."""
    x, y = load_file(a / "adapter_model.safetensors"), load_file(b / "adapter_model.safetensors")
    assert sorted(x) == sorted(y)
    num = sum(float(((x[k].float() - y[k].float()) ** 2).sum()) for k in x)
    return (num / sum(float((x[k].float() ** 2).sum()) for k in x)) ** 0.5


@pytest.mark.multiprocess
@pytest.mark.parametrize("method,extra", [
    ("lora", {}), ("qlora", {}), ("prompt-tuning", {"virtual_tokens": 4}),
])
def test_two_processes_give_the_one_process_loss_curve(tiny_train_cfg, tmp_path, method, extra):
    # dropout off: its random masks are drawn per rank, so they cannot match one process's
    common = dict(method=method, max_steps=12, batch_size=4, grad_accum=2, dropout=0.0, lr=1e-2, save_steps=100,
                  max_train_samples=40, **extra)
    one = train(tiny_train_cfg(out=tmp_path / "one", **common))
    two_cfg = tiny_train_cfg(out=tmp_path / "two", **common)
    done = _cli(*_train_args(two_cfg, tmp_path), "--nproc", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, 13))  # 12 steps, 3 epochs: logged once each (rank 0)
    assert max(abs(x - y) for (_, x), (_, y) in zip(a, b)) < 1e-4, (a, b)
    # QLoRA computes in bf16 on the 4-bit base: its adapters agree to bf16 precision, the others to fp32's
    assert _rel_diff(tmp_path / "one", tmp_path / "two") < (1e-2 if method == "qlora" else 1e-5)
    assert abs(one["final_val_loss"] - two["final_val_loss"]) < 1e-4
    assert two["parallel"] == {"world_size": 2, "strategy": "ddp", "backend": "gloo",
                               "per_device_batch": 4, "grad_accum_per_device": 1, "global_batch": 8}
    assert one["parallel"]["global_batch"] == 8 and one["parallel"]["world_size"] == 1
    # rank 0 alone wrote the run directory; the workers left no stray files
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert "rank 1" not in done.stdout + done.stderr
    assert done.stdout.count("wrote adapter") == 1


@pytest.mark.multiprocess
@pytest.mark.parametrize("extra", [
    {"method": "dora"}, {"method": "ia3", "targets": ["k_proj", "v_proj", "down_proj"]},
    {"method": "prefix-tuning", "virtual_tokens": 4}, {"method": "lora", "gradient_checkpointing": True},
])
def test_every_method_trains_under_ddp(tiny_train_cfg, tmp_path, extra):
    """DDP runs with find_unused_parameters off: every method must use all its trainable weights."""
    cfg = tiny_train_cfg(out=tmp_path / "run", max_steps=2, batch_size=2, grad_accum=2, **extra)
    done = _cli(*_train_args(cfg, tmp_path), "--nproc", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    s = json.loads((cfg.out / "train_summary.json").read_text())
    assert s["steps"] == 2 and s["parallel"]["world_size"] == 2 and (cfg.out / "adapter_model.safetensors").is_file()


@pytest.mark.multiprocess
def test_sharded_evaluation_gives_the_unsharded_predictions(tiny_run, builtin_data, tmp_path):
    import shutil

    run1, run2 = tmp_path / "one", tmp_path / "copy"  # copies: the shared run stays unevaluated for other tests
    shutil.copytree(tiny_run, run1, ignore=shutil.ignore_patterns("eval"))
    shutil.copytree(tiny_run, run2, ignore=shutil.ignore_patterns("eval"))
    common = dict(data=builtin_data, split="val", limit=9, max_new_tokens=10, batch_size=4, latency_samples=2,
                  bootstrap=200, device="cpu", semantic=False)
    single = evaluate(EvalConfig(run=run1, force=True, **common))
    done = _cli("evaluate", "--run", run2, "--data", builtin_data, "--split", "val", "--limit", 9, "--max-new-tokens", 10,
                "--batch-size", 4, "--latency-samples", 2, "--device", "cpu", "--nproc", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    a = [json.loads(x) for x in (run1 / "eval" / "predictions.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (run2 / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(a) == len(b) == 9  # an odd count: the ranks get 5 and 4
    assert [(r["id"], r["prediction"]) for r in a] == [(r["id"], r["prediction"]) for r in b]
    sharded = json.loads((run2 / "eval" / "metrics.json").read_text())
    assert sharded["examples"] == 9 and sharded["rougeL"] == pytest.approx(single["rougeL"])
    assert sharded["perplexity"] == pytest.approx(single["perplexity"], rel=1e-5)
    assert sharded["latency_samples"] == 2  # timed once, on rank 0


@pytest.mark.multiprocess
def test_a_crash_on_one_rank_ends_the_run_with_that_ranks_error(tiny_train_cfg, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os\n"
        "if os.environ.get('RANK') == '1':\n"
        "    import transformers\n"
        "    _step = transformers.Trainer.training_step\n"
        "    def _boom(self, *a, **k):\n"
        "        if self.state.global_step == 2:\n"
        "            raise RuntimeError('injected fault on rank 1')\n"
        "        return _step(self, *a, **k)\n"
        "    transformers.Trainer.training_step = _boom\n")
    cfg = tiny_train_cfg(out=tmp_path / "run", max_steps=50, batch_size=4, grad_accum=2)
    t0 = time.monotonic()
    done = _cli(*_train_args(cfg, tmp_path), "--nproc", 2, env_extra={"PYTHONPATH": f"{hook}{os.pathsep}{REPO / 'src'}"},
                timeout=180)
    assert done.returncode == 1 and time.monotonic() - t0 < 120
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("supporttune: error: rank 1 of 2 failed: RuntimeError: injected fault on rank 1"), done.stderr[-2000:]
    log = Path(line.split("see ", 1)[1].rstrip(")"))
    assert "injected fault" in log.read_text()  # the traceback is kept in the rank's own log
    assert "Traceback" not in done.stderr


@pytest.mark.multiprocess
def test_ctrl_c_stops_every_rank_at_one_checkpoint_and_resume_matches(tiny_train_cfg, tmp_path):
    common = dict(max_steps=24, batch_size=4, grad_accum=2, dropout=0.0, save_steps=1000, logging_steps=1)
    reference = tiny_train_cfg(out=tmp_path / "ref", **common)
    train(reference)
    cfg = tiny_train_cfg(out=tmp_path / "run", **common)
    args = [sys.executable, "-m", "supporttune", *map(str, _train_args(cfg, tmp_path)), "--nproc", "2"]
    proc = subprocess.Popen(args, cwd=REPO, env={**os.environ, "SUPPORTTUNE_PROGRESS": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not ((cfg.out / "loss.jsonl").is_file() and (cfg.out / "loss.jsonl").read_text().count("\n") >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Rerun with --resume" in err.strip().splitlines()[-1]
    checkpoints = list((cfg.out / "checkpoints").glob("checkpoint-*"))
    assert len(checkpoints) == 1 and 2 <= int(checkpoints[0].name.split("-")[1]) < 24
    done = _cli(*_train_args(cfg, tmp_path), "--nproc", 2, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((cfg.out / "train_summary.json").read_text())["resumed_from"].endswith(checkpoints[0].name)
    assert _rel_diff(cfg.out, reference.out) < 1e-5
    assert [s for s, _ in _losses(cfg.out)] == list(range(1, 25))


@pytest.mark.multiprocess
def test_run_suite_over_two_processes(tiny_model_dir, builtin_data, tmp_path):
    config = tmp_path / "suite.yaml"
    config.write_text(yaml.safe_dump({
        "name": "tiny-ddp", "data": str(builtin_data),
        "defaults": {"model": str(tiny_model_dir), "max_steps": 2, "batch_size": 2, "grad_accum": 1, "device": "cpu",
                     "max_val_samples": 4, "r": 4, "alpha": 8},
        "variants": [{"name": "lora", "method": "lora"}],
        "baselines": ["constant", "zero-shot"],
        "eval": {"limit": 6, "max_new_tokens": 6, "latency_samples": 1, "bootstrap": 200, "device": "cpu",
                 "semantic": False}}))
    done = _cli("run", "--config", config, "--out", tmp_path / "suite", "--nproc", 2)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "suite" / "results.json").read_text())
    assert results["best_variant"] == "lora"
    assert done.stdout.count(results["verdict"]["headline"]) == 1  # the verdict, printed by rank 0 only
    assert {e["name"]: e["status"] for e in results["entries"]} == {"lora": "ok", "constant": "ok", "zero-shot": "ok"}
    for entry in ("variants/lora", "baselines/zero-shot"):
        preds = (tmp_path / "suite" / entry / "eval" / "predictions.jsonl").read_text().splitlines()
        assert len(preds) == 6
    assert (tmp_path / "suite" / "report.html").is_file()
    assert done.stderr.count("[1/3] variant lora: running") == 1  # progress from rank 0 only


def test_bad_nproc_requests_fail_before_launching(tiny_train_cfg, tmp_path, cli):
    """Checked in the launching process (run here in-process): no worker may start for these."""
    cfg = tiny_train_cfg(out=tmp_path / "run", batch_size=3, grad_accum=1)
    done = cli(*_train_args(cfg, tmp_path), "--nproc", 2)
    assert done.returncode == 2
    assert done.stderr.strip() == ("supporttune: error: the global batch (3 x 1 = 3 sequences per step) cannot be split "
                                   "over 2 processes; make it a multiple of 2")
    assert not cfg.out.exists()
    done = cli(*_train_args(cfg, tmp_path), "--nproc", 0)
    assert done.returncode == 2 and done.stderr.strip() == "supporttune: error: invalid nproc: Input should be greater than or equal to 1"
    done = cli(*_train_args(tiny_train_cfg(out=tmp_path / "q", method="qlora"), tmp_path), "--fsdp", "--nproc", 2)
    assert done.returncode == 2 and "fsdp is not supported with qlora" in done.stderr
    for extra in ([], ["--nproc", 2]):  # accelerate runs FSDP on accelerators only (tested on the GPU)
        done = cli(*_train_args(tiny_train_cfg(out=tmp_path / "f"), tmp_path), "--fsdp", *extra)
        assert done.returncode == 2 and done.stderr.strip().startswith("supporttune: error: --fsdp needs GPUs"), done.stderr
        assert not (tmp_path / "f").exists()


def test_a_worker_leaves_the_process_group_when_done(monkeypatch):
    """torch warns at exit on every launched run otherwise; outside a launch it is a no-op."""
    import socket

    import torch.distributed as dist

    from supporttune.core import distributed

    distributed.teardown()  # not launched: nothing to leave, no error
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        distributed.teardown()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
