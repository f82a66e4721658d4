# Two entry points: `make demo` and `make test`. Both create .venv from the lock on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet --no-deps -e compat/modelyard-cml
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/modelyard demo

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks compat
	$(BIN)/ruff check src tests benchmarks compat

typecheck: $(STAMP)
	$(BIN)/mypy

# Two passes: the tests not marked ray on $(PYTEST_WORKERS) pytest-xdist workers (a test file stays
# on one worker, so its module-scoped servers start once), then the Ray tests serially (they share
# one Ray cluster and need the machine to themselves). The second pass's exit code 5 (no tests
# collected) is not a failure; a failing first pass stops make before it. Three workers on two
# cores measured faster than two: many tests spend their time waiting for server processes.
PYTEST_WORKERS ?= 3

pytest: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -m "not ray"
	$(BIN)/pytest -m ray || [ $$? -eq 5 ]

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/store.py

# Regenerate the lock after changing dependencies in pyproject.toml.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	.venv-lock/bin/python -m pip install --quiet -e '.[dev]'
	.venv-lock/bin/python -m pip freeze --exclude-editable | grep -v '^modelyard' > requirements.lock
	rm -rf .venv-lock

clean:
	rm -rf $(VENV)
