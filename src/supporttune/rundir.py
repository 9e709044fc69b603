"""The run directory: its layout and its typed record, in one place.

A trained run is a folder that train writes and evaluate, chat, serve, export, suite, report and
rate read. This module alone knows its file names and the schema of ``config.yaml``; everyone
else goes through ``RunRecord`` (what was trained, on which base, with which prompt) and the
helpers below::

    RUN/
      config.yaml          RunRecord: resolved train config, identity + hash, model, prompt spec,
                           parallel plan, device/dtype, parameter counts, provenance; a preference
                           run also its objective, parent run and the preference file's sha256
      exemplars.jsonl      the exemplar index's rows (training split), when prompt.retrieve > 0
      adapter_config.json  adapter_model.safetensors   (PEFT's own files)
      README.md            the run's card: method, base, data digest, prompt, scores, how to load it
      loss.jsonl           train/val loss per logged step
      train_summary.json   figures of the finished run
      checkpoints/         only while training (removed at the end)
      tensorboard/         event files, with --report-to tensorboard
      eval/                metrics.json, predictions.jsonl

An export (`supporttune export`) is a run directory too: the same ``config.yaml`` (its base named by preset,
hub id or absolute path plus digest, and an ``export`` block) and ``exemplars.jsonl``, with either the
adapter files or, when merged, a standard checkpoint (``read_record`` then points the model at the folder).
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from .core.errors import UserError
from .core.io import read_json, read_jsonl, write_jsonl
from .prompting.spec import PromptSpec

CONFIG = "config.yaml"
SUMMARY = "train_summary.json"
LOSS = "loss.jsonl"
EXEMPLARS = "exemplars.jsonl"
ADAPTER = "adapter_config.json"
CARD = "README.md"  # the run's model card (train/publish.py writes it; PEFT's template is replaced)
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
EXPORT_REPORT = "export_report.json"  # what export wrote and measured (drift, GGUF logits)
MODEL_CARD = "README.md"  # an export's model card
FEEDBACK = "feedback.jsonl"  # `serve`'s POST /v1/feedback records (serve/feedback.py documents the format)


class RunRecord(BaseModel):
    """What ``config.yaml`` holds. Written once by train (rank 0), read by every later stage."""

    model_config = ConfigDict(extra="allow")

    train: dict = Field(description="The resolved TrainConfig.")
    identity: dict = Field(description="The fields that define the result (resume checks compare them).")
    config_hash: str
    model: dict = Field(description="ModelRef fields: name, kind, location.")
    prompt: dict = Field(description="PromptSpec fields: everything that decides the prompt's tokens.")
    parallel: dict = Field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    precision_note: str | None = None
    trainable_params: int = 0
    total_params: int = 0
    objective: str = Field("sft", description="sft, or the preference objective (dpo, kto, orpo) of a child run.")
    parent: dict | None = Field(None, description="A preference run's parent: its run directory, variant and "
                                                  "config hash (its adapter is where the policy started).")
    preferences: dict | None = Field(None, description="A preference run's data: path, sha256, rows, rows per split.")

    @property
    def spec(self) -> PromptSpec:
        return PromptSpec.from_dict(self.prompt)

    @property
    def model_ref(self):
        from .models.loading import ref_from_record

        return ref_from_record(self.model)

    @property
    def merged(self) -> bool:
        """An export whose adapter was merged: the folder is the model."""
        return bool((getattr(self, "export", None) or {}).get("merged"))

    @property
    def method(self) -> str:
        return self.train["method"]

    @property
    def variant(self) -> str:
        return self.train.get("name") or self.train["method"]

    def write(self, run_dir: Path) -> None:
        (Path(run_dir) / CONFIG).write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False))


def read_record(run_dir: Path, finished: bool = True) -> RunRecord:
    """The run's record; with ``finished``, also insist that training saved the adapter."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir}: not a training run or export (no {CONFIG})")
    try:
        record = RunRecord(**yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, TypeError, ValueError) as e:
        raise UserError(f"{path}: not a supporttune run record ({str(e).splitlines()[0]})") from None
    if record.merged:  # the merged checkpoint is the model; its base stays recorded in record.export
        record.model = {"name": record.model.get("name", ""), "kind": "local", "location": str(Path(run_dir).resolve())}
    elif finished and not (Path(run_dir) / ADAPTER).is_file():
        raise UserError(f"{run_dir}: training did not finish (no adapter); rerun train with --resume")
    return record


def recorded_path(run_dir: Path, value: str | Path, what: str, flag: str) -> Path:
    """A path a run recorded (possibly relative to wherever train ran), found from here.

    Tried in order: as recorded (absolute, or relative to the current directory), then relative to the run
    directory and each folder above it (a suite's runs sit two levels below its data).
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        candidates = [path]
    else:
        run = Path(run_dir).resolve()
        candidates = [Path.cwd() / path, *(base / path for base in (run, *run.parents))]
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    raise UserError(f"{run_dir}: the {what} it recorded ({value}) is not found from here; give its path with {flag}")


def saved_identity(run_dir: Path) -> dict | None:
    """The identity a (possibly unfinished) run was started with, or None."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        return None
    return (yaml.safe_load(path.read_text()) or {}).get("identity")


def summary(run_dir: Path) -> dict | None:
    path = Path(run_dir) / SUMMARY
    return read_json(path) if path.is_file() else None


def loss_log(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / LOSS
    return read_jsonl(path) if path.is_file() else []


def save_exemplars(run_dir: Path, rows: list[dict]) -> None:
    from .prompting.retrieval import FIELDS

    write_jsonl(Path(run_dir) / EXEMPLARS, [{k: r.get(k, "") for k in FIELDS} for r in rows])


def exemplar_index(run_dir: Path, spec: PromptSpec):
    """The run's exemplar index (None when the prompt shows no retrieved examples)."""
    if spec.retrieve <= 0:
        return None
    path = Path(run_dir) / EXEMPLARS
    if not path.is_file():
        raise UserError(f"{run_dir}: the prompt retrieves examples but {EXEMPLARS} is missing")
    from .prompting.retrieval import ExemplarIndex

    return ExemplarIndex(read_jsonl(path), spec.retrieval)


def feedback_path(run_dir: Path) -> Path:
    return Path(run_dir) / FEEDBACK


def copy_exemplars(run_dir: Path, dest: Path, spec: PromptSpec) -> bool:
    """Give ``dest`` (an export) the run's exemplar rows when its prompt retrieves; whether it did."""
    if spec.retrieve <= 0:
        return False
    path = Path(run_dir) / EXEMPLARS
    if not path.is_file():
        raise UserError(f"{run_dir}: the prompt retrieves examples but {EXEMPLARS} is missing")
    save_exemplars(dest, read_jsonl(path))
    return True
