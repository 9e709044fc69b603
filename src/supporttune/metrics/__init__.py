"""The metrics: one table of scorers, labels and formats, and the statistics (CIs, paired tests)."""
