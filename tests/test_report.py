"""The report from hand-made suite directories (no model): the verdict it opens with, the numbers'
formats, speed flags, the CLI's summary and exit code, a metric added to the table reaching every
consumer, and (browser) the verdict on the first screen at a wide and a narrow width."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import pytest

from supporttune.metrics import scores as registry
from supporttune.evaluate.config import EvalConfig
from supporttune.evaluate.stage import score
from supporttune.inference.decode import Generated
from supporttune.core.io import write_json, write_jsonl
from supporttune.report.build import build_results
from supporttune.report.render import render_report

WORDS = ("order refund parcel delivery account password app update please thanks sorry team check status "
         "number email postcode outage network tomorrow today help look details store card payment").split()


def _examples(n: int = 40) -> list[dict]:
    rng = random.Random(0)
    cats, pris, sents = ("complaint", "question", "other"), ("high", "low"), ("negative", "neutral", "positive")
    return [{"id": f"ex{i}", "thread_id": f"t{i}", "brand": "ShopNest", "input": f"message {i}",
             "output": " ".join(rng.choice(WORDS) for _ in range(14)), "category": cats[i % 3],
             "priority": pris[i % 2], "sentiment": sents[i % 3]} for i in range(n)]


def _replies(examples: list[dict], keep: float | None, seed: int) -> list[str]:
    """Replies that keep about ``keep`` of the reference's words (None: one constant reply)."""
    if keep is None:
        return ["thanks please check your email" for _ in examples]
    rng = random.Random(seed)
    return [" ".join(w for w in ex["output"].split() if rng.random() < keep) or "sorry" for ex in examples]


def make_suite(root, spec, examples=None):
    """A suite directory as `supporttune run` leaves it. spec: (name, kind, keep, latency samples, load) rows;
    kind 'failed' makes a failed variant; baselines named retrieval/constant are looked up, not generated."""
    examples = examples or _examples()
    entries = []
    for i, (name, kind, keep, n_lat, load) in enumerate(spec):
        if kind == "failed":
            d = root / "variants" / name
            d.mkdir(parents=True)
            write_json(d / "failed.json", {"error": "UserError: nothing fits"})
            entries.append({"name": name, "kind": "variant", "dir": f"variants/{name}", "status": "failed",
                            "error": "UserError: nothing fits"})
            continue
        d = root / f"{kind}s" / name
        cfg = EvalConfig(baseline=name if kind == "baseline" else "zero-shot", out=d, semantic=False, bootstrap=200)
        cfg = cfg.model_copy(update={"baseline": name if kind == "baseline" else None})
        gens = [Generated(t, len(t.split()), False, 0.0004) for t in _replies(examples, keep, seed=i)]
        rows, m = score(examples, gens, [0.1534] * n_lat, cfg)
        if load is not None:
            m.update(latency_load_1m=load, latency_cpus=2)
        m.update(throughput_samples_per_s=142904.04 if not m["generated"] else 9.137, name=name, examples=len(examples))
        if m["generated"]:
            m["perplexity"] = 55.55
        (d / "eval").mkdir(parents=True)
        write_json(d / "eval" / "metrics.json", m)
        write_jsonl(d / "eval" / "predictions.jsonl", rows)
        if kind == "variant":
            write_json(d / "train_summary.json", {"trainable_params": 4600, "trainable_pct": 0.341, "wall_time_s": 61.3})
            write_jsonl(d / "loss.jsonl", [{"step": s, "train_loss": 3 - s / 10} for s in range(1, 6)])
        entries.append({"name": name, "kind": kind, "dir": f"{kind}s/{name}", "status": "ok"})
    write_json(root / "suite_status.json", {"entries": entries, "seconds": 12.0})
    (root / "suite.yaml").write_text("name: handmade\n")
    return root


ISSUE = [("pt10", "variant", 0.25, 10, 0.5), ("qlora", "variant", 0.35, 3, 0.5), ("broken", "failed", None, 0, None),
         ("zero-shot", "baseline", 0.2, 10, 5.5), ("retrieval", "baseline", 0.8, 10, 0.5),
         ("constant", "baseline", None, 10, 0.5)]


@pytest.fixture(scope="module")
def issue_suite(tmp_path_factory):
    """The demo's situation: a baseline (retrieval) far ahead of every fine-tuned variant."""
    out = make_suite(tmp_path_factory.mktemp("issue"), ISSUE)
    results = build_results(out, n_resamples=300)
    render_report(out)
    return out, results


