"""Every registered preset: forward, a training step, save/load; and every
block kind x damping under XLA."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped import create_model
from keras_damped import damped_adds
from keras_damped import list_models
from keras_damped.models.registry import preset_config

SLOW = ("110", "164", "resnext")


def preset_params():
    return [
        pytest.param(name, marks=pytest.mark.slow)
        if any(s in name for s in SLOW)
        else name
        for name in list_models()
    ]


def train_step(model, x, y, jit_compile):
    """One SGD step: eager (None), or one graph compiled by XLA (True)."""
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)

    def step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True
                )
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss, grads

    if jit_compile:
        step = tf.function(step, jit_compile=True)
    return step(x, y)


def check_step(name, model, x, y, jit_compile):
    trained = damped_adds(model, trainable_only=True)
    assert bool(trained) == any(p in name for p in ("in_resnet", "in_resnext"))
    before = {k: np.array(add.k) for k, add in trained.items()}
    loss, grads = train_step(model, x, y, jit_compile)
    assert np.isfinite(loss.numpy())
    for weight, grad in zip(model.trainable_variables, grads):
        assert grad is not None, weight.path
        assert np.all(np.isfinite(grad.numpy())), weight.path
    # The damping coefficients are trained, not frozen.
    for block, add in trained.items():
        assert not np.array_equal(before[block], np.array(add.k)), block


@pytest.mark.parametrize("name", preset_params())
def test_preset_forward_train_step_and_save_load(name, tmp_path, rng):
    model = create_model(name, input_shape=(4, 4, 3))
    x = rng.uniform(0, 1, (4, 4, 4, 3)).astype("float32")
    y = np.array([0, 3, 5, 9])
    # Eager: a graph of the deepest preset takes 10-20 s to build, and its
    # operations are those of the compact models compiled by XLA below.
    check_step(name, model, x, y, jit_compile=None)

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)
    # The same weights and the same layers: the same logits (the training
    # step above already ran the training-mode path).
    logits = model(x)
    assert tuple(logits.shape) == (4, 10)
    np.testing.assert_array_equal(logits, loaded(x))


# One preset per block kind and damping, at the smallest depth that keeps two
# blocks per stage (so every stage has a damped block): the presets of one
# family differ only in how many such blocks they repeat.
XLA_PRESETS = {
    name: depth
    for family, depth in (("*20", 14), ("*164", 20), ("*resnext29_8x64d", 20))
    for name in list_models(family)
}


@pytest.mark.parametrize("name", sorted(XLA_PRESETS))
def test_every_block_kind_and_damping_trains_under_xla(name, rng):
    builder, _, kwargs = preset_config(name)
    kwargs.update(depth=XLA_PRESETS[name], input_shape=(8, 8, 3))
    if "164" in name:
        kwargs["block"] = "bottleneck"
    model = builder(**kwargs)
    x = rng.uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    check_step(name, model, x, np.array([0, 3, 5, 9]), jit_compile=True)
