# Forewarn front door. `make demo` and `make test` do all set-up themselves and are idempotent:
# environments are rebuilt only when their lock file changes, broker jars are cached in
# $(FOREWARN_CACHE) and reused by every clone on this machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
UV := $(VENV)/tools/bin/uv
STREAMS := $(VENV)/streams
AIRFLOW := $(VENV)/airflow
export FOREWARN_CACHE ?= $(HOME)/.cache/forewarn
# One home for every target and command (issue 18): the demo, `make airflow`, `make outreach`
# and any `forewarn` command read and write the same folder, and find the stack running there.
export FOREWARN_HOME ?= $(CURDIR)/var
AIRFLOW_PORT ?= 8080
# Both environments see the project's packages from this checkout.
export PYTHONPATH := $(CURDIR)

.PHONY: soak audit airflow stop status help demo test test-fast test-fast-streams test-fast-airflow test-streams test-airflow lint envs prereqs system-deps kafka-jars kafka-start kafka-stop outreach bench clean

help:
	@echo "make demo   - the whole product: Kafka, 60 days of history, 30 days streamed through the"
	@echo "              Faust worker, the nightly DAG in Airflow, the outreach lists, a report"
	@echo "              (DEMO_ARGS=--keep-running leaves it up; make stop stops it)"
	@echo "make status - what runs from FOREWARN_HOME ($(FOREWARN_HOME)), where"
	@echo "make stop   - stop everything running from FOREWARN_HOME"
	@echo "make test   - the whole test suite (real Kafka broker, real Faust worker, Airflow env)"
	@echo "make test-fast - the unit tier only (no broker, database, browser or Airflow)"
	@echo "make lint   - ruff"
	@echo "make audit  - pip-audit of both locked environments"
	@echo "make soak   - the fault tests with 50 worker kills"
	@echo "make bench  - benchmarks against baselines in the same run (BENCH_ARGS=--quick)"
	@echo "make envs   - only create the two Python environments"
	@echo "make airflow  - Airflow 3.3 with the nightly DAG and Forewarn's pages on"
	@echo "                http://127.0.0.1:$(AIRFLOW_PORT)/ (user admin, password printed)"
	@echo "make outreach - the outreach web service on http://127.0.0.1:8088/"

prereqs:
	@$(PYTHON) console/prereqs.py

$(UV): | prereqs
	$(PYTHON) -m venv $(VENV)/tools
	$(VENV)/tools/bin/pip install --quiet uv==0.13.9

# One stamp per environment: rebuilt only when its lock file or the project metadata changes.
$(STREAMS)/.stamp: requirements/streams.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(STREAMS)
	$(UV) pip sync --quiet --python $(STREAMS)/bin/python requirements/streams.lock
	$(UV) pip install --quiet --python $(STREAMS)/bin/python --no-deps -e .
	$(STREAMS)/bin/python -m console.envcheck streams
	touch $@

$(AIRFLOW)/.stamp: requirements/airflow.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(AIRFLOW)
	$(UV) pip sync --quiet --python $(AIRFLOW)/bin/python requirements/airflow.lock
	$(UV) pip install --quiet --python $(AIRFLOW)/bin/python --no-deps -e .
	$(AIRFLOW)/bin/python -m console.envcheck airflow
	touch $@

envs: $(STREAMS)/.stamp $(AIRFLOW)/.stamp

# The benchmark environment: streams + the baselines (lifetimes). Never used by the product.
BENCH := $(VENV)/bench
$(BENCH)/.stamp: requirements/bench.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(BENCH)
	$(UV) pip sync --quiet --python $(BENCH)/bin/python requirements/bench.lock
	$(UV) pip install --quiet --python $(BENCH)/bin/python --no-deps -e .
	touch $@

# make bench                      every benchmark at full size (about an hour on 2 cores)
# make bench BENCH_ARGS=--quick   small inputs (what the test suite runs)
# make bench BENCH_ARGS="--only clv"
bench: prereqs envs $(BENCH)/.stamp kafka-jars
	$(BENCH)/bin/python -m bench $(BENCH_ARGS)

# Dependency audit of both lock files (requirements/audit.py says what counts as a failure).
PIP_AUDIT := $(VENV)/tools/bin/pip-audit
$(PIP_AUDIT): | $(UV)
	$(VENV)/tools/bin/pip install --quiet pip-audit==2.10.1

