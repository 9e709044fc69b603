"""Typed, self-validating configs, one per stage. A bad value fails here, before any compute.

Every field carries its help text (``description``), which the CLI shows, so docs cannot drift
from the code. ``resolved()`` gives the plain dict written next to every result; ``digest()`` its
hash, used to key resumable suite runs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .core.io import sha256_json


def validation_message(error) -> str:
    """One line from a pydantic ValidationError: the first problem and where it is."""
    first = error.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "config"
    return f"invalid {loc}: {first['msg']}"


def load_yaml_config(config: type, path, label: str, overrides: dict | None = None, message=validation_message):
    """A YAML file of a suite-like config (suite, tune) with ``data``/``model`` overrides; errors are one line.

    ``model`` goes into ``defaults`` (the train fields every run shares); other keys are top-level.
    """
    from pydantic import ValidationError

    from .core.errors import UserError
    from .core.io import read_yaml_mapping

    doc = read_yaml_mapping(path, label)
    for key, value in (overrides or {}).items():
        if key == "model":
            doc.setdefault("defaults", {})[key] = value
        else:
            doc[key] = value
    try:
        return config(**doc)
    except ValidationError as e:
        raise UserError(f"{path}: {message(e)}") from None


class StageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def resolved(self) -> dict:
        return self.model_dump(mode="json")

    def digest(self) -> str:
        return sha256_json(self.resolved())[:12]


def split_csv(value):
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


class LaunchConfig(StageConfig):
    """How many processes a stage runs on (``--nproc``); not part of any result's identity."""

    nproc: int = Field(1, ge=1, le=1024, description="Processes to spread the work over (one per GPU; on CPU, gloo "
                                                     "processes), launched like torchrun: training runs DDP (FSDP with "
                                                     "--fsdp) with the same global batch; evaluation shards generation.")

