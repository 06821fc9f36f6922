#!/usr/bin/env bash
# Install PyTorch into the environment of the given Python, choosing the build that fits the machine:
#   - torch already importable: nothing to do (users keep the build they chose);
#   - an NVIDIA GPU is visible: the normal build from the package index (CUDA on Linux);
#   - CPU only: a CPU wheel of $TORCH_VERSION already on this machine (pip's configured find-links),
#     else PyTorch's CPU-only index on Linux, else the package index (CPU builds on macOS and Windows).
# The point of the CPU branch: a plain `pip install torch` on a CPU-only Linux machine pulls a
# multi-GB CUDA build that it can never use.
set -euo pipefail
py=${1:?usage: install-torch.sh PYTHON}
version=${TORCH_VERSION:-2.13.0}

if "$py" -c "import torch" >/dev/null 2>&1; then
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    exec "$py" -m pip install --quiet torch
fi
if "$py" -m pip install --quiet --no-deps --no-index "torch==$version" >/dev/null 2>&1; then
    # Local CPU wheel installed; its own dependencies come from the index.
    exec "$py" -m pip install --quiet "torch==$version"
fi
if [ "$(uname -s)" = "Linux" ]; then
    exec "$py" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
fi
exec "$py" -m pip install --quiet torch