def test_verdict_ships_a_baseline_that_beats_every_variant(issue_suite):
    out, results = issue_suite
    v = results["verdict"]
    assert v["ship"]["name"] == "retrieval" and v["ship"]["kind"] == "baseline" and v["fine_tuning_wins"] is False
    assert results["best_variant"] == "qlora"
    assert {x["name"] for x in v["versus"]} == {"pt10", "qlora", "zero-shot", "constant"}
    assert all(x["distinguishable"] and x["diff"] > 0 for x in v["versus"])
    assert v["headline"].startswith("Ship retrieval (baseline): ROUGE-L ")
    assert any(line.startswith("No fine-tuned variant beats the best baseline: the best variant, qlora") for line in v["lines"])
    assert any("broken" in line for line in v["lines"])
    md = (out / "report.md").read_text().splitlines()
    assert md[0] == "# supporttune report: handmade" and md[2] == f"**{v['headline']}**"
    assert md[4:4 + len(v["lines"])] == [f"- {line}" for line in v["lines"]]
    text = "\n".join(md)
    assert "≠ best" not in text and "Decision rule:" in text
    assert text.index("## Main results") < text.index("## Figures") < text.index("## Details")
    page = (out / "report.html").read_text()
    assert page.index(v["headline"]) < page.index("<h2>Main results</h2>") < page.index("<h2>Figures</h2>")


def test_main_table_ranks_entries_and_formats_by_metric(issue_suite):
    out, results = issue_suite
    rows = {r.split("|")[1].strip(" *"): [c.strip() for c in r.split("|")[2:-1]]
            for r in (out / "report.md").read_text().split("## Main results")[1].split("##")[0].splitlines()
            if r.startswith("| ") and "entry" not in r}
    assert list(rows)[0] == "retrieval" and set(rows) == {"retrieval", "qlora", "pt10", "zero-shot", "constant"}
    header = (out / "report.md").read_text().split("## Main results")[1].splitlines()[2]
    cols = [c.strip() for c in header.split("|")[1:-1]]
    lat, thr = cols.index("p50 latency (ms)") - 1, cols.index("throughput (replies/s)") - 1
    for looked_up in ("retrieval", "constant"):  # no latency or throughput: '-', not 0 or 142904.04
        assert rows[looked_up][lat] == "-" and rows[looked_up][thr] == "-"
    assert rows["pt10"][lat] == "153" and rows["pt10"][thr] == "9.14"
    rouge = rows["qlora"][cols.index("ROUGE-L") - 1]
    assert rouge.count(".") == 3 and all(len(x.split(".")[1].strip("],")) == 1 for x in rouge.split())  # 1 decimal
    assert rows["retrieval"][cols.index("Δ vs ship") - 1] == "ship"
    assert "142904" not in (out / "report.md").read_text()


def test_unreliable_latency_is_flagged(issue_suite):
    out, results = issue_suite
    flags = {e["name"]: e.get("speed_flags") for e in results["entries"] if "metrics" in e}
    assert flags["qlora"] == ["latency from 3 timed replies (fewer than 10)"]
    assert flags["zero-shot"] == ["machine busy while measuring (load 5.5 on 2 CPUs)"]
    assert flags["pt10"] == [] and flags["retrieval"] == []  # looked up: no speed figures to flag
    md = (out / "report.md").read_text()
    assert "† Unreliable speed figures" in md and "qlora: latency from 3 timed replies" in md


def test_figures_are_named_for_what_they_show(issue_suite):
    out, _ = issue_suite
    assert sorted(p.name for p in (out / "figures").glob("*.png")) == [
        "quality_by_entry.png", "quality_vs_latency.png", "training_loss.png"]
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 3


def test_verdict_when_a_variant_wins_and_another_ties(tmp_path):
    ex = _examples()
    spec = [("lora", "variant", 0.9, 10, 0.5), ("dora", "variant", 0.9, 10, 0.5), ("retrieval", "baseline", 0.3, 10, 0.5)]
    out = make_suite(tmp_path / "s", spec, ex)
    # dora: lora's replies with one word changed, so the two cannot be told apart
    preds = [json.loads(x) for x in (out / "variants" / "lora" / "eval" / "predictions.jsonl").read_text().splitlines()]
    gens = [Generated(p["prediction"] + (" extra" if i == 0 else ""), 1, False, 0.1) for i, p in enumerate(preds)]
    rows, m = score(ex, gens, [0.1] * 10, EvalConfig(run=out / "variants" / "dora", semantic=False, bootstrap=200))
    write_json(out / "variants" / "dora" / "eval" / "metrics.json", {**m, "throughput_samples_per_s": 5.0})
    write_jsonl(out / "variants" / "dora" / "eval" / "predictions.jsonl", rows)
    v = build_results(out, n_resamples=300)["verdict"]
    assert v["ship"]["name"] == "lora" and v["indistinguishable"] == ["dora"] and v["fine_tuning_wins"] is True
    assert any(line.startswith("Not distinguishable from it: dora") for line in v["lines"])
    assert any(line.startswith("Fine-tuning pays off: lora beats the best baseline, retrieval, by") for line in v["lines"])
    render_report(out)
    assert "≈ " in (out / "report.md").read_text()


