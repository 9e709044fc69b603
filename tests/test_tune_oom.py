"""`tune --jobs N` on one GPU: an out-of-memory trial is tried again alone, not failed; the GPU turn lock.

No GPU and no training: train() is faked (monkeypatch) to raise the errors a shared card gives."""

import fcntl
import threading
import time

import pytest
import torch
from optuna.trial import TrialState

from supporttune.core.errors import RunFailed
from supporttune.tune.gpu_share import GATE_LOCK, gpu_turn, out_of_memory
from supporttune.tune.parallel import claimed
from supporttune.tune.report import build_results, markdown
from supporttune.tune.search import _recover, ask, open_study, run_trial
from supporttune.tune.space import TuneConfig
from supporttune.tune.study import INTERRUPTED, finished, mark_interrupted, trial_dir

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB"


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError(OOM),
    RuntimeError(OOM),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, opa, opb, m, n, k)`"),
    RuntimeError("Expected mha_graph.execute(handle, variant_pack, workspace_ptr.get()).is_good() to be true, "
                 "but got false."),
])
def test_out_of_memory_errors_are_recognised(error):
    assert out_of_memory(error)


def test_other_errors_are_not_out_of_memory():
    assert not out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x8)"))
    assert not out_of_memory(ValueError("CUDA out of memory"))  # only RuntimeErrors say so
    assert not out_of_memory(RunFailed("objective rougeL is nan"))
    try:  # re-raised as another error: the cause still counts
        try:
            raise torch.OutOfMemoryError(OOM)
        except RuntimeError as e:
            raise RunFailed("training stopped") from e
    except RunFailed as wrapped:
        assert out_of_memory(wrapped)


def _cfg(tmp_path) -> TuneConfig:
    return TuneConfig(name="t", data=str(tmp_path / "data"),
                      defaults={"model": "m", "method": "lora", "max_steps": 2, "device": "cpu"},
                      search={"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                              "r": {"type": "categorical", "choices": [2, 4]}},
                      pruner={"type": "none"})


@pytest.fixture
def fake_train(monkeypatch):
    """train() raising what ``raises`` holds (a checkpoint written first, as a real run would have)."""
    raises: list[BaseException] = []

    def train(cfg, callbacks=None):
        (cfg.out / "checkpoints" / "checkpoint-1").mkdir(parents=True)
        raise raises[0]

    monkeypatch.setattr("supporttune.train.stage.train", train)
    return raises


def test_oom_next_to_other_trials_is_tried_again_alone_then_fails_alone(tmp_path, fake_train):
    cfg, out, logs = _cfg(tmp_path), tmp_path / "study", []
    out.mkdir()
    study = open_study(cfg, out, parallel=True)
    fake_train.append(torch.OutOfMemoryError(OOM))

    run_trial(cfg, study, ask(cfg, study), out / "data", out, logs.append, None)
    first, retry = study.get_trials(deepcopy=False)
    assert study.user_attrs[INTERRUPTED] == [0] and first.state == TrialState.FAIL and "error" not in first.user_attrs
    assert first.user_attrs["out_of_memory"].startswith("OutOfMemoryError: CUDA out of memory")
    assert retry.state == TrialState.WAITING and retry.user_attrs == {"retry_of": 0, "alone": True}
    assert "[trial 0] out of GPU memory next to other trials: tried again alone" in logs
    assert not (trial_dir(out, 0) / "checkpoints").exists()
    assert finished(study) == [] and claimed(study) == 0  # the interrupted one counts nowhere
    _recover(study, out, logs.append)  # a rerun does not queue it a second time
    assert len(study.get_trials(deepcopy=False)) == 2

    trial = ask(cfg, study)  # the queued retry comes first
    assert trial.number == 1 and trial.params == first.params and trial.user_attrs["alone"]
    run_trial(cfg, study, trial, out / "data", out, logs.append, None)
    alone = study.get_trials(deepcopy=False)[1]
    assert alone.state == TrialState.FAIL and len(study.get_trials(deepcopy=False)) == 2  # not queued again
    assert alone.user_attrs["error"].startswith("out of GPU memory even alone: OutOfMemoryError: CUDA out of memory")
    assert any(m.startswith("[trial 1] FAILED (out of GPU memory even alone") for m in logs)
    assert any(m.endswith("(again: trial 0 ran out of GPU memory next to other trials)") for m in logs)
    assert "[trial 1] runs alone: waits until the running trials finish" in logs
    assert [t.number for t in finished(study)] == [1] and claimed(study) == 1

    results = build_results(study, cfg, out, 2)
    assert {k: results["counts"][k] for k in ("finished", "fail", "interrupted", "out_of_memory")} == \
        {"finished": 1, "fail": 1, "interrupted": 1, "out_of_memory": 1}
    text = markdown(results, has_plot=False)
    assert "| 0 | out of GPU memory |" in text and "| 1 | fail (alone) |" in text
    assert "1 of them ran out of GPU memory next to other trials" in text


def test_one_job_or_another_error_fails_as_before(tmp_path, fake_train):
    cfg, out, logs = _cfg(tmp_path), tmp_path / "study", []
    out.mkdir()
    study = open_study(cfg, out)  # --jobs 1
    fake_train.append(RuntimeError("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx(...)`"))
    run_trial(cfg, study, ask(cfg, study), out / "data", out, logs.append, None)
    parallel = open_study(cfg, out, parallel=True)  # --jobs N: an error that is not about memory
    fake_train[0] = RuntimeError("mat1 and mat2 shapes cannot be multiplied")
    run_trial(cfg, parallel, ask(cfg, parallel), out / "data", out, logs.append, None)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL] and "interrupted" not in study.user_attrs
    assert trials[0].user_attrs["error"] == "RuntimeError: CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling " \
                                           "`cublasGemmEx(...)`"
    assert trials[1].user_attrs["error"] == "RuntimeError: mat1 and mat2 shapes cannot be multiplied"


