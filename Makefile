# Two commands: `make run` serves Concierge, `make test` runs the checks. Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Stamps record which requirements the venv was last installed from, so pip runs only after a change.
RUNTIME_STAMP := $(VENV)/.installed-runtime
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint bench clean

run: $(RUNTIME_STAMP)
	$(BIN)/gunicorn -c gunicorn.conf.py app:app

# After the suite, the tests marked on_cluster again, on a three-master Redis Cluster they start.
test: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest
	$(BIN)/pytest -m on_cluster --redis=cluster

lint: $(DEV_STAMP)
	$(BIN)/ruff check .

bench: $(DEV_STAMP)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/visitors.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Concierge needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) -V 2>&1)." \
		       "Set PYTHON=python3.11 (or newer)." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@
