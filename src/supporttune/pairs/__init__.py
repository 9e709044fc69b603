"""Preference data made without raters: automatic (chosen, rejected) pairs from a trained run."""
