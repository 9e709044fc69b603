"""`supporttune bench --device cpu --quick`: the harness runs, measures both paths, and they agree."""

import json

from typer.testing import CliRunner

from supporttune.cli import app


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
