# vlm-lam: every target calls the `vlm-lam` CLI; every variable maps to one of its options.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VLMLAM := $(BIN)/vlm-lam
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

.PHONY: help install test demo collect eval report bench clean
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

# The whole flow, offline, on CPU: collect -> embed (a random-weight tiny twin: checks the
# pipeline, not a VLM's quality) -> train-lam on four targets -> eval -> report.
DEMO_VLM ?= tiny-qwen25-vl
DEMO_PROMPT ?= ignore_distractors
DEMO_LAM ?= --steps 300 --latent-dim 32 --batch-size 64 --img-size 32
DEMO_EVAL ?= --labelled 2 --rollouts 3 --policy-steps 300 --decoder-steps 300 --batch-size 64
DEMO_RUNS := demo-state demo-pixels demo-pixels-clean demo-emb
RUNS_DIR = $(or $(RUNS),runs)
demo: install
	$(VLMLAM) collect $(CACHE_OPT) --preset demo
	$(VLMLAM) embed $(CACHE_OPT) --preset demo --vlm $(DEMO_VLM) --prompt $(DEMO_PROMPT)
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target state --run demo-state
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target pixels --run demo-pixels
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target pixels-clean --run demo-pixels-clean
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target "emb:$(DEMO_VLM).$(DEMO_PROMPT)" --run demo-emb
	for r in $(DEMO_RUNS); do $(VLMLAM) eval $(RUNS_DIR)/$$r $(DEMO_EVAL) $(call opt,--runs,$(RUNS)) --quiet || exit $$?; done
	$(VLMLAM) report $(addprefix $(RUNS_DIR)/,$(DEMO_RUNS)) --name demo

# --- downstream: eval and report (policy/) ---
# make eval RUN=<run id or folder> [LABELLED=2 ROLLOUTS=10 METHODS=latent,bc-labelled,bc-all]
LABELLED ?=
ROLLOUTS ?=
METHODS ?=
REPORT ?= report
EVAL_OPTS = $(call opt,--labelled,$(LABELLED)) $(call opt,--rollouts,$(ROLLOUTS)) $(call opt,--methods,$(METHODS)) \
  $(call opt,--workers,$(WORKERS)) $(call opt,--scheduler,$(SCHEDULER)) $(call opt,--runs,$(RUNS))
eval: install
	@test -n "$(RUN)" || { echo "usage: make eval RUN=<run id or folder>"; exit 2; }
	$(VLMLAM) eval "$(RUN)" $(EVAL_OPTS)

# make report [RUN_LIST="runs/a runs/b"] [REPORT=name]: default every run folder under runs/
report: install
	$(VLMLAM) report $(or $(RUN_LIST),$(patsubst %/config.json,%,$(wildcard $(RUNS_DIR)/*/config.json))) --name $(REPORT)

bench: install
	$(BIN)/python bench/collect.py
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/vision_attention.py
	$(BIN)/python bench/train_lam.py
	$(BIN)/python bench/eval.py

clean:
	rm -rf $(VENV) .pytest_cache

# --- stage two: latent action models (lam/) ---
# STORE is an episode store path (else the newest store of PRESET); SEED is the LAM's seed here.
TARGET ?=
LATENT_DIM ?=
LR ?=
STEPS ?=
K ?=
BATCH ?=
LOSS ?=
AUGMENT ?=
FRAME_STACK ?=
STORE ?=
RUN ?=
RUNS ?=
ACCELERATOR ?=
DEVICES ?=
STRATEGY ?=
PRECISION ?=
GRID ?= latent_dim=32,128 lr=1e-3,3e-4 seed=0,1
SEEDS ?=
MARGIN ?=
ENSEMBLE ?=
flag = $(if $(filter 1 yes true on,$(strip $(2))),$(1),$(if $(strip $(2)),--no-$(patsubst --%,%,$(1))))
LAM_DATA_OPTS := $(CACHE_OPT) --preset $(PRESET) $(call opt,--episodes,$(STORE)) $(call opt,--runs,$(RUNS)) \
  $(call opt,--accelerator,$(ACCELERATOR))
LAM_OPTS := $(LAM_DATA_OPTS) $(call opt,--target,$(TARGET)) $(call opt,--latent-dim,$(LATENT_DIM)) \
  $(call opt,--lr,$(LR)) $(call opt,--steps,$(STEPS)) $(call opt,--k,$(K)) $(call opt,--seed,$(SEED)) \
  $(call opt,--batch-size,$(BATCH)) $(call opt,--loss,$(LOSS)) $(call flag,--augment,$(AUGMENT)) \
  $(call opt,--frame-stack,$(FRAME_STACK)) $(call opt,--devices,$(DEVICES)) \
  $(call opt,--strategy,$(STRATEGY)) $(call opt,--precision,$(PRECISION))

.PHONY: train-lam sweep science
train-lam: install
	$(VLMLAM) train-lam $(LAM_OPTS) $(call opt,--run,$(RUN))

sweep: install
	$(VLMLAM) sweep $(LAM_OPTS) --grid "$(GRID)" $(call opt,--ensemble,$(ENSEMBLE))

science: install
	$(VLMLAM) science $(LAM_DATA_OPTS) $(call opt,--seeds,$(SEEDS)) $(call opt,--steps,$(STEPS)) \
	  $(call opt,--latent-dim,$(LATENT_DIM)) $(call opt,--margin,$(MARGIN)) $(call opt,--ensemble,$(ENSEMBLE))

# --- stage one: embed (pipeline/embed.py) ---
# make embed VLM=molmo PROMPT=ignore_distractors [POOLING=last LAYER=-1 BATCH=32 MODEL_PATH=DIR NUM_PROCESSES=8]
#   [DEVICE_MAP=auto MAX_MEMORY=0=70GiB,cpu=200GiB]: one model over several GPUs
# Collects the PRESET's episode store first when it is missing (collect is resumable and idempotent),
# unless STORE names an episode store. PROMPT=a,b,c embeds a prompt sweep in one pass.
VLM ?=
PROMPT ?=
POOLING ?=
LAYER ?=
PROMPT_POSITION ?=
MODEL_PATH ?=
NUM_PROCESSES ?=
EMBED_WORKERS ?=
DTYPE ?=
DEVICE ?=
IMAGE_KW ?=
DEVICE_MAP ?=
MAX_MEMORY ?=
EMBED_OPTS := $(CACHE_OPT) $(call opt,--vlm,$(VLM)) $(call opt,--prompt,$(PROMPT)) $(call opt,--pooling,$(POOLING)) \
  $(call opt,--layer,$(LAYER)) $(call opt,--prompt-position,$(PROMPT_POSITION)) $(call opt,--batch-size,$(BATCH)) \
  $(call opt,--model-path,$(MODEL_PATH)) $(call opt,--num-processes,$(NUM_PROCESSES)) \
  $(call opt,--workers,$(EMBED_WORKERS)) $(call opt,--dtype,$(DTYPE)) $(call opt,--device,$(DEVICE)) \
  $(call opt,--device-map,$(DEVICE_MAP)) $(call opt,--max-memory,$(MAX_MEMORY)) \
  $(if $(strip $(IMAGE_KW)),--image-kw '$(IMAGE_KW)')

.PHONY: embed
embed: install
	@store="$(STORE)"; \
	if [ -z "$$store" ]; then \
	  store=$$($(VLMLAM) collect $(COLLECT_OPTS) | tail -n 1 | cut -d' ' -f1) || exit $$?; \
	fi; \
	echo "embedding $$store"; \
	$(VLMLAM) embed --episodes "$$store" $(EMBED_OPTS)
