# The two commands a newcomer runs: `make demo` (train a model, then generate) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_RUN ?= runs/demo
DEMO_BUDGET ?= 2m

.PHONY: setup demo test lint bench clean

$(BIN)/weft: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/weft

# Train a character LSTM on Python's own documentation (ships with Python: no download),
# then write three samples with it.
demo: setup
	rm -rf $(DEMO_RUN)
	$(BIN)/weft train builtin:pydoc-topics --out $(DEMO_RUN) --time-budget $(DEMO_BUDGET)
	$(BIN)/weft generate $(DEMO_RUN) --prompt "The " --max-new-tokens 400 \
		--num-return-sequences 3 --temperature 0.7 --seed 0

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
