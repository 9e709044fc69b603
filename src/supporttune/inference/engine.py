"""The generation engine: one per agent; every generation call (``generate.generate_ids``) runs here.

Paths
  eager         the agent's own model: PEFT adapter unmerged, NF4 base for QLoRA, dynamic KV
                cache. The reference every other path is tested against; what the CPU runs (where
                it is the fastest), and what prefix tuning runs everywhere.
  static        (CUDA, or ``engine="static"`` anywhere) the architecture's slot (slots.py: a plain
                model with the adapter merged in, the NF4 base dequantized, or the base for prompt
                tuning and baselines) and a static KV cache passed to ``model.generate``, which on
                CUDA compiles the decode step itself (torch.compile, reduce-overhead = CUDA graphs;
                wrapping forward by hand is what failed before). Prompt tuning enters through
                ``inputs_embeds`` laid out as in training.
  eager-merged  the slot with a dynamic cache: on CUDA when compiling would not repay itself.
Beam search (``num_beams`` > 1, strategies.py) always takes the eager path: HF beam search reorders the
cache every step, and a compiled static cache with beams is neither built nor tested here.

Shapes: a compiled decode step is specialised to (rows, cache length). A test set is cut into
equal batches, padded with discarded rows to one row count, and the cache is sized once for the
set (longest prompt + reply budget, rounded up to 128), so a set compiles one shape (two with
the batch-1 latency pass) and a server one (its max batch). Static caches are kept per shape and
reset, so CUDA graphs replay on the same addresses; the slot outlives the agent, so the next
variant of the same base reuses every compiled shape.

When to compile (``auto``): a new shape is compiled only when the eager time of the batches still
to run (per decode step, as measured on the eager batches already run) exceeds the compile cost
plus their compiled time. The compile cost is the H100's cold figure, or its warm one where this
machine compiled the shape before (recorded under $SUPPORTTUNE_HOME/engine, next to inductor's
compile cache). So a first small evaluation stays on eager-merged, large sets compile, and once a shape
has been compiled on a machine (by a server's warm-up, a bench, ``SUPPORTTUNE_ENGINE=static``) later
evaluations compile it from the cache.

Compile once per machine: before compiling a shape the engine hot-loads the artifacts an earlier
process saved for exactly that shape, torch, GPU, architecture and dtype (compile_cache.py), and
saves them after a cold compile. ``report()`` says per shape whether the artifacts came from the
cache (``compile_cache``, ``from_cache``) and whether the slot was an earlier variant's (``slot_reused``).
"""

from __future__ import annotations

import math
import time

import torch
from transformers.generation.utils import ALL_CACHE_NAMES as _CACHE_NAMES

from ..core.memory import sync
from . import compile_cache
from . import slots
from .decode import (
    DecodeSettings,
    Generated,
    eager_generate,
    finish,
    pad_left,
    prompt_tuning_embeds,
    row_hooks,
    sampling_kwargs,
)

# H100 figures (SmolLM2-135M architecture, docs/BENCHMARKS.md), used until this machine has measured its own
COMPILE_COLD_S = 30.0  # first compile + capture of a decode shape (30.4 s at 160 rows, 22.1 s at 1 row)
COMPILE_WARM_S = 6.5  # the same shape in a later process: inductor's on-disk cache is warm (12.8 s for both)
STATIC_STEP_S = 0.006  # compiled decode step at 160 rows (0.40 s per 64-token batch; 1.9 ms at 1 row)
EAGER_STEP_S = 0.025  # eager decode step of the merged model (23 ms per token at 1 row)
CACHE_QUANTUM = 128
ROW_QUANTUM = 8
WARMUP_TOKENS = 5  # decode steps of a warm-up call: compile, then CUDA-graph record, then replay
CACHE_KWARG = "cache" if "cache" in _CACHE_NAMES else "past_key_values"  # renamed after transformers 5.17
MODELS = {"merged": "adapter merged into a plain copy of the base (float32 merge, one rounding)",
          "dequantized": "NF4 base dequantized as bitsandbytes does, adapter merged in",
          "prompt": "plain base; virtual tokens as input embeddings", "base": "plain base model",
          None: "the agent's own model"}


def engine_for(agent) -> "Engine":
    """The agent's engine (made on first use; kept on the agent)."""
    engine = agent.__dict__.get("_engine")
    if engine is None or engine.model is not agent.model:
        engine = agent.__dict__["_engine"] = Engine(agent)
    return engine


def _round_up(n: int, q: int) -> int:
    return int(math.ceil(n / q) * q)


class Engine:
    def __init__(self, agent):
        self.agent, self.model = agent, agent.model
        self.kind = slots.fast_kind(agent.model)
        self.rows, self.cache_len = 0, 0
        self._fits: bool | None = None
        config = getattr(agent.model, "active_peft_config", None)
        self.virtual = int(getattr(config, "num_virtual_tokens", 0) or 0) if self.kind == "prompt" else 0
        self.stats = {"model": MODELS[self.kind], "load_s": 0.0, "compile_s": 0.0, "compiled_shapes": [],
                      "reused_shapes": [], "calls": {}, "seconds": {}, "fallback": None,
                      "compile_cache": [], "from_cache": None, "slot_reused": None}

    # ---- which path -------------------------------------------------------------------------------------------
    def fast(self, settings: DecodeSettings) -> bool:
        if settings.engine == "eager" or self.kind is None or settings.num_beams > 1:
            return False  # beam search runs on the eager path everywhere (beams x static cache: not built)
        if settings.engine == "static":
            return True
        return self.agent.device == "cuda" and self._memory_ok()

    def _memory_ok(self) -> bool:
        if self._fits is None:
            free = torch.cuda.mem_get_info()[0]
            self._fits = free > slots.slot_bytes(self.model)
            if not self._fits:
                self.stats["fallback"] = "eager: too little free GPU memory for a merged copy of the base"
        return self._fits

    def _slot(self) -> slots.Slot:
        slot, seconds = slots.slot_for(self.model, self.kind, self)
        self.stats["load_s"] = round(self.stats["load_s"] + seconds, 3)
        if self.stats["slot_reused"] is None:  # another agent of this process (a suite's earlier variant) made it
            self.stats["slot_reused"] = slot.loads > 1
        return slot

    # ---- shapes -----------------------------------------------------------------------------------------------
    def plan_batches(self, prompts: list[list[int]], settings: DecodeSettings) -> list[list[int]]:
        """Indices in batches of similar prompt length; on the fast path all batches have one size."""
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        size = max(1, settings.batch_size)
        if self.fast(settings) and prompts:
            count = math.ceil(len(prompts) / size)
            size = math.ceil(len(prompts) / count)
            self.reserve(max(len(p) for p in prompts), settings, count, size)
        return [order[i:i + size] for i in range(0, len(order), size)]

    def reserve(self, width: int, settings: DecodeSettings, batches: int = 1, rows: int = 1) -> None:
        """Size the next calls: ``rows`` per batch, a cache for ``width``-token prompts plus the budget."""
        self.rows = 1 if rows <= 1 else _round_up(rows, ROW_QUANTUM)
        self.cache_len = max(self.cache_len, _round_up(width + self.virtual + settings.max_new_tokens, CACHE_QUANTUM))

    def _rows_for(self, n: int) -> int:
        if n <= self.rows:
            return self.rows
        return 1 if n == 1 else 2 ** math.ceil(math.log2(n))

    # ---- generation -------------------------------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], settings: DecodeSettings, on_token=None, should_stop=None,
                 remaining_batches: int | None = None) -> list[Generated]:
        if not prompts:
            return []
        tok = self.agent.tokenizer
        if not self.fast(settings):
            path, t0 = "eager", time.perf_counter()
            out = eager_generate(self.agent, prompts, settings, on_token, should_stop)
        else:
            slot = self._slot()
            rows = self._rows_for(len(prompts))
            need = max(len(p) for p in prompts) + self.virtual + settings.max_new_tokens
            length = self.cache_len if need <= self.cache_len else _round_up(need, CACHE_QUANTUM)
            static = self._use_static(slot, rows, length, settings, remaining_batches or 1)
            if static:
                static = self._try_warm(slot, rows, length, prompts[0], strict=settings.engine == "static")
            if not static:
                rows = len(prompts)  # a dynamic cache takes any shape
            path, t0 = ("static" if static else "eager-merged"), time.perf_counter()
            out = self._run(slot, prompts, rows, length if static else None, settings, on_token, should_stop)
            if not static:
                slot.eager_step_s[rows] = (time.perf_counter() - t0) / max(1, out.shape[1])
        sync(self.agent.device)
        elapsed = time.perf_counter() - t0
        self.stats["calls"][path] = self.stats["calls"].get(path, 0) + 1
        self.stats["seconds"][path] = round(self.stats["seconds"].get(path, 0.0) + elapsed, 3)
        return finish(tok, out[:len(prompts)].tolist(), settings.max_new_tokens, elapsed / len(prompts))

    def _use_static(self, slot: slots.Slot, rows: int, length: int, settings: DecodeSettings, batches: int) -> bool:
        if settings.engine == "static" or (rows, length) in slot.compiled:
            return True
        measured = slot.eager_step_s.get(rows) or next(iter(slot.eager_step_s.values()), None)
        compile_s = COMPILE_WARM_S if _compiled_before(slot, rows, length) else COMPILE_COLD_S
        steps = batches * settings.max_new_tokens
        return steps * (measured or EAGER_STEP_S) > compile_s + steps * STATIC_STEP_S

    def _warm(self, slot: slots.Slot, rows: int, length: int, prompt: list[int]) -> None:
        """Compile and capture the decode step for this shape once per process, timed apart."""
        key = (rows, length)
        if key in slot.compiled:
            if list(key) not in self.stats["compiled_shapes"] + self.stats["reused_shapes"]:
                self.stats["reused_shapes"].append(list(key))
            return
        if self.agent.device != "cuda":  # nothing to compile: transformers compiles on accelerators only
            return
        _prepare_compile()
        sync(self.agent.device)
        t0 = time.perf_counter()
        artifacts = compile_cache.ArtifactCache(compile_cache.key_for(slot.model, rows, length, self.agent.device))
        source = artifacts.load()  # hot-load what an earlier process compiled for this exact shape
        before = compile_cache.hits_and_misses()
        self._run(slot, [prompt] * rows, rows, length, DecodeSettings(WARMUP_TOKENS, rows, engine="static"),
                  min_new_tokens=WARMUP_TOKENS)
        sync(self.agent.device)
        slot.compiled[key] = time.perf_counter() - t0
        saved = source != "hit" and artifacts.save()
        after = compile_cache.hits_and_misses()
        _record_compile(slot, rows, length, slot.compiled[key])
        self.stats["compile_s"] = round(self.stats["compile_s"] + slot.compiled[key], 3)
        self.stats["compiled_shapes"].append(list(key))
        self.stats["compile_cache"].append({"shape": list(key), "artifact": source, "saved": saved,
                                            "seconds": round(slot.compiled[key], 3), "key": artifacts.key,
                                            **{k: after[k] - before[k] for k in after}})
        self.stats["from_cache"] = all(c["artifact"] == "hit" for c in self.stats["compile_cache"])

    def _try_warm(self, slot: slots.Slot, rows: int, length: int, prompt: list[int], strict: bool) -> bool:
        """Warm up; under ``auto`` a failed compile is recorded and the engine stays on eager-merged."""
        if self.stats["fallback"] and not strict:
            return False
        try:
            self._warm(slot, rows, length, prompt)
            return True
        except Exception as e:
            if strict:
                raise
            self.stats["fallback"] = f"eager-merged: compiling failed ({type(e).__name__}: {str(e)[:200]})"
            return False

    def warmup(self, rows: int, width: int, settings: DecodeSettings) -> float:
        """Compile the shape a server will use before it takes requests (no-op off the fast path); seconds."""
        if not self.fast(settings) or self.agent.device != "cuda":
            return 0.0
        self.reserve(width, settings, rows=rows)
        before = self.stats["compile_s"]
        self._try_warm(self._slot(), self.rows, self.cache_len, [self.agent.tokenizer.eos_token_id] * 8,
                       strict=settings.engine == "static")
        return self.stats["compile_s"] - before

    @torch.no_grad()
    def _run(self, slot: slots.Slot, prompts: list[list[int]], rows: int, cache_len: int | None,
             settings: DecodeSettings, on_token=None, should_stop=None, **extra) -> torch.Tensor:
        tok = self.agent.tokenizer
        ids, mask = pad_left(prompts, tok.pad_token_id, rows)
        kwargs = {**sampling_kwargs(tok, settings), **row_hooks(len(prompts), tok.eos_token_id, on_token, should_stop, rows),
                  **extra}
        if cache_len:
            kwargs[CACHE_KWARG] = slot.cache(rows, cache_len)
            if self.agent.device == "cuda":
                from transformers import CompileConfig

                kwargs["compile_config"] = CompileConfig(dynamic=False)
        ids, mask = ids.to(self.agent.device), mask.to(self.agent.device)
        if self.kind == "prompt":
            embeds, mask = prompt_tuning_embeds(self.model, ids, mask, slot.model.get_input_embeddings())
            return slot.model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)  # only the new tokens
        return slot.model.generate(input_ids=ids, attention_mask=mask, **kwargs)[:, ids.shape[1]:]

    def report(self) -> dict:
        """For metrics.json: which path ran, the warm-up/compile seconds apart from generation."""
        calls = self.stats["calls"]
        return {"path": max(calls, key=calls.get) if calls else None, **self.stats,
                "device": self.agent.device}


