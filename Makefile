# One way to run things: people and .ci/run use the same targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check
# Two installs, each redone when pyproject.toml changes: what the server needs (`make run`),
# and the dev tools on top of it (`make test`, lint, types, benchmarks). `make run` after
# `make test` installs nothing; `make test` after `make run` adds only the dev tools.
RUNTIME := $(VENV)/.runtime-installed
DEV     := $(VENV)/.dev-installed

.PHONY: install run demo test lint typecheck layers unit schema bench bench-writes bench-paths mutate clean

# pip's own output is the progress (what it downloads and installs); no --quiet.
$(RUNTIME): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
		echo "==> creating $(VENV) ($(PYTHON) -m venv)"; $(PYTHON) -m venv $(VENV); fi
	@echo "==> installing HMS and its runtime dependencies into $(VENV)" \
		"(the first time: about half a minute)"
	@$(PIP) install --progress-bar on -e .
	@touch $@

$(DEV): $(RUNTIME)
	@echo "==> installing the dev tools (pytest, hypothesis, mypy, ruff, import-linter, ...)"
	@$(PIP) install --progress-bar on -e '.[dev]'
	@touch $@

# The interop tests' Node.js clients, pinned by tests/interop/package-lock.json.
NODE_STAMP := tests/interop/node_modules/.installed
$(NODE_STAMP): tests/interop/package-lock.json
	@if command -v npm >/dev/null; then \
		cd tests/interop && npm ci --ignore-scripts --no-audit --no-fund --silent && touch $(CURDIR)/$@; \
	else echo "npm is not on PATH: the interop tests will be skipped"; fi

# The reference client (examples/react-dashboard), pinned by its package-lock.json.
DASHBOARD := examples/react-dashboard
DASHBOARD_STAMP := $(DASHBOARD)/node_modules/.installed
$(DASHBOARD_STAMP): $(DASHBOARD)/package-lock.json
	@if command -v npm >/dev/null; then \
		echo "==> installing the React example's packages ($(DASHBOARD), npm ci)"; \
		cd $(DASHBOARD) && npm ci --ignore-scripts --no-audit --no-fund --silent && touch $(CURDIR)/$@; \
	else echo "npm is not on PATH: the dashboard's end-to-end test will be skipped"; fi

install: $(DEV) $(NODE_STAMP) $(DASHBOARD_STAMP)

## Run the server on the embedded default (private PostgreSQL 18, in-memory cache).
## hms serve exits 0 after a graceful stop (Ctrl-C, SIGTERM), so make reports no error; make
## itself then ends by the same signal, as it does for any interrupted target.
run: $(RUNTIME)
	$(BIN)/hms serve

## The API and the reference client together on the embedded default (Ctrl-C stops both).
## The last line has no shell syntax, so make runs node itself rather than through sh: on
## Ctrl-C node stops both servers and exits 0, and make reports nothing (a shell in between
## would die of the SIGINT and make would print "Interrupt").
demo: export HMS_BIN := $(CURDIR)/$(BIN)/hms
demo: $(RUNTIME) $(DASHBOARD_STAMP)
	cd $(DASHBOARD) && npm run build --silent
	node $(DASHBOARD)/scripts/demo.mjs

## The whole suite: lint, types, layers, schema drift, then every test.
test: $(DEV) lint typecheck layers
	$(BIN)/python -m pytest

lint: $(DEV)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV)
	$(BIN)/mypy

layers: $(DEV)
	$(BIN)/lint-imports

schema: $(RUNTIME)
	$(BIN)/hms export-schema schema.graphql

bench: $(DEV)
	$(BIN)/python -m bench.run

bench-writes: $(DEV)
	$(BIN)/python -m bench.writes

## Compiled vs interpreted vs the hand-written floor, driven by hey (installed if missing).
bench-paths: $(DEV)
	@command -v hey >/dev/null || apt-get install -y -q hey
	$(BIN)/python -m bench.paths --profile medium

## Mutation-test one module (slow, not part of `make test`): which small bugs do its tests miss?
## make mutate MODULE=hms/persistence/pages.py [TESTS="tests/unit tests/api/test_reads.py"]
mutate: $(DEV)
	@test -n "$(MODULE)" || { echo 'usage: make mutate MODULE=hms/x.py [TESTS="..."]' >&2; exit 2; }
	$(BIN)/python scripts/mutate.py $(MODULE) $(if $(TESTS),--tests $(TESTS))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
