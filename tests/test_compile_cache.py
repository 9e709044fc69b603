"""Compile once per machine: the artifact key, the on-disk save/load plumbing, corrupt files, slot reuse."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from supporttune.inference import compile_cache as cc

BASE = dict(torch_version="2.13.0", triton_version="3.5.0", transformers_version="5.0.0", device="NVIDIA H100|sm90|cuda12.8",
            arch="0123456789abcdef", dtype="torch.bfloat16", rows=64, length=384)


@pytest.mark.parametrize("field,value", [("torch_version", "2.14.0"), ("triton_version", None),
                                         ("transformers_version", "5.1.0"), ("device", "NVIDIA H200|sm90|cuda12.8"),
                                         ("arch", "fedcba9876543210"), ("dtype", "torch.float16"), ("rows", 1),
                                         ("length", 512)])
def test_the_key_changes_with_everything_an_artifact_depends_on(field, value):
    assert cc.cache_key(**{**BASE, field: value}) != cc.cache_key(**BASE)
    assert cc.cache_key(**BASE) == cc.cache_key(**dict(BASE))  # and only with those


def test_arch_hash_is_the_shape_not_the_checkpoint():
    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "_name_or_path": "/runs/a", "transformers_version": "5.0"}
    assert cc.arch_hash(cfg) == cc.arch_hash({**cfg, "_name_or_path": "/runs/b", "transformers_version": "5.1"})
    assert cc.arch_hash(cfg) != cc.arch_hash({**cfg, "hidden_size": 128})


@pytest.fixture
def fake_torch_cache(monkeypatch, tmp_path):
    """torch's save/load of compile artifacts replaced by a recorder (real compiles take a minute on this CPU)."""
    import torch

    loaded: list[bytes] = []
    monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"compiled-graphs", object()))
    monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda blob: loaded.append(blob) or object())
    monkeypatch.setattr(cc, "_LOADED", set())
    monkeypatch.setattr(cc, "_WARNED", set())
    return loaded


def test_a_saved_artifact_is_found_and_hot_loaded_by_the_next_process(fake_torch_cache, tmp_path, monkeypatch):
    first = cc.ArtifactCache("k1", tmp_path)
    assert first.load() == "miss" and first.save() and first.path.is_file()
    monkeypatch.setattr(cc, "_LOADED", set())  # a new process
    assert cc.ArtifactCache("k1", tmp_path).load() == "hit"
    assert fake_torch_cache == [b"compiled-graphs"]
    assert cc.ArtifactCache("k2", tmp_path).load() == "miss"  # another shape: not this file


@pytest.mark.parametrize("damage", ["truncate", "garbage", "renamed", "torch-refuses"])
def test_a_corrupt_or_stale_file_warns_once_and_is_compiled_again(fake_torch_cache, tmp_path, monkeypatch, capsys, damage):
    import torch

    cache = cc.ArtifactCache("k1", tmp_path)
    cache.save()
    monkeypatch.setattr(cc, "_LOADED", set())
    blob = cache.path.read_bytes()
    if damage == "truncate":
        cache.path.write_bytes(blob[:-3])
    elif damage == "garbage":
        cache.path.write_bytes(b"\x00garbage")
    elif damage == "renamed":  # a file made for another key (copied by hand, or a key scheme changed)
        cache.path.rename(tmp_path / "k2.bin")
        cache = cc.ArtifactCache("k2", tmp_path)
    else:
        monkeypatch.setattr(torch.compiler, "load_cache_artifacts", lambda blob: None)
    assert cache.load() == "bad" and not cache.path.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("supporttune: warning: compile cache") and "compiling again" in err[0]
    cache.path.write_bytes(b"bad again")
    assert cache.load() == "bad" and capsys.readouterr().err == ""  # warned once per key and process
    assert cache.save() and cache.load() == "hit"  # compiled and saved again: the next process hits


