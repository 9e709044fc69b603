"""Export stage: a trained model in formats other runtimes load (GGUF for llama.cpp / Ollama)."""
