"""Every registered preset: forward, one XLA training step, save/load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped import create_model
from keras_damped import damped_adds
from keras_damped import list_models

SLOW = ("110", "164", "resnext")


def preset_params():
    return [
        pytest.param(name, marks=pytest.mark.slow)
        if any(s in name for s in SLOW)
        else name
        for name in list_models()
    ]


def xla_train_step(model, x, y):
    optimizer = keras.optimizers.SGD(0.05)
    optimizer.build(model.trainable_variables)

    @tf.function(jit_compile=True)
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

    return step(x, y)


@pytest.mark.parametrize("name", preset_params())
def test_preset_forward_train_step_and_save_load(name, tmp_path, rng):
    model = create_model(name, input_shape=(8, 8, 3))
    x = rng.uniform(0, 1, (4, 8, 8, 3)).astype("float32")
    y = np.array([0, 3, 5, 9])
    assert tuple(model(x).shape) == (4, 10)

    trained = damped_adds(model, trainable_only=True)
    assert bool(trained) == any(p in name for p in ("in_resnet", "in_resnext"))
    before = {k: np.array(add.k) for k, add in trained.items()}
    loss, grads = xla_train_step(model, x, y)
    assert np.isfinite(loss.numpy())
    for weight, grad in zip(model.trainable_variables, grads):
        assert grad is not None, weight.path
        assert np.all(np.isfinite(grad.numpy())), weight.path
    # The damping coefficients are trained, not frozen.
    for block, add in trained.items():
        assert not np.array_equal(before[block], np.array(add.k)), block

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [w.path for w in loaded.weights] == [w.path for w in model.weights]
    for a, b in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(np.array(a), np.array(b), err_msg=a.path)
    np.testing.assert_array_equal(model(x, training=True), loaded(x, training=True))
    np.testing.assert_array_equal(model(x), loaded(x))
