"""Base models: the named presets (presets.py) and loading them, embedded GGUF, hub id or local path (loading.py)."""
