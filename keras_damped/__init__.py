"""keras_damped: damped (interpolated) residual networks for Keras 3.

Yang, Liu, Bao, Shi. "Interpolation between Residual and Non-Residual
Networks", ICML 2020: a residual block `x + f(x)` becomes
`(1 - lambda) * x + f(x)`, with lambda = 0 a ResNet and lambda = 1 a CNN.

Importing the package registers its layers with Keras, so saved models load
with `keras.saving.load_model` and no `custom_objects`.
"""

import os as _os
import sys as _sys

from keras_damped import _onednn

# Before anything imports TensorFlow: its oneDNN kernels on x86 CPUs where
# TensorFlow leaves them off and they pay (keras_damped/_onednn.py); a
# TF_ENABLE_ONEDNN_OPTS the user set is kept.
_onednn.enable()

if (
    _os.path.basename(_sys.argv[0] if _sys.argv else "") in ("keras-damped", "-m")
    or _os.environ.get("_KERAS_DAMPED_QUIET") == "1"
):
    # The `keras-damped` command, `python -m keras_damped.cli` (while Python
    # imports the package of a `-m` module, argv[0] is "-m"), the study's
    # worker processes and the benchmarks: start TensorFlow without its
    # start-up notices before Keras imports it (see keras_damped/_quiet.py).
    from keras_damped._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()

from keras_damped.layers import BasicBlock  # noqa: E402
from keras_damped.layers import BottleneckBlock  # noqa: E402
from keras_damped.layers import DampedAdd  # noqa: E402
from keras_damped.models import DampedResNet  # noqa: E402
from keras_damped.models import DampedResNeXt  # noqa: E402
from keras_damped.models import create_model  # noqa: E402
from keras_damped.models import damp  # noqa: E402
from keras_damped.models import damped_adds  # noqa: E402
from keras_damped.models import damping_values  # noqa: E402
from keras_damped.models import list_models  # noqa: E402
from keras_damped.models import load_reference_weights  # noqa: E402
from keras_damped.optimizers import ReferenceSGD  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "BasicBlock",
    "BottleneckBlock",
    "DampedAdd",
    "DampedResNeXt",
    "DampedResNet",
    "ReferenceSGD",
    "__version__",
    "create_model",
    "damp",
    "damped_adds",
    "damping_values",
    "list_models",
    "load_reference_weights",
]
