"""Finding the damped merges of a model and reading their lambdas."""

import numpy as np
from keras import ops

from keras_damped.layers.damped_add import DampedAdd


def damped_adds(model, trainable_only=False):
    """The `DampedAdd` layers of a model as an ordered {block name: layer} dict.

    Blocks own their merge (`stage2_block5` -> its `damped_add`); a
    top-level `DampedAdd` (as made by `damp`) is listed under its own name.
    """
    found = {}
    for layer in model.layers:
        add = (
            layer
            if isinstance(layer, DampedAdd)
            else getattr(layer, "damped_add", None)
        )
        if isinstance(add, DampedAdd) and (
            not trainable_only or add.variant != "fixed"
        ):
            found[layer.name] = add
    return found


def damping_values(model):
    """{block name: lambda} of every damped (non-ResNet) merge, as NumPy."""
    values = {}
    for name, add in damped_adds(model).items():
        if add.variant == "fixed" and add.value == 0.0:
            continue
        values[name] = np.asarray(ops.convert_to_numpy(add.damping), "float32")
    return values


def model_input(model):
    """The input of a functional model as it expects to be called: a tensor
    for a single-input model (a list would make Keras warn on every call)."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs
