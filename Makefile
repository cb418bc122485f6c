# Two commands on a fresh machine: `make demo` runs the main job end to end, `make test` runs the tests.
# Each creates .venv (once) and installs what it needs; nothing else is typed first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; on a GPU cluster set TORCH_SPEC to the CUDA build you use.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.astroray-installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/astroray demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .astroray
