"""FusedBatchNormalization against Keras' own (unfused) layer and NumPy."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped.layers import FusedBatchNormalization


def _pair(shape, **kwargs):
    """A fused layer and a Keras layer with the same random weights."""
    fused = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, **kwargs)
    plain = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, **kwargs)
    fused.build(shape)
    plain.build(shape)
    rng = np.random.default_rng(3)
    weights = [
        rng.uniform(0.5, 2.0, w.shape).astype("float32")
        if "variance" in w.path
        else rng.normal(0.5, 0.5, w.shape).astype("float32")
        for w in plain.weights
    ]
    fused.set_weights(weights)
    plain.set_weights(weights)
    return fused, plain


def _forward_and_grads(layer, x, upstream, training):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=training)
        loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return y, grads


@pytest.mark.parametrize("training", [True, False])
def test_fused_matches_keras_batch_norm_values_gradients_and_statistics(training, rng):
    shape = (6, 5, 4, 3)
    x = rng.normal(2.0, 3.0, shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    fused, plain = _pair(shape)
    y_fused, g_fused = _forward_and_grads(fused, x, upstream, training)
    y_plain, g_plain = _forward_and_grads(plain, x, upstream, training)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_fused, g_plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(fused.non_trainable_weights, plain.non_trainable_weights):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    if training:
        # NumPy: normalised with the biased batch variance, and the moving
        # variance tracks that same biased variance (Keras' convention).
        mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
        gamma, beta, mm, mv = plain.get_weights()
        expected = gamma * (x - mean) / np.sqrt(var + 1e-5) + beta
        np.testing.assert_allclose(y_fused, expected, rtol=1e-4, atol=1e-4)
        moved = fused.get_weights()
        np.testing.assert_allclose(moved[3], mv, rtol=1e-6)


def test_moving_variance_is_the_biased_batch_variance(rng):
    x = rng.normal(0.0, 2.0, (2, 2, 2, 4)).astype("float32")
    layer = FusedBatchNormalization(momentum=0.0, epsilon=1e-5)
    layer(x, training=True)
    np.testing.assert_allclose(layer.moving_mean, x.mean(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(layer.moving_variance, x.var(axis=(0, 1, 2)), rtol=1e-5)


def test_without_scale_and_center(rng):
    shape = (4, 3, 3, 2)
    x = rng.normal(size=shape).astype("float32")
    upstream = rng.normal(size=shape).astype("float32")
    fused, plain = _pair(shape, scale=False, center=False)
    y_fused, g_fused = _forward_and_grads(fused, x, upstream, True)
    y_plain, g_plain = _forward_and_grads(plain, x, upstream, True)
    np.testing.assert_allclose(y_fused, y_plain, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_fused[0], g_plain[0], rtol=1e-4, atol=1e-4)


def test_bfloat16_compute_with_float32_weights(rng):
    shape = (8, 4, 4, 3)
    x = rng.normal(1.0, 2.0, shape).astype("float32")
    fused = FusedBatchNormalization(dtype="mixed_bfloat16")
    reference = keras.layers.BatchNormalization()
    out = fused(x, training=True)
    expected = reference(x, training=True)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    assert fused.gamma.dtype == "float32"
    np.testing.assert_allclose(tf.cast(out, tf.float32), expected, atol=0.05)
    np.testing.assert_allclose(
        fused.moving_variance, reference.moving_variance, rtol=0.02
    )


def test_other_ranks_and_masks_run_the_keras_layer(rng):
    x = rng.normal(size=(5, 7)).astype("float32")
    fused, plain = _pair((5, 7))
    assert not fused._fusable(tf.constant(x), None)
    np.testing.assert_allclose(
        fused(x, training=True), plain(x, training=True), rtol=1e-6
    )
    images = tf.zeros((2, 3, 3, 4))
    assert fused._fusable(images, None) or keras.backend.backend() != "tensorflow"
    assert not fused._fusable(images, tf.ones((2, 3, 3)))


def test_serialises_as_itself():
    layer = FusedBatchNormalization(momentum=0.9, epsilon=1e-5, name="bn")
    restored = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(restored) is FusedBatchNormalization
    assert restored.get_config() == layer.get_config()
