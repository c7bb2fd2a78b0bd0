# One-command setup, pipeline and tests. `make repro` and `make test` create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile constraints.txt tools/uv_install.py | cksum | cut -d' ' -f1)
# Exact versions of every dependency but torch/torchvision (pinned below): two installs
# months apart resolve the same packages. `make lock` refreshes it from the venv;
# `make setup CONSTRAINTS=` installs from the lower bounds in pyproject.toml alone.
CONSTRAINTS ?= -c constraints.txt

# torch/torchvision pins for CPU machines: on x86_64 pip takes these wheels from local disk
# (a CUDA build that runs on CPU); on aarch64 the CPU build. Override with
# `make setup TORCH="torch torchvision"` on a GPU box to take what pip resolves.
ifeq ($(shell uname -m),aarch64)
TORCH ?= torch==2.9.1 torchvision==0.24.1
else
TORCH ?= torch==2.14.1 torchvision==0.29.1
endif

# The installer: uv (pinned; pip puts it in the venv) installs the same pins as pip in about
# half the time (fresh venv, 2026-12-05, Intel Xeon: the install steps 55 s vs 92 s; torch
# alone 11 s vs 42 s). uv reads no pip configuration, so tools/uv_install.py asks the venv's
# pip for its settings (mirror, wheel folder, constraint files, certificate) and runs uv with
# them, bytecode compiled as pip does. `make setup INSTALLER=pip` installs with pip alone.
INSTALLER ?= uv
UV_VERSION := 0.13.9
ifeq ($(INSTALLER),uv)
INSTALL = $(BIN)/python tools/uv_install.py -q
UV := uv==$(UV_VERSION)
else
INSTALL = $(BIN)/python -m pip install -q
UV :=
endif

.PHONY: setup repro test test-fast lint bench clean-venv lock

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(UV)
	$(INSTALL) $(TORCH)
	$(INSTALL) $(CONSTRAINTS) -e ".[dev,dlib]"
	# facenet-pytorch 2.6.0 pins torch<2.3 and numpy<2 but runs with these: no deps.
	$(INSTALL) --no-deps facenet-pytorch==2.6.0
	$(BIN)/python -c "import torchvision, facenet_pytorch, dlib, facebalance"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# The presets listed in params.yaml (`presets`): blond_male is `dvc repro` of this workspace,
# the others DVC experiments (`dvc exp show --md` compares them).
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/facebalance repro
	@cat metrics/compare.md

# Passive OpenMP waits: the tests run stages in subprocesses beside the test process;
# two torch processes on two cores slowed each other 10-20x (2026-12-05): idle threads must not spin.
# -n auto: one test process per core (pytest-xdist); tests/groups.py keeps every user of a
# shared tiny project in one process, and each process uses one torch thread.
test: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n auto

test-fast: setup
	OMP_WAIT_POLICY=PASSIVE $(BIN)/python -m pytest -n auto -m "not slow"

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/bench_metrics.py
	$(BIN)/python benchmarks/bench_train.py
	$(BIN)/python benchmarks/bench_latent.py
	$(BIN)/python benchmarks/bench_convert.py
	$(BIN)/python benchmarks/bench_invert.py
	$(BIN)/python benchmarks/bench_embed.py

# Refresh constraints.txt from the venv (after changing pyproject.toml: `make lock`, then
# commit it). torch, torchvision, their CUDA wheels, facenet-pytorch and uv stay pinned above.
lock: setup
	$(BIN)/python -m pip install -q --upgrade -e ".[dev,dlib]"
	$(BIN)/python -m pip freeze --exclude-editable \
	  | grep -viE '^((torch|torchvision|triton|facenet-pytorch|uv)( @|==)|(nvidia|cuda)-)' \
	  | sed '1i # make lock: exact versions of the dependencies (Python 3.11, x86_64); torch pins are in the Makefile' \
	  > constraints.txt

clean-venv:
	rm -rf $(VENV)
