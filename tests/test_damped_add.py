import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped import DampedAdd


def numpy_reference(variant, residual, shortcut, k=None, value=None):
    """The paper's formulas, written independently in NumPy."""
    if variant == "fixed":
        return residual + (1.0 - value) * shortcut
    lam = np.maximum(1.0 - k, 0.0) if variant == "in" else np.maximum(k, 0.0)
    if variant == "in":
        return residual + (1.0 - lam) * shortcut
    return (1.0 + lam) * residual + (1.0 - lam) * shortcut


@pytest.mark.numerics
@pytest.mark.parametrize("variant", ["in", "lambda_in"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_matches_numpy_reference(variant, per_channel, rng):
    residual = rng.normal(size=(3, 4, 4, 5)).astype("float32")
    shortcut = rng.normal(size=(3, 4, 4, 5)).astype("float32")
    layer = DampedAdd(variant, per_channel=per_channel)
    layer([residual, shortcut])
    assert layer.k.shape == ((5,) if per_channel else ())
    # Values both inside and outside the relu's active range.
    k = np.array([-0.3, 0.1, 0.5, 0.9, 1.4], "float32")
    k = k if per_channel else np.float32(0.37)
    layer.k.assign(k)
    got = keras.ops.convert_to_numpy(layer([residual, shortcut]))
    np.testing.assert_allclose(
        got, numpy_reference(variant, residual, shortcut, k=k), rtol=1e-6, atol=1e-6
    )
    lam = np.maximum(1 - k, 0) if variant == "in" else np.maximum(k, 0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.damping), lam)


@pytest.mark.numerics
@pytest.mark.parametrize("value", [0.0, 0.3, 1.0])
def test_fixed_matches_numpy_reference(value, rng):
    residual = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    shortcut = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = DampedAdd("fixed", value=value)
    got = keras.ops.convert_to_numpy(layer([residual, shortcut]))
    np.testing.assert_allclose(
        got, numpy_reference("fixed", residual, shortcut, value=value), atol=1e-7
    )
    assert layer.trainable_weights == []
    assert layer.damping == value


@pytest.mark.numerics
def test_fixed_extremes_are_exact(rng):
    residual = rng.normal(size=(2, 6)).astype("float32")
    shortcut = rng.normal(size=(2, 6)).astype("float32")
    resnet = keras.ops.convert_to_numpy(
        DampedAdd("fixed", value=0)([residual, shortcut])
    )
    np.testing.assert_array_equal(
        resnet, keras.ops.convert_to_numpy(keras.layers.Add()([residual, shortcut]))
    )
    shortcut[0, 0] = np.inf  # a plain CNN ignores the shortcut completely
    cnn = keras.ops.convert_to_numpy(DampedAdd("fixed", value=1)([residual, shortcut]))
    np.testing.assert_array_equal(cnn, residual)


@pytest.mark.parametrize(
    "variant,low,high", [("in", 0.75, 0.80), ("lambda_in", 0.20, 0.25)]
)
def test_default_initialisation_follows_the_paper(variant, low, high):
    values = []
    for _ in range(20):
        layer = DampedAdd(variant, per_channel=True)
        layer.build([(None, 64), (None, 64)])
        values.append(keras.ops.convert_to_numpy(layer.k))
    values = np.concatenate(values)
    assert values.min() >= low and values.max() <= high
    assert values.max() - values.min() > 0.8 * (high - low)
    lam = 1 - values if variant == "in" else values
    assert lam.min() >= 0.20 - 1e-6 and lam.max() <= 0.25 + 1e-6


@pytest.mark.numerics
def test_gradient_of_k_matches_analytic(rng):
    residual = rng.normal(size=(2, 5)).astype("float32")
    shortcut = rng.normal(size=(2, 5)).astype("float32")
    layer = DampedAdd("lambda_in")
    layer([residual, shortcut])
    layer.k.assign(0.3)
    with tf.GradientTape() as tape:
        out = tf.reduce_sum(layer([residual, shortcut]))
    (grad,) = tape.gradient(out, [layer.k])
    # d/dk [(1 + k) r + (1 - k) s] = r - s for k > 0.
    np.testing.assert_allclose(grad, np.sum(residual - shortcut), rtol=1e-5)


@pytest.mark.parametrize("variant", ["in", "lambda_in", "fixed"])
def test_config_round_trip(variant):
    kwargs = (
        {"value": 0.4}
        if variant == "fixed"
        else {
            "per_channel": True,
            "initializer": keras.initializers.Constant(0.5),
            "regularizer": keras.regularizers.L2(1e-3),
            "constraint": keras.constraints.NonNeg(),
        }
    )
    layer = DampedAdd(variant, name="merge", **kwargs)
    config = layer.get_config()
    clone = DampedAdd.from_config(config)
    assert clone.get_config() == config
    clone_serialized = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(clone_serialized, DampedAdd)
    assert clone_serialized.get_config() == config
    if variant != "fixed":
        clone.build([(None, 3), (None, 3)])
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone.k), 0.5)
        assert clone.losses  # the regularizer is active


