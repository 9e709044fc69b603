"""Where a result came from: package versions, git commit, hardware, data hashes."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

PACKAGES = ("supporttune", "torch", "transformers", "peft", "accelerate", "bitsandbytes", "trl", "sacrebleu",
            "rouge-score", "sentence-transformers")


def versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["python"] = platform.python_version()
    return out


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


@lru_cache(maxsize=1)
def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> dict:
    """The CPU's model name and the matmul features that decide CPU training speed (bf16 on AVX512-BF16/AMX
    CPUs is fast, on AVX2-only CPUs ~28x slower than fp32): timings from different machines are then comparable."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's
    flags = set(fields.get("flags", "").split())
    return {"cpu_model": fields.get("model name") or None,
            "cpu_features": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})}


def hardware() -> dict:
    import torch

    info = {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
            "cpu_threads": torch.get_num_threads(), **cpu_model()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
        info["cuda"] = torch.version.cuda
    return info


def provenance(data_files: dict[str, Path] | None = None) -> dict:
    from .io import sha256_file

    out = {"versions": versions(), "git_commit": git_commit(), "hardware": hardware()}
    if data_files:
        out["data_sha256"] = {k: sha256_file(p) for k, p in data_files.items() if Path(p).is_file()}
    return out
