"""`supporttune bench --device cpu --quick`: the harness runs, measures both paths, and they agree."""

import json
import sys
import types

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
    assert [step for step, _ in points[2]["loss_curve"]] == [1, 2, 4, 6]  # every 2 of 6 steps, and the first
    assert points[2]["max_loss_diff_vs_1"] < 1e-3


def test_bench_scaling_rejects_bad_counts():
    res = CliRunner().invoke(app, ["bench", "--scaling", "2,4", "--device", "cpu"])
    assert res.exit_code != 0 and "starting at 1" in str(res.exception)


def test_scaling_config_parses_and_checks_process_counts():
    from supporttune.bench.config import ScalingConfig

    quick = ScalingConfig(processes="1,2", quick=True, steps=3)
    assert quick.processes == [1, 2] and quick.model == "tiny-arch" and quick.steps == 3 and quick.batch_size == 4
    assert ScalingConfig(processes=[1, 4]).methods == ["lora", "qlora"]
    for bad, message in [("1,x", "comma-separated"), ("1,1", "increasing"), ("1,4,2", "increasing")]:
        with pytest.raises(ValueError, match=message):
            ScalingConfig(processes=bad)
    with pytest.raises(ValueError, match="architecture name"):
        ScalingConfig(processes="1", model="smollm2-135m")


def test_bench_pads_with_the_production_collator_to_each_paths_width():
    from supporttune.bench.train_paths import collate, fast_path, seed_path

    items = [{"input_ids": [5] * 20, "labels": [-100] * 10 + [5] * 10}, {"input_ids": [7] * 3, "labels": [7] * 3}]
    fast, seed = collate(items, fast_path("cpu")), collate(items, seed_path("cpu"))
    assert fast["input_ids"].shape == (2, 32) and seed["input_ids"].shape == (2, 512)  # longest rounded up to 16 / fixed
    assert fast["attention_mask"].sum() == 23 and (fast["labels"][1, 3:] == -100).all()


def test_liger_is_applied_to_one_model_and_undone(monkeypatch):
    """Liger swaps module-level Llama names; the bench puts them back so the next path runs stock code."""
    from transformers.models.llama import modeling_llama

    from supporttune.bench.train_paths import liger_kernels

    def apply(model=None, **kw):
        modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP = "rope", "norm", "mlp"
        model.patched = True

    fake = types.ModuleType("liger_kernel.transformers")
    fake.apply_liger_kernel_to_llama = apply
    monkeypatch.setitem(sys.modules, "liger_kernel", types.ModuleType("liger_kernel"))
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers", fake)
    stock = (modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP)
    model = types.SimpleNamespace()
    with liger_kernels(model, enabled=True):
        assert model.patched and modeling_llama.LlamaMLP == "mlp"
    assert (modeling_llama.apply_rotary_pos_emb, modeling_llama.LlamaRMSNorm, modeling_llama.LlamaMLP) == stock


@pytest.mark.slow
def test_folded_tokenizer_keeps_every_id_inside_the_random_models_vocabulary(tiny_model_dir):
    from transformers import AutoTokenizer

    from supporttune.bench.data import SPEC, FoldedTokenizer
    from supporttune.prompting.builder import encode_example

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    row = {"input": "My parcel never arrived and I want a refund!!", "output": "Sorry to hear that, DM us."}
    plain, folded = encode_example(tok, row, SPEC, 512), encode_example(FoldedTokenizer(tok, 1000), row, SPEC, 512)
    assert max(plain["input_ids"]) >= 1000 and folded["input_ids"] == [t % 1000 for t in plain["input_ids"]]
    assert folded["labels"] == [t if t < 0 else t % 1000 for t in plain["labels"]]


@pytest.mark.slow  # two evaluate processes and two training paths on the tiny architecture: ~100 s on 2 shared cores
def test_bench_speed_quick_on_cpu(tmp_path, tiny_model_dir):
    """`bench --speed base --quick`: cold and warm evaluations in their own processes, padded vs packed training."""
    out = tmp_path / "speed.json"
    res = CliRunner().invoke(app, ["bench", "--speed", "base", "--device", "cpu", "--quick", "--tokenizer",
                                   str(tiny_model_dir), "--per-step", "4", "--out", str(out)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["config"]["per_step"] == 4
    for which in ("cold", "warm"):
        e = r["evaluate"][which]
        assert e["wall_s"] > e["timing"]["total_s"] > 0 and e["examples"] == 8 and e["compile_s"] == 0  # CPU: no compile
    rows = {x["path"]: x for x in r["training"]}
    assert set(rows) == {"fast", "packed"} and rows["packed"]["pad_share"] == 0 < rows["fast"]["pad_share"]
    assert abs(r["packed_vs_padded"]["lora"]["loss_diff"]) < 0.01  # same sequences, same loss


def test_bench_speed_checks_its_run_and_flags():
    res = CliRunner().invoke(app, ["bench", "--speed", "/nonexistent/run", "--device", "cpu"])
    assert res.exit_code != 0 and "not a run directory (no config.yaml)" in str(res.exception)
    res = CliRunner().invoke(app, ["bench", "--speed", "base", "--liger"])
    assert res.exit_code != 0 and "--speed takes no --liger" in str(res.exception)
    res = CliRunner().invoke(app, ["bench", "--per-step", "4"])
    assert res.exit_code != 0 and "--per-step goes with --speed" in str(res.exception)


def test_packed_path_packs_with_the_production_collator():
    from supporttune.bench.train_paths import collate, packed_path

    items = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [-100, 9]}]
    batch = collate(items, packed_path("cpu"))
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]] and batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert "attention_mask" not in batch
