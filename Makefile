# The two commands of the README:
#   make demo   set up, synthesize a few scans, OCR them into Parquet, show how to query it
#   make test   set up and run the default (fast, offline, CPU) test suite
VENV ?= .venv

.PHONY: setup demo test test-slow reliability clean

setup:
	@VENV=$(VENV) ./scripts/setup.sh

demo: setup
	$(VENV)/bin/folio demo demo

test: setup
	$(VENV)/bin/python -m pytest -q

test-slow: setup
	$(VENV)/bin/python -m pytest -q -m slow

# docs/reliability.md: hostile inputs and injected faults, each a test that must pass
reliability: setup
	$(VENV)/bin/python -m pytest -q tests/test_hostile.py tests/test_faults.py \
		tests/test_ray.py::test_killing_a_worker_node_mid_run_loses_nothing --reliability-report docs/reliability.md

clean:
	rm -rf demo .pytest_cache
