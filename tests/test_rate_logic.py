"""`supporttune rate` without a browser or a model: scheduler, Bradley-Terry, win rates, kappa, export, report section.

``make_suite`` writes a small suite directory by hand (4 entries x 12 messages, some with thread
history, one entry with empty replies); the API and browser tests use it too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

ENTRIES = {  # name -> (kind, ROUGE-L, reply maker): the constant reply "wins" ROUGE-L, as on real TWCS
    "qlora-r8": ("variant", 21.0, lambda i, m: f"Sorry about order {i}! I've checked: it ships tomorrow, tracking follows by e-mail."),
    "pt-10": ("variant", 15.0, lambda i, m: "" if i % 4 == 0 else f"Please try again later (ticket {i})."),
    "constant-dm": ("baseline", 30.0, lambda i, m: "Please send us a DM so we can look into this for you."),
    "retrieval-tfidf": ("baseline", 25.0, lambda i, m: f"We're sorry to hear that. Reply {i} from a similar thread."),
}
BRANDS = ("ParcelPal", "ShopNest", "FlyRight")


def messages(n: int = 12) -> list[dict]:
    out = []
    for i in range(n):
        m = {"id": f"m{i:02d}", "thread_id": f"t{i}", "brand": BRANDS[i % 3],
             "input": f"My order #{1000 + i} never arrived and nobody answers!!" + (" Line two\nof my message." if i % 5 == 0 else ""),
             "reference": f"Real agent reply {i}: we have re-sent your parcel.", "category": "shipping",
             "sentiment": "negative" if i % 2 else "neutral", "priority": ("high", "medium", "low")[i % 3]}
        if i % 3 == 0:
            m["history"] = [{"role": "user", "content": f"Hello, where is order {1000 + i}?"},
                            {"role": "assistant", "content": "Let me check that for you."}]
        out.append(m)
    return out


def make_suite(root: Path, n_messages: int = 12) -> Path:
    """A suite directory as `supporttune run` leaves it (only the files the report and `rate` read)."""
    root.mkdir(parents=True, exist_ok=True)
    status = []
    for name, (kind, rouge, reply) in ENTRIES.items():
        d = root / f"{kind}s" / name
        (d / "eval").mkdir(parents=True)
        rows = []
        for i, m in enumerate(messages(n_messages)):
            rows.append({**m, "prediction": reply(i, m), "scores": {"rougeL": rouge + (i % 3), "chrf": 30.0 + i, "semantic_sim": None}})
        (d / "eval" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "eval" / "metrics.json").write_text(json.dumps({"name": name, "rougeL": rouge + 1, "bleu": 5.0, "chrf": 30.0,
                                                             "semantic_sim": None, "ci": {}}))
        (d / "suite_entry.json").write_text(json.dumps({"name": name, "kind": kind}))
        status.append({"name": name, "kind": kind, "dir": f"{kind}s/{name}", "status": "ok"})
    (root / "suite_status.json").write_text(json.dumps({"entries": status}))
    return root


def simulate(strengths: dict[str, float], n: int, seed: int = 0, rater: str = "sim") -> list[dict]:
    """Votes drawn from a Bradley-Terry model (with some ties) over random pairs."""
    rng = random.Random(seed)
    names = sorted(strengths)
    votes = []
    for k in range(n):
        a, b = rng.sample(names, 2)
        p = 1 / (1 + np.exp(strengths[b] - strengths[a]))
        u = rng.random()
        choice = "tie" if u < 0.1 else "left" if rng.random() < p else "right"
        votes.append({"rater": rater, "message_id": f"m{k % 12:02d}", "left": a, "right": b, "choice": choice, "flags": {}})
    return votes


@pytest.fixture()
def suite(tmp_path):
    return make_suite(tmp_path / "suite")


def _item(task):
    """A task's message and pair, whichever side each reply is shown on."""
    return task.message_id, tuple(sorted((task.left, task.right)))


def _scheduler(suite_dir, **kw):
    from supporttune.rate.replies import load_replies
    from supporttune.rate.schedule import Scheduler
    from supporttune.rate.store import FILENAME, Store

    return Scheduler(load_replies(suite_dir), Store(suite_dir / FILENAME), rng=random.Random(kw.pop("seed", 0)), **kw)


def _vote(sched, task, rater, choice="left"):
    sched.store.append({"rater": rater, "message_id": task.message_id, "left": task.left, "right": task.right,
                        "choice": choice, "flags": {}})


