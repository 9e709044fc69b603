"""The decoding options as flat config fields: one mixin embedded in evaluate, chat, serve and suite configs.

``DecodeSpec`` (mbr.py) is the decoding config the generation code reads; the command line and the
YAML configs need flat fields (cliopts.py makes one flag per field), so ``DecodeOptions`` carries
the same fields under flag-friendly names (``decode`` is the strategy, ``decode_seed`` the sampling
seed: ``seed`` is the bootstrap's in EvalOptions) and builds the spec. Each field is a copy of the
DecodeSpec field (type, bounds, default, help), so the defaults are written once, in mbr.py.
"""

from __future__ import annotations

import copy

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from .mbr import DecodeSpec, Strategy, UtilityName

# DecodeOptions field -> DecodeSpec field
SPEC_FIELD = {"decode": "strategy", "candidates": "candidates", "include_greedy": "include_greedy",
              "temperature": "temperature", "top_p": "top_p", "num_beams": "num_beams", "utility": "utility",
              "decode_seed": "seed"}


def _field(name: str):
    return copy.deepcopy(DecodeSpec.model_fields[name])


class DecodeOptions(BaseModel):
    """How replies are decoded: greedy (default), sample, beam or mbr (minimum Bayes risk)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    decode: Strategy = _field("strategy")
    candidates: int = _field("candidates")
    include_greedy: bool = _field("include_greedy")
    temperature: float = _field("temperature")
    top_p: float = _field("top_p")
    num_beams: int = _field("num_beams")
    utility: UtilityName = _field("utility")
    decode_seed: int = _field("seed")

    @model_validator(mode="after")
    def _valid_spec(self) -> "DecodeOptions":
        try:
            self.decode_spec()
        except ValidationError as e:  # the strategy's own rules (beam needs num_beams >= 2)
            raise ValueError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    def decode_spec(self) -> DecodeSpec:
        return DecodeSpec(**{spec: getattr(self, name) for name, spec in SPEC_FIELD.items()})

    def decode_fields(self) -> dict:
        """These options as config fields (to carry them from one config into another)."""
        return {name: getattr(self, name) for name in SPEC_FIELD}


def decode_identity(fields: dict) -> dict:
    """A config dump with the decoding fields replaced by what decides the replies (nothing for greedy), so
    identities and digests made before these options existed stay the same for greedy decoding."""
    rest = {k: v for k, v in fields.items() if k not in SPEC_FIELD}
    spec = DecodeSpec(**{SPEC_FIELD[k]: v for k, v in fields.items() if k in SPEC_FIELD})
    return rest if spec.strategy == "greedy" else {**rest, "decode": spec.record()}


def decode_label(record: dict | None) -> str:
    """A decode record (metrics.json ``decode``) in a few words: 'greedy', 'beam 4', 'mbr 16+greedy chrf t0.7 p0.9'."""
    record = record or {"strategy": "greedy"}
    strategy = record.get("strategy", "greedy")
    if strategy == "beam":
        return f"beam {record.get('num_beams')}"
    sampling = f"t{record.get('temperature')} p{record.get('top_p')}"
    if strategy == "sample":
        return f"sample {sampling}"
    if strategy == "mbr":
        pool = f"{record.get('candidates')}{'+greedy' if record.get('include_greedy') else ''}"
        return f"mbr {pool} {record.get('utility')} {sampling}"
    return strategy
