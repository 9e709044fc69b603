"""Inference: a loaded agent, the generation API, decoding strategies and the compiled engine."""
