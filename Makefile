# Two commands on a fresh machine (README): `make demo` and `make test`.
# Each creates .venv and installs what it needs; re-runs reuse it.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

# torch first, pinned: on this machine 2.13.0 is a local CPU build, and a bare
# range resolved later would pull a multi-GB CUDA build instead.
TORCH_PIN ?= torch==2.13.0

# Debian packages the suite and the demo need: EGL + Mesa for offscreen MuJoCo, Chromium and its driver for
# the live page's browser test, libusb for pyrealsense2, Xvfb for the teleop test. Checked on every run
# (dpkg, under a second); installed when missing if this is Debian and we are root, else named.
APT_PACKAGES := libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libgles2 libglx-mesa0 chromium chromium-driver libusb-1.0-0 xvfb

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:" $$missing; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	else echo "warning: missing Debian packages:" $$missing "(apt-get install them as root; tests that need them are skipped or fail)"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[sim,torch,hardware,franka,ur,xarm,bus,realsense,teleop,test]'
	touch $@

.PHONY: system-packages install demo test bench bench-deploy bench-learning readme-tables clean
install: system-packages $(VENV)/.installed

## The main job on its built-in default: expert demos on the tabletop suite + report.
demo: install
	$(VENV)/bin/embodied demo $(DEMO_ARGS)

## The test suite (about 5 minutes on 2 cores).
test: install
	$(PY) -m pytest -n 2 --timeout 900 -q $(PYTEST_ARGS)

## Measurements that take minutes: experts (50 seeds/family), throughput, speed; then README tables.
bench: install
	$(PY) bench/expert_success.py --seeds 50 | tee /dev/stderr | tail -n 1 > bench/results/expert_success.json
	$(PY) bench/sim_throughput.py | tee /dev/stderr | tail -n 1 > bench/results/sim_throughput.json
	$(PY) bench/metaworld_experts.py | tee /dev/stderr | tail -n 1 > bench/results/metaworld_experts.json
	$(PY) bench/policy_speed.py | tee /dev/stderr | tail -n 1 > bench/results/policy_speed.json
	$(PY) bench/train_throughput.py --policy mdt | tee /dev/stderr | tail -n 1 > bench/results/train_throughput.json
	$(PY) bench/server_latency.py | tee /dev/stderr | tail -n 1 > bench/results/server_latency.json
	$(PY) bench/watchdog.py | tee /dev/stderr | tail -n 1 > bench/results/watchdog.json
	$(MAKE) readme-tables

## A trained policy through the robot server on the sim twin vs directly in sim (needs `make demo` first).
bench-deploy: install
	$(PY) bench/deploy_parity.py --checkpoint outputs/demo/runs/mdt | tee /dev/stderr | tail -n 1 > bench/results/deploy_parity.json
	$(MAKE) readme-tables

## Measurements that train policies (hours on a 2-core CPU; each writes its own results).
bench-learning: install
	$(PY) bench/success.py
	$(PY) bench/metaworld_mdt.py
	$(PY) bench/hand_relative.py
	$(MAKE) readme-tables

readme-tables: install
	$(PY) bench/readme_tables.py README.md

clean:
	rm -rf $(VENV) outputs
