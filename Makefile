VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test bench
install:
	bash tools/install.sh $(VENV)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/bench_wrs.py
