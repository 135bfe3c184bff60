# The two commands of the README: `make run` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DATA   ?= ./pki-data

.PHONY: run test check bench install install-dev clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(VENV)/.runtime
install-dev: $(VENV)/.dev

## Serve the demo CA (created on first start in $(DATA)) on port 52773.
run: $(VENV)/.runtime
	$(PY) server_app.py serve --demo --data-dir $(DATA)

## The whole test suite.
test: $(VENV)/.dev
	$(PY) -m pytest

## Lint and type checks.
check: $(VENV)/.dev
	$(PY) -m ruff check pki_soap tests bench server_app.py client_app.py
	$(PY) -m ruff format --check pki_soap tests bench server_app.py client_app.py
	$(PY) -m mypy pki_soap

## Benchmarks (never part of `make test`).
bench: $(VENV)/.dev
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
