"""`supporttune run`: a suite of variants and baselines, trained, evaluated, resumed and reported."""
