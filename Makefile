# The two commands: `make run` and `make test`. Both create ./.venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install native run demo test test-fast lint chaos bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required, found " + sys.version'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The matcher's modules compiled by mypyc (decision 63): built once per version of their
# sources (~45 s), kept under build/native/; without a C compiler the Python modules serve.
native: install
	$(BIN)/python -m flows.identity.build_native build

run: native
	$(BIN)/eai-hub run

demo: native
	$(BIN)/eai-hub demo

test: native
	$(BIN)/python -m pytest -q

test-fast: native
	$(BIN)/python -m pytest -q tests/unit

lint: install
	$(BIN)/ruff check contracts connectors flows hub tests bench
	$(BIN)/ruff format --check contracts connectors flows hub tests bench
	$(BIN)/mypy contracts flows
	$(BIN)/mypy hub connectors

chaos: native
	$(BIN)/python -m pytest -q -m chaos tests/chaos

bench: native
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var build/native .pytest_cache .mypy_cache .ruff_cache
