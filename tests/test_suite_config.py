"""Suite configs: grid expansion, validation, and every shipped config."""

from importlib import resources
from pathlib import Path

import pytest

from supporttune.evaluate.config import EvalConfig
from supporttune.data.config import PrepareConfig
from supporttune.suite.config import SuiteConfig
from supporttune.train.config import TrainConfig
from supporttune.core.errors import UserError
from supporttune.suite.run import PRESETS, load_suite, preset_path


def test_grid_expands_into_named_variants():
    cfg = SuiteConfig(variants=[{"name": "lora", "method": "lora", "r": [4, 8, 16], "tags": [True, False]},
                                {"method": "prompt-tuning", "virtual_tokens": [10, 20]},
                                {"name": "all", "method": "lora", "targets": ["q_proj", "v_proj"]}])
    names = [v["name"] for v in cfg.expanded()]
    assert names == ["lora-r4-tags-on", "lora-r4-tags-off", "lora-r8-tags-on", "lora-r8-tags-off",
                     "lora-r16-tags-on", "lora-r16-tags-off", "prompt-tuning-vt10", "prompt-tuning-vt20", "all"]
    assert cfg.expanded()[-1]["targets"] == ["q_proj", "v_proj"]  # a list of names is a value, not a grid


def test_grid_of_target_lists():
    cfg = SuiteConfig(variants=[{"method": "lora", "targets": [["q_proj"], ["q_proj", "v_proj"]]}])
    assert [v["targets"] for v in cfg.expanded()] == [["q_proj"], ["q_proj", "v_proj"]]


@pytest.mark.parametrize("variants,msg", [
    ([{"method": "lora", "r": [0, 4]}], "greater than 0"),
    ([{"method": "nope"}], "unknown method"),
    ([{"name": "a", "method": "lora"}, {"name": "a", "method": "lora"}], "unique"),
])
def test_bad_suites_fail_on_load(variants, msg):
    with pytest.raises(ValueError, match=msg):
        SuiteConfig(variants=variants)


CONFIG_DIR = Path(str(resources.files("supporttune") / "configs"))
SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))
SEARCH_SPACES = {"tune", "tune-gpu"}  # `supporttune tune` configs, validated in test_tune.py; every other file is a suite


def test_the_shipped_configs_are_found():
    assert {p.stem for p in SHIPPED} >= {"default", "quick", "seed-recipe", "ablations", "rag-ablation", "tune"}
    assert {preset_path(p).resolve() for p in PRESETS} <= {p.resolve() for p in SHIPPED}  # every preset is shipped


@pytest.mark.parametrize("path", [p for p in SHIPPED if p.stem not in SEARCH_SPACES], ids=lambda p: p.stem)
def test_every_shipped_suite_config_validates_and_says_how_to_run_it(path):
    cfg = load_suite(path)
    variants = cfg.expanded()
    assert variants and len({v["name"] for v in variants}) == len(variants)
    for v in variants:  # what the suite will train, field by field (method rules included)
        t = TrainConfig(**{**cfg.defaults, **v, "data": "d", "out": "o"})
        assert t.lr is not None and t.method == v.get("method", cfg.defaults.get("method", "lora"))
    EvalConfig(baseline="constant", out=Path("o"), **cfg.eval)
    PrepareConfig(**cfg.prepare)
    # a config opens with its own launch command (by preset name or by path)
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    runs = [line for line in header if "supporttune run" in line]
    preset = {"default": "full"}.get(path.stem, path.stem)
    assert any(f"--preset {preset}" in line or f"configs/{path.name}" in line for line in runs), runs


def test_quick_preset_runs_a_seed_variant_its_retrieval_twin_and_all_baselines():
    cfg = load_suite(preset_path("quick"))
    assert [v["name"] for v in cfg.expanded()] == ["qlora-r8", "qlora-k2"]
    assert cfg.expanded()[-1]["retrieve"] == 2
    assert set(cfg.baselines) == {"zero-shot", "few-shot", "retrieval", "constant"}


def test_load_suite_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_suite(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("variants: [{method: lora, r: -1}]")
    with pytest.raises(UserError, match="invalid"):
        load_suite(bad)
