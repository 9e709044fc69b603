"""Measure and free memory: peak CUDA allocation or process RSS, and cleanup between runs."""

from __future__ import annotations

import gc

import psutil
import torch


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


class PeakTracker:
    """Peak memory of the current stage: CUDA max allocated on GPU, sampled RSS on CPU."""

    def __init__(self, device: str):
        self.device = device
        self.peak_rss = rss_bytes()
        reset_peak()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, rss_bytes())

    def result(self) -> dict:
        self.sample()
        out = {"peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        if self.device == "cuda" and torch.cuda.is_available():
            out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return out


def sync(device: str) -> None:
    """Wait for queued GPU work, so host clocks time the device work (no-op on CPU)."""
    if device == "cuda":
        torch.cuda.synchronize()


def free_memory() -> None:
    """Collect garbage and return cached CUDA blocks; call after deleting models."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
