# kseg developer targets. `make install` creates .venv; the others use it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-all lint demo bench clean

$(BIN)/kseg: setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/kseg

install: $(BIN)/kseg

test: install
	$(BIN)/python -m pytest -q -m "not slow" tests

test-all: install
	$(BIN)/python -m pytest -q tests

lint: install
	$(BIN)/ruff check kseg cli tests benchmarks

demo: install
	$(BIN)/kseg models
	$(BIN)/python -m kseg.demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
