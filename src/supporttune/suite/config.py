"""Typed configs of a whole comparison: the suite YAML (shared defaults + a diff per variant, grids) and
the `run` command that starts or resumes one. Every variant validates as a TrainConfig here, before
anything trains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ..config import StageConfig
from ..data.config import PrepareConfig
from ..evaluate import baselines
from ..evaluate.config import EvalOptions
from ..train.config import TrainConfig

GRID_SCALARS_AS_LIST = {"targets"}  # fields whose value is itself a list


class SuiteConfig(StageConfig):
    """A whole comparison: data, shared train defaults, variants (with grid syntax), baselines."""

    name: str = Field("suite", description="Suite name, shown in the report.")
    data: str = Field("builtin", description="Raw data file, 'builtin', or a prepared data directory.")
    prepare: dict = Field(default_factory=dict, description="PrepareConfig fields for raw data.")
    defaults: dict = Field(default_factory=dict, description="TrainConfig fields shared by all variants.")
    variants: list[dict] = Field(..., min_length=1, description="Per-variant TrainConfig differences; list values expand as a grid.")
    baselines: list[str] = Field(default_factory=lambda: list(baselines.REGISTRY),
                                 description=f"Baselines evaluated with the same code ({baselines.describe()}).")
    eval: dict = Field(default_factory=dict, description="EvalOptions fields (max_new_tokens, limit, ...).")
    pairs: dict = Field(default_factory=dict, description="PairsConfig fields (utility, margin, samples, baselines, "
                                                          "...) of the automatic pairs of `preferences: auto` entries.")

    @field_validator("baselines")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            baselines.get(name)
        return names

    @model_validator(mode="after")
    def _expand_and_check(self) -> "SuiteConfig":
        names = [v["name"] for v in self.expanded()]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"variant names must be unique after grid expansion (repeated: {', '.join(sorted(dupes))})")
        for v in self.expanded():  # every variant validates as a TrainConfig now, not after hours of training
            TrainConfig(**{**self.defaults, **v})
        dependency_order(self.expanded())
        if self.pairs:
            from ..pairs.config import PairsConfig

            PairsConfig(**{"run": ".", "out": "x.jsonl", **self.pairs})
        PrepareConfig(**self.prepare)
        EvalOptions(**self.eval)
        return self

    def expanded(self) -> list[dict]:
        """Variants with grid values expanded: ``r: [4, 8]`` gives two variants named ``<name>-r4``, ``<name>-r8``."""
        import itertools

        out = []
        for v in self.variants:
            grid = {k: val for k, val in v.items() if isinstance(val, list)
                    and not (k in GRID_SCALARS_AS_LIST and all(isinstance(x, str) for x in val))}
            if "from" in v:  # a preference child names its parent entry (`from: NAME`); the run dir comes later
                v = {**{k: x for k, x in v.items() if k != "from"}, "from_run": v["from"]}
            base_name = v.get("name") or v.get("method", "variant")
            if not grid:
                out.append({**v, "name": base_name})
                continue
            keys = list(grid)
            for combo in itertools.product(*(grid[k] for k in keys)):
                suffix = "-".join(_grid_label(k, x) for k, x in zip(keys, combo))
                out.append({**v, **dict(zip(keys, combo)), "name": f"{base_name}-{suffix}"})
        return out


def dependency_order(variants: list[dict]) -> list[dict]:
    """Variants with every preference child after its parent (``from: NAME``); a bad reference fails in one line."""
    by_name = {v["name"]: v for v in variants}
    for v in variants:
        parent = v.get("from_run")
        if parent is not None and str(parent) not in by_name:
            raise ValueError(f"variant {v['name']}: from '{parent}' is not a variant of this suite "
                             f"(choose from {', '.join(by_name)})")
    ordered, placed = [], set()

    def place(v: dict, path: tuple) -> None:
        if v["name"] in placed:
            return
        if v["name"] in path:
            raise ValueError(f"variants depend on each other in a circle: {' -> '.join(path + (v['name'],))}")
        if v.get("from_run") is not None:
            place(by_name[str(v["from_run"])], path + (v["name"],))
        placed.add(v["name"])
        ordered.append(v)

    for v in variants:
        place(v, ())
    return ordered


def _grid_label(key: str, value) -> str:
    short = {"r": "r", "alpha": "a", "dropout": "d", "virtual_tokens": "vt", "lr": "lr", "prompt_format": "",
             "prompt_init": "init-", "tags": "tags-", "targets": "t-", "retrieve": "k", "history": "h",
             "seed": "seed", "distract_share": "raft"}
    if isinstance(value, bool):
        value = "on" if value else "off"
    if isinstance(value, list):
        value = "+".join(map(str, value))
    return f"{short.get(key, key + '-')}{value}"


SUITE_PRESETS = ("quick", "full", "seed-recipe", "ablations", "rag-ablation")  # configs/<name>.yaml; full = default.yaml


class RunConfig(StageConfig):
    """`supporttune run`: which suite, where it goes, and whether to continue one."""

    config: Path | None = Field(None, description="Suite YAML: shared defaults plus a diff per variant (as in "
                                                  "src/supporttune/configs/).")
    preset: Literal[SUITE_PRESETS] = Field("quick", description="Built-in suite: quick = the embedded demo, full = "
                                                                "the seed's variants plus the measured recipe, "
                                                                "ablations and rag-ablation = grids (see each file).")
    data: str | None = Field(None, description="Raw data file, 'builtin', or a prepared directory (overrides the suite's).")
    model: str | None = Field(None, description="Base model of every variant (overrides the suite's).")
    out: Path = Field(Path("runs/suite"), description="Suite directory.")
    resume: bool = Field(False, description="Continue a suite in an existing directory (finished entries are skipped).")
    force: bool = Field(False, description="Delete an existing suite directory first.")

    @model_validator(mode="after")
    def _one_source(self) -> "RunConfig":
        if self.config is not None and "preset" in self.model_fields_set:
            raise ValueError("give --config or --preset, not both")
        return self

