# One-command entry points. `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# The CPU wheel of torch: installed first, so that no later requirement pulls a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,train,envs

.PHONY: install train test bench gpu-check clean

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) install "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[$(EXTRAS)]"

train: install
	$(PYTHON) -m graphgpo train $(ARGS)

test: install
	$(PYTHON) -m pytest -q $(ARGS)

bench: install
	$(PYTHON) -m pytest benchmarks --benchmark-only -q $(ARGS)

gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

clean:
	rm -rf build *.egg-info .pytest_cache .benchmarks runs
