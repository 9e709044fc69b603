"""Decoding strategies on the tiny model (CPU): greedy unchanged, sample, beam, MBR through the generation API,
and the decode options in evaluate (metrics.json, the replies key), chat, serve and suite configs."""

import shutil

import httpx
import pytest

from supporttune.core.errors import UserError
from supporttune.core.io import read_jsonl
from supporttune.inference import mbr
from supporttune.inference import strategies
from supporttune.inference.agent import load_agent
from supporttune.inference.decode import DecodeSettings
from supporttune.inference.engine import engine_for
from supporttune.inference.generate import generate_ids, generate_replies
from supporttune.inference.mbr import DecodeSpec, decode_spec


@pytest.fixture(scope="module")
def agent(tiny_run):
    return load_agent(tiny_run, device="cpu")


@pytest.fixture(scope="module")
def examples(builtin_data):
    return read_jsonl(builtin_data / "test.jsonl")[:5]


def _texts(gens):
    return [g.text for g in gens]


def test_greedy_is_the_engine_path_unchanged(agent, examples):
    """Default settings, an explicit greedy spec and a direct engine call per batch (the code before
    strategies existed) give the same replies."""
    settings = DecodeSettings(max_new_tokens=8, batch_size=2)
    default = generate_replies(agent, examples, settings, progress=None)
    explicit = generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=2, decode=DecodeSpec()),
                                progress=None)
    engine = engine_for(agent)
    prompts = [agent.prompt_ids(ex) for ex in examples]
    direct = [None] * len(examples)
    for batch in engine.plan_batches(prompts, settings):
        for i, g in zip(batch, engine.generate([prompts[i] for i in batch], settings)):
            direct[i] = g
    assert _texts(default) == _texts(explicit) == _texts(direct)
    assert [g.new_tokens for g in default] == [g.new_tokens for g in direct]
    assert sum(g.new_tokens for g in default) > len(default)


def test_one_sample_mbr_equals_sampling_with_the_same_seed(agent, examples):
    def run(**spec):
        return _texts(generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=4,
                                                                       decode=decode_spec(**spec)), progress=None))

    sampled = run(strategy="sample", temperature=1.0, top_p=1.0, seed=3)
    assert run(strategy="mbr", candidates=1, include_greedy=False, temperature=1.0, top_p=1.0, seed=3) == sampled
    assert run(strategy="sample", temperature=1.0, top_p=1.0, seed=3) == sampled  # seeded: reproducible
    assert run(strategy="sample", temperature=1.0, top_p=1.0, seed=4) != sampled  # and really sampled
    greedy = _texts(generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=4), progress=None))
    assert sampled != greedy


def test_mbr_returns_the_pool_member_with_the_highest_expected_utility(agent, examples, monkeypatch):
    pools: list[list[str]] = []
    real = strategies.mbr_replies

    def recording(candidates_per_message, utility):
        pools.extend(candidates_per_message)
        return real(candidates_per_message, utility)

    monkeypatch.setattr(strategies, "mbr_replies", recording)
    spec = decode_spec(strategy="mbr", candidates=4, temperature=1.0, top_p=0.95, utility="rouge_l", seed=1)
    stats = strategies.DecodeStats()
    gens = generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=8, decode=spec),
                            progress=None, stats=stats)
    greedy = generate_replies(agent, examples, DecodeSettings(max_new_tokens=8, batch_size=8), progress=None)
    assert len(pools) == len(examples) and all(len(p) == 5 for p in pools)
    # the pools come in batch order (by prompt length), replies in input order: match them by the greedy reply
    by_greedy = {pool[0]: pool for pool in pools}
    for g, reply in zip(greedy, gens):
        pool = by_greedy[g.text]  # the greedy reply is the pool's first member
        index, expected = mbr.select(pool, "rouge_l")
        assert reply.text in pool and reply.text == pool[index]
        assert expected[pool.index(reply.text)] == max(expected)
    assert any(len(set(p)) > 1 for p in pools)  # the samples differ from the greedy reply somewhere
    record = stats.metrics(spec)
    assert record["decode"] == spec.record() and record["mbr_messages"] == len(examples)
    assert 0 <= record["mbr_greedy_share"] <= 1 and 1 <= record["mbr_distinct_candidates"] <= 5
    assert record["mbr_candidates_time_s"] > 0 and record["mbr_selection_time_s"] >= 0


def test_beam_runs_and_returns_one_reply_per_message(agent, examples):
    shapes = []
    for beams in (2, 3):
        gens = generate_replies(agent, examples, DecodeSettings(max_new_tokens=6, batch_size=4,
                                                                decode=decode_spec(strategy="beam", num_beams=beams)),
                                progress=None)
        assert all(isinstance(g.text, str) and 0 <= g.new_tokens <= 6 for g in gens)
        shapes.append(len(gens))
    assert shapes == [len(examples)] * 2
    engine = engine_for(agent)
    assert not engine.fast(DecodeSettings(engine="static", num_beams=2))  # beam search stays on the eager path
    streamed: dict[int, list[int]] = {}
    prompts = [agent.prompt_ids(ex) for ex in examples[:2]]
    gens = generate_ids(agent, prompts, DecodeSettings(max_new_tokens=6, batch_size=2,
                                                       decode=decode_spec(strategy="beam", num_beams=2)),
                        on_token=lambda row, t: streamed.setdefault(row, []).append(t))
    assert [streamed.get(i, []) for i in range(2)] == [g.token_ids for g in gens]  # tokens handed over at the end


