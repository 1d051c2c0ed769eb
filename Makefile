VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test bench demo
install:
	bash tools/install.sh $(VENV)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/bench_wrs.py

demo: install
	$(PY) tools/demo.py --work-dir work_dirs/demo
