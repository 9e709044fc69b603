"""What `supporttune tune` searches: its typed config, validated before any trial trains.

A tune file is a suite file with a ``search`` section instead of ``variants``: shared ``defaults``
(TrainConfig fields), the parameters to search (each an Optuna distribution), the objective, and
the sampler and pruner settings. Every value the search can draw is checked as a TrainConfig here
(each bound and each choice, one parameter at a time), so a bad range fails in milliseconds.

Optuna's categorical choices must be scalars; a list choice (``targets: [[q_proj, v_proj], ...]``)
is stored in the study as its comma-joined string and decoded back here, so trials and results
show the list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..config import StageConfig, validation_message
from ..data.config import PrepareConfig
from ..evaluate.config import EvalOptions
from ..metrics.scores import get, select
from ..train.config import TrainConfig

# set per trial by tune itself: searching or fixing them makes no sense
PER_TRIAL = ("name", "out", "resume", "force", "data")
NOT_SEARCHABLE = PER_TRIAL + ("device", "fsdp")
EVAL_PER_TRIAL = ("run", "baseline", "out", "data", "split", "force")


def direction(objective: str) -> str:
    """val_loss is lower-better; every headline metric (ROUGE-L, BLEU, chrF, semantic similarity) higher-better."""
    if objective == "val_loss":
        return "minimize"
    return "maximize" if get(objective).higher_is_better else "minimize"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Param(_Strict):
    """One searched TrainConfig field: an Optuna float/int range or a categorical choice."""

    type: Literal["float", "int", "categorical"] = Field(description="Distribution kind.")
    low: float | None = Field(None, description="Lower bound (float/int).")
    high: float | None = Field(None, description="Upper bound, inclusive (float/int).")
    log: bool = Field(False, description="Sample on a log scale (learning rates).")
    step: float | None = Field(None, gt=0, description="Grid step of the range (not with log).")
    choices: list[Any] | None = Field(None, min_length=1, description="Values of a categorical (scalars or lists of names).")

    @model_validator(mode="after")
    def _check(self) -> "Param":
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical needs choices")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical takes choices, not low/high/log/step")
            for c in self.choices:
                if isinstance(c, list) and not all(isinstance(x, str) and "," not in x for x in c):
                    raise ValueError(f"a list choice must hold names without commas (got {c})")
                if isinstance(c, dict):
                    raise ValueError(f"a choice must be a scalar or a list of names (got {c})")
            codes = [_encode(c) for c in self.choices]
            if len(set(map(repr, codes))) != len(codes):
                raise ValueError("choices must be distinct")
            return self
        if self.choices is not None:
            raise ValueError(f"a {self.type} range takes low/high, not choices")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} range needs low and high")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int" and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError("an int range needs whole low, high and step")
        return self

    def distribution(self):
        """The Optuna distribution (optuna is imported only when a search runs)."""
        from optuna.distributions import (
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        if self.type == "categorical":
            return CategoricalDistribution([_encode(c) for c in self.choices])
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def decode(self, stored):
        """The TrainConfig value of a value stored in the study."""
        if self.type == "categorical":
            return {repr(_encode(c)): c for c in self.choices}.get(repr(stored), stored)
        return int(stored) if self.type == "int" else float(stored)

    def extremes(self) -> list:
        """Values checked before the search: both bounds, or every choice."""
        if self.type == "categorical":
            return list(self.choices)
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]


def _encode(choice):
    return ",".join(choice) if isinstance(choice, list) else choice


class SamplerSettings(_Strict):
    """Optuna's TPE sampler. Reseeded per trial with seed + trial number, so a resumed search draws
    what an uninterrupted one would have (a sampler seeded once would repeat its first draws)."""

    seed: int = Field(0, description="Seed of the sampler.")
    n_startup_trials: int = Field(5, ge=0, description="Random trials before TPE models the results.")
    multivariate: bool = Field(True, description="Model parameters jointly (lr and r interact).")


class PrunerSettings(_Strict):
    """Median pruning on the validation loss reported during training."""

    type: Literal["median", "none"] = Field("median", description="median = stop a trial whose validation loss "
                                                                "is worse than the median of earlier trials at the same step.")
    n_startup_trials: int = Field(2, ge=0, description="Trials that always run to the end (the median needs some).")
    n_warmup_steps: int = Field(0, ge=0, description="Never prune before this optimizer step.")
    report_every: int | None = Field(None, gt=0, description="Validate (and maybe prune) every N optimizer steps; "
                                                            "null = at epoch ends only (as a normal run does).")


class TuneConfig(StageConfig):
    """`supporttune tune`: data, shared train defaults, a search space, an objective."""

    name: str = Field("tune", description="Study name, shown in the report.")
    data: str = Field("builtin", description="Raw data file, 'builtin', or a prepared data directory.")
    prepare: dict = Field(default_factory=dict, description="PrepareConfig fields for raw data.")
    defaults: dict = Field(default_factory=dict, description="TrainConfig fields every trial shares.")
    search: dict[str, Param] = Field(..., min_length=1, description="TrainConfig field -> distribution.")
    objective: str = Field("val_loss", description="val_loss (lower is better, from training) or a metric of "
                                                   "evaluate on the validation split, e.g. rougeL (higher is better).")
    eval: dict = Field(default_factory=dict, description="EvalOptions fields for a generation objective (limit, ...).")
    start_with: list[dict] = Field(default_factory=list, description="Points a new study tries first (e.g. today's "
                                   "recipe, so the search has its baseline): searched field -> value; a field left "
                                   "out is drawn.")
    sampler: SamplerSettings = Field(default_factory=SamplerSettings)
    pruner: PrunerSettings = Field(default_factory=PrunerSettings)

    @field_validator("objective")
    @classmethod
    def _objective(cls, v: str) -> str:
        headline = [m.key for m in select(headline=True)]
        if v != "val_loss" and v not in headline:
            raise ValueError(f"unknown objective '{v}' (choose from val_loss, {', '.join(headline)})")
        return v

    @model_validator(mode="after")
    def _check(self) -> "TuneConfig":
        for key in self.search:
            if key not in TrainConfig.model_fields:
                raise ValueError(f"search.{key}: not a train field")
            if key in NOT_SEARCHABLE:
                raise ValueError(f"search.{key}: cannot be searched")
        fixed = [k for k in PER_TRIAL if k in self.defaults]
        if fixed:
            raise ValueError(f"defaults.{fixed[0]}: set by tune for each trial; leave it out")
        if self.defaults.get("fsdp"):
            raise ValueError("defaults.fsdp: tune trains each trial in one process (no --nproc); leave fsdp off")
        _train_config(self.defaults, "defaults")
        for key, param in self.search.items():  # every bound and choice, one parameter at a time
            for value in param.extremes():
                _train_config({**self.defaults, key: value}, f"search.{key}={value}")
        bad = [k for k in EVAL_PER_TRIAL if k in self.eval]
        if bad:
            raise ValueError(f"eval.{bad[0]}: set by tune for each trial; leave it out")
        EvalOptions(split="val", **self.eval)
        PrepareConfig(**self.prepare)
        for i, point in enumerate(self.start_with):
            self.encode(point, f"start_with[{i}]")
        return self

    @property
    def direction(self) -> str:
        return direction(self.objective)

    def trial_config(self, params: dict, data: Path, out: Path, name: str) -> TrainConfig:
        """The TrainConfig of one trial: defaults, then the drawn (decoded) parameters."""
        return TrainConfig(**{**self.defaults, **params, "data": data, "out": out, "name": name, "force": True})

    def decode(self, stored: dict) -> dict:
        return {k: self.search[k].decode(v) for k, v in stored.items() if k in self.search}

    def encode(self, point: dict, where: str = "point") -> dict:
        """A point of the search (TrainConfig values) as the study stores it; one line if it is outside the space."""
        out = {}
        for key, value in point.items():
            if key not in self.search:
                raise ValueError(f"{where}.{key}: not a searched field (searched: {', '.join(self.search)})")
            param, stored = self.search[key], _encode(value)
            if param.type == "categorical":
                inside = repr(stored) in {repr(_encode(c)) for c in param.choices}
            else:
                inside = (isinstance(value, (int, float)) and not isinstance(value, bool)
                          and param.low <= value <= param.high and (param.type == "float" or float(value).is_integer()))
            if not inside:
                raise ValueError(f"{where}.{key}={value}: outside search.{key}")
            out[key] = stored
        return out

    def distributions(self) -> dict:
        return {k: p.distribution() for k, p in self.search.items()}


def _train_config(values: dict, where: str) -> TrainConfig:
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        raise ValueError(f"{where}: {_message(e)}") from None


def load_tune(path: Path, overrides: dict | None = None) -> TuneConfig:
    """Read and validate a tune YAML file (``data``/``model`` overrides as in `run`); errors are one line."""
    from ..config import load_yaml_config

    return load_yaml_config(TuneConfig, path, "tune config", overrides, _message)


def _message(error: ValidationError) -> str:
    """One line; the checks above already name their place (``search.r=0: invalid r: ...``)."""
    first = error.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    return msg if not first["loc"] else validation_message(error).replace(first["msg"], msg)
