# make demo: run the demo on SQLite.  make test: lint, type-check, build the docs and run the tests.
# make docs: build the documentation site into site/ (open site/index.html).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck docs pytest bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/dynflow demo

lint: install
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks

# one run over pyproject.toml's files: src/dynflow (strict) and tests/ (checked as user code)
typecheck: install
	$(BIN)/mypy

# --strict: a broken link, a missing page or an API name mkdocstrings cannot find fails
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# the suite waits on databases, processes and a browser more than it computes: two
# workers (each with its own test databases) take it stealing work from each other
PYTEST_WORKERS ?= 2
pytest: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

test: lint typecheck docs pytest

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) site dynflow.sqlite3*