audit: $(PIP_AUDIT)
	$(PYTHON) requirements/audit.py $(PIP_AUDIT) var/audit

# Test-only system packages from Debian: a browser for the page tests, PostgreSQL 15 for the
# store tests, docker-compose to validate docker-compose.yml (no Docker engine needed). Installed when missing (needs root, as on CI); otherwise named with the fix.
SYSTEM_PACKAGES := chromium chromium-driver postgresql-15 docker-compose
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	test -x /usr/lib/postgresql/15/bin/initdb || missing="$$missing postgresql-15"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing from Debian"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "forewarn: the tests need$$missing: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

kafka-jars: $(STREAMS)/.stamp
	$(STREAMS)/bin/forewarn kafka fetch

kafka-start: kafka-jars
	$(STREAMS)/bin/forewarn kafka start

kafka-stop: $(STREAMS)/.stamp
	$(STREAMS)/bin/forewarn kafka stop

demo: prereqs envs kafka-jars
	FOREWARN_AIRFLOW_BIN=$(CURDIR)/$(AIRFLOW)/bin/airflow $(STREAMS)/bin/forewarn demo $(DEMO_ARGS)

status: $(STREAMS)/.stamp
	-$(STREAMS)/bin/forewarn status

stop: $(STREAMS)/.stamp
	$(STREAMS)/bin/forewarn stop

test: prereqs system-deps envs $(BENCH)/.stamp kafka-jars lint audit test-streams test-airflow

# Airflow 3.3 (`airflow standalone`) with the project's DAGs and plugins on FOREWARN_HOME's data,
# AIRFLOW_HOME=$(FOREWARN_HOME)/airflow, examples off, one task slot per core
# (FOREWARN_AIRFLOW_PARALLELISM), SimpleAuthManager: the admin password is generated on first
# start and printed (never admin/admin). One Ctrl-C stops every Airflow process. SQLite by
# default; set AIRFLOW__DATABASE__SQL_ALCHEMY_CONN for PostgreSQL.
airflow: $(STREAMS)/.stamp $(AIRFLOW)/.stamp
	FOREWARN_AIRFLOW_BIN=$(CURDIR)/$(AIRFLOW)/bin/airflow $(STREAMS)/bin/forewarn airflow \
		--port $(AIRFLOW_PORT)

outreach: envs
	$(STREAMS)/bin/forewarn outreach serve

# The fault tests with 50 worker kills instead of 10 (about 8 minutes).
soak: prereqs system-deps envs kafka-jars
	FOREWARN_SOAK_KILLS=50 $(STREAMS)/bin/python -m pytest tests/integration/test_faults.py -s $(PYTEST_ARGS)

# Which tests run in which environment: the Airflow environment's folders, and the rest.
AIRFLOW_TESTS := tests/airflow_env tests/models tests/dags tests/deploy tests/expectations \
	tests/plugins
STREAMS_TESTS := tests $(foreach t,$(AIRFLOW_TESTS),--ignore=$(t))

test-streams: $(STREAMS)/.stamp
	$(STREAMS)/bin/python -m pytest $(STREAMS_TESTS) $(PYTEST_ARGS)

test-airflow: $(AIRFLOW)/.stamp
	$(AIRFLOW)/bin/python -m pytest $(AIRFLOW_TESTS) \
		tests/forewarn/test_events.py tests/forewarn/test_lake.py $(PYTEST_ARGS)

# The unit tier: no broker, database server, browser or Airflow; under two minutes.
UNIT := -m "not kafka and not postgres and not browser and not slow"
# The two environments' tiers run side by side, one per core; each prints when it is done.
test-fast: envs
	$(MAKE) --no-print-directory -j2 --output-sync=target test-fast-streams test-fast-airflow

test-fast-streams: $(STREAMS)/.stamp
	$(STREAMS)/bin/python -m pytest $(STREAMS_TESTS) $(UNIT) -q $(PYTEST_ARGS)

test-fast-airflow: $(AIRFLOW)/.stamp
	$(AIRFLOW)/bin/python -m pytest $(AIRFLOW_TESTS) $(UNIT) -q $(PYTEST_ARGS)

lint: $(STREAMS)/.stamp
	$(STREAMS)/bin/ruff check .
	$(STREAMS)/bin/ruff format --check .

clean:
	-$(STREAMS)/bin/forewarn stop
	rm -rf var
