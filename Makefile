VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install user-env detectron2-env newest-torch-env test lint docs bench demo study-cifar study-ws gpu-report
install:
	bash tools/install.sh $(VENV)

# the reference user environment (torch 2.1.2, mmcv 2.1.0, mmdet 3.3,
# mmseg 1.2, mmpretrain 1.2), cached; tests/test_user_env.py installs the
# wheel into it and tests there
user-env:
	bash tools/install_user_env.sh

# the Detectron2 environment (the user environment without OpenMMLab, plus
# Detectron2 built from third_party/), cached; tests/test_detectron2.py
# installs the wheel into it and trains with Detectron2's tools there
detectron2-env: user-env
	bash tools/install_detectron2_env.sh

# the newest torch release with numpy and mmengine (no mmcv: mmcv 2.1.0 does
# not build against it), cached; tests/test_newest_torch.py installs the wheel
# into it and runs the plugin's tests there
newest-torch-env:
	bash tools/install_newest_torch_env.sh

# two workers (pytest-xdist), one test at a time each, the heavy tests first
# (tests/conftest.py), the user-environment tests together in one worker
# (xdist_group); `pytest tests/...` alone runs serially
test: install user-env detectron2-env newest-torch-env
	$(PY) -m pytest -q -rs -n 2 --dist loadgroup --maxschedchunk 1 --durations=15 tests

# format in place (isort, yapf), then check (flake8); tests/test_lint.py checks
lint: install
	$(PY) -m isort wrs_mm tests tools benchmarks configs setup.py wrs_mm_config_hook.py
	$(PY) -m yapf -i -r wrs_mm tests tools benchmarks configs setup.py wrs_mm_config_hook.py
	$(PY) -m flake8 wrs_mm tests tools benchmarks configs setup.py wrs_mm_config_hook.py

# the manual: docs/en/_build/html/index.html (fails on any warning)
docs: install
	$(PY) -m sphinx -W --keep-going -b html docs/en docs/en/_build/html

bench: install
	$(PY) benchmarks/bench_wrs.py --batch 4 --size-plain 160 --rounds 6 --out docs/bench_wrs_cpu.json
	$(PY) benchmarks/bench_norm_dynamics.py --out docs/bench_norm_dynamics_cpu.json
	$(PY) benchmarks/bench_analysis.py --out docs/bench_analysis_cpu.json
	$(PY) benchmarks/bench_optimizer_step.py --out docs/bench_optimizer_step_cpu.json

# Liu et al. 2021 Table 1 / Fig. 1 at CPU scale and the ablations that explain
# it: wd, wrs (tau on validation), wrs_init, wrs_fc, shifted; 5 paired seeds
study-cifar: install
	$(PY) benchmarks/study_cifar10.py --seeds 5 --epochs 12

# Li et al. Table II / III, Fig. 6 at CPU scale: WS VGG16-BN, L2 vs eps-shifted
study-ws: install
	$(PY) benchmarks/study_ws_shifted.py

# on a CUDA machine: CUDA tests, op / step overheads, kernel registers (~6 min)
gpu-report: install
	$(PY) benchmarks/gpu_report.py --out docs/gpu_report.json

demo: install
	$(PY) tools/demo.py --work-dir work_dirs/demo
