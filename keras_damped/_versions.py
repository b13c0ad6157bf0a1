"""The library versions and the machine a run or a report records."""

import importlib.metadata
import os
import sys

from keras_damped._cpu import cpu_flags
from keras_damped._cpu import cpu_name

PACKAGES = ("keras", "tensorflow", "tensorflow-datasets", "cleverhans")
# The CPU flags that decide which kernels run (oneDNN, XLA, Eigen).
VECTOR_FLAGS = ("sse4", "avx", "fma", "amx", "f16c")


def library_versions():
    """{"python": ..., package: version or None} for the packages that matter."""
    out = {"python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = None
    return out


def machine_record():
    """The CPU model, its vector extensions, the core count and whether
    TensorFlow's oneDNN kernels are on (and why).

    Training is deterministic on one machine, not across CPUs (oneDNN picks
    kernels by instruction set), so every run records where it ran.
    """
    from keras_damped import _onednn

    flags = cpu_flags()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "avx512": "avx512f" in flags,
        "avx2": "avx2" in flags,
        "cpu_bf16": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
        "vector_flags": sorted(f for f in flags if f.startswith(VECTOR_FLAGS)),
        "onednn": _onednn.state(),
    }
