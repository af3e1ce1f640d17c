# Two commands for a fresh machine: `make quickstart` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q -c constraints.txt

.PHONY: venv test quickstart bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

test: venv
	$(BIN)/python -m pytest tests

quickstart: venv
	$(BIN)/python scripts/quickstart.py --out runs/quickstart

bench: venv
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info
