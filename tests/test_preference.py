"""Preference training (train --objective dpo|kto|orpo) and automatic pairs, on the tiny model, a few steps each.

The parent is a tiny LoRA run with retrieval and history in its prompt, so "the pair's prompt is the
agent's prompt" is tested where it is hardest (exemplars from the run's index, earlier turns, tags).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supporttune import rundir
from supporttune.core.errors import UserError
from supporttune.core.io import sha256_file, write_jsonl

from conftest import TINY_TRAIN

CHILD = dict(max_steps=2, save_steps=100, logging_steps=1, batch_size=2, grad_accum=1, device="cpu")


@pytest.fixture(scope="module")
def parent(tiny_model_dir, builtin_data, tmp_path_factory) -> Path:
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    out = tmp_path_factory.mktemp("pref") / "parent"
    train(TrainConfig(**{**TINY_TRAIN, "max_steps": 2, "save_steps": 100, "lr": 5e-2}, model=str(tiny_model_dir),
                      data=builtin_data, out=out, retrieve=2, history=3, max_length=1024))
    return out


def _suite_replies(messages: list[dict], bad: str = "no idea"):
    from supporttune.rate.replies import SuiteReplies

    msgs = {str(m["id"]): m for m in messages}
    return SuiteReplies(Path("."), {"sft": {k: m["output"] for k, m in msgs.items()}, "other": {k: bad for k in msgs}},
                        msgs, {("other", "sft"): sorted(msgs)})


@pytest.fixture(scope="module")
def votes_file(parent, builtin_data, tmp_path_factory) -> Path:
    """What `rate --export-preferences --prompt-from PARENT` writes for six A/B votes on validation messages."""
    from supporttune.data.split import load_split
    from supporttune.rate.export import PromptSource, preference_rows

    val = load_split(builtin_data, "val")[:6]
    votes = [{"message_id": m["id"], "left": "sft", "right": "other", "choice": "left"} for m in val]
    rows = preference_rows(_suite_replies(val), votes, PromptSource.from_run(parent))
    path = tmp_path_factory.mktemp("votes") / "votes.jsonl"
    write_jsonl(path, rows)
    return path


@pytest.mark.slow
def test_pair_prompt_ids_are_the_agents_prompt_ids(parent, votes_file, builtin_data):
    from supporttune.inference.agent import load_agent
    from supporttune.prompting.builder import encode_reply
    from supporttune.train.prefdata import encode, read_preferences

    agent = load_agent(parent, device="cpu")
    rows = read_preferences(votes_file, "dpo", agent.spec, builtin_data)
    enc = encode(rows, agent.prompts, "dpo", 1024)
    assert len(enc.items) == len(rows) == 6 and enc.rebuilt == 0  # the export used the run's own prompt
    for row, item in zip(rows, enc.items):
        assert item["prompt_ids"] == agent.prompt_ids(row.example)
        assert item["chosen_ids"] == encode_reply(agent.tokenizer, row.example["output"], agent.spec)
        assert item["rejected_ids"][-1] == agent.tokenizer.eos_token_id  # replies end as SFT trains them
    assert "Replies this team gave to similar messages" in agent.tokenizer.decode(enc.items[0]["prompt_ids"])


@pytest.mark.slow
def test_dpo_child_from_rate_votes_is_an_ordinary_run(parent, votes_file, builtin_data, tiny_model_dir, tmp_path):
    from supporttune.evaluate.config import EvalConfig
    from supporttune.evaluate.stage import evaluate
    from supporttune.inference.agent import load_agent
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    child = tmp_path / "dpo"
    summary = train(TrainConfig(objective="dpo", from_run=parent, preferences=votes_file, out=child, **CHILD))
    assert summary["steps"] == 2 and summary["objective"] == "dpo" and summary["parent"] == "lora"
    assert summary["first_train_loss"] == pytest.approx(0.6931, abs=1e-3)  # reference == the policy at step 0
    record = rundir.read_record(child)
    assert record.objective == "dpo" and record.parent["run"] == str(parent)
    assert record.preferences["sha256"] == sha256_file(votes_file) and record.preferences["splits"]["val"] == 6
    assert record.method == "lora" and record.spec == rundir.read_record(parent).spec  # inherited
    assert record.train["lr"] == pytest.approx(2e-5)  # a tenth of LoRA's SFT rate
    assert not (child / "ref").exists() and not (child / rundir.CHECKPOINTS).exists()  # TRL's frozen copy not saved
    ex = json.loads((builtin_data / "test.jsonl").read_text().splitlines()[0])
    child_agent, parent_agent = load_agent(child, device="cpu"), load_agent(parent, device="cpu")
    assert child_agent.prompt_ids(ex) == parent_agent.prompt_ids(ex)
    metrics = evaluate(EvalConfig(run=child, data=builtin_data, limit=2, max_new_tokens=4, latency_samples=0,
                                  device="cpu", force=True))
    assert metrics["examples"] == 2


@pytest.mark.slow
def test_dpo_with_an_sft_term_adds_the_chosen_replys_nll(parent, votes_file, tmp_path):
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    summary = train(TrainConfig(objective="dpo", from_run=parent, preferences=votes_file, out=tmp_path / "rpo",
                                sft_weight=1.0, **CHILD))
    # plain DPO starts at ln 2 (policy == reference); the SFT term adds the chosen reply's mean NLL, several nats
    # under a tiny random model
    assert summary["steps"] == 2 and summary["first_train_loss"] > 0.6931 + 1.0
    assert rundir.read_record(tmp_path / "rpo").train["sft_weight"] == 1.0


@pytest.mark.slow
def test_dpo_from_automatic_pairs(parent, builtin_data, tmp_path):
    from supporttune.pairs.auto import make_pairs
    from supporttune.pairs.config import PairsConfig
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    out = tmp_path / "auto.jsonl"
    counts = make_pairs(PairsConfig(run=parent, out=out, limit=4, max_new_tokens=6, baselines=["constant"],
                                    device="cpu"))
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert counts["pairs"] == len(rows) > 0 and set(counts["by_source"]) <= {"sample", "constant"}
    train_rows = {json.loads(x)["id"]: json.loads(x) for x in (builtin_data / "train.jsonl").read_text().splitlines()}
    assert all(r["chosen"][0]["content"] == train_rows[r["id"]]["output"].strip() for r in rows)
    assert all(r["rejected_score"] <= 90 for r in rows)  # 10 points below the reference's 100
    summary = train(TrainConfig(objective="dpo", from_run=parent, preferences=out, out=tmp_path / "child", **CHILD))
    assert summary["steps"] == 2 and summary["preference_splits"]["train"] == len(rows)


@pytest.mark.slow
def test_kto_from_rater_flags(parent, builtin_data, tmp_path):
    from supporttune.data.split import load_split
    from supporttune.rate.export import PromptSource, kto_rows
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    val = load_split(builtin_data, "val")[:4]
    votes = [{"message_id": m["id"], "left": "sft", "right": "other", "choice": "tie",
              "flags": {"right": ["rude"]} if i % 2 else {"left": ["off_topic"]}} for i, m in enumerate(val)]
    rows = kto_rows(_suite_replies(val), votes, PromptSource.from_run(parent))
    assert [r["label"] for r in rows] == [False] * 4  # a tie: only the flagged replies count, as undesirable
    rows += kto_rows(_suite_replies(val), [{**v, "choice": "left", "flags": {}} for v in votes], PromptSource.from_run(parent))
    path = tmp_path / "kto.jsonl"
    write_jsonl(path, rows)
    summary = train(TrainConfig(objective="kto", from_run=parent, preferences=path, out=tmp_path / "kto", **CHILD))
    assert summary["steps"] == 2 and summary["train_examples"] == 12
    assert rundir.read_record(tmp_path / "kto").objective == "kto"


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("rows,needle", [
    ([], "no preference rows"),
    ([{"id": "x1", "chosen": "a"}], "needs both 'chosen' and 'rejected'"),
    ([{"chosen": "a", "rejected": "b"}], "needs a 'prompt'"),
    ([{"id": "nope", "chosen": "a", "rejected": "b"}], "is not a message of"),
    ([{"prompt": "Customer message: hi\nAgent response:", "chosen": "a", "rejected": "b"}], "the prompt is text"),
    ([{"prompt": [{"role": "user", "content": "never said"}], "chosen": "a", "rejected": "b"}], "not a message of"),
    ([{"prompt": [{"role": "user", "content": "x"}], "completion": "a", "label": True}], "use --objective kto"),
    (["[1, 2]"], "not a JSON object"),
])
def test_bad_preference_files_fail_in_one_line(rows, needle, builtin_data, tmp_path):
    from supporttune.prompting.spec import PromptSpec
    from supporttune.train.prefdata import read_preferences

    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        read_preferences(_write(tmp_path / "p.jsonl", rows), "dpo", PromptSpec(), builtin_data)
    with pytest.raises(UserError, match="file not found"):
        read_preferences(tmp_path / "missing.jsonl", "dpo", PromptSpec(), builtin_data)


def test_plain_prompts_and_implicit_prompts_find_their_example(builtin_data, tmp_path):
    from supporttune.data.split import load_split
    from supporttune.prompting.builder import prompt_text
    from supporttune.prompting.spec import PromptSpec
    from supporttune.train.prefdata import read_preferences

    ex = load_split(builtin_data, "train")[3]
    plain = PromptSpec(prompt_format="plain", history=0)
    row = {"prompt": prompt_text(None, ex, plain), "chosen": " yes", "rejected": " no"}
    [got] = read_preferences(_write(tmp_path / "p.jsonl", [row]), "dpo", plain, builtin_data)
    assert got.example["id"] == ex["id"] and got.chosen == "yes"
    implicit = {"chosen": [{"role": "user", "content": ex["input"]}, {"role": "assistant", "content": "a"}],
                "rejected": [{"role": "user", "content": ex["input"]}, {"role": "assistant", "content": "b"}]}
    [got] = read_preferences(_write(tmp_path / "q.jsonl", [implicit]), "dpo", PromptSpec(), builtin_data)
    assert got.example["id"] == ex["id"] and (got.chosen, got.rejected) == ("a", "b")


def test_config_rules():
    from pydantic import ValidationError

    from supporttune.train.config import TrainConfig

    with pytest.raises(ValidationError, match="needs --from RUN"):
        TrainConfig(objective="dpo", preferences="p.jsonl")
    with pytest.raises(ValidationError, match="go with a preference objective"):
        TrainConfig(from_run="r")
    assert TrainConfig(objective="orpo", from_run="r", preferences="p", method="qlora").lr == pytest.approx(2e-5)
    with pytest.raises(ValidationError, match="--sft-weight goes with --objective dpo"):
        TrainConfig(objective="kto", from_run="r", preferences="p", sft_weight=1.0)


def test_suite_plans_parents_before_children(tmp_path):
    from supporttune.suite.config import SuiteConfig
    from supporttune.suite.run import plan_jobs

    data = tmp_path / "data"
    data.mkdir()
    cfg = SuiteConfig(variants=[{"name": "dpo-a", "objective": "dpo", "from": "lora-a", "preferences": "auto"},
                                {"name": "lora-a", "method": "lora"}], baselines=[], pairs={"margin": 5})
    jobs = plan_jobs(cfg, tmp_path / "s", data)
    assert [j.name for j in jobs] == ["lora-a", "dpo-a"]
    child = jobs[1]
    assert child.train.from_run == jobs[0].dir and child.pairs == {"margin": 5}
    assert child.train.preferences == tmp_path / "s" / "preferences" / "dpo-a.jsonl"
    with pytest.raises(ValueError, match="not a variant of this suite"):
        SuiteConfig(variants=[{"name": "c", "objective": "dpo", "from": "ghost", "preferences": "auto"}])
    with pytest.raises(ValueError, match="circle"):
        SuiteConfig(variants=[{"name": "a", "objective": "dpo", "from": "b", "preferences": "auto"},
                              {"name": "b", "objective": "dpo", "from": "a", "preferences": "auto"}])


@pytest.mark.slow
def test_suite_trains_parent_then_auto_dpo_child_and_reports_the_pair(tiny_model_dir, builtin_data, tmp_path):
    from supporttune.report.render import render_report
    from supporttune.suite.config import SuiteConfig
    from supporttune.suite.run import run_suite

    cfg = SuiteConfig(data=str(builtin_data), baselines=["constant"],
                      defaults={**TINY_TRAIN, "model": str(tiny_model_dir), "max_steps": 2, "save_steps": 100},
                      variants=[{"name": "dpo-a", "objective": "dpo", "from": "lora-a", "preferences": "auto"},
                                {"name": "lora-a", "method": "lora", "lr": 5e-2}],
                      eval={"limit": 4, "max_new_tokens": 4, "latency_samples": 0, "perplexity": False},
                      pairs={"limit": 4, "max_new_tokens": 6, "device": "cpu"})
    out = tmp_path / "suite"
    results = run_suite(cfg, out, log=lambda _m: None)
    assert [e["status"] for e in results["entries"]] == ["ok"] * 3
    child = next(e for e in results["entries"] if e["name"] == "dpo-a")
    assert child["parent"] == "lora-a" and child["objective"] == "dpo"
    [row] = [r for r in results["significance"] if "child_of" in r]
    assert row["child_of"] == {"child": "dpo-a", "parent": "lora-a"}
    md, _ = render_report(out)
    assert "dpo-a (child)" in Path(md).read_text() and "lora-a (parent)" in Path(md).read_text()


@pytest.mark.slow
def test_dpo_ctrl_c_resume_and_nan_guard_behave_as_for_sft(parent, votes_file, tmp_path):
    import os
    import signal

    import torch
    from transformers import TrainerCallback

    from supporttune.core.errors import RunFailed
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    class Interrupt(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    class Poison(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kw):
            if state.global_step == 2:
                with torch.no_grad():
                    for p in model.parameters():
                        if p.requires_grad:
                            p.fill_(float("nan"))

    cfg = TrainConfig(objective="dpo", from_run=parent, preferences=votes_file, out=tmp_path / "dpo",
                      **{**CHILD, "max_steps": 3})
    with pytest.raises(RunFailed, match="--resume"):
        train(cfg, callbacks=[Interrupt()])
    assert [p.name for p in (tmp_path / "dpo" / rundir.CHECKPOINTS).iterdir() if p.is_dir()] == ["checkpoint-2"]
    s = train(cfg.model_copy(update={"resume": True}))
    assert s["resumed_from"].endswith("checkpoint-2") and s["steps"] == 3
    poisoned = cfg.model_copy(update={"out": tmp_path / "nan", "max_steps": 4, "save_steps": 2})
    with pytest.raises(RunFailed, match=r"loss became nan at step 3.*checkpoint-2"):
        train(poisoned, callbacks=[Poison()])
