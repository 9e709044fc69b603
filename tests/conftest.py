"""Shared fixtures: paths to the real shared data, and tiny models for fast tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
SHARED_TWCS = REPO.parent / "shared" / "data" / "twcs_sample.csv"


@pytest.fixture(scope="session")
def twcs_path() -> Path:
    if not SHARED_TWCS.is_file():
        pytest.skip(f"shared TWCS sample not found at {SHARED_TWCS}")
    return SHARED_TWCS
