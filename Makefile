# HealthFlow — the commands the README names. Every target installs what it
# needs first, so each works on a fresh machine with only Python 3.11+.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV ?= $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PYTEST_ARGS ?=
export UV_LINK_MODE ?= copy

.PHONY: help deps install run check demo fuzz drill drill-emergencies test test-fast lint fmt bench deadletters jobs docs compose-secrets new-service clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

deps: ## install uv, RabbitMQ and Redis when missing, and start them
	@bash deploy/scripts/deps.sh

install: deps ## create .venv with every workspace package (uv sync, locked)
	@$(UV) sync --frozen --all-packages

run: install ## run the whole platform locally (gateway on http://127.0.0.1:8000)
	@$(UV) run --frozen healthflow-run $(RUN_ARGS)

check: install ## start the platform, report every part's readiness, stop (exit 0 when all ready)
	@$(UV) run --frozen healthflow-run check $(RUN_ARGS)

demo: install ## the patient journey against `make run` (DEMO_ARGS="--url … --patients 50")
	@$(UV) run --frozen python -m healthflow.client.demo $(DEMO_ARGS)

fuzz: install ## Schemathesis against the gateway's OpenAPI, every role (FUZZ_EXAMPLES per operation)
	@HEALTHFLOW_FUZZ_EXAMPLES=$(or $(FUZZ_EXAMPLES),60) $(UV) run --frozen pytest -p no:cacheprovider libs/client/tests/test_fuzz.py $(PYTEST_ARGS)

drill: install ## fault drill on a platform of its own: restarts RabbitMQ (the machine's!), kills a service, stops MongoDB
	@HEALTHFLOW_DRILL_PATIENTS=$(or $(DRILL_PATIENTS),60) $(UV) run --frozen pytest -s -p no:cacheprovider libs/client/tests/test_drill.py $(PYTEST_ARGS)

drill-emergencies: install ## dispatch drill: EMERGENCIES (200) raised over HTTP via 2 emergency processes (one killed), 30 units
	@HEALTHFLOW_DRILL_EMERGENCIES=$(or $(EMERGENCIES),200) $(UV) run --frozen pytest -s -p no:cacheprovider services/paramedic/tests/integration/test_emergency_drill.py services/paramedic/tests/integration/test_drill.py $(PYTEST_ARGS)

test: install ## the whole test suite against real MongoDB-protocol, RabbitMQ and Redis servers
	@$(UV) run --frozen pytest $(PYTEST_ARGS)

test-fast: install ## the suite without the slow fault drills
	@$(UV) run --frozen pytest -m "not slow" $(PYTEST_ARGS)

SOURCES := $(wildcard libs/*/src gateway/src services/*/src)
empty :=
space := $(empty) $(empty)

lint: install ## ruff (lint) and mypy (type hints) over the whole workspace
	@$(UV) run --frozen ruff check .
	@MYPYPATH=$(subst $(space),:,$(SOURCES)) $(UV) run --frozen mypy \
		$(addsuffix /healthflow,$(SOURCES))

fmt: install ## ruff's import sorting and fixes
	@$(UV) run --frozen ruff check --fix .

bench: install ## benchmarks (not tests): prints throughput and latency figures
	@bash deploy/scripts/bench.sh

deadletters: install ## inspect and replay dead letters: make deadletters ARGS="list audit"
	@$(UV) run --frozen healthflow-deadletters $(ARGS)

jobs: install ## list and replay a service's dead background jobs: make jobs ARGS="list notification"
	@$(UV) run --frozen healthflow-jobs $(ARGS)

compose-secrets: install ## write docker-compose.yml's secret files (deploy/compose/secrets/, kept once written)
	@$(UV) run --frozen python -m healthflow.devkit.composesecrets

docs: install ## regenerate what is generated (permissions, event catalog, AsyncAPI, contract schemas, compose, Kubernetes, RabbitMQ users)
	@$(UV) run --frozen python -m healthflow.common.permissions > docs/permissions.md
	@$(UV) run --frozen python -m healthflow.common.catalog > docs/events.md
	@$(UV) run --frozen python -m healthflow.devkit.compose
	@$(UV) run --frozen python -m healthflow.devkit.kubernetes
	@$(UV) run --frozen python -m healthflow.devkit.busaccess
	@$(UV) run --frozen python -m healthflow.common.catalog asyncapi > libs/contracts/src/healthflow/contracts/asyncapi.json
	@$(UV) run --frozen python -m healthflow.contracts.compat write

new-service: install ## scaffold services/$(NAME): every module, one route, one event, tests (NAME=x)
	@test -n "$(NAME)" || { echo "usage: make new-service NAME=x"; exit 2; }
	@$(UV) run --frozen python -m healthflow.devkit.scaffold $(NAME) --no-lock
	@$(UV) lock
	@$(UV) sync --frozen --all-packages
	@$(MAKE) --no-print-directory docs

clean: ## remove local data and logs (./var)
	rm -rf var
