"""Training-time helpers that are not the Trainer itself (padding-free packing)."""