def test_every_entry_failed(tmp_path):
    out = make_suite(tmp_path / "s", [("a", "failed", None, 0, None), ("b", "failed", None, 0, None)])
    results = build_results(out)
    v = results["verdict"]
    assert v["status"] == "no_entries" and v["ship"] is None and v["headline"] == "No entry finished: there is nothing to ship."
    md, page = render_report(out)
    assert "No entry finished" in md.read_text() and "Failed entries" in md.read_text()


@pytest.mark.parametrize("outcome", ["ok", "some_failed", "all_failed"])
def test_run_prints_the_verdict_and_fails_when_any_entry_failed(tmp_path, monkeypatch, outcome, issue_suite):
    """Issue 24: a suite with a failed entry exits non-zero (3), with the report written; all failed: 1."""
    from typer.testing import CliRunner

    from supporttune.cli import app
    from supporttune.core.errors import RunFailed
    from supporttune.suite import run as suite
    from supporttune.suite.exitcodes import EntriesFailed

    if outcome == "all_failed":
        results = build_results(make_suite(tmp_path / "failed", [("a", "failed", None, 0, None)]))
    elif outcome == "ok":
        results = build_results(make_suite(tmp_path / "ok", [("v", "variant", 0.5, 10, 0.5),
                                                             ("constant", "baseline", None, 10, 0.5)]), n_resamples=100)
    else:
        results = issue_suite[1]  # "broken" failed
    monkeypatch.setattr(suite, "run_suite", lambda *a, **k: results)
    res = CliRunner().invoke(app, ["run", "--out", str(tmp_path / "new")])
    lines = res.stdout.splitlines()
    assert lines[0] == results["verdict"]["headline"]
    assert lines[1:1 + len(results["verdict"]["lines"])] == [f"  - {x}" for x in results["verdict"]["lines"]]
    if outcome == "ok":
        assert res.exit_code == 0 and res.exception is None, res.output
    elif outcome == "some_failed":
        assert isinstance(res.exception, EntriesFailed) and res.exception.exit_code == 3
        assert "1 of 6 entries failed: broken" in str(res.exception)
    else:
        assert type(res.exception) is RunFailed and res.exception.exit_code == 1


