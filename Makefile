# Two commands: `make run` and `make test`. Each sets up what is missing first.
PYTHON ?= python3
# The virtualenv (VENV=/tmp/venv-x: another one; with -n, only what setting it up would run).
VENV ?= .venv
PY := $(VENV)/bin/python
# The venv's stamp holds the set of builds it has, cpu or gpu (empty, as before there was a choice: cpu).
STAMP := $(VENV)/.installed
ARGS ?=
# Test processes for `make test`: one per core (the suite is CPU-bound: more only adds contention);
# JOBS=0 runs them one after another, in one process.
JOBS ?= auto
# The CNN's dataset: mnist or fashion-mnist (make run DATASET=fashion-mnist).
DATASET ?= mnist
# Which builds of the pinned versions: unset, the CUDA builds where `nvidia-smi -L` lists a GPU, else the CPU
# builds; GPU=0 the CPU builds; GPU=1 the CUDA builds even where no GPU is visible (a container build, a login
# node: the frameworks then run on the CPU, and `compare.py --check-setup` says why).
GPU ?=

.PHONY: run test data lint format bench plane read clean builds switch gpu-check

# The first GPU nvidia-smi lists ("GPU 0: NVIDIA H200"), else nothing, and why nothing.
FIRST_GPU := /^GPU [0-9]/{s/ (UUID:.*//;p;q;}
SMI_GPU := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | sed -n '$(FIRST_GPU)')
SMI_WHY := $(if $(shell command -v nvidia-smi 2>/dev/null),nvidia-smi -L lists no GPU,nvidia-smi not found)
comma := ,
ifeq ($(GPU),1)
  SET := gpu
  WHY := GPU=1$(if $(SMI_GPU),; nvidia-smi -L: $(SMI_GPU),$(comma) though no NVIDIA GPU is visible: $(SMI_WHY))
else ifeq ($(GPU),0)
  SET := cpu
  WHY := GPU=0$(if $(SMI_GPU),$(comma) though nvidia-smi -L lists $(SMI_GPU),; no NVIDIA GPU: $(SMI_WHY))
else ifeq ($(GPU),)
  SET := $(if $(SMI_GPU),gpu,cpu)
  WHY := $(if $(SMI_GPU),nvidia-smi -L: $(SMI_GPU); GPU=0 for the CPU builds,no NVIDIA GPU: $(SMI_WHY); GPU=1 to insist)
else
  $(error GPU must be 0 (the CPU builds) or 1 (the CUDA builds), got '$(GPU)')
endif
label = $(if $(filter gpu,$(1)),CUDA,CPU)
# constraints.txt pins every package with the CPU builds (torch==2.13.0+cpu, tensorflow-cpu; on Linux aarch64 and
# macOS arm64 its marked lines, which pip picks by itself: tensorflow, PyPI's torch); constraints-gpu.txt
# the same versions with the CUDA builds and every CUDA library (README, "Installing one framework, or GPU builds").
CONSTRAINTS := constraints$(if $(filter gpu,$(SET)),-gpu).txt
# torch==2.13.0+cpu is served by PyTorch's own CPU index, not by PyPI: the CPU set adds that index where it
# answers within 5 s, and goes on without it where it does not (a wheel on disk, a mirror: pip's own config).
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
space := $() $()
# Linux x86-64 only: elsewhere constraints.txt pins PyPI's torch===2.13.0, and pip reads PyPI alone, as
# tests/test_platforms.py resolves it.
LINUX_X86_64 := $(filter Linux/x86_64,$(shell uname -s)/$(shell uname -m))
TORCH_INDEX = $(if $(and $(filter cpu,$(SET)),$(LINUX_X86_64)),$$(curl -fsS -m 5 -o /dev/null \
  $(TORCH_CPU_INDEX)/torch/ 2>/dev/null && echo --extra-index-url $(TORCH_CPU_INDEX))$(space))
EXTRAS := all$(if $(filter gpu,$(SET)),-cuda)
# PyPI's torch 2.13.0 is built with CUDA 13, TensorFlow and JAX's plugin with CUDA 12, and these wheels of the
# two CUDA versions write the same files: the CUDA 12 ones go in last (constraints-gpu.txt says why).
CUDA12_LAST := nvidia-cudnn-cu12 nvidia-nccl-cu12 nvidia-nvshmem-cu12
# PyTorch's own, CUDA 13's, in a folder its workers alone put first on their path (common/run/launch.py): each
# framework then loads the cuDNN, NCCL and NVSHMEM it was built for (README, "GPU builds").
TORCH_OWN := $(VENV)/framework-libs/pytorch
TORCH_CUDA13 := nvidia-cudnn-cu13 nvidia-nccl-cu13 nvidia-nvshmem-cu13

# The set the venv holds (nothing: no stamp) and the pins changed since it was installed.
HELD := $(if $(wildcard $(STAMP)),$(or $(shell cat $(STAMP)),cpu))
STALE := $(if $(HELD),$(shell for f in pyproject.toml $(CONSTRAINTS); do [ "$$f" -nt $(STAMP) ] && echo "$$f"; done))
ifeq ($(HELD),)
  DOING := installing the $(call label,$(SET)) builds into $(VENV)
else ifneq ($(HELD),$(SET))
  DOING := replacing the $(call label,$(HELD)) builds in $(VENV) with the $(call label,$(SET)) builds
else ifneq ($(STALE),)
  DOING := updating the $(call label,$(SET)) builds in $(VENV) to new pins
else
  DOING := using the $(call label,$(SET)) builds in $(VENV)
endif

run: $(STAMP) data
	$(PY) compare.py --task mnist --dataset $(DATASET) $(ARGS)

# Tests run on every core (pytest-xdist); a run several tests read is made once (tests/conftest.py).
test: $(STAMP) data
	$(PY) -m pytest -n $(JOBS) --dist worksteal $(ARGS)

plane: $(STAMP)
	$(PY) compare.py --task plane $(ARGS)

bench: $(STAMP) data
	$(PY) compare.py --task mnist --dataset $(DATASET) --benchmark $(ARGS)

# On a machine with an NVIDIA GPU, in one screen: what each framework sees, a short strict run that must AGREE and a
# --fast run with its tolerances (common/run/gpucheck.py); without a GPU it says so in one line and exits 1.
gpu-check: $(STAMP) data
	$(PY) -m common.run.gpucheck $(ARGS)

# One line: which builds the venv has or gets, and why; `make -n run` prints it too, then the set-up's commands
# without running them.
builds:
	$(info triptych: $(DOING) ($(WHY)))

# The venv is updated when the pins change, and made anew when the set of builds changes: tensorflow-cpu and
# tensorflow share one package directory, and the CUDA builds bring 5 GB that the CPU builds do not need.
$(STAMP): pyproject.toml $(CONSTRAINTS) $(if $(filter-out $(SET),$(HELD)),switch) | builds
	$(if $(filter-out $(SET),$(HELD)),rm -rf $(VENV))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) $(TORCH_INDEX)-e ".[$(EXTRAS),dev]"
	$(if $(filter gpu,$(SET)),$(PY) -m pip install --quiet --no-deps --force-reinstall -c $(CONSTRAINTS) $(CUDA12_LAST))
	$(if $(filter gpu,$(SET)),rm -rf $(TORCH_OWN) && $(PY) -m pip install --quiet --no-deps --target $(TORCH_OWN) \
	  -c $(CONSTRAINTS) $(TORCH_CUDA13))
	echo $(SET) > $(STAMP)

switch:

# Into ~/.cache/triptych/$(DATASET) only; Fashion-MNIST from Debian's package is read in place.
data: $(STAMP)
	$(PY) -m common.run.fetch --dataset $(DATASET)

# docs/side-by-side.html from the framework sources (parsed, not imported); prints its path.
# ARGS="--screenshot" also writes docs/side-by-side.png (needs Chromium).
read: $(STAMP)
	$(PY) -m common.sidebyside $(ARGS)

# ruff, and the GitHub workflow with actionlint where it is installed (pyproject's workflow-lint extra: its sdist
# downloads the binary from GitHub, so it is not in dev, which `make test` installs from PyPI alone).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@if [ -x $(VENV)/bin/actionlint ]; then echo $(VENV)/bin/actionlint && $(VENV)/bin/actionlint; \
	else echo 'make lint: .github/workflows not checked, actionlint is not installed: $(PY) -m pip install -c constraints.txt -e ".[workflow-lint]"'; fi

format: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
