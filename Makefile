# identity-worker: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA_PORT ?= 19092
REDIS_PORT ?= 16379
export KAFKA_PORT REDIS_PORT
PYTEST_ARGS ?=
LOCAL_LUA := .local/lua

.PHONY: help install check-tools kafka-jars redis-install services-up services-down services-status \
        services-clean run demo test test-interpreted test-all-interpreted compiled test-unit test-integration mutants faults lint lint-lua lua-tools \
        fmt typecheck bench bench-icount clean lint-deploy

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

check-tools: ## Check that Python 3.11+, Java 17+, Maven (and Redis, luacheck or apt-get) are present; say how to get what is missing
	@deploy/local/check-tools.sh

$(STAMP): pyproject.toml
	@deploy/local/check-tools.sh python
	$(PYTHON) -m venv $(VENV)
	@echo "installing the package and its dev dependencies into $(VENV) (log: $(VENV)/install.log)"
	@$(PY) -m pip install -q --upgrade pip > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@$(PY) -m pip install -q -e '.[dev]' >> $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $@

install: $(STAMP) ## Create .venv and install the package with its dev dependencies

kafka-jars: ## Resolve the Apache Kafka broker's jars from Maven Central (once)
	@deploy/local/kafka.sh jars

redis-install: ## Install Debian's redis-server when missing
	@deploy/local/redis.sh install

lua-tools: ## Install luacheck (Debian's lua-check) when missing
	@deploy/local/lua.sh install

services-up: kafka-jars redis-install ## Start local Kafka (KRaft) and Redis (AOF) on 127.0.0.1
	@deploy/local/redis.sh start
	@deploy/local/kafka.sh start

services-down: ## Stop local Kafka and Redis (their data is kept)
	@deploy/local/kafka.sh stop
	@deploy/local/redis.sh stop

services-status: ## Say whether local Kafka and Redis are running
	@deploy/local/kafka.sh status || true
	@deploy/local/redis.sh status || true

services-clean: ## Stop local Kafka and Redis and delete their data
	@deploy/local/kafka.sh clean
	@deploy/local/redis.sh clean

run: install services-up ## Main job: local services, topics, the worker and a small demo stream
	IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS=127.0.0.1:$(KAFKA_PORT) IDENTITY_WORKER_REDIS__URL=redis://127.0.0.1:$(REDIS_PORT)/0 $(PY) -m worker demo

