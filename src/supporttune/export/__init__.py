"""Exporting a trained agent so it runs elsewhere: the adapter or a merged checkpoint."""
