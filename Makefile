PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck local-model clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[cookbooks]'
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP) $@

demo: $(STAMP)
	$(BIN)/synth-opt gepa run --config cookbooks/banking77/gepa.offline.toml

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests cookbooks benchmarks scripts
	$(BIN)/ruff format --check src tests cookbooks benchmarks scripts
	$(BIN)/lint-imports --no-cache --no-logo

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# llama-server and a small model for the real-model tests, cached under ~/.cache/synth_opt (a no-op once there)
local-model: | $(BIN)/python
	$(BIN)/python scripts/local_model.py

test: lint typecheck local-model
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
