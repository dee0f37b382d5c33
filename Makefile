# The two commands a fresh machine needs: `make demo` and `make test`.
# TORCH_SPEC picks the torch build. The default is the CPU wheel this project is tested with;
# GPU users: `make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124" test`
# (or install CUDA torch into .venv first; an installed torch that satisfies torch>=2.5 is kept).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: test demo venv clean bench chromium gpu-test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): $(PY) pyproject.toml Makefile
	@$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[test,web]"
	$(PIP) install -q --no-deps random-face==2021.7.21.1
	@rm -f $(VENV)/.installed-*; touch $@

venv: $(STAMP)

# The web page's browser tests drive Debian's Chromium (never a downloaded browser); they skip without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium >/dev/null) || \
	  echo "warning: could not install Debian's chromium; the browser tests will be skipped"

test: $(STAMP) chromium
	$(PY) -m pytest -q tests

demo: $(STAMP)
	$(VENV)/bin/micromotion demo

# The GPU lane: the `gpu` and `slow` tests on whatever CUDA device torch sees. Needs a CUDA torch: build the
# venv with a CUDA TORCH_SPEC (see above), or point GPU_PY at a python that has CUDA torch and the project's
# dependencies (e.g. `make gpu-test GPU_PY=python3` with PYTHONPATH=src).
GPU_PY ?= $(PY)
GPU_TESTS ?= tests
gpu-test:
	@$(GPU_PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-test: torch sees no CUDA device')"
	$(GPU_PY) -m pytest -q --runslow -m "gpu or slow" $(GPU_TESTS)

bench: $(STAMP)
	$(PY) benchmarks/bench_generator.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
