"""Compiled decode steps kept on disk, so a machine compiles a shape once, not once per process.

Why: compiling the engine's static decode step costs 30-40 s on an H100 (issue 23), paid again by
every evaluate process of the same architecture. PyTorch saves what it compiled as one blob
("Mega-Cache": ``torch.compiler.save_cache_artifacts`` / ``load_cache_artifacts``, holding the
Inductor FX-graph, AOTAutograd, Triton and autotuning caches). We keep one blob per compiled shape
under ``$SUPPORTTUNE_HOME/compile/``, next to inductor's own cache directory (``TORCHINDUCTOR_CACHE_DIR``,
set by the engine), and hot-load it before the next process compiles the same shape.

The file name is a key over everything a compiled artifact depends on: torch, triton and
transformers versions, the device (GPU name, compute capability, CUDA version), the architecture
(a hash of the model config, weights aside: merged adapters of one base share it), the dtype, and
the batch/cache shape (rows x cache length). PyTorch validates its own entries too; the key keeps
us from loading (and reporting as a hit) a blob made for something else.

A file whose checksum, header or key does not match, or that torch cannot load, is stale or
corrupt: one warning line, the file is removed, the shape is compiled and saved again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
from pathlib import Path

MAGIC = b"supporttune-compile-cache 1\n"
FOLDER = "compile"
_CONFIG_NOISE = ("_name_or_path", "quantization_config", "transformers_version", "torch_dtype", "dtype",
                 "_commit_hash", "use_cache", "architectures")
_LOADED: set[str] = set()  # keys hot-loaded in this process (loading twice gains nothing)
_WARNED: set[str] = set()  # keys already warned about in this process: one line each


def arch_hash(config) -> str:
    """Hash of a model config's shape-relevant fields (a transformers config or a plain dict)."""
    data = config if isinstance(config, dict) else config.to_dict()
    data = {k: v for k, v in data.items() if k not in _CONFIG_NOISE}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_key(*, torch_version: str, triton_version: str | None, transformers_version: str, device: str,
              arch: str, dtype: str, rows: int, length: int, mode: str = "") -> str:
    """The artifact's name: readable shape first, then a hash of the software and hardware it was built on."""
    env = json.dumps([torch_version, triton_version, transformers_version, device, mode])
    env_hash = hashlib.sha256(env.encode()).hexdigest()[:12]
    return f"{arch}-{dtype.replace('torch.', '')}-{rows}x{length}-{env_hash}"


def device_name(device: str) -> str:
    """What the compiled kernels were built for: the GPU's name and capability, or the CPU's architecture."""
    import torch

    if device == "cuda" and torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        return f"{torch.cuda.get_device_name()}|sm{major}{minor}|cuda{torch.version.cuda}"
    return f"cpu|{platform.machine()}"


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def key_for(model, rows: int, length: int, device: str, mode: str = "") -> str:
    """The key of a compiled (rows x length) decode step of ``model`` on ``device`` in this environment."""
    import torch
    import transformers

    return cache_key(torch_version=torch.__version__, triton_version=_version("triton"),
                     transformers_version=transformers.__version__, device=device_name(device),
                     arch=arch_hash(model.config), dtype=str(model.dtype), rows=rows, length=length, mode=mode)


def root() -> Path:
    """``$SUPPORTTUNE_HOME/compile``, or ``$SUPPORTTUNE_COMPILE_CACHE`` (the bench's cold start: an empty one)."""
    from ..models.loading import home

    return Path(os.environ.get("SUPPORTTUNE_COMPILE_CACHE") or home() / FOLDER)


def inductor_dir() -> Path:
    """Inductor's own on-disk caches (FX graphs, AOTAutograd, Triton kernels, autotuning), under the same home."""
    from ..models.loading import home

    return home() / "inductor"


def _warn(key: str, why: str) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        print(f"supporttune: warning: compile cache {key}: {why}; compiling again", file=sys.stderr)


class ArtifactCache:
    """One shape's compiled artifacts on disk: ``load()`` before compiling, ``save()`` after."""

    def __init__(self, key: str, folder: Path | None = None):
        self.key = key
        self.path = (folder or root()) / f"{key}.bin"

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> str:
        """'hit' (artifacts hot-loaded), 'miss' (no file), or 'bad' (stale/corrupt: warned, removed)."""
        if self.key in _LOADED:
            return "hit"
        try:
            blob = self.path.read_bytes()
        except OSError:
            return "miss"
        why = self._check(blob)
        if why is None:
            why = self._hot_load(blob[blob.index(b"\n", len(MAGIC)) + 1:])
        if why is not None:
            _warn(self.key, why)
            self.path.unlink(missing_ok=True)
            return "bad"
        _LOADED.add(self.key)
        return "hit"

    def _check(self, blob: bytes) -> str | None:
        if not blob.startswith(MAGIC) or b"\n" not in blob[len(MAGIC):]:
            return "not a compile-cache file"
        end = blob.index(b"\n", len(MAGIC))
        try:
            header = json.loads(blob[len(MAGIC):end])
        except ValueError:
            return "unreadable header"
        if header.get("key") != self.key:
            return f"made for {header.get('key')}"
        if hashlib.sha256(blob[end + 1:]).hexdigest() != header.get("sha256"):
            return "checksum mismatch (truncated or corrupt)"
        return None

    @staticmethod
    def _hot_load(payload: bytes) -> str | None:
        import torch

        quiet = logging.getLogger("torch.compiler._cache")  # it logs a traceback and returns None on bad bytes
        level = quiet.level
        quiet.setLevel(logging.CRITICAL)
        try:
            info = torch.compiler.load_cache_artifacts(payload)
        except Exception as e:  # noqa: BLE001 - any failure means: compile instead
            return f"torch could not load it ({type(e).__name__})"
        finally:
            quiet.setLevel(level)
        return None if info is not None else "torch could not load it"

    def save(self) -> bool:
        """Write what this process has compiled so far (atomically); False where there is nothing or no room."""
        import torch

        try:
            saved = torch.compiler.save_cache_artifacts()
        except Exception:  # noqa: BLE001 - saving is an optimisation
            return False
        if not saved or not saved[0]:
            return False
        payload = saved[0]
        header = json.dumps({"key": self.key, "sha256": hashlib.sha256(payload).hexdigest(),
                             "torch": torch.__version__}).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(MAGIC + header + b"\n" + payload)
            os.replace(tmp, self.path)  # readers never see half a file
        except OSError:
            return False
        _LOADED.add(self.key)
        return True


def hits_and_misses() -> dict[str, int]:
    """Inductor's FX-graph cache counters of this process: whether a compile reused cached graphs."""
    from torch._dynamo.utils import counters

    return {"fxgraph_hits": int(counters["inductor"].get("fxgraph_cache_hit", 0)),
            "fxgraph_misses": int(counters["inductor"].get("fxgraph_cache_miss", 0)),
            "aot_autograd_hits": int(counters["aot_autograd"].get("autograd_cache_hit", 0))}
