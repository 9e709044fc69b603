"""`supporttune bench`: how fast supporttune trains and generates, measured on random-weight models.

One entry point, ``run_bench(cfg)``:

* a ``BenchConfig`` measures the seed recipe against supporttune's fast path in one process
  (compare.py: training paths from train_paths.py, then generation.py);
* a ``ScalingConfig`` measures training throughput on 1..N processes with real
  ``supporttune train --nproc N`` runs (scaling.py);
* a ``SpeedConfig`` measures issue 23's rows: cold vs warm compile cache across evaluate processes,
  and training padded vs packed (speed.py).

The bench reuses production code wherever production code does the thing measured: the loader
(``models.load_model``), the method registry's builders, the collator (``batching.PadCollator``),
the prompt builder, device choice and ``generate_replies``. What is its own: random-weight models
(archs.py), the step batches (data.py) and a lean training-step loop.
"""

from __future__ import annotations

from .config import BenchConfig, ScalingConfig, SpeedConfig


def run_bench(cfg: BenchConfig | ScalingConfig | SpeedConfig, log=print) -> dict:
    """Run the benchmark ``cfg`` describes; write its JSON result to ``cfg.out`` when set, and return it."""
    if isinstance(cfg, SpeedConfig):
        from .speed import run_speed

        return run_speed(cfg, log)
    if isinstance(cfg, ScalingConfig):
        from .scaling import run_scaling

        return run_scaling(cfg, log)
    from .compare import seed_vs_fast

    return seed_vs_fast(cfg, log)
