PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# pytest-xdist workers for make test (make test TEST_WORKERS=1 for one process; 0 runs without workers)
TEST_WORKERS ?= 2

.PHONY: chromium demo test lint typecheck local-model postgres clean

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

# PostgreSQL's server binaries for the queue tests (each test run starts its own throwaway cluster on loopback):
# Debian's postgresql package, installed when initdb is nowhere to be found (a no-op once there)
postgres:
	@$(PYTHON) -c "import glob, shutil, sys; sys.exit(0 if shutil.which('initdb') or glob.glob('/usr/lib/postgresql/*/bin/initdb') else 1)" \
		|| (echo "installing PostgreSQL's server binaries (apt-get install postgresql)" && \
		    $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q >/dev/null && \
		    $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q postgresql >/dev/null)

# Debian's chromium for the run browser's tests (driven by Playwright through its executable; Playwright's own
# browser download is not used), installed when it is nowhere to be found (a no-op once there)
chromium:
	@$(PYTHON) -c "import shutil, sys; sys.exit(0 if shutil.which('chromium') or shutil.which('chromium-browser') else 1)" \
		|| (echo "installing chromium for the browser tests (apt-get install chromium)" && \
		    $(if $(filter 0,$(shell id -u)),,sudo) apt-get update -q >/dev/null && \
		    $(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y -q chromium >/dev/null)

# The suite starts several hundred Python processes (runs killed and resumed, containers, proposers, workspace
# writers): each would compile the project's modules again where PYTHONDONTWRITEBYTECODE is set, so the tests run
# with it unset (bytecode goes to the usual __pycache__ folders, which git ignores)
test: lint typecheck local-model postgres chromium
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal --durations=15

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
