# Two commands from a fresh clone: `make run` and `make test` (README.md). Each first brings
# the environment up to date: a stamp file per step, so a step reruns only when what it
# depends on changed (pyproject.toml for the virtual environment) or its stamp is gone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch first, pinned: a CPU build from local disk here; a bare `torch` requirement on a
# machine without torch would pull a multi-GB CUDA build.
TORCH ?= torch==2.13.0
# Where `asymlib fetch` copies the raw datasets from; without it, fetch uses the network.
DATA_MIRROR ?= ../shared/data
DATA_DIR := $(if $(ASYMLIB_DATA),$(ASYMLIB_DATA),data)
PROFILE ?= quick

ENV_STAMP := $(VENV)/.asymlib-installed
DATA_STAMP := $(DATA_DIR)/.asymlib-fetched
# The virtual environment's programs (papermill, jupyter) come first on PATH.
IN_ENV := PATH="$(abspath $(BIN)):$$PATH"

.PHONY: setup browser run lint check test bench lab

setup: $(ENV_STAMP) $(DATA_STAMP)

$(ENV_STAMP): pyproject.toml
	@$(MAKE) --no-print-directory browser
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

$(DATA_STAMP): | $(ENV_STAMP)
	if [ -d "$(DATA_MIRROR)" ]; then $(BIN)/asymlib fetch --from "$(DATA_MIRROR)"; else $(BIN)/asymlib fetch; fi
	touch $@

# Debian's Chromium, for the tests that open the exported HTML reports and drive JupyterLab
# (through the playwright package, which uses this Chromium). It needs root; without it
# those tests are skipped with a reason, except in CI (CI=true), where a missing Chromium
# is an error.
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || { [ -z "$(CI)" ] || { echo "CI needs Chromium for the browser test" >&2; exit 1; }; \
	       echo "Chromium not installed (needs root: apt-get install chromium); the browser tests will be skipped"; }

run: setup
	$(IN_ENV) $(BIN)/asymlib run params/$(PROFILE).yaml

# ruff's lint and format check (settings in pyproject.toml); `ruff format asymlib tests
# benchmarks` fixes the format.
LINTED := asymlib tests benchmarks
lint: setup
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# Everyday: lint and the unit tests, leaving out those that run profiles, notebooks, a Dask
# cluster, worker processes or a browser (tests/conftest.py, END_TO_END).
check: lint
	$(IN_ENV) $(BIN)/python -m pytest -q -m "not end_to_end" tests/

# Everything, as CI runs it. --durations: every CI log lists the slowest tests (the suite
# should stay well under 20 minutes on 2 cores).
test: lint
	$(IN_ENV) $(BIN)/python -m pytest --nbval-lax --durations=25 notebooks/ tests/

# Before/after in one run: the package at BENCH_BASELINE (default: the commit before issue
# 12's training step) is timed beside the checkout's (benchmarks/README.md).
BENCH_BASELINE ?= be24596
# SMLPs came after it; their step was written out after 1f32898
SMLP_BASELINE ?= 1f32898
bench: setup
	$(BIN)/python benchmarks/bench_trainer.py --dataset california --hidden 64 256 --members 64 --baseline $(BENCH_BASELINE)
	$(BIN)/python benchmarks/bench_mixtures.py --experts 2 16 128 --baseline $(BENCH_BASELINE)
	$(BIN)/python benchmarks/bench_trainer.py --dataset california --kind smlp --hidden 64 --members 64 --baseline $(SMLP_BASELINE) --out benchmarks/results/trainer_smlp.json

# JupyterLab on the project's environment, on this machine only; it prints the URL (with
# its token) to open. Jupyter refuses to run as root unless told that it may.
lab: setup
	$(IN_ENV) $(BIN)/jupyter lab --no-browser --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)