def test_scheduler_balances_pairs_and_never_repeats(suite):
    sched = _scheduler(suite)
    assert len(sched.suite.pairs) == 6 and all(len(ids) == 12 for ids in sched.suite.pairs.values())
    counts, seen, sides = {p: 0 for p in sched.suite.pairs}, set(), set()
    while (task := sched.next_task("ann")) is not None:
        pair = tuple(sorted((task.left, task.right)))
        assert (task.message_id, pair) not in seen
        open_pairs = [p for p in counts if sum(q == p for _, q in seen) < 12]  # pairs with messages left to show
        assert counts[pair] == min(counts[p] for p in open_pairs)  # the least-compared one (skips do not count)
        seen.add((task.message_id, pair))
        sides.add((task.left, task.right))
        choice = "skip" if len(seen) % 7 == 0 else "left"
        counts[pair] += choice != "skip"
        if len(seen) < 60:
            assert max(counts.values()) - min(counts.values()) <= 1  # balanced (until pairs run out of messages)
        _vote(sched, task, "ann", choice)
    assert len(seen) == 72  # every message of every pair, once
    assert len(sides) == 12  # both left/right orders of every pair occur
    assert sched.progress("ann") == {"rated": 62, "skipped": 10, "planned": 72, "available": 72}


def test_scheduler_resumes_from_the_store_and_empty_replies_stay(suite):
    first = _scheduler(suite, seed=1)
    done = set()
    for _ in range(20):
        t = first.next_task("ann")
        _vote(first, t, "ann")
        done.add(_item(t))
    again = _scheduler(suite, seed=1)  # a restarted server: same seed, yet nothing is shown twice
    for _ in range(30):
        t = again.next_task("ann")
        assert _item(t) not in done
        _vote(again, t, "ann")
    assert again.progress("ann")["rated"] == 50
    assert "" in again.suite.replies["pt-10"].values()  # empty predictions are compared like any other


def test_history_comes_from_the_prepared_data_when_predictions_lack_it(suite):
    from supporttune.rate.replies import load_replies

    turns = [{"role": "user", "content": "Earlier question"}, {"role": "assistant", "content": "Earlier answer"}]
    (suite / "data").mkdir()
    (suite / "data" / "test.jsonl").write_text(json.dumps({"id": "m01", "input": "x", "output": "y", "history": turns}) + "\n"
                                               + json.dumps({"id": "m03", "history": [{"role": "user", "content": "no"}]}) + "\n")
    got = load_replies(suite).messages
    assert got["m01"]["history"] == turns  # filled in
    assert got["m03"]["history"] == messages()[3]["history"]  # the prediction line's own history wins
    assert not got["m02"].get("history")


def test_scheduler_overlap_gives_a_second_rater_the_first_raters_items(suite):
    sched = _scheduler(suite, overlap=1.0)
    ann = set()
    for _ in range(12):
        t = sched.next_task("ann")
        _vote(sched, t, "ann")
        ann.add(_item(t))
    for _ in range(12):
        t = sched.next_task("bob")
        assert _item(t) in ann
        _vote(sched, t, "bob")


def test_bradley_terry_recovers_a_known_order():
    from supporttune.rate.prefs import bradley_terry

    truth = {"e0": 1.5, "e1": 0.7, "e2": 0.0, "e3": -0.8, "e4": -1.4}
    bt = bradley_terry(sorted(truth), simulate(truth, 1500, seed=3), n_boot=200)
    s = bt["strengths"]
    assert [n for n in sorted(s, key=lambda n: s[n]["rank"])] == ["e0", "e1", "e2", "e3", "e4"]
    assert abs(sum(v["theta"] for v in s.values())) < 1e-6
    for n, theta in truth.items():  # centred truth inside the 95% interval (tie handling shrinks a little)
        centred = theta - np.mean(list(truth.values()))
        assert s[n]["ci"][0] - 0.3 < centred < s[n]["ci"][1] + 0.3, (n, s[n])
    assert s["e0"]["ci"][0] > s["e4"]["ci"][1]


def test_batched_newton_finds_scipys_optimum():
    from scipy.optimize import minimize

    from supporttune.rate.prefs import PRIOR, fit_strengths

    rng = np.random.default_rng(0)
    stack = rng.integers(0, 6, size=(5, 4, 4)).astype(float) * (1 - np.eye(4))
    stack[0] = 0
    stack[0, 0, 1:] = 7  # a perfect record: finite thanks to the prior
    got = fit_strengths(stack)
    for w, theta in zip(stack, got):
        def nll(t, w=w):
            return -(w * -np.logaddexp(0, t[None, :] - t[:, None])).sum() + 0.5 * PRIOR * t @ t
        ref = minimize(nll, np.zeros(4), method="BFGS", options={"gtol": 1e-10}).x
        assert np.allclose(theta, ref - ref.mean(), atol=1e-5)
    assert np.allclose(fit_strengths(stack[2]), got[2])


