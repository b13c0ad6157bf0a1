"""keras_damped: damped (interpolated) residual networks for Keras 3.

Yang, Liu, Bao, Shi. "Interpolation between Residual and Non-Residual
Networks", ICML 2020: a residual block `x + f(x)` becomes
`(1 - lambda) * x + f(x)`, with lambda = 0 a ResNet and lambda = 1 a CNN.

The public names load on first use, so that `import keras_damped` (and the
`keras-damped` command) does not start Keras and its backend before it must.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "BasicBlock": "keras_damped.layers",
    "BottleneckBlock": "keras_damped.layers",
    "DampedAdd": "keras_damped.layers",
    "DampedResNeXt": "keras_damped.models",
    "DampedResNet": "keras_damped.models",
    "create_model": "keras_damped.models",
    "damped_adds": "keras_damped.models",
    "damping_values": "keras_damped.models",
    "list_models": "keras_damped.models",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_damped' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
