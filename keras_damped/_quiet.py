"""Starts TensorFlow without its harmless start-up notices on a CPU machine.

TensorFlow's C++ runtime prints, before any Python logging is configured and
regardless of TF_CPP_MIN_LOG_LEVEL, notices about oneDNN and missing CUDA
drivers. The `keras-damped` command calls `import_tensorflow_quietly()`
before anything imports Keras: it captures file descriptor 2 while
TensorFlow loads and probes its devices, drops the lines that are known to
be harmless, and writes everything else back. Library users see
TensorFlow's output unchanged.
"""

import os
import re
import sys
import tempfile

HARMLESS = re.compile(
    r"(All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|Could not find cuda drivers on your machine"
    r"|failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
    r"|computation placer already registered"
    r"|TF-TRT Warning: Could not find TensorRT"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions.*rebuild TensorFlow)"
)


def import_tensorflow_quietly():
    """Imports TensorFlow and lists its devices with the notices filtered."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if line.strip() and not HARMLESS.search(line):
                    sys.stderr.write(line + "\n")
    return tf
