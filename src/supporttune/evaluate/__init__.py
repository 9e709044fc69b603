"""The evaluate stage: generate replies for held-out messages, score them, and the baselines that are scored alike."""
