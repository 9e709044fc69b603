"""The rate command's typed config: which suite, who rates, where the page listens, the preference export."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..config import StageConfig
from .schedule import CRITERIA, CRITERION, KINDS


class RateConfig(StageConfig):
    """`supporttune rate SUITE`: blind side-by-side human rating of two entries' replies."""

    suite: Path = Field(..., description="Suite directory (entries with eval/predictions.jsonl); votes go to "
                                         "SUITE/ratings.jsonl.")
    rater: str | None = Field(None, description="Your name, stored with each vote (default: the page asks for one).")
    host: str = Field("127.0.0.1", description="Bind address (loopback by default).")
    port: int = Field(8100, ge=1, le=65535, description="TCP port.")
    api_key: str | None = Field(None, description="Require this key (the page asks for it once per tab, or open it "
                                                  "with ?key=KEY; or set SUPPORTTUNE_API_KEY).")
    planned: int = Field(200, ge=1, description="Votes each rater is asked for (the progress bar's target).")
    overlap: float = Field(0.25, ge=0, le=1, description="Share of comparisons drawn from messages another rater "
                                                         "judged (for kappa).")
    scheduler: Literal[KINDS] = Field("active", description="Which comparison comes next: 'active' (the vote "
                                                    "expected to settle most of the ranking) or 'uniform' (every pair "
                                                    "equally often).")
    pair_rule: Literal[CRITERIA] = Field(
        CRITERION, description="The active scheduler's pair rule (rate/active.py): settle = the vote expected to add most "
                              "correctly ordered pairs (best in the simulations of docs/RESULTS.md); neighbours = "
                              "adjacent entries whose intervals overlap; flip/overlap = the first version's scores.")
    export_preferences: Path | None = Field(None, description="Write the decided votes as TRL preference pairs "
                                                              "(JSONL) and exit.")
    prompt_from: Path | None = Field(None, description="With --export-preferences: build prompts as this run does "
                                                       "(history, retrieval); default: the standard chat prompt.")
    export_shape: Literal["pairs", "kto"] = Field("pairs", description="With --export-preferences: pairs = "
                                                  "{prompt, chosen, rejected} (A/B votes; DPO/ORPO/KTO); kto = "
                                                  "{prompt, completion, label} (flagged replies and losers "
                                                  "undesirable, winners desirable).")

    @model_validator(mode="after")
    def _rule_needs_active(self) -> "RateConfig":
        if "pair_rule" in self.model_fields_set and self.scheduler != "active":
            raise ValueError("--pair-rule chooses among the active scheduler's rules; it needs --scheduler active")
        return self