INTERPRETED_LOG := .local/test-interpreted.log
NO_SERVICES := tests/unit tests/property -m "not (integration or e2e)"
INTERPRETED_ONLY := tests/integration -m interpreted_only
test: install kafka-jars redis-install ## Run the whole test suite (unit, property, integration, e2e, the short fault run) on the compiled build, and the tests without services on the interpreted code (while the build compiles: gcc takes one core)
	@mkdir -p .local
	@echo "tests without services on the interpreted code, while the build compiles (log: $(INTERPRETED_LOG))"
	@$(PY) -m pytest $(NO_SERVICES) $(PYTEST_ARGS) > $(INTERPRETED_LOG) 2>&1 & tests=$$!; \
	  $(MAKE) --no-print-directory compiled; built=$$?; \
	  wait $$tests; passed=$$?; tail -n 15 $(INTERPRETED_LOG); \
	  [ $$built -eq 0 ] && [ $$passed -eq 0 ]
	IDENTITY_WORKER_TEST_BUILD=$(COMPILED) $(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m pytest $(INTERPRETED_ONLY) $(PYTEST_ARGS)

test-interpreted: install ## The tests without services, and those the compiled build skips, on the interpreted code (the repository's worker/)
	$(PY) -m pytest $(NO_SERVICES) $(PYTEST_ARGS)
	$(PY) -m pytest $(INTERPRETED_ONLY) $(PYTEST_ARGS)

test-all-interpreted: install kafka-jars redis-install ## The whole test suite on the interpreted code (no compile step)
	$(PY) -m pytest $(PYTEST_ARGS)

COMPILED := .local/compiled
COMPILED_STAMP := $(COMPILED)/.built
$(COMPILED_STAMP): $(STAMP) pyproject.toml setup.py $(shell find worker schemas -name '*.py' -o -name '*.lua' -o -name '*.avsc')
	@deploy/local/check-tools.sh compiler
	@echo "compiling the hot path with mypyc into $(COMPILED) (about a minute; log: .local/compiled.log)"
	@rm -rf $(COMPILED) build && mkdir -p .local
	@IDENTITY_WORKER_COMPILE=1 $(PY) -m pip install --no-deps --no-build-isolation --target $(COMPILED) . \
	  > .local/compiled.log 2>&1 || { tail -40 .local/compiled.log; exit 1; }
	@rm -rf build
	@$(PY) -I -c 'import sys; sys.path.insert(0, "$(COMPILED)"); from worker import build; \
	  assert build.compiled_modules(), "no extension module was built"; print("compiled build:", build.describe())'
	@touch $@

compiled: $(COMPILED_STAMP) ## The compiled build (mypyc) of the hot-path modules into .local/compiled: run it with PYTHONPATH=.local/compiled

test-unit: install ## Run only the tests that need no services
	$(PY) -m pytest tests/unit tests/property $(PYTEST_ARGS)

mutants: install ## Planted bugs in worker/identity/: show the unit and property tests catch each one
	$(PY) -m tests.mutation.mutants

test-integration: install kafka-jars redis-install ## Run only the tests against real Kafka and Redis
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

faults: install kafka-jars redis-install ## Full fault suite on its own Kafka+Redis (free ports), at-least-once then exactly-once: kill -9, restarts, rebalances, slow Redis (docs/RELIABILITY.md)
	$(PY) -m tests.faults --out .local/faults/summary.json
	$(PY) -m tests.faults --exactly-once --out .local/faults/summary-exactly-once.json

lint: install lint-lua lint-deploy ## ruff (lint + format check), mypy --strict, luacheck and the deploy validators
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

lint-deploy: install ## yamllint, check-jsonschema (compose), kubernetes-validate, PromQL rules, hadolint, shellcheck on deploy/
	deploy/lint/lint.sh $(VENV)/bin

lint-lua: install lua-tools ## luacheck on the Lua modules and on the scripts joined from them
	luacheck worker/store/lua
	$(PY) -m worker.store.lua_loader $(LOCAL_LUA)
	luacheck $(LOCAL_LUA)

fmt: install ## Format and auto-fix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install ## mypy --strict
	$(VENV)/bin/mypy

BENCH_OUT := .local/bench
BENCH_WORKER_ARGS ?=
BENCH_LATENCY_ARGS ?=
BENCH_STORE_ARGS ?= --population 300000 --batches 40
BENCH_EXACTLY_ONCE_ARGS ?= --rounds 2
BENCH_BUILD ?= compiled=.local/compiled
BENCH_RULES ?= --rules script
bench: install services-up compiled ## Benchmarks, a few minutes: drain beside pass-through and naive, JSON and Avro, Redis time and bytes, latency, 1-3 workers, the rules in the resolve script beside the default (the rules in the worker) (report: .local/bench/report.md; results: docs/BENCHMARKS.md)
	@mkdir -p $(BENCH_OUT)
	@set -o pipefail; { \
	  $(PY) -m tests.bench.bench_worker --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 \
	    --out $(BENCH_OUT)/drain.json $$([ -x $(VENV)/bin/py-spy ] && echo --py-spy $(BENCH_OUT)/worker.pyspy) \
	    $(if $(BENCH_BUILD),--build $(BENCH_BUILD)) $(BENCH_RULES) $(BENCH_WORKER_ARGS) && \
	  $(PY) -m tests.bench.bench_latency --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 \
	    --drain-json $(BENCH_OUT)/drain.json $(if $(BENCH_BUILD),--build $(lastword $(subst =, ,$(BENCH_BUILD)))) $(BENCH_LATENCY_ARGS) && \
	  $(if $(BENCH_RULES),$(PY) -m tests.bench.bench_latency --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 \
	    --drain-json $(BENCH_OUT)/drain.json $(if $(BENCH_BUILD),--build $(lastword $(subst =, ,$(BENCH_BUILD)))) $(BENCH_RULES) $(BENCH_LATENCY_ARGS) &&) \
	  $(PY) -m tests.bench.bench_store --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 $(BENCH_STORE_ARGS) && \
	  $(if $(BENCH_BUILD),PYTHONPATH=$(abspath $(lastword $(subst =, ,$(BENCH_BUILD)))):. $(PY) -P,$(PY)) \
	    -m tests.bench.engine_cost --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 && \
	  $(PY) -m tests.bench.bench_exactly_once --bootstrap 127.0.0.1:$(KAFKA_PORT) --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 \
	    $(if $(BENCH_BUILD),--build $(BENCH_BUILD)) $(BENCH_EXACTLY_ONCE_ARGS); \
	} 2>&1 | tee $(BENCH_OUT)/report.md

BENCH_ICOUNT_ARGS ?=
bench-icount: install redis-install ## Instructions Redis executes per op of the resolve script (valgrind's callgrind: exact where time moves ±20%; needs valgrind), not in make bench: captures the store's calls on the local Redis (REDIS_PORT, started as make bench does), counts on a redis-server of its own; BENCH_ICOUNT_ARGS='--compare base=OLD/resolve_batch.lua --top 20' (tests/bench/lua_icount.py)
	@deploy/local/redis.sh start
	$(PY) -m tests.bench.lua_icount --redis-url redis://127.0.0.1:$(REDIS_PORT)/0 $(BENCH_ICOUNT_ARGS)

clean: ## Remove the venv, caches and local service data
	-@deploy/local/kafka.sh stop; deploy/local/redis.sh stop
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache .hypothesis
