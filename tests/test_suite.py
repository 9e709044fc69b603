"""The whole suite on a tiny model: runs, resumes, survives a failing variant, renders a report.

The suite runs once for the module (``suite_run``); tests that change its directory work on a copy.
"""

import json
import shutil
import subprocess

import pytest

from supporttune.suite.config import SuiteConfig
from supporttune.suite.run import run_suite


@pytest.fixture(scope="module")
def tiny_suite(tiny_model_dir, builtin_data):
    return SuiteConfig(
        name="tiny", data=str(builtin_data),
        defaults={"model": str(tiny_model_dir), "max_steps": 2, "batch_size": 2, "grad_accum": 1, "device": "cpu",
                  "max_val_samples": 4, "logging_steps": 1, "r": 4, "alpha": 8},
        variants=[{"name": "lora", "method": "lora"},
                  {"name": "pt", "method": "prompt-tuning", "virtual_tokens": 4},
                  {"name": "broken", "method": "lora", "max_length": 16}],  # nothing fits: fails
        baselines=["constant", "retrieval", "zero-shot"],
        # semantic similarity off here (test_metrics covers it); the rescore test shows `report --rescore` filling it in
        eval={"limit": 6, "max_new_tokens": 6, "latency_samples": 2, "bootstrap": 100, "device": "cpu", "semantic": False})


@pytest.fixture(scope="module")
def suite_run(tiny_suite, tmp_path_factory):
    """(suite directory, results, log lines) of one run; the tests only read it."""
    out = tmp_path_factory.mktemp("suite") / "suite"
    logs = []
    results = run_suite(tiny_suite, out, log=logs.append)
    return out, results, logs


@pytest.fixture()
def suite_copy(suite_run, tmp_path):
    """A copy of the finished suite for a test that changes it (a suite resumes from another directory too)."""
    out = tmp_path / "suite"
    shutil.copytree(suite_run[0], out)
    return out


