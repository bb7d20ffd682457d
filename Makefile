# vlm-lam: every target calls the `vlm-lam` CLI; every variable maps to one of its options.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VLMLAM := $(BIN)/vlm-lam
export MUJOCO_GL ?= egl
export HF_HUB_OFFLINE ?= 1

# --- stage options (empty = the CLI's default) ---
CACHE ?=
PRESET ?= demo
TASKS ?=
EPISODES ?=
RESOLUTION ?=
SEED ?=
DISTRACTORS ?=
WORKERS ?=
SCHEDULER ?=

opt = $(if $(strip $(2)),$(1) "$(strip $(2))")
CACHE_OPT := $(call opt,--cache,$(CACHE))
COLLECT_OPTS := $(CACHE_OPT) --preset $(PRESET) $(call opt,--tasks,$(TASKS)) \
  $(call opt,--episodes-per-task,$(EPISODES)) $(call opt,--resolution,$(RESOLUTION)) \
  $(call opt,--seed,$(SEED)) $(call opt,--distractors,$(DISTRACTORS)) \
  $(call opt,--workers,$(WORKERS)) $(call opt,--scheduler,$(SCHEDULER))

.PHONY: help install test demo collect bench clean
help:
	@echo "make demo      # whole flow on an offline default (CPU, minutes)"
	@echo "make test      # install into $(VENV) and run the test suite"
	@echo "make collect PRESET=demo|small|paper [TASKS=reach-v3,push-v3 EPISODES=10 RESOLUTION=64 ...]"
	@echo "make bench     # benchmarks (tables with ratios against baselines)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# Torch first, chosen for this machine (never a CUDA build where there is no GPU), then the rest.
$(VENV)/.installed: pyproject.toml tools/install-torch | $(VENV)/bin/python
	PYTHON=$(BIN)/python tools/install-torch
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest

collect: install
	$(VLMLAM) collect $(COLLECT_OPTS)

demo: install
	$(VLMLAM) collect $(CACHE_OPT) --preset demo

bench: install
	$(BIN)/python bench/collect.py

clean:
	rm -rf $(VENV) .pytest_cache
