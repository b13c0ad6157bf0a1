#!/usr/bin/env bash
# GPU check, for a machine with an NVIDIA GPU; installs nothing from the network.
# Trains in_resnet110 on synthetic CIFAR-shaped data with XLA and mixed
# precision and prints train images/s, epoch-equivalent seconds and peak
# memory (benchmarks/gpu_check.py). Uses the Keras backend that is there:
# TensorFlow if importable, else JAX; wheels placed in .whl/ (Keras and the
# two packages it needs beyond a JAX image: namex, optree) are installed
# offline first. Under 8 minutes on an H200.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/keras_damped_site .whl/*.whl
    export PYTHONPATH=/tmp/keras_damped_site:${PYTHONPATH:-}
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}"
if [ -z "${KERAS_BACKEND:-}" ]; then
    if "$PYTHON" -c "import tensorflow" 2>/dev/null; then
        export KERAS_BACKEND=tensorflow
    else
        export KERAS_BACKEND=jax
    fi
fi
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # so peak memory is what the run used
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout 470 "$PYTHON" benchmarks/gpu_check.py "$@"
