# Two commands on a fresh machine: `make demo` runs the main job end to end, `make test` runs the tests.
# Each creates .venv (once) and installs what it needs; nothing else is typed first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU wheel of torch; on a GPU cluster set TORCH_SPEC to the CUDA build you use.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.astroray-installed

.PHONY: demo test install bench clean

SHELL := /bin/bash
PIP := $(BIN)/python -m pip install --disable-pip-version-check --progress-bar on
# pip's progress, one line per package, and pip's own exit status (not grep's)
SHOW := 2>&1 | grep --line-buffered -E "^(Collecting|Installing|Successfully|ERROR)"; test $${PIPESTATUS[0]} -eq 0

# Each step says what it does (the whole install takes a few minutes the first time).
$(STAMP): pyproject.toml setup.py
	@echo "==> [1/4] creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "==> [2/4] upgrading pip"
	@$(PIP) -q --upgrade pip
	@echo "==> [3/4] installing $(TORCH_SPEC) (the CPU build; set TORCH_SPEC for a CUDA one)"
	@$(PIP) "$(TORCH_SPEC)" $(SHOW)
	@echo "==> [4/4] installing astroray and its dependencies (Ray, MLflow, Lightning, spaCy, ...)"
	@$(PIP) -e ".[dev]" $(SHOW)
	@$(BIN)/python -c "import astroray" && echo "==> installed: $(BIN)/astroray"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/astroray demo

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) .astroray