def test_a_real_model_key_follows_dtype_and_shape(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    key = cc.key_for(model, 8, 256, "cpu")
    assert key == cc.key_for(model, 8, 256, "cpu")
    assert key != cc.key_for(model, 16, 256, "cpu") and key != cc.key_for(model, 8, 384, "cpu")
    assert key != cc.key_for(model.to(torch.bfloat16), 8, 256, "cpu")


_COMPILE = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from supporttune.inference import compile_cache as cc
    cache = cc.ArtifactCache("tiny-fn", Path(sys.argv[1]))
    state = cache.load()
    f = torch.compile(lambda x: (x.sin() + 1).cos() * 2)
    f(torch.randn(16))
    saved = state != "hit" and cache.save()
    print(state, saved, cc.hits_and_misses()["fxgraph_hits"])
""")


@pytest.mark.slow  # two real inductor compiles on the CPU: about a minute each on 2 shared cores
def test_real_compiled_artifacts_are_reused_by_a_second_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(p) for p in sys.path if p])}

    def run(inductor: str) -> list[str]:
        out = subprocess.run([sys.executable, "-c", _COMPILE, str(tmp_path / "compile")], capture_output=True, text=True,
                             env={**env, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / inductor)}, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()

    assert run("inductor-a")[:2] == ["miss", "True"]
    state, saved, hits = run("inductor-b")  # an empty inductor dir: only the saved artifacts can make it a hit
    assert state == "hit" and saved == "False" and int(hits) >= 1


@pytest.mark.slow
def test_a_suites_later_variant_reuses_the_slot(tiny_runs, builtin_data):
    """One slot per architecture per process: the second variant's engine copies its weights into the first's."""
    from supporttune.core.io import read_jsonl
    from supporttune.inference import slots
    from supporttune.inference.agent import load_agent
    from supporttune.inference.decode import DecodeSettings
    from supporttune.inference.engine import engine_for
    from supporttune.inference.generate import generate_replies

    slots.drop_slots()
    examples = read_jsonl(builtin_data / "test.jsonl")[:2]
    reports = []
    for name in ("lora", "dora"):
        agent = load_agent(tiny_runs(name)[0].out, device="cpu")
        generate_replies(agent, examples, DecodeSettings(max_new_tokens=3, batch_size=2, engine="static"), progress=None)
        reports.append(engine_for(agent).report())
    assert [r["slot_reused"] for r in reports] == [False, True]
    slots.drop_slots()


def test_the_engine_saves_a_cold_compile_and_hot_loads_it_in_the_next_process(tiny_runs, fake_torch_cache, tmp_path,
                                                                             monkeypatch):
    """The warm-up path as on a GPU (compiling and syncing stubbed): miss + save, then a hit in a 'new process'."""
    import torch

    from supporttune.inference import engine as eng
    from supporttune.inference import slots
    from supporttune.inference.agent import load_agent

    monkeypatch.setenv("SUPPORTTUNE_COMPILE_CACHE", str(tmp_path / "cc"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(eng, "sync", lambda device: None)
    monkeypatch.setattr(eng.Engine, "_run", lambda self, *a, **k: torch.zeros((1, 1), dtype=torch.long))
    reports = []
    for _ in range(2):  # two processes: fresh slots and nothing hot-loaded yet
        slots.drop_slots()
        monkeypatch.setattr(cc, "_LOADED", set())
        agent = load_agent(tiny_runs("lora")[0].out, device="cpu")
        engine = eng.engine_for(agent)
        agent.device = "cuda"
        engine._warm(engine._slot(), 8, 256, [1, 2, 3])
        engine._warm(engine._slot(), 8, 256, [1, 2, 3])  # same shape again: reused in-process, not recompiled
        reports.append(engine.report())
    cold, warm = reports
    assert [c["artifact"] for c in cold["compile_cache"]] == ["miss"] and cold["compile_cache"][0]["saved"]
    assert [c["artifact"] for c in warm["compile_cache"]] == ["hit"] and not warm["compile_cache"][0]["saved"]
    assert (cold["from_cache"], warm["from_cache"]) == (False, True) and warm["compiled_shapes"] == [[8, 256]]
    assert fake_torch_cache == [b"compiled-graphs"] and len(list((tmp_path / "cc").glob("*.bin"))) == 1
    slots.drop_slots()