def test_replies_key_has_the_decode_record_and_greedy_keeps_its_old_key():
    greedy = DecodeSettings(max_new_tokens=8).replies_key()
    assert greedy == {"max_new_tokens": 8, "do_sample": False, "temperature": None}  # as before strategies
    spec = decode_spec(strategy="mbr", candidates=8)
    key = DecodeSettings(max_new_tokens=8, decode=spec).replies_key()
    assert key["decode"] == spec.record() and key != greedy
    assert DecodeSettings(max_new_tokens=8, decode=decode_spec(strategy="mbr", candidates=4)).replies_key() != key
    assert DecodeSettings(decode=spec).as_dict()["decode"] == spec.record()  # metrics.json's "decoding" is JSON


def test_evaluate_records_the_decode_settings(tiny_run, builtin_data, tmp_path):
    from supporttune.evaluate.config import EvalConfig
    from supporttune.evaluate.stage import evaluate

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("eval"))
    m = evaluate(EvalConfig(run=run, data=builtin_data, limit=4, max_new_tokens=6, latency_samples=1, perplexity=False,
                            semantic=False, bootstrap=100, decode="mbr", candidates=3, utility="mix", decode_seed=5))
    spec = decode_spec(strategy="mbr", candidates=3, utility="mix", seed=5)
    assert m["decode"] == spec.record() and m["decoding"]["decode"] == spec.record()
    assert m["mbr_messages"] == 4 and m["mbr_candidates_time_s"] > 0 and "mbr_selection_time_s" in m
    assert 0 <= m["mbr_greedy_share"] <= 1 and m["mbr_distinct_candidates"] >= 1
    from supporttune.inference.options import decode_label

    assert decode_label(m["decode"]) == "mbr 3+greedy mix t0.7 p0.9"


def test_configs_take_the_decode_options():
    from supporttune.evaluate.config import EvalOptions
    from supporttune.serve.config import ChatConfig, ServeOptions
    from supporttune.suite.config import SuiteConfig
    from supporttune.suite.run import _eval_digest

    variants = [{"name": "v", "method": "lora"}]
    suite = SuiteConfig(variants=variants, eval={"decode": "mbr", "candidates": 8, "utility": "chrf", "top_p": 0.95})
    assert EvalOptions(**suite.eval).decode_spec().record()["pool_size"] == 9
    with pytest.raises(ValueError, match="num_beams >= 2"):
        SuiteConfig(variants=variants, eval={"decode": "beam", "num_beams": 1})
    with pytest.raises(ValueError, match="candidates"):
        SuiteConfig(variants=variants, eval={"decode": "mbr", "candidates": 0})
    # greedy digests are the ones from before the options; unused knobs do not change them, a strategy does
    assert _eval_digest(EvalOptions()) == _eval_digest(EvalOptions(num_beams=8, candidates=2))
    assert _eval_digest(EvalOptions()) != _eval_digest(EvalOptions(decode="mbr"))
    assert ChatConfig(run=".", temperature=0.7).decode_spec().strategy == "sample"  # the old --temperature
    assert ChatConfig(run=".", temperature=0).decode_spec().strategy == "greedy"
    assert ChatConfig(run=".", decode="mbr", temperature=0.5).decode_spec().temperature == 0.5
    with pytest.raises(ValueError, match="continuous decodes greedily"):
        ServeOptions(batcher="continuous", decode="mbr")


def test_cli_flags_and_one_line_errors(cli):
    run_cli = cli
    for command in ("evaluate", "chat", "serve"):
        out = run_cli(command, "--help").stdout
        for flag in ("--decode", "--candidates", "--utility", "--temperature", "--top-p", "--num-beams"):
            assert flag in out, (command, flag)
    res = run_cli("evaluate", "--baseline", "constant", "--data", "d", "--out", "o", "--decode", "beam",
                  "--num-beams", "1")
    assert res.returncode == 2 and "num_beams >= 2" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    with pytest.raises(UserError, match="utility"):
        decode_spec(strategy="mbr", utility="meteor")


def test_serve_and_chat_use_the_configured_strategy(agent):
    import io

    from supporttune.serve.chat import chat_loop
    from supporttune.serve.config import ServeOptions
    from supporttune.serve.loadtest import LocalServer
    from supporttune.serve.server import create_app

    spec = decode_spec(strategy="mbr", candidates=2)
    with LocalServer(create_app(agent, ServeOptions(max_new_tokens=6, decode="mbr", candidates=2))) as url:
        health = httpx.get(f"{url}/health").json()
        assert health["decode"] == spec.record() and health["batcher"] == "WindowBatcher"
        r = httpx.post(f"{url}/v1/reply", json={"message": "Where is my parcel?", "brand": "ShopNest"}, timeout=60)
        assert r.status_code == 200 and isinstance(r.json()["reply"], str)
    out = io.StringIO()
    assert chat_loop(agent, "ShopNest", stdin=io.StringIO("Where is my parcel?\n"), stdout=out, max_new_tokens=6,
                     decode=spec) == 1
    assert "\t" in out.getvalue()
