"""The train stage: PEFT methods, the Trainer, batching; writes a run directory."""
