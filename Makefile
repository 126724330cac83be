# One way to run things: people and .ci/run use the same targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test lint typecheck layers unit schema bench bench-writes bench-paths mutate clean

# The venv is rebuilt whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The interop tests' Node.js clients, pinned by tests/interop/package-lock.json.
NODE_STAMP := tests/interop/node_modules/.installed
$(NODE_STAMP): tests/interop/package-lock.json
	@if command -v npm >/dev/null; then \
		cd tests/interop && npm ci --ignore-scripts --no-audit --no-fund --silent && touch $(CURDIR)/$@; \
	else echo "npm is not on PATH: the interop tests will be skipped"; fi

install: $(STAMP) $(NODE_STAMP)

## Run the server on the embedded default (private PostgreSQL 18, in-memory cache).
run: $(STAMP)
	$(BIN)/hms serve

## The whole suite: lint, types, layers, schema drift, then every test.
test: lint typecheck layers
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

layers: $(STAMP)
	$(BIN)/lint-imports

schema: $(STAMP)
	$(BIN)/hms export-schema schema.graphql

bench: $(STAMP)
	$(BIN)/python -m bench.run

bench-writes: $(STAMP)
	$(BIN)/python -m bench.writes

## Compiled vs interpreted vs the hand-written floor, driven by hey (installed if missing).
bench-paths: $(STAMP)
	@command -v hey >/dev/null || apt-get install -y -q hey
	$(BIN)/python -m bench.paths --profile medium

## Mutation-test one module (slow, not part of `make test`): which small bugs do its tests miss?
## make mutate MODULE=hms/persistence/pages.py [TESTS="tests/unit tests/api/test_reads.py"]
mutate: $(STAMP)
	@test -n "$(MODULE)" || { echo 'usage: make mutate MODULE=hms/x.py [TESTS="..."]' >&2; exit 2; }
	$(BIN)/python scripts/mutate.py $(MODULE) $(if $(TESTS),--tests $(TESTS))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
