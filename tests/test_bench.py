"""`supporttune bench --device cpu --quick`: the harness runs, measures both paths, and they agree."""

import json

import pytest

from typer.testing import CliRunner

from supporttune.cli import app


@pytest.mark.slow  # trains 2 methods x 2 paths and benchmarks generation: ~15 s on 2 cores
def test_bench_quick_on_cpu(tmp_path, tiny_model_dir):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--device", "cpu", "--quick", "--methods", "lora,prompt-tuning",
                                   "--tokenizer", str(tiny_model_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    rows = {(x["method"], x["path"]): x for x in r["training"]}
    assert set(rows) == {("lora", "seed"), ("lora", "fast"), ("prompt-tuning", "seed"), ("prompt-tuning", "fast")}
    for x in rows.values():
        assert "error" not in x and x["tokens_per_s"] > 0 and x["peak_memory_mb"] > 0
    # same data, same initial weights: the two paths reach the same loss (within noise)
    for m in ("lora", "prompt-tuning"):
        assert abs(rows[(m, "fast")]["final_loss"] - rows[(m, "seed")]["final_loss"]) < 0.05
    assert rows[("lora", "seed")]["pad_share"] > rows[("lora", "fast")]["pad_share"]
    assert r["generation"]["batched_samples_per_s"] > 0 and "random" in r["weights"]
    assert "tokens/s" in res.output


@pytest.mark.multiprocess
def test_bench_scaling_runs_real_launches_on_cpu(tmp_path, tiny_model_dir):
    """`bench --scaling 1,2`: the harness (each point a real `train --nproc N`); CPU speed-ups mean nothing."""
    out = tmp_path / "scaling.json"
    res = CliRunner().invoke(app, ["bench", "--device", "cpu", "--quick", "--scaling", "1,2", "--methods", "lora",
                                   "--tokenizer", str(tiny_model_dir), "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    points = {p["processes"]: p for p in r["points"]}
    assert set(points) == {1, 2} and r["global_batch"] == 8
    assert points[2]["parallel"]["world_size"] == 2 and points[2]["parallel"]["grad_accum_per_device"] == 1
    assert points[1]["parallel"]["grad_accum_per_device"] == 2
    assert points[1]["efficiency"] == 1.0 and points[2]["steady_tokens_per_s"] > 0
    # same data, same weights, same global batch: the same training whatever the process count
    assert abs(points[1]["final_train_loss"] - points[2]["final_train_loss"]) < 1e-3


def test_bench_scaling_rejects_bad_counts():
    res = CliRunner().invoke(app, ["bench", "--scaling", "2,4", "--device", "cpu"])
    assert res.exit_code != 0 and "starting at 1" in str(res.exception)
