"""A finished run folder as others see it (issue 24): a real README card, weight files others can read,
scores on the card once evaluated, and no library bars or deprecation notes with SUPPORTTUNE_PROGRESS=0."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from supporttune import rundir

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_train_writes_a_real_card_and_readable_weights(tiny_run):
    card = (tiny_run / rundir.CARD).read_text()
    record = rundir.read_record(tiny_run)
    assert "library_name: peft" in card and "# lora: a lora adapter" in card
    assert "| method | lora (r 4, alpha 8, targets q_proj, v_proj) |" in card
    assert record.model_extra["data_sha256"]["train"][:12] in card and f"| config hash | {record.config_hash} |" in card
    assert "prompt_format chat" in card and "Not evaluated yet" in card
    assert f'PeftModel.from_pretrained(base, "{tiny_run}")' in card and f"supporttune chat {tiny_run}" in card
    assert "Model Card for" not in card  # PEFT's empty template is gone
    umask = os.umask(0)
    os.umask(umask)
    weights = list(tiny_run.glob("*.safetensors"))
    assert weights and all(stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask for f in weights)


@pytest.mark.slow
def test_evaluate_puts_scores_on_the_card_and_keeps_libraries_quiet(tiny_run, builtin_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    env = {**os.environ, "SUPPORTTUNE_PROGRESS": "0", "PYTHONPATH": SRC, "PYTHONWARNINGS": "default"}
    res = subprocess.run([sys.executable, "-m", "supporttune", "evaluate", "--run", str(run), "--data", str(builtin_data),
                          "--limit", "2", "--max-new-tokens", "4", "--no-semantic", "--device", "cpu",
                          "--latency-samples", "1", "--bootstrap", "100"],
                         capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr
    assert "SemSim -" in res.stdout
    for noise in ("Loading weights", "it/s]", "FutureWarning"):
        assert noise not in res.stderr, res.stderr
    card = (run / rundir.CARD).read_text()
    assert "On 2 test messages (max 4 new tokens): ROUGE-L " in card and "Not evaluated yet" not in card
