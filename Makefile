# The two commands of the README: `make run` and `make test`. Everything else supports them.
# `make test` on a fresh Debian machine installs what the tests use: Debian packages
# (tools/system-packages), the Python virtual environment and the npm modules of the
# interoperability tests; each step is skipped when already done.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DATA   ?= ./pki-data
NODE_MODULES = tests/interop/node_modules/.package-lock.json

.PHONY: run test check bench install install-dev system-packages clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(NODE_MODULES): tests/interop/package-lock.json
	npm ci --prefix tests/interop --no-audit --no-fund --silent
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## Debian packages the tests and benchmarks use (apt-get as root, else sudo).
system-packages:
	PYTHON=$(PYTHON) tools/system-packages

## Serve the demo CA (created on first start in $(DATA)) on port 52773.
run: $(VENV)/.runtime
	$(PY) server_app.py serve --demo --data-dir $(DATA)

## Install what the tests need, then run the whole test suite.
test: system-packages
	$(MAKE) --no-print-directory $(VENV)/.dev $(NODE_MODULES)
	$(PY) -m pytest

## Lint and type checks.
check: $(VENV)/.dev
	$(PY) -m ruff check pki_soap tests bench server_app.py client_app.py
	$(PY) -m ruff format --check pki_soap tests bench server_app.py client_app.py
	$(PY) -m mypy pki_soap

## Benchmarks (never part of `make test`).
bench: system-packages
	$(MAKE) --no-print-directory $(VENV)/.dev
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
