# The two commands of the README:
#   make demo   set up, synthesize a few scans, OCR them into Parquet, show how to query it
#   make test   set up and run the default (fast, offline, CPU) test suite
VENV ?= .venv

.PHONY: setup demo test test-slow clean

setup:
	@VENV=$(VENV) ./scripts/setup.sh

demo: setup
	$(VENV)/bin/folio demo demo

test: setup
	$(VENV)/bin/python -m pytest -q

test-slow: setup
	$(VENV)/bin/python -m pytest -q -m slow

clean:
	rm -rf demo .pytest_cache
