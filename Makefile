# The README's commands. Everything installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
# Test processes: one file stays on one process (module fixtures start servers); TEST_PROCESSES=0 runs serially.
TEST_PROCESSES ?= 2
PYTEST = $(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile
BIN := $(VENV)/bin

.PHONY: install install-dev run test unit integration e2e stack migrate bench-registry bench-hpo bench-serving bench-monitoring \
	bench-client bench-dashboards

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: the whole platform on http://127.0.0.1:8000, no external server (SQLite, local broker)
run: install
	$(BIN)/python -m launch.run

## test: every test tier against real Postgres, RabbitMQ and Redis
test: install-dev
	$(PYTEST)

unit: install-dev
	$(PYTEST) tests/unit

integration: install-dev
	$(PYTEST) tests/integration

e2e: install-dev
	$(PYTEST) tests/e2e

## stack: each service under gunicorn, relay, worker and beat, on localhost's Postgres/RabbitMQ/Redis
stack: install
	$(BIN)/python -m launch.stack

migrate: install
	$(BIN)/alembic upgrade head

## benchmarks (bench/README.md): they print figures, they do not assert; never part of `make test`
bench-registry: install-dev
	$(BIN)/python -m bench.registry

bench-hpo: install-dev
	$(BIN)/python -m bench.hpo

bench-serving: install-dev
	$(BIN)/python -m bench.serving

bench-monitoring: install-dev
	$(BIN)/python -m bench.monitoring

bench-client: install-dev
	$(BIN)/python -m bench.client

bench-dashboards: install-dev
	$(BIN)/python -m bench.dashboards