def _prepare_compile() -> None:
    """Room for a few shapes x several variants (dynamo keeps 8 graphs by default), and a compile cache
    that lives next to the record of what was compiled, so "compiled before" means "cached on disk"."""
    import os

    import torch._dynamo

    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(compile_cache.inductor_dir()))
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 64))


def _shape_key(slot: slots.Slot, rows: int, length: int) -> str:
    device = "cuda" if slot.model.device.type == "cuda" else "cpu"
    return compile_cache.key_for(slot.model, rows, length, device)


def _record_path():
    from ..models.loading import home

    return home() / "engine" / "compiled.json"


def _compiled_before(slot: slots.Slot, rows: int, length: int) -> bool:
    """Whether this machine compiled this shape in an earlier process (so the compile cache is warm)."""
    import json

    key = _shape_key(slot, rows, length)
    if compile_cache.ArtifactCache(key).exists():
        return True
    try:
        return key in json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return False


def _record_compile(slot: slots.Slot, rows: int, length: int, seconds: float) -> None:
    import json

    path = _record_path()
    try:
        record = json.loads(path.read_text()) if path.is_file() else {}
        record[_shape_key(slot, rows, length)] = round(seconds, 2)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
    except (OSError, ValueError):
        pass  # a read-only home only costs the estimate
