# The two commands a newcomer needs:  make run   and   make test
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= $(shell command -v python3.11 || command -v python3)

# The test suite runs on real PostgreSQL and Redis; these are the local defaults.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/pubsub
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9
# The SQLite leg (the `make run` default): the tests conftest.SQLITE_LEG names, on a test
# database file next to this one (var/test_suite.sqlite3). SQLITE_PYTEST_ARGS: its own options.
TEST_SQLITE_DATABASE_URL ?= sqlite:///$(CURDIR)/var/suite.sqlite3
# The SQLite leg runs beside the PostgreSQL one (scripts/test-legs.sh), on a Redis database of
# its own (SQLITE_REDIS_URL in the environment overrides it).
TEST_SQLITE_REDIS_URL ?= redis://127.0.0.1:6379/8
# Extra pytest arguments of each leg, as a shell would split them (make test PYTEST_ARGS="-k x").
export PYTEST_ARGS SQLITE_PYTEST_ARGS
# Where `make run`, `make demo` and `make cluster` listen (the first port of a cluster).
PORT ?= 8000

.PHONY: run demo test chaos fuzz lint cluster cluster-restart bench bench-search bench-scale venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt bench/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || { echo "Python 3.11 is required (found $$($(PYTHON) --version))."; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements-dev.txt
	@touch $@

## Bring the site up: web (uvicorn) and worker (django-rq), SQLite and a local Redis by default.
## On another port: make run PORT=8080
run: venv
	@PORT=$(PORT) scripts/run.sh

## The same, with a few users, rooms and messages loaded first.
demo: venv
	@DEMO=1 PORT=$(PORT) scripts/run.sh

## The whole suite against real PostgreSQL and Redis, after ruff; installs the system
## packages it needs first (scripts/test-deps.sh: Chromium, docker-compose, an emoji font).
## Beside it, the SQLite leg: the tests marked `sqlite` (conftest.SQLITE_LEG) again, on SQLite.
test: venv
	scripts/test-deps.sh
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	VENV=$(VENV) PG_DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} PG_REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		SQLITE_DATABASE_URL=$(TEST_SQLITE_DATABASE_URL) SQLITE_REDIS_URL=$${SQLITE_REDIS_URL:-$(TEST_SQLITE_REDIS_URL)} \
		scripts/test-legs.sh

## The fault suite (tests/faults, the scale-out tests among them) alone: prints the table of acked,
## stored, delivered, lost and duplicated per fault and writes it into docs/reliability.md.
chaos: venv
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		CHAOS_REPORT=docs/reliability.md $(VENV)/bin/pytest tests/faults $(PYTEST_ARGS)

## The hostile-input fuzzers (tests/hostile: Hypothesis against a live web process, over its
## socket and every URL) with the `fuzz` profile: many more examples than `make test`'s `ci`.
fuzz: venv
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		FUZZ_PROFILE=fuzz $(VENV)/bin/pytest tests/hostile --timeout=7200 $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) var/*.sqlite3 var/*.sqlite3-wal var/*.sqlite3-shm var/staticfiles

## The production shape without Docker: WEB web processes on consecutive ports from PORT, WORKERS workers.
WEB ?= 3
WORKERS ?= 2
cluster: venv
	$(PY) manage.py migrate --noinput
	$(PY) -m pubsub_site.cluster --web $(WEB) --workers $(WORKERS) --port $(PORT)

## A rolling restart of the running `make cluster`'s web processes, one at a time (docs/deploy.md).
cluster-restart:
	kill -HUP $$(cat var/cluster/runner.pid)

## The benchmark (not a test): starts the servers it measures, prints figures, writes docs/benchmarks.md.
bench: venv
	$(PY) -m bench $(BENCH_ARGS)

## Search over 1,000,000 messages (a database of its own): p50/p95/p99, written into docs/benchmarks.md.
bench-search: venv
	$(PY) -m bench.search $(BENCH_ARGS)

## Connections at scale (python -m bench.scale; a database and Redis database of its own): SCALE_SOCKETS
## signed-in sockets (100,000) over web and load-generator processes, the SIGKILL storm of STORM_SOCKETS
## (50,000), then the soak of SOAK_SOCKETS (20,000) for SOAK_MINUTES (30); about 45 minutes on 2 cores.
## Written into docs/benchmarks.md (its own section) with the soak plot. More options: BENCH_ARGS.
SCALE_SOCKETS ?= 100000
STORM_SOCKETS ?= 50000
SOAK_SOCKETS ?= 20000
SOAK_MINUTES ?= 30
bench-scale: venv
	$(PY) -m bench.scale --sockets $(SCALE_SOCKETS) --storm-sockets $(STORM_SOCKETS) \
		--soak-sockets $(SOAK_SOCKETS) --soak-minutes $(SOAK_MINUTES) $(BENCH_ARGS)
