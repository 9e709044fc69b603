"""Issue 22's whole loop in a real browser: rate with the mouse -> export -> DPO child -> evaluate -> report.

A suite directory holds a tiny trained LoRA parent (``variants/lora``) and the constant baseline, both
evaluated on the same few test messages. The real `supporttune rate` server runs; headless Chromium
clicks "A/B is better" for the side that shows the constant reply (recognisable: the same text for every
message), and each click must land in ``SUITE/ratings.jsonl`` before the next. Then, through the CLI:
export the votes as preference pairs with the parent's prompt, train a 2-step DPO child into
``variants/dpo``, evaluate it, rebuild the report, and find the child-vs-parent paired-test row in
results.json and report.html. The rating helpers (server, browser, waits) are test_rate_browser.py's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_rate_browser import _server
from test_rate_browser import browser  # noqa: F401  (the fixture)
from test_rate_browser import ready
from test_rate_browser import wait

pytestmark = [pytest.mark.browser, pytest.mark.slow]

MESSAGES = 5  # test messages evaluated, so comparisons on the page (one pair: parent vs constant)
VOTES = 4  # decided votes cast with the mouse
FAST_EVAL = ["--limit", str(MESSAGES), "--max-new-tokens", "4", "--no-semantic", "--no-perplexity",
             "--latency-samples", "0", "--bootstrap", "100", "--device", "cpu"]


def _cli(*args) -> str:
    """One `supporttune` command in this process (typer's runner), failing the test with its output."""
    from typer.testing import CliRunner

    from supporttune.cli import app

    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, f"supporttune {' '.join(map(str, args))}: {res.output}"
    return res.output


def _votes(suite: Path) -> list[dict]:
    path = suite / "ratings.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def test_rate_export_dpo_child_report(browser, tiny_run, builtin_data, tmp_path):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    suite = tmp_path / "suite"
    parent = suite / "variants" / "lora"  # the folder's name is the run's variant name, which the child records
    shutil.copytree(tiny_run, parent, ignore=shutil.ignore_patterns("eval"))
    _cli("evaluate", "--run", parent, "--data", builtin_data, *FAST_EVAL)
    _cli("evaluate", "--baseline", "constant", "--data", builtin_data, "--out", suite / "baselines" / "constant", *FAST_EVAL)
    constant = {json.loads(x)["prediction"] for x in (suite / "baselines" / "constant" / "eval" / "predictions.jsonl")
                .read_text().splitlines()}
    assert len(constant) == 1
    constant_reply = constant.pop()

    server, url = _server(suite, "--rater", "ann")
    try:
        d = browser
        d.get(url)
        ready(d, 0)
        for k in range(VOTES):
            a, b = d.find_element(By.ID, "text-a").text, d.find_element(By.ID, "text-b").text
            assert constant_reply.strip() in (a.strip(), b.strip()) and a != b  # the page shows this suite's replies
            side = "a" if a.strip() == constant_reply.strip() else "b"
            ActionChains(d).move_to_element(d.find_element(By.ID, f"btn-{side}")).click().perform()
            # the vote is on disk before the page moves on, naming the constant baseline the winner
            wait(d, lambda _, n=k + 1: len(_votes(suite)) == n, f"vote {k + 1} in ratings.jsonl")
            v = _votes(suite)[-1]
            assert v["rater"] == "ann" and v["choice"] == ("left" if side == "a" else "right")
            assert v[v["choice"]] == "constant" and {v["left"], v["right"]} == {"constant", "lora"}
            ready(d, k + 1)
    finally:
        server.terminate()
        server.wait(10)
    votes = _votes(suite)
    assert len(votes) == VOTES and len({v["message_id"] for v in votes}) == VOTES  # one pair: a new message each time

    prefs = tmp_path / "votes.jsonl"
    out = _cli("rate", suite, "--export-preferences", prefs, "--prompt-from", parent)
    assert f"wrote {VOTES} preference pairs" in out
    rows = [json.loads(x) for x in prefs.read_text().splitlines()]
    assert [r["chosen"][0]["content"] for r in rows] == [constant_reply] * VOTES
    assert [r["id"] for r in rows] == [v["message_id"] for v in votes]

    child = suite / "variants" / "dpo"
    _cli("train", "--objective", "dpo", "--from", parent, "--preferences", prefs, "--out", child, "--name", "dpo",
         "--max-steps", "2", "--save-steps", "100", "--logging-steps", "1", "--batch-size", "2", "--grad-accum", "1",
         "--device", "cpu")
    summary = json.loads((child / "train_summary.json").read_text())
    assert summary["objective"] == "dpo" and summary["steps"] == 2 and summary["parent"] == "lora"
    _cli("evaluate", "--run", child, "--data", builtin_data, *FAST_EVAL)

    _cli("report", suite)
    results = json.loads((suite / "results.json").read_text())
    entries = {e["name"]: e for e in results["entries"]}
    assert set(entries) == {"lora", "dpo", "constant"}
    assert entries["dpo"]["status"] == "ok" and entries["dpo"]["parent"] == "lora" and entries["dpo"]["objective"] == "dpo"
    rows = [r for r in results["significance"] if "child_of" in r]
    assert len(rows) == 1 and rows[0]["child_of"] == {"child": "dpo", "parent": "lora"}
    assert "rougeL" in rows[0]  # the paired test itself, not only the names
    assert results["human_preference"]["votes"] == VOTES
    d.get((suite / "report.html").as_uri())
    # the paired tests sit in a closed <details>: open it with the mouse; the child-vs-parent row comes first
    toggle = d.find_element(By.XPATH, "//summary[text()='Paired bootstrap tests, every pair']")
    ActionChains(d).move_to_element(toggle).click().perform()
    first = toggle.find_element(By.XPATH, "..//tbody/tr[1]")
    wait(d, lambda _: first.is_displayed(), "the paired-test table opened")
    assert [td.text for td in first.find_elements(By.TAG_NAME, "td")][:2] == ["dpo (child)", "lora (parent)"]
