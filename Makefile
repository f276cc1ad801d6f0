# Two commands: `make run` and `make test`. Each sets up what is missing first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# Test processes for `make test`: one per core (the suite is CPU-bound: more only adds contention);
# JOBS=0 runs them one after another, in one process.
JOBS ?= auto
# The CNN's dataset: mnist or fashion-mnist (make run DATASET=fashion-mnist).
DATASET ?= mnist

.PHONY: run test data lint format bench plane read clean

run: $(STAMP) data
	$(PY) compare.py --task mnist --dataset $(DATASET) $(ARGS)

# Tests run on every core (pytest-xdist); a run several tests read is made once (tests/conftest.py).
test: $(STAMP) data
	$(PY) -m pytest -n $(JOBS) --dist worksteal $(ARGS)

plane: $(STAMP)
	$(PY) compare.py --task plane $(ARGS)

bench: $(STAMP) data
	$(PY) compare.py --task mnist --dataset $(DATASET) --benchmark $(ARGS)

# The venv is rebuilt when the pins change. constraints.txt pins every package (CPU builds);
# torch==2.13.0 here is the CPU wheel. GPU users: see README, "GPU".
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[all,dev]"
	touch $(STAMP)

# Into ~/.cache/triptych/$(DATASET) only; Fashion-MNIST from Debian's package is read in place.
data: $(STAMP)
	$(PY) -m common.run.fetch --dataset $(DATASET)

# docs/side-by-side.html from the framework sources (parsed, not imported); prints its path.
# ARGS="--screenshot" also writes docs/side-by-side.png (needs Chromium).
read: $(STAMP)
	$(PY) -m common.sidebyside $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
