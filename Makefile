# Two commands matter: `make demo` and `make test`. Both run `make setup` first.
SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
BUILD := $(ROOT)/.build
# The catkin workspace lives outside this tree: its src/ links back to the repo, and a link to a
# folder that contains the link makes rosrun's search loop and find the node several times.
WS ?= $(HOME)/.cache/panoptic_perception/catkin_ws-$(shell printf '%s' '$(ROOT)' | md5sum | cut -c1-8)
ENV := . $(BUILD)/setup.sh
PYTEST_ARGS ?=
GPU ?= 0

.PHONY: setup setup-gpu demo test test-fast lint clean help

help:
	@echo "make demo   - set up, then run the node on the shipped model and synthetic drive"
	@echo "make test   - set up, then run every test (unit and ROS integration)"
	@echo "make test-fast - the tests that need no ROS master and are not marked slow"
	@echo "make setup  - install what is missing (Debian ROS packages, .venv, catkin build)"
	@echo "make setup GPU=1 (or make setup-gpu) - the same, plus CUDA torch, torch-tensorrt, onnxruntime-gpu"
	@echo "make lint   - ruff"

setup: $(BUILD)/setup.sh
ifeq ($(GPU),1)
setup: $(BUILD)/.gpu.stamp
endif

setup-gpu:
	$(MAKE) setup GPU=1

$(BUILD)/.gpu.stamp: $(BUILD)/setup.sh requirements-gpu.txt tools/setup_gpu.sh
	tools/setup_gpu.sh

$(BUILD)/.apt.stamp: tools/apt-packages.txt tools/setup_apt.sh
	@mkdir -p $(BUILD)
	tools/setup_apt.sh
	@touch $@

$(VENV)/bin/python: $(BUILD)/.apt.stamp
	/usr/bin/python3 -m venv --system-site-packages $(VENV)
	@touch $@

$(VENV)/.deps.stamp: requirements.txt requirements-nodeps.txt $(VENV)/bin/python
	$(VENV)/bin/python -m pip install -q -r requirements.txt
	$(VENV)/bin/python -m pip install -q --no-deps -r requirements-nodeps.txt
	@touch $@

# This repo is the package: the workspace's src/ holds a link back to it.
# Built with the venv's python so the node relay scripts catkin writes run where torch is.
$(WS)/devel/setup.sh: $(BUILD)/.apt.stamp $(VENV)/bin/python CMakeLists.txt package.xml setup.py $(wildcard msg/*.msg) $(wildcard nodes/*)
	@mkdir -p $(WS)/src
	@ln -sfn $(ROOT) $(WS)/src/panoptic_perception
	cd $(WS) && catkin_make -DPYTHON_EXECUTABLE=$(VENV)/bin/python3 -DCATKIN_ENABLE_TESTING=OFF > $(WS)/catkin_make.log 2>&1 \
		|| { tail -40 $(WS)/catkin_make.log; exit 1; }
	@touch $@

$(BUILD)/setup.sh: $(WS)/devel/setup.sh $(VENV)/.deps.stamp tools/write_env.sh
	tools/write_env.sh $(WS)
	@echo "setup: done. In a new shell: . $(BUILD)/setup.sh"

test: setup
	$(ENV) && python -m pytest $(PYTEST_ARGS)

# The quick loop while developing: no ROS master, nothing marked slow, one worker per core
# (pytest-xdist). `make test` runs everything, serially.
test-fast: setup
	$(ENV) && python -m pytest -q -n auto -m "not ros and not slow" $(PYTEST_ARGS)

demo: setup
	$(ENV) && python -m panoptic_perception demo

lint: setup
	$(ENV) && ruff check src test $$(find nodes -type f 2>/dev/null)

clean:
	rm -rf $(BUILD) $(VENV) $(WS)
