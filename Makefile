# microshop — the two set-up commands are `make dev` (run the shop) and `make test` (run every test).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV := $(shell $(PYTHON) scripts/install_uv.py)
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
# The virtualenv's interpreter: the distribution's python3.11 when there is one (scripts/pick_python.py says
# why; MICROSHOP_PYTHON=/path/to/python3.11 names one). None: uv's own choice.
PICKED_PYTHON := $(shell $(PYTHON) scripts/pick_python.py)
ifneq ($(PICKED_PYTHON),)
export UV_PYTHON := $(PICKED_PYTHON)
endif

.PHONY: help setup infra dev test lint typecheck check bench clean asyncapi generate

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

setup: .venv/.synced ## create the virtualenv from uv.lock

.venv/.synced: pyproject.toml uv.lock
	@test -n "$(UV)" || { echo "uv is missing and could not be installed"; exit 1; }
	$(UV) sync --frozen
	@touch $@

infra: setup ## make sure RabbitMQ and Redis answer (start or install them; INFRA_ARGS=--prometheus adds Prometheus)
	$(UV) run --frozen python -m devtools.infra $(INFRA_ARGS)

# `make dev ARGS=--prometheus` makes `make infra` install Prometheus too (INFRA_ARGS=--prometheus).
dev: INFRA_ARGS += $(if $(findstring --prometheus,$(ARGS)),--prometheus)
dev: infra ## run the whole shop locally (ARGS="--fresh" wipes the dev database, ARGS=--prometheus adds Prometheus)
	$(UV) run --frozen python -m devtools.run $(ARGS)

test: infra ## run every test (PYTEST_ARGS to narrow)
	$(UV) run --frozen pytest $(PYTEST_ARGS)

.PHONY: test-unit test-integration fuzz
fuzz: infra ## schema-driven fuzzing through the gateway, long run (FUZZ_MAX_EXAMPLES, default 200 per operation)
	FUZZ_MAX_EXAMPLES=$${FUZZ_MAX_EXAMPLES:-200} $(UV) run --frozen pytest tests/integration/test_fuzz.py -s $(PYTEST_ARGS)


test-unit: setup ## the unit tier alone: no services, no network, seconds
	$(UV) run --frozen pytest tests/unit $(PYTEST_ARGS)

test-integration: infra ## the integration tier: RabbitMQ, Redis, SecantusDB, the shop as processes (~3 min)
	$(UV) run --frozen pytest tests/integration $(PYTEST_ARGS)

lint: setup ## ruff, deptry (every imported package declared) and import-linter (the layering); pyproject.toml
	$(UV) run --frozen ruff check .
	$(UV) run --frozen deptry .
	$(UV) run --frozen lint-imports

typecheck: setup ## mypy over services, operator, devtools and the locustfile (settings: pyproject.toml [tool.mypy])
	$(UV) run --frozen mypy services operator devtools charts/microshop/files/locustfile.py

check: lint typecheck test ## what CI runs

BENCH_SOAK_SECONDS ?= 60
bench: infra ## benchmarks, ~12 min (order_pipeline's soak: BENCH_SOAK_SECONDS=300 for the full 5 min)
	@for b in benchmarks/*.py; do echo "== $$b"; \
	  case $$b in *order_pipeline.py) extra="--soak-seconds $(BENCH_SOAK_SECONDS)";; *) extra="";; esac; \
	  $(UV) run --frozen python $$b $$extra || exit 1; done

clean: ## remove the virtualenv, dev data and caches
	rm -rf .venv .dev .pytest_cache .mypy_cache .ruff_cache

-include mk/*.mk

asyncapi: setup ## regenerate docs/asyncapi.json from the event catalogue (a test checks it is current)
	$(UV) run --frozen python -m devtools.asyncapi > docs/asyncapi.json

generate: setup ## rewrite what the service registry (services/shopkit/registry.py) drives: chart topology, values, schema, CRD, compose
	$(UV) run --frozen python -m devtools.generate
