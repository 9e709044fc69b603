"""rundir.py: the run directory's typed record and helpers, by hand and as train writes them."""

from pathlib import Path

import pytest
import yaml

from supporttune import rundir
from supporttune.core.errors import UserError
from supporttune.core.io import write_json, write_jsonl
from supporttune.prompting.spec import PromptSpec
from supporttune.rundir import RunRecord, read_record

TINY_BASE = str(Path(__file__).resolve().parent)  # any directory that exists on this machine
RECORD = dict(train={"method": "prompt-tuning", "name": "pt10", "virtual_tokens": 10}, identity={"method": "prompt-tuning"},
              config_hash="0123456789ab", model={"name": "tiny", "kind": "local", "location": TINY_BASE},
              prompt={"format": "plain", "tags": False, "sentiment": "textblob", "retrieve": 2, "history": 1,
                      "from_a_later_version": True})


def test_record_round_trip_and_what_it_answers(tmp_path):
    RunRecord(**RECORD, trainable_params=5760).write(tmp_path)
    (tmp_path / rundir.ADAPTER).write_text("{}")
    rec = read_record(tmp_path)
    assert rec.train == RECORD["train"] and rec.config_hash == "0123456789ab" and rec.trainable_params == 5760
    assert (rec.method, rec.variant) == ("prompt-tuning", "pt10")
    assert rec.spec == PromptSpec(prompt_format="plain", tags=False, sentiment="textblob", retrieve=2, history=1)  # unknown keys dropped
    assert (rec.model_ref.kind, rec.model_ref.location) == ("local", TINY_BASE)  # a local base must exist here
    assert RunRecord(**{**RECORD, "train": {"method": "lora"}}).variant == "lora"  # no name: the method
    assert rundir.saved_identity(tmp_path) == {"method": "prompt-tuning"}


def test_unfinished_missing_and_foreign_directories_are_one_line_errors(tmp_path):
    with pytest.raises(UserError, match=r"not a training run( or export)? \(no config.yaml\)"):
        read_record(tmp_path)
    assert rundir.saved_identity(tmp_path) is None
    RunRecord(**RECORD).write(tmp_path)
    with pytest.raises(UserError, match=r"training did not finish \(no adapter\); rerun train with --resume"):
        read_record(tmp_path)
    assert read_record(tmp_path, finished=False).method == "prompt-tuning"  # what resume and the report read
    (tmp_path / rundir.CONFIG).write_text(yaml.safe_dump({"train": {"method": "lora"}}))  # lacks identity, model, ...
    with pytest.raises(UserError, match="not a supporttune run record") as e:
        read_record(tmp_path, finished=False)
    assert "\n" not in str(e.value)
    (tmp_path / rundir.CONFIG).write_text("train: [unclosed\n")
    with pytest.raises(UserError, match="not a supporttune run record"):
        read_record(tmp_path, finished=False)


def test_summary_loss_log_and_exemplars(tmp_path):
    assert rundir.summary(tmp_path) is None and rundir.loss_log(tmp_path) == []
    write_json(tmp_path / rundir.SUMMARY, {"steps": 3})
    write_jsonl(tmp_path / rundir.LOSS, [{"step": 1, "train_loss": 2.0}])
    assert rundir.summary(tmp_path) == {"steps": 3} and rundir.loss_log(tmp_path) == [{"step": 1, "train_loss": 2.0}]
    assert rundir.exemplar_index(tmp_path, PromptSpec(retrieve=0)) is None
    with pytest.raises(UserError, match="exemplars.jsonl is missing"):
        rundir.exemplar_index(tmp_path, PromptSpec(retrieve=2))
    rows = [{"id": "a", "thread_id": "t1", "brand": "Acme", "input": "reset my password", "output": "use the link",
             "category": "dropped"},
            {"id": "b", "thread_id": "t2", "brand": "Acme", "input": "where is my parcel", "output": "DM us"}]
    rundir.save_exemplars(tmp_path, rows)
    index = rundir.exemplar_index(tmp_path, PromptSpec(retrieve=2, retrieval="tfidf"))  # BM25 has no signal on two documents
    assert [r["id"] for r in index.rows] == ["a", "b"] and "category" not in index.rows[0]
    assert index.nearest({"input": "my password", "thread_id": "t9", "brand": "Acme"})[0]["id"] == "a"


@pytest.mark.parametrize("name", ["lora", "prompt-tuning"])
def test_train_writes_the_record_the_other_stages_read(tiny_runs, name):
    cfg, summary = tiny_runs(name)
    rec = read_record(cfg.out)
    assert rec.train == cfg.resolved() and rec.identity == cfg.identity() and rec.config_hash == cfg.digest()
    assert rec.spec == PromptSpec(prompt_format=cfg.prompt_format, tags=cfg.tags, sentiment="vader",  # as prepare tagged the data
                                  retrieve=cfg.retrieve, retrieval=cfg.retrieval, history=cfg.history,
                                  context_tokens=cfg.context_tokens)
    assert (rec.model_ref.kind, rec.model_ref.location) == ("local", cfg.model)
    assert rec.trainable_params == summary["trainable_params"] and rundir.summary(cfg.out) == summary
    assert [r["step"] for r in rundir.loss_log(cfg.out) if "train_loss" in r] == [1, 2, 3]
    assert not (cfg.out / rundir.CHECKPOINTS).exists() and not (cfg.out / rundir.EXEMPLARS).exists()  # no retrieval
