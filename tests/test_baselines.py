"""The baseline registry: a new baseline is one registered function, and every consumer picks it up."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from supporttune.core.io import read_json, read_jsonl, write_jsonl
from supporttune.evaluate import baselines
from supporttune.evaluate.config import EvalConfig
from supporttune.evaluate.stage import evaluate
from supporttune.suite.config import SuiteConfig


@pytest.fixture
def echo():
    """A baseline added the way a contributor adds one: a decorated function, nothing else."""

    @baselines.register("echo", "repeats the customer's message", generates=False)
    def _echo(inputs):
        return [(ex["input"], 0.0) for ex in inputs.examples]

    yield "echo"
    del baselines.REGISTRY["echo"]


def _data(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    row = {"thread_id": "t", "brand": "b", "category": "other", "sentiment": "neutral", "priority": "low"}
    write_jsonl(d / "train.jsonl", [{**row, "id": "a", "input": "hello", "output": "hi there"}])
    write_jsonl(d / "test.jsonl", [{**row, "id": "x", "thread_id": "u", "input": "where is my order", "output": "where is it"}])
    return d


def test_a_registered_baseline_is_validated_evaluated_and_offered_to_suites(echo, tmp_path):
    assert "echo: repeats" in baselines.describe()  # what --help and the suite config list
    metrics = evaluate(EvalConfig(baseline=echo, data=_data(tmp_path), out=tmp_path / "e", semantic=False, bootstrap=100))
    assert metrics["name"] == "echo" and metrics["generated"] is False
    assert [r["prediction"] for r in read_jsonl(tmp_path / "e" / "eval" / "predictions.jsonl")] == ["where is my order"]
    assert read_json(tmp_path / "e" / "eval" / "metrics.json")["rougeL"] > 0
    suite = SuiteConfig(variants=[{"name": "v", "method": "lora"}], baselines=["constant", echo])
    assert suite.baselines == ["constant", "echo"]
    assert "echo" in SuiteConfig(variants=[{"name": "v", "method": "lora"}]).baselines  # the default: all registered


def test_unknown_baselines_are_refused_by_name():
    with pytest.raises(ValidationError, match="unknown baseline 'echo'"):
        EvalConfig(baseline="echo", out=".")
    with pytest.raises(ValidationError, match="unknown baseline 'nope'"):
        SuiteConfig(variants=[{"name": "v", "method": "lora"}], baselines=["nope"])
