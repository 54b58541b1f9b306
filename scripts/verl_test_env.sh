#!/usr/bin/env bash
# Build a separate virtual environment with verl, so the verl integration test
# (tests/test_verl_integration.py) runs against the real verl package on a CPU-only machine.
#
# Why a separate venv: verl 0.9.1 pins transformers>=5.5.3,<5.11 (and packaging, huggingface_hub,
# tensordict<=0.10), which must not touch the main interpreter's packages. torch is installed first and
# pinned by a constraint, so verl's resolve can never swap the CPU wheel for a CUDA build.
#
# Usage: scripts/verl_test_env.sh [VENV_DIR]   (default: <repo>/.venv-verl, git-ignored)
# Then:  VENV_DIR/bin/python -m pytest tests/test_verl_integration.py
#
# VERL_ENV_SYSTEM_SITE=1 builds the venv on top of the calling interpreter's packages
# (--system-site-packages): torch, numpy, matplotlib, ... are reused from there and only what verl needs
# beyond them (or pins differently, like transformers) goes into the venv. Smaller and faster; the default
# (an isolated venv) does not depend on what the main environment happens to hold.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv_dir="${1:-${repo_root}/.venv-verl}"
python_bin="${PYTHON:-python3}"
verl_version="${VERL_VERSION:-0.9.1}"

venv_flags=()
if [[ "${VERL_ENV_SYSTEM_SITE:-0}" == "1" ]]; then venv_flags=(--system-site-packages); fi
"${python_bin}" -m venv "${venv_flags[@]}" "${venv_dir}"
pip=("${venv_dir}/bin/python" -m pip)

constraints="$(mktemp)"
trap 'rm -f "${constraints}"' EXIT
echo "torch==2.13.0" > "${constraints}"
# torch first: the CPU wheel (found through pip's configured wheel folder / index). Where pip has no
# local CPU wheel, point TORCH_INDEX_URL at an index that serves it (PyTorch's CPU wheel index).
torch_index=()
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then torch_index=(--extra-index-url "${TORCH_INDEX_URL}"); fi
"${pip[@]}" install "${torch_index[@]}" "torch==2.13.0"
# verl, graphgpo's own runtime dependencies and the test runner, all under the torch pin. cachetools,
# fastapi and uvicorn are in verl's "verl-core" extra, not its base requirements, but
# verl.trainer.ppo.ray_trainer (where the trainer hook goes) imports them; the rest of that extra (vLLM
# clients, Qwen-VL utils, TransferQueue, ...) is not needed here.
"${pip[@]}" install -c "${constraints}" "verl==${verl_version}" cachetools fastapi uvicorn \
    "numpy>=1.24" "tqdm>=4.60" "matplotlib>=3.7" "PyYAML>=6" "pytest>=8"
# graphgpo itself, editable and without dependencies (they are installed above).
"${pip[@]}" install --no-deps --no-build-isolation -e "${repo_root}"

"${venv_dir}/bin/python" - <<'PY'
import torch, transformers, verl
from verl.trainer.ppo import core_algos, ray_trainer  # noqa: F401  (ray_trainer: the hook's target)
assert torch.__version__.startswith("2.13.0"), torch.__version__
print(f"verl {verl.__version__}, torch {torch.__version__}, transformers {transformers.__version__}")
PY