def test_a_metric_added_to_the_table_reaches_every_consumer(tmp_path, monkeypatch):
    """One entry in metrics.METRICS: scored, CI, paired test, results.json, main table, figure panel, details."""
    words = registry.Metric("words", "Words", "reply length in words", per_example=lambda ps, rs: [len(p.split()) for p in ps],
                            test=True, headline=True, plot=True, worst=True, digits=2)
    monkeypatch.setattr(registry, "METRICS", (*registry.METRICS, words))
    import supporttune.report.plots as plots

    figures = []
    monkeypatch.setattr(plots.plt, "close", figures.append)  # keep the figures to look at their panels
    out = make_suite(tmp_path / "s", [("v", "variant", 0.5, 10, 0.5), ("retrieval", "baseline", 0.8, 10, 0.5)])
    m = json.loads((out / "variants" / "v" / "eval" / "metrics.json").read_text())
    assert m["words"] > 0 and len(m["ci"]["words"]) == 2 and "words" in m["worst"] and "words" in m["by_category"]["other"]
    pred = json.loads((out / "variants" / "v" / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert "words" in pred["scores"]
    results = build_results(out, n_resamples=200)
    entry = next(e for e in results["entries"] if e["name"] == "v")
    assert entry["metrics"]["words"] == m["words"] and "words" in results["significance"][0]
    render_report(out)
    md = (out / "report.md").read_text()
    main = md.split("## Main results")[1].split("## Figures")[0]
    assert "| Words |" in main and "SemSim" not in main  # semantic scores off: no empty column and f"{m['words']:.2f} [" in main
    assert "Words: a − b" in md and "Words: reply length in words" in md
    panels = [ax.get_title() for fig in figures for ax in fig.axes]
    assert "Words" in panels and "ROUGE-L" in panels


def test_formats_come_from_the_table():
    fmt = {m.key: m.format for m in registry.METRICS}
    assert fmt["rougeL"](45.678) == "45.7" and fmt["bleu"](0.25) == "0.2" and fmt["semantic_sim"](0.2371) == "0.237"
    assert fmt["latency_p50_s"](0.15349) == "153" and fmt["latency_p50_s"](0.0123) == "12.3"
    assert fmt["throughput_samples_per_s"](142904.04) == "142,904" and fmt["throughput_samples_per_s"](9.137) == "9.14"
    assert fmt["trainable_pct"](0.0043) == "0.0043" and fmt["trainable_params"](460350) == "460,350"
    assert fmt["rougeL"](None) == "-" and fmt["latency_p50_s"](float("nan")) == "-"
    assert registry.get("latency_p50_s").column == "p50 latency (ms)"
    assert [m.key for m in registry.select(test=True)] == ["rougeL", "bleu", "chrf", "semantic_sim"]
    assert {m.key for m in registry.select(corpus=True)} == {"bleu", "chrf"}
    assert registry.get(registry.PRIMARY).higher_is_better and registry.get(registry.PRIMARY).test


@pytest.mark.browser
@pytest.mark.parametrize("width", [1400, 420])
def test_first_screen_shows_the_verdict(issue_suite, tmp_path, width):
    from PIL import Image

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Chromium not installed (apt-get install chromium); .ci/run installs it")
    out, _ = issue_suite
    shot = tmp_path / "first.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", f"--window-size={width},900",
                    (out / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    img = Image.open(shot).convert("RGB")
    assert img.size == (width, 900)
    # the verdict box (amber: a baseline ships) is on the first screen, near the top
    box = [y for y in range(0, 900, 4) if img.getpixel((width // 2, y)) == (0xFF, 0xF8, 0xE6)]
    assert box and box[0] < 200, "verdict box not at the top of the first screen"


def test_headline_text_for_the_cli():
    doc = {"rougeL": 12.47, "bleu": 0.8, "chrf": 14.71, "semantic_sim": None}
    assert registry.headline_text(doc) == "ROUGE-L 12.5  BLEU 0.8  chrF 14.7  SemSim -"


def test_headline_states_the_sample_and_runaway_replies_are_flagged(tmp_path):
    """Issue 24: `limit` shows as 'N of M test messages'; an entry cut at the token limit on most replies is flagged."""
    import json as _json

    from supporttune.report.tables import RUNAWAY_FLAG, main_table

    out = make_suite(tmp_path / "s", [("lora", "variant", 0.5, 10, 0.5), ("constant", "baseline", None, 10, 0.5)])
    (out / "data").mkdir()
    write_jsonl(out / "data" / "test.jsonl", _examples(55))  # the split holds 55; 40 were evaluated
    path = out / "variants" / "lora" / "eval" / "metrics.json"
    write_json(path, {**_json.loads(path.read_text()), "runaway_share": 0.9, "split": "test"})
    results = build_results(out, n_resamples=100)
    v = results["verdict"]
    assert v["headline"].startswith("Ship lora") and v["headline"].endswith(" on 40 of 55 test messages.")
    assert any("token limit" in line and "lora (90%)" in line for line in v["lines"])
    table = main_table(results)
    cells = {row[0]: row for row in table.rows}
    primary = table.header.index(registry.get(registry.PRIMARY).column)
    assert cells["lora"][primary].endswith(RUNAWAY_FLAG) and RUNAWAY_FLAG not in cells["constant"][primary]
    assert "40 of 55 test messages" in table.note and "lora (90%)" in table.note
    render_report(out)
    md = (out / "report.md").read_text()
    assert f"**{v['headline']}**" in md and RUNAWAY_FLAG in md
    (out / "data" / "test.jsonl").unlink()  # the whole split evaluated (or its size unknown): no 'of'
    assert build_results(out, n_resamples=100)["verdict"]["headline"].endswith(" on 40 test messages.")


def test_evaluation_time_by_stage_reaches_the_report(tmp_path):
    """metrics.json "timing" (and whether the compile came from the cache) -> results.json -> a table of the report."""
    from supporttune.core.io import read_json
    from supporttune.report.tables import timing_table

    out = make_suite(tmp_path, [("lora", "variant", 0.4, 10, 0.5), ("constant", "baseline", None, 10, 0.5)])
    path = out / "variants" / "lora" / "eval" / "metrics.json"
    stages = dict(load_s=3.2, compile_s=41.6, generation_s=12.9, perplexity_s=4.1, scoring_s=2.5, latency_s=6.0, total_s=89.0)
    write_json(path, {**read_json(path), "timing": stages, "engine": {"from_cache": False, "slot_reused": True}})
    results = build_results(out, n_resamples=200)
    table = timing_table(results)
    assert table.header[1:] == ["load", "compile", "generation", "perplexity", "scoring", "latency", "total", "cache"]
    assert table.rows == [["lora", "3.2", "41.6", "12.9", "4.1", "2.5", "6.0", "89.0", "no / yes"]]  # the baseline had none
    md, _ = render_report(out)
    assert "Evaluation time by stage" in md.read_text() and "| 41.6 |" in md.read_text()