@pytest.mark.slow
def test_suite_runs_records_failure_and_continues(suite_run):
    out, results, logs = suite_run
    status = {e["name"]: e["status"] for e in results["entries"]}
    assert status == {"lora": "ok", "pt": "ok", "broken": "failed", "constant": "ok", "retrieval": "ok", "zero-shot": "ok"}
    broken = next(e for e in results["entries"] if e["name"] == "broken")
    assert "max_length=16" in broken["error"]
    assert (out / "variants" / "broken" / "failed.json").is_file()
    assert results["best_variant"] in {"lora", "pt"}
    m = json.loads((out / "variants" / "lora" / "eval" / "metrics.json").read_text())
    for key in ("bleu", "bleu_nltk", "rouge1", "rouge2", "rougeL", "chrf", "semantic_sim", "latency_p50_s", "latency_p95_s",
                "throughput_samples_per_s", "ci", "by_category", "by_priority", "by_sentiment", "worst"):
        assert key in m, key
    assert m["decoding"]["max_new_tokens"] == 6
    lora = next(e for e in results["entries"] if e["name"] == "lora")  # training figures: joined from the run directory
    assert lora["metrics"]["trainable_params"] > 0 and lora["metrics"]["train_wall_time_s"] > 0
    preds = [json.loads(x) for x in (out / "variants" / "pt" / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 6 and {"id", "thread_id", "brand", "input", "reference", "prediction", "category", "sentiment",
                                "priority", "scores", "latency_s"} <= set(preds[0])
    pairs = {(r["a"], r["b"]) for r in results["significance"]}
    assert ("constant", "lora") in pairs and ("lora", "pt") in pairs
    assert any("failed" in line.lower() for line in logs)


@pytest.mark.slow
def test_suite_resume_skips_finished_entries(suite_copy, tiny_suite):
    out = suite_copy
    before = (out / "variants" / "lora" / "eval" / "metrics.json").stat().st_mtime_ns
    logs = []
    run_suite(tiny_suite, out, log=logs.append)
    assert (out / "variants" / "lora" / "eval" / "metrics.json").stat().st_mtime_ns == before
    assert sum("skipped" in line for line in logs) == 5  # all but the failed one
    changed = tiny_suite.model_copy(update={"variants": [{"name": "lora", "method": "lora", "r": 2}]})
    logs = []
    run_suite(changed, out, log=logs.append)
    assert any("variant lora: running" in line for line in logs)  # config hash changed: retrained


@pytest.mark.slow  # the suite run behind it trains 3 variants and evaluates 6 entries (~8 s); test_report*.py cover rendering fast
def test_report_files(suite_run):
    out, results, _ = suite_run
    md = (out / "report.md").read_text()
    assert "| lora" in md and "Paired bootstrap" in md and "constant" in md and "broken" in md
    page = (out / "report.html").read_text()
    assert page.count("<table>") >= 4 and page.count("data:image/png;base64,") == 3
    assert json.loads((out / "results.json").read_text())["entries"]


@pytest.mark.browser
def test_report_renders_in_headless_chromium(suite_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    out, _, _ = suite_run
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    shot = tmp_path / "report.png"
    subprocess.run(flags + [f"--screenshot={shot}", "--window-size=1400,2000", (out / "report.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000
    dom = subprocess.run(flags + ["--dump-dom", (out / "report.html").as_uri()], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert dom.count("<table>") >= 4 and dom.count("<img") == 3 and "supporttune report" in dom


@pytest.mark.slow
def test_report_rescore_recomputes_scores_from_predictions(suite_copy):
    """`report --rescore` recomputes every score from predictions.jsonl, here filling in semantic similarity,
    which was off when the suite ran."""
    from typer.testing import CliRunner

    from supporttune.cli import app
    from supporttune.metrics.scores import semantic_similarity

    out = suite_copy
    metrics_path = out / "baselines" / "retrieval" / "eval" / "metrics.json"
    before = json.loads(metrics_path.read_text())
    assert before["semantic_sim"] is None
    metrics_path.write_text(json.dumps({**before, "rougeL": -1.0}))
    res = CliRunner().invoke(app, ["report", str(out), "--rescore"])
    assert res.exit_code == 0, res.output
    after = json.loads(metrics_path.read_text())
    assert after["rescored"] and after["rougeL"] == before["rougeL"]
    preds = [json.loads(x) for x in (metrics_path.parent / "predictions.jsonl").read_text().splitlines()]
    sims = semantic_similarity([p["prediction"] for p in preds], [p["reference"] for p in preds])
    assert after["semantic_sim"] == pytest.approx(sum(sims) / len(sims), abs=1e-4) and "semantic_sim" in after["ci"]
    assert [p["scores"]["semantic_sim"] for p in preds] == pytest.approx(sims, abs=1e-4)
    assert after["latency_p50_s"] == before["latency_p50_s"]  # kept: only generation can measure it
    results = json.loads((out / "results.json").read_text())
    assert all(e["metrics"]["semantic_sim"] is not None for e in results["entries"] if "metrics" in e)


def _bad_second_variant(tiny_model_dir, data) -> dict:
    return {"name": "bad2", "data": str(data), "defaults": {"model": str(tiny_model_dir), "max_steps": 2, "device": "cpu"},
            "variants": [{"name": "good", "method": "lora"}, {"name": "bad", "method": "lora", "targets": ["q_proj", "nope_proj"]}],
            "baselines": ["constant"], "eval": {"limit": 2, "semantic": False}}


def test_a_bad_second_variant_fails_before_anything_trains(tiny_model_dir, builtin_data, tmp_path, cli):
    """Issue 24: the bad variant is named in one line, in seconds, exit 2, and no suite directory is left."""
    import time

    import yaml

    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(_bad_second_variant(tiny_model_dir, builtin_data)))
    t0 = time.perf_counter()
    res = cli("run", "--config", tmp_path / "suite.yaml", "--out", tmp_path / "out")
    took = time.perf_counter() - t0
    assert res.returncode == 2, res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("supporttune: error: variant bad: target module(s) nope_proj not in")
    assert not (tmp_path / "out").exists() and took < 30, took


def test_run_suite_validates_every_variant_after_preparing(tiny_model_dir, builtin_data, tmp_path):
    """The same check inside run_suite (the data is prepared first): nothing trains, no half-made suite stays."""
    from supporttune.core.errors import UserError

    cfg = SuiteConfig(**_bad_second_variant(tiny_model_dir, builtin_data))
    with pytest.raises(UserError, match="variant bad: target module"):
        run_suite(cfg, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()
