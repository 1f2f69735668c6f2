# One command each: set up, run the main job, run the tests (README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Where `asymlib fetch` copies the raw datasets from; without it, fetch uses the network.
DATA_MIRROR ?= ../shared/data
PROFILE ?= quick

.PHONY: setup browser run test bench

setup: browser
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first: a CPU build from local disk here; a bare `torch` would pull a CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	if [ -d "$(DATA_MIRROR)" ]; then $(BIN)/asymlib fetch --from "$(DATA_MIRROR)"; else $(BIN)/asymlib fetch; fi

# Debian's Chromium, for the test that opens the exported HTML reports; needs root, and
# without it that one test is skipped with a reason (CI checks that it is installed).
browser:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
	  || echo "Chromium not installed (needs root: apt-get install chromium); the browser test will be skipped"

run:
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/asymlib run params/$(PROFILE).yaml

test:
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest --nbval-lax notebooks/ tests/

bench:
	$(BIN)/python benchmarks/bench_trainer.py --dataset california --hidden 64 256 --members 64
	$(BIN)/python benchmarks/bench_mixtures.py
