# The two commands of the README:
#   make demo   set up, then the archive flow on a few synthetic scans (Prefect's embedded server, local Ray)
#   make test   set up, check the layers, then the fast tier and the reliability tier of the test suite
VENV ?= .venv
PY = $(VENV)/bin/python

.PHONY: setup demo test lint-imports test-fast test-reliability test-slow reliability clean

setup:
	@VENV=$(VENV) ./scripts/setup.sh

demo: setup
	$(VENV)/bin/folio demo demo

# Both tiers run even when the first fails, so one run shows every failure; the exit status is theirs.
test: setup
	@status=0; \
	$(MAKE) --no-print-directory lint-imports || status=1; \
	$(MAKE) --no-print-directory test-fast || status=1; \
	$(MAKE) --no-print-directory test-reliability || status=1; \
	exit $$status

# The import-linter contracts of pyproject.toml: each layer imports only from those below it.
lint-imports:
	$(VENV)/bin/lint-imports --no-logo

# Everything but the multi-process fault tests: a few minutes, offline, CPU only.
test-fast:
	$(PY) -m pytest -q -m "not slow and not gpu and not reliability"

# Killed workers and nodes, a killed driver, S3 outages through a fault-injecting proxy.
test-reliability:
	$(PY) -m pytest -q -m "reliability and not slow and not gpu"

test-slow: setup
	$(PY) -m pytest -q -m slow

# docs/reliability.md: hostile inputs and injected faults, each a test that must pass
reliability: setup
	$(PY) -m pytest -q -m "not slow and not gpu" tests/test_hostile.py tests/test_faults.py \
		tests/test_ray.py::test_killing_a_worker_node_mid_run_loses_nothing --reliability-report docs/reliability.md

clean:
	rm -rf demo .pytest_cache
