VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test bench demo study
install:
	bash tools/install.sh $(VENV)

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/bench_wrs.py --out docs/bench_wrs_cpu.json
	$(PY) benchmarks/bench_norm_dynamics.py --out docs/bench_norm_dynamics_cpu.json

study: install
	$(PY) benchmarks/study_wrs_vs_wd.py

demo: install
	$(PY) tools/demo.py --work-dir work_dirs/demo
