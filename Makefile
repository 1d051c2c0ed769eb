VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test lint bench demo study
install:
	bash tools/install.sh $(VENV)

test: install
	$(PY) -m pytest -q tests

# format in place (isort, yapf), then check (flake8); tests/test_lint.py checks
lint: install
	$(PY) -m isort wrs_mm tests tools benchmarks configs setup.py
	$(PY) -m yapf -i -r wrs_mm tests tools benchmarks configs setup.py
	$(PY) -m flake8 wrs_mm tests tools benchmarks configs setup.py

bench: install
	$(PY) benchmarks/bench_wrs.py --batch 4 --size-plain 160 --rounds 6 --out docs/bench_wrs_cpu.json
	$(PY) benchmarks/bench_norm_dynamics.py --out docs/bench_norm_dynamics_cpu.json

study: install
	$(PY) benchmarks/study_wrs_vs_wd.py

demo: install
	$(PY) tools/demo.py --work-dir work_dirs/demo