def test_regularizer_and_constraint_are_applied():
    layer = DampedAdd(
        "in",
        regularizer=keras.regularizers.L2(0.5),
        initializer=keras.initializers.Constant(2.0),
    )
    layer([np.ones((1, 2), "float32"), np.ones((1, 2), "float32")])
    np.testing.assert_allclose(float(sum(layer.losses)), 0.5 * 4.0, rtol=1e-6)
    # The constraint acts: an optimizer step that would make k negative
    # leaves it at 0 (NonNeg), and k stays where it is without one.
    for constraint, expected in ((keras.constraints.NonNeg(), 0.0), (None, -0.75)):
        layer = DampedAdd(
            "in",
            constraint=constraint,
            initializer=keras.initializers.Constant(0.25),
        )
        layer.build([(None, 2), (None, 2)])
        optimizer = keras.optimizers.SGD(learning_rate=1.0)
        optimizer.apply_gradients([(keras.ops.ones_like(layer.k), layer.k)])
        assert float(keras.ops.convert_to_numpy(layer.k)) == pytest.approx(expected), (
            constraint
        )


def test_compute_output_shape_and_symbolic_call():
    layer = DampedAdd("in")
    assert layer.compute_output_shape([(None, 8, 8, 4), (None, 8, 8, 4)]) == (
        None,
        8,
        8,
        4,
    )
    a, b = keras.Input((8, 8, 4)), keras.Input((8, 8, 4))
    assert tuple(layer([a, b]).shape) == (None, 8, 8, 4)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("variant", ["in", "lambda_in"])
def test_mixed_precision_under_xla_keeps_k_float32(policy, variant, rng):
    residual = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    shortcut = rng.normal(size=(2, 4, 4, 3)).astype("float32")
    keras.config.set_dtype_policy(policy)
    layer = DampedAdd(variant)
    layer.build([residual.shape, shortcut.shape])
    assert layer.k.dtype == "float32"
    assert keras.backend.standardize_dtype(layer.damping.dtype) == "float32"

    @tf.function(jit_compile=True)
    def step(r, s):
        with tf.GradientTape() as tape:
            out = layer(
                [tf.cast(r, layer.compute_dtype), tf.cast(s, layer.compute_dtype)]
            )
            loss = tf.reduce_sum(tf.cast(out, "float32"))
        return out, tape.gradient(loss, layer.k)

    out, grad = step(residual, shortcut)
    assert out.dtype == layer.compute_dtype
    assert grad.dtype == tf.float32 and np.isfinite(grad.numpy())
    expected = numpy_reference(variant, residual, shortcut, k=layer.k.numpy())
    np.testing.assert_allclose(
        out.numpy().astype("float32"), expected, rtol=0.05, atol=0.05
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"variant": "damped"}, "variant='damped'"),
        ({"variant": "fixed"}, "value=None"),
        ({"variant": "fixed", "value": 1.5}, "value=1.5"),
        ({"variant": "fixed", "value": -0.1}, "value=-0.1"),
        ({"variant": "fixed", "value": math.nan}, "value=nan"),
        ({"variant": "fixed", "value": math.inf}, "value=inf"),
        ({"variant": "fixed", "value": "half"}, "value='half'"),
        ({"variant": "in", "value": 0.5}, "only used with variant='fixed'"),
        ({"variant": "fixed", "value": 0.5, "per_channel": True}, "per_channel"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DampedAdd(**kwargs)


def test_mismatched_input_shapes():
    with pytest.raises(
        ValueError, match=r"same shape.*\(None, 4, 4, 3\).*\(None, 4, 4, 5\)"
    ):
        DampedAdd("in")([keras.Input((4, 4, 3)), keras.Input((4, 4, 5))])
    with pytest.raises(ValueError, match="list of two tensors"):
        DampedAdd("in")([keras.Input((4,)), keras.Input((4,)), keras.Input((4,))])