def test_an_interrupted_alone_trial_is_queued_alone_again(tmp_path):
    cfg, out = _cfg(tmp_path), tmp_path / "study"
    out.mkdir()
    study = open_study(cfg, out)
    study.enqueue_trial({"lr": 0.01, "r": 2}, user_attrs={"retry_of": 7, "alone": True})
    mark_interrupted(study, ask(cfg, study).number)  # Ctrl-C while it ran
    _recover(study, out, lambda m: None)
    again = study.get_trials(deepcopy=False)[1]
    assert again.state == TrialState.WAITING and again.user_attrs == {"retry_of": 0, "alone": True}


class _Holder(threading.Thread):
    """Holds a GPU turn until told to let go; ``inside`` is set once it has the turn."""

    def __init__(self, out, alone: bool):
        super().__init__(daemon=True)
        self.out, self.alone = out, alone
        self.inside, self.leave = threading.Event(), threading.Event()

    def run(self):
        with gpu_turn(self.out, self.alone):
            self.inside.set()
            assert self.leave.wait(10)


def _gate_taken(out) -> bool:
    with (out / GATE_LOCK).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_an_alone_turn_waits_for_running_trials_and_keeps_new_ones_out(tmp_path):
    running, alone, late = _Holder(tmp_path, False), _Holder(tmp_path, True), _Holder(tmp_path, False)
    beside = _Holder(tmp_path, False)
    running.start()
    assert running.inside.wait(5)
    beside.start()  # shared turns go side by side
    assert beside.inside.wait(5)
    beside.leave.set()
    beside.join(5)

    alone.start()
    deadline = time.time() + 5
    while not _gate_taken(tmp_path):  # the alone trial holds the gate while it waits for the exclusive lock
        assert time.time() < deadline
        time.sleep(0.01)
    assert not alone.inside.wait(0.3)  # a trial is running: it waits
    late.start()
    assert not late.inside.wait(0.3)  # and a trial asked meanwhile does not get in before it

    running.leave.set()
    assert alone.inside.wait(5)
    assert not late.inside.wait(0.3)  # not beside the alone one either
    alone.leave.set()
    assert late.inside.wait(5)
    late.leave.set()
    for t in (running, alone, late):
        t.join(5)
        assert not t.is_alive()


def test_an_interrupted_trial_is_not_told_failed(tmp_path, fake_train):
    from supporttune.core.errors import Interrupted

    cfg, out = _cfg(tmp_path), tmp_path / "study"
    out.mkdir()
    study = open_study(cfg, out, parallel=True)
    fake_train.append(Interrupted("interrupted at step 1"))  # Interrupted is a RunFailed: not caught as a failure
    with pytest.raises(Interrupted, match="interrupted in trial 0"):
        run_trial(cfg, study, ask(cfg, study), out / "data", out, lambda m: None, None)
    assert study.user_attrs[INTERRUPTED] == [0] and "error" not in study.get_trials(deepcopy=False)[0].user_attrs