def test_bradley_terry_stays_finite_for_a_perfect_record():
    from supporttune.rate.prefs import bradley_terry

    votes = [{"rater": "r", "message_id": "m", "left": "a", "right": "b", "choice": "left"}] * 10
    s = bradley_terry(["a", "b", "c"], votes, n_boot=50)["strengths"]
    assert s["a"]["rank"] == 1 and s["c"]["rank"] == 2 and 0 < s["a"]["theta"] < 10 and s["c"]["theta"] == pytest.approx(0, abs=1e-3)


def test_win_rates_flags_and_kappa_by_hand():
    from supporttune.rate.prefs import agreement, cohen_kappa, flag_counts, win_rates

    v = lambda r, m, l, rt, c, flags=None: {"rater": r, "message_id": m, "left": l, "right": rt, "choice": c, "flags": flags or {}}  # noqa: E731
    votes = [v("ann", "m1", "a", "b", "left", {"right": ["rude", "unsafe"]}), v("ann", "m2", "b", "a", "tie"),
             v("ann", "m3", "a", "b", "both_bad", {"left": ["wrong_info"], "right": ["wrong_info"]}),
             v("ann", "m4", "a", "b", "right"), v("ann", "m5", "a", "b", "skip"),
             v("bob", "m1", "b", "a", "right"),  # same judgement as ann's from the other side
             v("bob", "m2", "a", "b", "left"), v("bob", "m3", "a", "b", "both_bad"), v("bob", "m4", "b", "a", "left")]
    w = win_rates(["a", "b"], votes[:5])
    assert w["a"]["overall"] == {"votes": 4, "wins": 1, "losses": 1, "tie": 1, "both_bad": 1, "win_rate": 0.5}
    assert w["b"]["vs"]["a"]["win_rate"] == 0.5
    f = flag_counts(["a", "b"], votes[:5])
    assert f["b"] == {"rated": 4, "wrong_info": 1, "rude": 1, "off_topic": 0, "unsafe": 1} and f["a"]["wrong_info"] == 1
    ag = agreement(votes)
    assert ag["pairs"] == [{"raters": ["ann", "bob"], "items": 4, "kappa": cohen_kappa(["first", "tie", "both_bad", "second"],
                                                                                     ["first", "first", "both_bad", "second"]),
                            "raw_agreement": 0.75}]
    assert cohen_kappa(["first", "first", "second", "tie"], ["first", "second", "second", "tie"]) == pytest.approx(0.6364, abs=1e-4)
    assert cohen_kappa(["tie", "tie"], ["tie", "tie"]) is None and cohen_kappa([], []) is None


def test_export_writes_trl_preference_pairs_from_our_prompt_builder(suite, tmp_path):
    from supporttune.prompting.builder import tag_line
    from supporttune.rate import export_votes
    from supporttune.rate.store import FILENAME, Store

    store = Store(suite / FILENAME)
    for k, (choice, left, right) in enumerate([("left", "qlora-r8", "pt-10"), ("right", "constant-dm", "qlora-r8"),
                                               ("tie", "qlora-r8", "retrieval-tfidf"), ("both_bad", "pt-10", "constant-dm"),
                                               ("skip", "pt-10", "retrieval-tfidf")]):
        store.append({"rater": "ann", "message_id": f"m0{k}", "left": left, "right": right, "choice": choice, "flags": {}})
    out = tmp_path / "prefs.jsonl"
    assert export_votes(suite, out)[:2] == (2, 4)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(set(r) == {"id", "prompt", "chosen", "rejected"} for r in rows)
    first = rows[0]
    msg = messages()[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"] and first["prompt"][1]["content"] == msg["input"]
    assert "for ParcelPal" in first["prompt"][0]["content"] and tag_line(msg) in first["prompt"][0]["content"]
    assert first["chosen"] == [{"role": "assistant", "content": ENTRIES["qlora-r8"][2](0, msg)}]
    assert first["rejected"] == [{"role": "assistant", "content": ""}]  # pt-10's empty reply for message 0
    assert rows[1]["chosen"][0]["content"].startswith("Sorry about order 1")


def test_export_kto_rows_take_flags_as_undesirable(suite, tmp_path):
    from supporttune.rate import export_votes
    from supporttune.rate.store import FILENAME, Store

    store = Store(suite / FILENAME)
    for k, (choice, left, right, flags) in enumerate([
            ("left", "qlora-r8", "pt-10", {}),  # winner good, loser bad
            ("right", "constant-dm", "qlora-r8", {"right": ["wrong_info"]}),  # a flagged winner is still bad
            ("tie", "qlora-r8", "retrieval-tfidf", {"left": ["rude"]}),  # tie: only the flagged reply counts
            ("both_bad", "pt-10", "constant-dm", {})]):  # both undesirable
        store.append({"rater": "ann", "message_id": f"m0{k}", "left": left, "right": right, "choice": choice,
                      "flags": flags})
    out = tmp_path / "kto.jsonl"
    export_votes(suite, out, shape="kto")
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert all(set(r) == {"id", "prompt", "completion", "label"} for r in rows)
    assert [(r["id"], r["label"]) for r in rows] == [("m00", True), ("m00", False), ("m01", False), ("m01", False),
                                                     ("m02", False), ("m03", False), ("m03", False)]
    assert rows[0]["completion"] == [{"role": "assistant", "content": ENTRIES["qlora-r8"][2](0, messages()[0])}]


def _tiny_run(root: Path, prompt: dict) -> Path:
    """A run directory as far as the export reads it: config.yaml (the record) and a local base tokenizer."""
    import yaml
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({"<unk>": 0}, unk_token="<unk>")), unk_token="<unk>",
                                  eos_token="<unk>")
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    tok.save_pretrained(root / "base")
    run = root / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({
        "train": {"method": "lora", "name": "lora-h2"}, "identity": {}, "config_hash": "x",
        "model": {"name": "tiny", "kind": "local", "location": str(root / "base")}, "prompt": prompt}))
    return run


