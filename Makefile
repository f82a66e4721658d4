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

# axe-core (npm) checks the dashboard's pages in the browser tests; only `make test` needs it.
AXE := tests/ui/axe/node_modules/.installed
$(AXE): tests/ui/axe/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "npm is not installed: it installs axe-core for the dashboard's accessibility tests (tests/ui/axe); install Node.js with npm (Debian: apt-get install npm) and run make test again" >&2; exit 1; }
	npm ci --prefix tests/ui/axe --no-audit --no-fund
	touch $(AXE)

demo: $(STAMP)
	$(BIN)/modelyard demo

lint: $(STAMP)
	$(BIN)/ruff format --check src tests benchmarks compat
	$(BIN)/ruff check src tests benchmarks compat

typecheck: $(STAMP)
	$(BIN)/mypy

# Two passes: the tests not marked ray, on pytest-xdist workers (a test file stays on one worker;
# PYTEST_WORKERS=0 runs them serially), then the Ray tests (they share one Ray cluster and need the
# machine to themselves). The second pass's exit code 5 (no tests collected) is not a failure; a
# failing first pass stops make before it.
PYTEST_WORKERS ?= 3
PYTEST_PARALLEL = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)

pytest: $(STAMP) $(AXE)
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not ray"
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
