"""Data stage: read support logs (TWCS, JSONL/CSV/JSON, built-in), clean, tag and split them."""
