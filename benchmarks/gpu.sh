#!/usr/bin/env bash
# The GPU checks (benchmarks/gpu.py) with the machine they ran on, for the day a GPU is available.
# Run from the repository root in an environment with the package installed (`make venv`, and
# `pip install tensorflow[and-cuda]==2.21.0` for the CUDA libraries). A few minutes; never a test.
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$PYTHON" -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))"
timeout "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" -m benchmarks.gpu "$@"
