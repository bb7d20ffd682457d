# vlm-lam: every target calls the `vlm-lam` CLI; every variable maps to one of its options
# (empty = the CLI's default). `make` alone prints the flow.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
VLMLAM := $(BIN)/vlm-lam
# The demo and the tests never reach the hub (tiny twins are built locally); `make embed VLM=molmo`
# downloads the pinned revision unless HF_HUB_OFFLINE=1 is set (then: the local HF cache or MODEL_PATH).
demo test: export HF_HUB_OFFLINE ?= 1

opt = $(if $(strip $(2)),$(1) "$(strip $(2))")
flag = $(if $(filter 1 yes true on,$(strip $(2))),$(1),$(if $(strip $(2)),--no-$(patsubst --%,%,$(1))))

# --- where things live, and collect ---
CACHE ?=
RUNS ?=
PRESET ?= demo
TASKS ?=
EPISODES ?=
RESOLUTION ?=
QUALITY ?=
MAX_STEPS ?=
SEED ?=
DISTRACTORS ?=
WORKERS ?=
SCHEDULER ?=
STORE ?=
CACHE_OPT := $(call opt,--cache,$(CACHE))
COLLECT_OPTS := $(CACHE_OPT) --preset $(PRESET) $(call opt,--tasks,$(TASKS)) \
  $(call opt,--episodes-per-task,$(EPISODES)) $(call opt,--resolution,$(RESOLUTION)) \
  $(call opt,--quality,$(QUALITY)) $(call opt,--max-steps,$(MAX_STEPS)) \
  $(call opt,--seed,$(SEED)) $(call opt,--distractors,$(DISTRACTORS)) \
  $(call opt,--workers,$(WORKERS)) $(call opt,--scheduler,$(SCHEDULER))

# --- embed; VLM PROMPT POOLING LAYER also name the embeddings train-lam / sweep / science train on ---
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
BATCH ?=
EMB_NAME_OPTS := $(call opt,--vlm,$(VLM)) $(call opt,--prompt,$(PROMPT)) $(call opt,--pooling,$(POOLING)) \
  $(call opt,--layer,$(LAYER))
EMBED_OPTS := $(CACHE_OPT) $(EMB_NAME_OPTS) $(call opt,--prompt-position,$(PROMPT_POSITION)) \
  $(call opt,--batch-size,$(BATCH)) $(call opt,--model-path,$(MODEL_PATH)) $(call opt,--num-processes,$(NUM_PROCESSES)) \
  $(call opt,--workers,$(EMBED_WORKERS)) $(call opt,--dtype,$(DTYPE)) $(call opt,--device,$(DEVICE)) \
  $(call opt,--device-map,$(DEVICE_MAP)) $(call opt,--max-memory,$(MAX_MEMORY)) \
  $(if $(strip $(IMAGE_KW)),--image-kw '$(IMAGE_KW)')

# --- train-lam, sweep, science (STORE: an episode store path, else the newest store of PRESET;
# SEED is the LAM's seed here) ---
TARGET ?=
LATENT_DIM ?=
LR ?=
STEPS ?=
K ?=
K_SECONDS ?=
LOSS ?=
AUGMENT ?=
FRAME_STACK ?=
IMG_SIZE ?=
# DATA_SIZE: the LAM's training data, --episodes-per-task: N (each task's first N training episodes) or all
DATA_SIZE ?=
RUN ?=
ACCELERATOR ?=
DEVICES ?=
STRATEGY ?=
PRECISION ?=
# LOGGER: the experiment tracker of train-lam, sweep, eval and study (--logger): tensorboard | wandb |
# mlflow | csv, or a comma list; one tracker run per run, named by its run id (docs/train-lam.md)
LOGGER ?=
GRID ?= latent_dim=32,128 lr=1e-3,3e-4 seed=0,1
ENSEMBLE ?=
SEEDS ?=
MARGIN ?=
LAM_DATA_OPTS := $(CACHE_OPT) --preset $(PRESET) $(call opt,--runs,$(RUNS)) $(call opt,--accelerator,$(ACCELERATOR))
LAM_TARGET_OPTS := $(call opt,--target,$(TARGET)) $(EMB_NAME_OPTS)
LAM_OPTS := $(LAM_DATA_OPTS) $(LAM_TARGET_OPTS) $(call opt,--latent-dim,$(LATENT_DIM)) \
  $(call opt,--lr,$(LR)) $(call opt,--steps,$(STEPS)) $(call opt,--k,$(K)) $(call opt,--k-seconds,$(K_SECONDS)) $(call opt,--seed,$(SEED)) \
  $(call opt,--batch-size,$(BATCH)) $(call opt,--loss,$(LOSS)) $(call flag,--augment,$(AUGMENT)) \
  $(call opt,--frame-stack,$(FRAME_STACK)) $(call opt,--img-size,$(IMG_SIZE)) $(call opt,--devices,$(DEVICES)) \
  $(call opt,--episodes-per-task,$(DATA_SIZE)) \
  $(call opt,--strategy,$(STRATEGY)) $(call opt,--precision,$(PRECISION)) $(call opt,--logger,$(LOGGER))

