"""The core install (Keras and NumPy, no extra) with the JAX backend: the
layers and models build and run, TensorFlow is absent, and an optional part
names the extra it needs."""

import importlib.util
import sys

import keras
import numpy as np

from keras_damped import DampedResNet
from keras_damped import damp
from keras_damped import list_models
from keras_damped import load_reference_weights

assert keras.backend.backend() == "jax", keras.backend.backend()
assert importlib.util.find_spec("tensorflow") is None, "TensorFlow is installed"
model = DampedResNet(depth=20)
logits = np.asarray(model(np.random.default_rng(0).uniform(size=(2, 32, 32, 3))))
assert logits.shape == (2, 10) and np.isfinite(logits).all(), logits
assert "in_resnet20" in list_models() and callable(damp)
assert callable(load_reference_weights)
try:
    import keras_damped.robustness  # noqa: F401
except ImportError as error:
    assert "[robustness] extra" in str(error), error
else:
    raise AssertionError("keras_damped.robustness imported without its extra")
assert "tensorflow" not in sys.modules
print(f"core install on {keras.backend.backend()}: DampedResNet(20) -> {logits.shape}")
