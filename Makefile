# Two commands on a fresh machine (Python >= 3.11 and the package registries):
#   make demo   the main job: a live 3-node cluster, a leader killed mid-write; summary + plot
#   make test   the test suite (long chaos runs: .venv/bin/python -m pytest -m slow)
# Optional: make fast-sim   compiles the simulator's event loop with mypyc (needs a C
# compiler); everything works without it, only slower (graphrep/sim/build_fast.py).
# Each creates (or reuses) the virtual environment .venv and installs what it needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint clean fast-sim

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/graphrep demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python experiments/ann_bench.py

lint: $(STAMP)
	$(BIN)/ruff check .

fast-sim: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fast]'
	$(BIN)/python -m graphrep.sim.build_fast

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis results
	rm -f graphrep/sim/_loop_compiled*.so
