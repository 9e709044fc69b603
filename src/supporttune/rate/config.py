"""The rate command's typed config: which suite, who rates, where the page listens, the preference export."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ..config import StageConfig


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
    scheduler: Literal["active", "uniform"] = Field("active", description="Which comparison comes next: 'active' (the pair "
                                                    "whose order is least certain) or 'uniform' (every pair equally often).")
    export_preferences: Path | None = Field(None, description="Write the decided votes as TRL preference pairs "
                                                              "(JSONL) and exit.")
    prompt_from: Path | None = Field(None, description="With --export-preferences: build prompts as this run does "
                                                       "(history, retrieval); default: the standard chat prompt.")
    export_shape: Literal["pairs", "kto"] = Field("pairs", description="With --export-preferences: pairs = "
                                                  "{prompt, chosen, rejected} (A/B votes; DPO/ORPO/KTO); kto = "
                                                  "{prompt, completion, label} (flagged replies and losers "
                                                  "undesirable, winners desirable).")
