"""Shared fixtures: paths to the real shared data, tiny models and runs trained once, the CLI in-process.

Expensive things are session-scoped: the tiny model, the built-in data and one tiny run per
method (``tiny_runs``). A test that needs its own run (resume, NaN guard, ...) builds it with
``tiny_train_cfg``. Fast subset: ``make test-fast`` (``-m "not slow and not browser and not multiprocess"``, on two
pytest-xdist workers with ``--dist loadfile``: each worker builds the session fixtures it uses once).
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_TWCS = REPO.parent / "shared" / "data" / "twcs_sample.csv"


_TORCH_THREADS: list[int] = []  # torch's own default, for the slow tests


def pytest_collection_finish(session):
    """Two settings for a test process that mostly runs a 2-layer, 64-wide model.

    * One intra-op thread (tests on the embedded model get torch's default, see ``_torch_threads``). Ops on the
      tiny model are too small to split: a second thread only spin-waits, which costs twice the CPU
      time and, on a shared machine, twice the wall time (tests/test_train.py + test_generate.py +
      test_suite.py: 43 s with one thread, 90 s with two, on 2 cores with one other busy process).
    * ``gc.freeze()``: supporttune frees memory with ``gc.collect()`` after every run and evaluation;
      with ~600k library objects tracked each collection costs 0.3-0.5 s of CPU. Freezing what exists
      after collection (imports, no model yet) leaves models, trainers and everything the tests
      create to be collected as before.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        _TORCH_THREADS.append(torch.get_num_threads())
        torch.set_num_threads(1)
    _freeze()


def _freeze() -> None:
    """Collect garbage, then exempt every object still alive (libraries, caches) from later collections;
    again after the session fixtures that import more of them lazily (peft, the Trainer, ...)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _torch_threads(request):
    """Slow tests on the embedded model's real matrices run with torch's default number of threads."""
    torch = sys.modules.get("torch")
    if not (_TORCH_THREADS and torch is not None and request.node.get_closest_marker("slow")
            and "tiny_model_dir" not in request.fixturenames):
        yield
        return
    torch.set_num_threads(_TORCH_THREADS[0])
    try:
        yield
    finally:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def twcs_path() -> Path:
    if not SHARED_TWCS.is_file():
        pytest.skip(f"shared TWCS sample not found at {SHARED_TWCS}")
    return SHARED_TWCS


def _embedded_tokenizer_dir() -> Path:
    """The embedded model's tokenizer as plain files, converted from the GGUF once per machine, not per session.

    Parsing the GGUF's 49k-token vocabulary and merges in Python takes ~5 s of CPU (the single biggest set-up
    cost of the fast subset); loading the same tokenizer from tokenizer.json takes ~0.3 s. The cache key holds
    the GGUF's path, size and mtime and the transformers version, so a new model file or library converts again.
    ``SUPPORTTUNE_TEST_CACHE`` moves the cache (default ``~/.cache/supporttune-tests``).
    """
    import hashlib
    import shutil
    import tempfile

    import transformers
    from transformers import AutoTokenizer

    from supporttune.models.loading import gguf_location

    gguf = gguf_location()
    st = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}|{transformers.__version__}".encode()).hexdigest()[:16]
    root = Path(os.environ.get("SUPPORTTUNE_TEST_CACHE") or Path.home() / ".cache" / "supporttune-tests")
    cached = root / f"tokenizer-{key}"
    if (cached / "tokenizer.json").is_file():
        return cached
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tok-"))
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(tmp)
    # The same JSON without indentation: every train and agent load parses tokenizer.json several times
    # (0.20 -> 0.15 s of CPU per load, ~70 loads in the fast subset).
    doc = json.loads((tmp / "tokenizer.json").read_text(encoding="utf-8"))
    (tmp / "tokenizer.json").write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    try:
        tmp.rename(cached)  # atomic: a concurrent session (or xdist worker) sees all files or none
    except OSError:  # another process won the race: its copy is the same
        shutil.rmtree(tmp, ignore_errors=True)
    return cached


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A 2-layer, 64-wide random Llama with the embedded model's real tokenizer and chat template."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    out = tmp_path_factory.mktemp("tiny-llama")
    tok_dir = _embedded_tokenizer_dir()
    tok = AutoTokenizer.from_pretrained(tok_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for f in tok_dir.iterdir():
        shutil.copy2(f, out / f.name)
    _freeze()
    return out


@pytest.fixture(scope="session")
def builtin_data(tmp_path_factory) -> Path:
    from supporttune.data.config import PrepareConfig
    from supporttune.data.prepare import prepare

    out = tmp_path_factory.mktemp("data") / "builtin"
    prepare(PrepareConfig(input="builtin", out=out, builtin_threads=80))
    return out


# Fast train settings on the tiny model: a few steps, small batches, two validation pairs (each validation
# pass scores them at 49k-token logits: 8 pairs cost ~0.5 s a run and no test reads more than a val loss).
TINY_TRAIN = dict(method="lora", max_steps=6, batch_size=2, grad_accum=1, save_steps=3, logging_steps=1, device="cpu",
                  max_val_samples=2, lr=1e-3, r=4, alpha=8)


@pytest.fixture()
def tiny_train_cfg(tiny_model_dir, builtin_data, tmp_path):
    """A factory of fast train configs on the tiny model (for tests that need a run of their own)."""
    from supporttune.train.config import TrainConfig

    def make(**overrides):
        base = dict(model=str(tiny_model_dir), data=builtin_data, out=tmp_path / "run", **TINY_TRAIN)
        return TrainConfig(**{**base, **overrides})

    return make


# One finished run per method, trained once per session and shared read-only by the train, generate,
# chat, export and serve tests. 3 steps each; lora, qlora and random-init prompt tuning at a high rate
# so that their adapters visibly change the replies and logits.
TINY_RUNS = {
    "lora": dict(method="lora", lr=5e-2),
    "qlora": dict(method="qlora", lr=5e-2),
    "dora": dict(method="dora"),
    "ia3": dict(method="ia3", targets=["k_proj", "v_proj", "down_proj"]),
    "prompt-tuning": dict(method="prompt-tuning", virtual_tokens=4),
    "prompt-tuning-random": dict(method="prompt-tuning", virtual_tokens=4, prompt_init="random", lr=5e-2),
    "prefix-tuning": dict(method="prefix-tuning", virtual_tokens=4),
}


@pytest.fixture(scope="session")
def tiny_runs(tiny_model_dir, builtin_data, tmp_path_factory):
    """``tiny_runs(name) -> (TrainConfig, train summary)`` for a name of TINY_RUNS; each trained on first use."""
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    done: dict = {}
    root = tmp_path_factory.mktemp("runs")

    def get(name: str):
        if name not in done:
            cfg = TrainConfig(**{**TINY_TRAIN, "max_steps": 3, "save_steps": 100, **TINY_RUNS[name]},
                              model=str(tiny_model_dir), data=builtin_data, out=root / name)
            done[name] = (cfg, train(cfg))
            _freeze()
        return done[name]

    return get


@pytest.fixture(scope="session")
def tiny_run(tiny_runs) -> Path:
    """A finished LoRA run on the tiny model (shared by chat/serve/export tests)."""
    return tiny_runs("lora")[0].out


class CliResult:
    def __init__(self, returncode: int, stdout: str, stderr: str):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args, stdin: str | None = None, real: bool = False) -> CliResult:
    """``python -m supporttune ARGS``: in this process (the same ``__main__``, no interpreter start-up), or
    with ``real=True`` as a child process. Only for commands that load no model: state stays in-process."""
    args = [str(a) for a in args]
    if real:
        env = {**os.environ, "SUPPORTTUNE_PROGRESS": "0"}
        res = subprocess.run([sys.executable, "-m", "supporttune", *args], capture_output=True, text=True,
                             input=stdin, timeout=300, env=env, cwd=REPO)
        return CliResult(res.returncode, res.stdout, res.stderr)
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["supporttune", *args], io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_module("supporttune", run_name="__main__", alter_sys=False)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv, sys.stdin = saved
    return CliResult(code, out.getvalue(), err.getvalue())


@pytest.fixture()
def cli():
    return run_cli