def test_export_with_a_runs_own_prompt_shows_its_history(suite, tmp_path):
    from supporttune.prompting.spec import PromptSpec
    from supporttune.prompting.builder import chat_messages, prompt_text
    from supporttune.rate import export_votes
    from supporttune.rate.store import FILENAME, Store

    Store(suite / FILENAME).append({"rater": "ann", "message_id": "m03", "left": "qlora-r8", "right": "pt-10",
                                    "choice": "left", "flags": {}})
    out = tmp_path / "prefs.jsonl"
    run = _tiny_run(tmp_path / "chat", {"format": "chat", "tags": True, "history": 2})
    assert export_votes(suite, out, run)[:2] == (1, 1)
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    msg = messages()[3]
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "user"]
    assert row["prompt"][1:3] == msg["history"] and row["prompt"][3] == {"role": "user", "content": msg["input"]}
    assert row["prompt"][0] == chat_messages(None, msg, PromptSpec())[0]  # the same system turn (brand, tags)
    plain = _tiny_run(tmp_path / "plain", {"format": "plain", "tags": False, "history": 0})
    export_votes(suite, out, plain)
    [row] = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["prompt"] == prompt_text(None, msg, PromptSpec(prompt_format="plain", tags=False, history=0))
    assert row["chosen"] == " " + ENTRIES["qlora-r8"][2](3, msg)  # TRL's standard format, spaced as in training


def test_report_gains_a_human_preference_section_only_with_votes(suite):
    from supporttune.report.build import build_results
    from supporttune.report.render import render_report
    from supporttune.rate.store import FILENAME, DuplicateVote, Store

    from supporttune.report.preference import human_preference, render_preference

    assert human_preference(suite, []) is None and render_preference(None) == ("", "")  # no ratings.jsonl yet
    store = Store(suite / FILENAME)
    truth = {"qlora-r8": 2.0, "retrieval-tfidf": 0.5, "constant-dm": -0.5, "pt-10": -2.0}
    for rater, seed in (("ann", 1), ("bob", 2)):
        for k, vote in enumerate(simulate(truth, 90, seed=seed, rater=rater)):
            vote["message_id"] = f"m{k % 12:02d}"
            try:
                store.append({**vote, "flags": {"right": ["rude"]} if vote["right"] == "pt-10" else {}})
            except DuplicateVote:  # the simulation may repeat a message and pair for one rater
                pass
    store.append({"rater": "cat", "message_id": "m11", "left": "qlora-r8", "right": "pt-10", "choice": "skip", "flags": {}})
    hp = build_results(suite)["human_preference"]
    assert hp["ranking"][0] == "qlora-r8" and hp["ranking"][-1] == "pt-10"
    assert hp["metric_top"] == "constant-dm" and hp["human_top"] == "qlora-r8"
    assert hp["disagrees_with_metrics"] is True and "disagrees" in hp["verdict"]
    assert hp["votes"] == sum(hp["votes_by_rater"].values()) and hp["skips"] >= 1
    assert hp["flags"]["pt-10"]["rude"] > 0 and hp["agreement"]["pairs"][0]["items"] > 0
    md, page = render_report(suite)
    text = md.read_text()
    assert "## Human preference" in text and "Bradley-Terry strengths" in text and "Cohen's kappa" in text
    assert text.index("## Human preference") < text.index("## Details")  # an optional section, before the details
    assert "<h2>Human preference</h2>" in page.read_text()
