"""`supporttune tune`: an Optuna search over train + evaluate, one run directory per trial."""
