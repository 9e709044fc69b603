"""Decoding strategies beyond one greedy pass: the configs and the pure selection logic behind them."""