# --- label (RUN: the run's id or folder; STORE: an episode store, default the run's training store;
# BATCH DEVICE NUM_PROCESSES FORCE=1) ---
LABEL_OPTS = $(call opt,--store,$(STORE)) $(CACHE_OPT) $(call opt,--runs,$(RUNS)) $(call opt,--batch-size,$(BATCH)) \
  $(call opt,--device,$(DEVICE)) $(call opt,--num-processes,$(NUM_PROCESSES)) $(call flag,--force,$(FORCE))

# --- eval and report ---
LABELLED ?=
HELDOUT ?=
ROLLOUTS ?=
METHODS ?=
POLICY_STEPS ?=
DECODER_STEPS ?=
FORCE ?=
RUN_LIST ?=
REPORT ?= report
REPORT_DIR ?=
EVAL_OPTS = $(call opt,--labelled,$(LABELLED)) $(call opt,--heldout,$(HELDOUT)) $(call opt,--rollouts,$(ROLLOUTS)) $(call opt,--methods,$(METHODS)) \
  $(call opt,--max-steps,$(MAX_STEPS)) $(call opt,--policy-steps,$(POLICY_STEPS)) \
  $(call opt,--decoder-steps,$(DECODER_STEPS)) $(call opt,--workers,$(WORKERS)) \
  $(call opt,--scheduler,$(SCHEDULER)) $(call opt,--runs,$(RUNS)) $(call flag,--force,$(FORCE)) $(call opt,--logger,$(LOGGER))

# sweep EVAL=1: then eval every run as one job and write reports/$(REPORT)/ (REPORT defaults to sweep there)
EVAL ?=
SWEEP_EVAL_OPTS = $(call flag,--eval,$(EVAL)) $(if $(filter 1 yes true on,$(strip $(EVAL))),--report "$(if $(filter report,$(REPORT)),sweep,$(REPORT))" \
  $(call opt,--labelled,$(LABELLED)) $(call opt,--heldout,$(HELDOUT)) $(call opt,--rollouts,$(ROLLOUTS)) \
  $(call opt,--policy-steps,$(POLICY_STEPS)) $(call opt,--decoder-steps,$(DECODER_STEPS)) $(call opt,--workers,$(WORKERS)))

# Every target that works on episodes starts here: $$store is STORE if given, else PRESET's episode
# store: with collect's variables set, that exact store (collected if missing, resumed if
# interrupted); without them, the newest complete store of PRESET, collected first when the
# cache has none. One rule for embed, train-lam, sweep, science and eval.
define with_store
set -o pipefail; store="$(STORE)"; \
if [ -z "$$store" ]; then \
  store=$$($(VLMLAM) collect $(or $(1),$(COLLECT_OPTS)) --if-missing | tail -n 1 | cut -d' ' -f1) || exit $$?; \
fi
endef

# --- bench ---
BENCHES ?=
BENCH_LOG ?=

