# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help install run worker test test-fast lint format bench up down clean

help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so that no other package drags in a CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

# axe-core for the browser tests' accessibility checks (package.json); injected from node_modules,
# never from a CDN. Without npm the axe tests skip (CI installs npm and requires them).
node_modules/.installed: package.json package-lock.json
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the accessibility (axe-core) browser tests will skip"; fi

install: $(VENV)/.installed node_modules/.installed ## create .venv, install torch (CPU) + the project with dev extras, and axe-core (npm)

run: install ## set up and start the whole site on the embedded default (SQLite, in-process worker)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py bootstrap --url http://$(HOST):$(PORT)/
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) webchat.asgi:application

worker: install ## start a separate Celery worker for all queues (needs REDIS_URL)
	$(VENV)/bin/celery -A worker.app worker -Q gpu,train,cpu --pool threads --concurrency 8 -l INFO

test: install ## set up and run the whole test suite (slow and browser tests included)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: install ## run the tests that are not marked slow
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install ## format and autofix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install ## run every benchmark in bench/ (see docs/benchmarks.md)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

up: ## start the production shape with docker compose (web, workers, beat, redis, postgres)
	docker compose -f docker/compose.yaml up --build

down: ## stop the docker compose stack
	docker compose -f docker/compose.yaml down

clean: ## remove the virtualenv and caches (keeps var/: your database and models)
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles node_modules