define HELP
The flow, as a researcher types it (each step reuses what the one before left in the cache):

  on a GPU box, real weights                          offline on any CPU, a tiny random-weight twin
  make embed VLM=molmo PROMPT=ignore_distractors      make embed VLM=tiny-qwen25-vl PROMPT=ignore_distractors
  make train-lam VLM=molmo PROMPT=ignore_distractors  make train-lam VLM=tiny-qwen25-vl PROMPT=ignore_distractors
  make eval                                           make eval
  make report                                         make report

  Both use PRESET=demo unless told: add PRESET=paper (MT10, 224 px) to every line for the paper's
  data. Repeat train-lam with other LAM variables (or `make sweep`): the embeddings are reused.

  embed      (like train-lam, sweep, science, eval) starts from STORE=<episode store>, else PRESET's
             newest episode store, collected first when the cache has none (or, with collect's
             variables, that exact store); then embeds every frame once: one store per prompt.
             VLM PROMPT (a,b,c: a prompt sweep in one pass) POOLING LAYER PROMPT_POSITION BATCH
             MODEL_PATH NUM_PROCESSES EMBED_WORKERS DTYPE DEVICE IMAGE_KW CACHE
             DEVICE_MAP=auto MAX_MEMORY=0=70GiB,cpu=200GiB: one model over several GPUs
             collect's: PRESET=demo|small|paper TASKS EPISODES RESOLUTION QUALITY MAX_STEPS SEED
             DISTRACTORS WORKERS SCHEDULER
  train-lam  one LAM per target. Target: TARGET if given, else emb:<VLM>.<PROMPT> (the embeddings
             `make embed` wrote with the same VLM PROMPT [POOLING LAYER]), else pixels.
             LATENT_DIM LR STEPS K SEED BATCH LOSS AUGMENT=1 FRAME_STACK IMG_SIZE RUN (the run's id)
             DATA_SIZE=N|all: each task's first N training episodes (a grid axis: episodes_per_task=8,32,all)
             STORE PRESET CACHE RUNS ACCELERATOR DEVICES STRATEGY PRECISION
             LOGGER=tensorboard|wandb|mlflow|csv: a tracker run per run (also sweep, eval, study)
  sweep      train-lam over GRID="$(GRID)" (PROMPT=a,b adds a prompt axis) ENSEMBLE=vmap|loop
             SCHEDULER=tcp://host:8786: each training group on a dask worker with a GPU (docs/cluster.md)
             EVAL=1: then eval every run as one job, write reports/sweep/ (REPORT=<name>) and say where
             the time went; rerun resumes. LABELLED HELDOUT ROLLOUTS POLICY_STEPS DECODER_STEPS WORKERS
  science    probe R² of state / pixels / pixels-clean LAMs, plus the VLM PROMPT (or TARGET) row
             SEEDS=0,1,2,3 STEPS LATENT_DIM MARGIN
  label      RUN=<run id or folder>: the run's latent action of every frame pair of an episode store
             as a label store under CACHE/labels/ (and its probe R² where the store has true actions).
             STORE (default: the run's training store) BATCH DEVICE NUM_PROCESSES FORCE=1 CACHE RUNS
  eval       no RUN: every run under RUNS without a finished eval, as one job (their policies fit
             together, one rollout pool), resumable, one table at the end; RUN=<run id or folder>: that run. LABELLED HELDOUT ROLLOUTS METHODS MAX_STEPS
             POLICY_STEPS DECODER_STEPS WORKERS SCHEDULER FORCE=1 (redo an eval made with other options)
             LOGGER (success rates into the run's tracker run)
  report     no RUN_LIST: every evaluated run under RUNS; RUN_LIST="runs/a runs/b". REPORT=<name>
             (writes reports/<name>/index.md + PNGs, and index.html: sort and filter every run
             in a browser, offline) REPORT_DIR=<folder instead>

  make demo   the whole flow offline on CPU (collect, embed, 4 LAMs, eval, report), minutes
  make study  the paper's phenomenon in success rates, end to end on CPU (<= 45 min on 2 cores):
              collect the study preset (every task a 64 px policy can see), LAMs on state / pixels /
              pixels-clean (+ EMB=<store,...>), eval with controls and BC baselines, normalised
              success, reports/study/ (index.md, study.json). Killed, rerun. SEED=N: another seed
              (reports/study-seed<N>/). STUDY_PRESET=study-quick: four tasks, half the time.
              TASKS EPISODES EMB LAM_STEPS POLICY_STEPS ROLLOUTS WORKERS CACHE RUNS SEED STUDY_PRESET LOGGER
              SCHEDULER=tcp://host:8786: collect and rollouts on the cluster, training on its GPU workers
  make test   install into $(VENV) and run the test suite (without the slow fault cases)
  make lint   ruff check and ruff format --check, as CI runs them before the tests
  make lock   rewrite constraints.txt, the exact versions every install uses (CONSTRAINTS= opts out)
  make faults the fault suite: kills, damaged stores, full disks, moved caches, concurrent writers
  make bench  benchmark tables and one verdict per goal; the libraries' output goes to a log
              BENCHES="bench/eval.py ..." (default: every CPU bench) BENCH_LOG=<file>
  make collect  only the episode store (collect's variables above)

Roots: CACHE (default $$VLMLAM_CACHE or ./cache), RUNS (default $$VLMLAM_RUNS or ./runs): every target,
the demo's and the report's included, honours them.
Every variable is a CLI option: `vlm-lam <command> --help` lists them with their defaults.
endef
export HELP

.PHONY: FORCE help install test lint lock faults collect embed train-lam sweep science label eval report demo study bench clean
help:
	@echo "$$HELP"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# The lock: every package but torch at the version CI last passed on (`make lock` rewrites it).
# CONSTRAINTS= installs the newest releases instead (in a fresh VENV: pip upgrades nothing in place).
CONSTRAINTS ?= constraints.txt

# Torch first, chosen for this machine (never a CUDA build where there is no GPU), then the rest,
# held to the lock. A changed lock, or another CONSTRAINTS than the venv's ($(VENV)/.constraints), reinstalls.
ifneq ($(wildcard $(VENV)/.constraints),)
ifneq ($(shell cat $(VENV)/.constraints),$(strip $(CONSTRAINTS)))
$(VENV)/.installed: FORCE
endif
endif
$(VENV)/.installed: pyproject.toml tools/install-torch $(CONSTRAINTS) | $(VENV)/bin/python
	PYTHON=$(BIN)/python tools/install-torch
	$(BIN)/python -m pip install -q $(if $(strip $(CONSTRAINTS)),-c $(strip $(CONSTRAINTS))) -e '.[test]'
	echo '$(strip $(CONSTRAINTS))' > $(VENV)/.constraints
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -m "not slow"

# ruff's lint rules and formatting ([tool.ruff] in pyproject.toml); both run, either fails it.
lint: install
	$(BIN)/ruff check . ; status=$$?; $(BIN)/ruff format --check . && exit $$status

# Rewrites the lock from a fresh resolve: a temporary venv, torch by tools/install-torch, the
# package with every extra and no constraints; the versions it got, torch's family left out.
lock:
	$(PYTHON) tools/lock.py --out $(or $(strip $(CONSTRAINTS)),constraints.txt)

# Every fault case (the slow ones too); ends with `faults injected N, recovered N, data lost 0`.
faults: install
	@tally=$$(mktemp); VLMLAM_FAULT_TALLY=$$tally $(BIN)/python -m pytest tests/faults; status=$$?; \
	if [ -s $$tally ]; then cat $$tally; else echo "faults: no tally (the suite did not run to its end)"; fi; \
	rm -f $$tally; exit $$status

collect: install
	$(VLMLAM) collect $(COLLECT_OPTS)

# Collects the PRESET's episode store first when it is missing (collect is resumable and
# idempotent), unless STORE names an episode store.
embed: install
	@$(with_store); \
	echo "embedding $$store"; \
	$(VLMLAM) embed --episodes "$$store" $(EMBED_OPTS)

train-lam: install
	@$(with_store); \
	$(VLMLAM) train-lam --episodes "$$store" $(LAM_OPTS) $(call opt,--run,$(RUN))

sweep: install
	@$(with_store); \
	$(VLMLAM) sweep --episodes "$$store" $(LAM_OPTS) --grid "$(GRID)" $(call opt,--ensemble,$(ENSEMBLE)) \
	  $(call opt,--scheduler,$(SCHEDULER)) $(SWEEP_EVAL_OPTS)

science: install
	@$(with_store); \
	$(VLMLAM) science --episodes "$$store" $(LAM_DATA_OPTS) $(LAM_TARGET_OPTS) $(call opt,--seeds,$(SEEDS)) \
	  $(call opt,--steps,$(STEPS)) $(call opt,--latent-dim,$(LATENT_DIM)) $(call opt,--margin,$(MARGIN)) \
	  $(call opt,--ensemble,$(ENSEMBLE))

# The store defaults to the run's own training store (found by fingerprint), so no with_store here.
label: install
	@if [ -z "$(strip $(RUN))" ]; then echo "make label needs RUN=<run id or folder> (STORE=<episode store> optional)" >&2; exit 2; fi
	$(VLMLAM) label "$(strip $(RUN))" $(LABEL_OPTS)

# Runs name their own episode stores; PRESET's store is made sure of like everywhere else (by
# PRESET alone: MAX_STEPS and WORKERS are the rollouts' here, not collect's).
eval: install
	@$(call with_store,$(CACHE_OPT) --preset $(PRESET)); \
	$(VLMLAM) eval $(if $(strip $(RUN)),"$(strip $(RUN))") $(EVAL_OPTS)

# index.md + PNGs, and index.html: the explorer of every run (sort, filter, plots; opens offline).
report: install
	$(VLMLAM) report $(RUN_LIST) --name "$(REPORT)" $(call opt,--out,$(REPORT_DIR)) $(call opt,--runs,$(RUNS)) --html

# The whole flow, offline, on CPU: collect -> embed (a random-weight tiny twin: checks the
# pipeline, not a VLM's quality) -> train-lam on four targets -> eval -> report.
DEMO_VLM ?= tiny-qwen25-vl
DEMO_PROMPT ?= ignore_distractors
DEMO_LAM ?= --steps 600 --latent-dim 32 --batch-size 64 --img-size 32
DEMO_EVAL ?= --labelled 5 --heldout 2 --rollouts 4 --policy-steps 1000 --decoder-steps 800
DEMO_RUNS := demo-state demo-pixels demo-pixels-clean demo-emb
RUNS_DIR = $(or $(RUNS),$(VLMLAM_RUNS),runs)
demo: install
	$(VLMLAM) collect $(CACHE_OPT) --preset demo
	$(VLMLAM) embed $(CACHE_OPT) --preset demo --vlm $(DEMO_VLM) --prompt $(DEMO_PROMPT)
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target state --run demo-state
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target pixels --run demo-pixels
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --target pixels-clean --run demo-pixels-clean
	$(VLMLAM) train-lam $(LAM_DATA_OPTS) $(DEMO_LAM) --quiet --vlm $(DEMO_VLM) --prompt $(DEMO_PROMPT) --run demo-emb
	for r in $(DEMO_RUNS); do $(VLMLAM) eval $(RUNS_DIR)/$$r $(DEMO_EVAL) $(call opt,--runs,$(RUNS)) --quiet || exit $$?; done
	$(VLMLAM) report $(addprefix $(RUNS_DIR)/,$(DEMO_RUNS)) --name demo

# The phenomenon in success rates (policy/study.py); every stage resumes, so a killed study reruns.
EMB ?=
STUDY_PRESET ?=
LAM_STEPS ?=
study: install
	$(VLMLAM) study $(CACHE_OPT) $(call opt,--runs,$(RUNS)) $(call opt,--tasks,$(TASKS)) \
	  $(call opt,--episodes,$(EPISODES)) $(call opt,--emb,$(EMB)) $(call opt,--lam-steps,$(LAM_STEPS)) \
	  $(call opt,--policy-steps,$(POLICY_STEPS)) $(call opt,--rollouts,$(ROLLOUTS)) $(call opt,--workers,$(WORKERS)) \
	  $(call opt,--seed,$(SEED)) $(call opt,--preset,$(STUDY_PRESET)) $(call opt,--logger,$(LOGGER)) \
	  $(call opt,--scheduler,$(SCHEDULER))

# Each bench's table and one verdict line per goal; everything else the libraries print goes to
# a log file whose path is printed at the end.
bench: install
	$(BIN)/python bench/quiet.py $(BENCHES) $(call opt,--log,$(BENCH_LOG))

clean:
	rm -rf $(VENV) .pytest_cache
