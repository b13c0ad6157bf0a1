"""`damp(model)`: drop-in conversion of existing residual networks."""

import keras
import numpy as np
import pytest

from keras_damped import DampedAdd
from keras_damped import create_model
from keras_damped import damp
from keras_damped import damped_adds
from keras_damped.models import residual_adds


def count_adds(model):
    return sum(type(layer) is keras.layers.Add for layer in model.layers)


@pytest.fixture(scope="module")
def resnet50v2():
    keras.utils.set_random_seed(0)
    return keras.applications.ResNet50V2(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )


@pytest.mark.slow
def test_resnet50v2_with_lambda_zero_is_the_same_network(resnet50v2, rng):
    before = [w.numpy().copy() for w in resnet50v2.weights]
    converted = damp(resnet50v2, variant="fixed", value=0.0)
    merges = [layer for layer in converted.layers if isinstance(layer, DampedAdd)]
    assert len(merges) == count_adds(resnet50v2) == 16
    assert count_adds(converted) == 0
    x = rng.uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(converted(x), resnet50v2(x), atol=1e-5)
    # The original is untouched and shares no layer with the copy.
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, resnet50v2.weights))
    assert not {id(layer) for layer in converted.layers} & {
        id(layer) for layer in resnet50v2.layers
    }


@pytest.mark.slow
def test_resnet50v2_shortcut_roles(resnet50v2):
    roles = residual_adds(resnet50v2)
    # Keras' ResNet50V2 calls Add()([shortcut, x]); in each stage the first
    # block has a 1x1 conv shortcut, the last a strided max-pool one.
    assert all(index == 0 for index, _ in roles.values())
    assert sum(identity for _, identity in roles.values()) == 16 - 4 - 3
    identity_only = damp(resnet50v2, "in", identity_only=True)
    assert len(damped_adds(identity_only, trainable_only=True)) == 9
    assert count_adds(identity_only) == 7


@pytest.mark.slow
def test_resnet50v2_in_trains_a_step_and_round_trips(resnet50v2, tmp_path, rng):
    converted = damp(resnet50v2, "in")
    trainable = damped_adds(converted, trainable_only=True)
    assert len(trainable) == count_adds(resnet50v2) == 16
    converted.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = rng.uniform(size=(4, 32, 32, 3)).astype("float32")
    k_before = {n: float(a.k.numpy()) for n, a in trainable.items()}
    loss = converted.train_on_batch(x, np.array([0, 1, 2, 3]))
    assert np.isfinite(loss)
    assert all(float(a.k.numpy()) != k_before[n] for n, a in trainable.items())
    path = tmp_path / "damped_resnet50v2.keras"
    converted.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded(x), converted(x), atol=1e-6)


@pytest.mark.slow
def test_resnet50_with_lambda_zero_is_the_same_network(rng):
    keras.utils.set_random_seed(0)
    base = keras.applications.ResNet50(
        weights=None, input_shape=(32, 32, 3), classes=10, classifier_activation=None
    )
    converted = damp(base, variant="fixed", value=0.0)
    assert sum(isinstance(la, DampedAdd) for la in converted.layers) == 16
    assert set(residual_adds(base).values()) == {(0, True), (0, False)}
    x = rng.uniform(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(converted(x), base(x), atol=1e-5)


@pytest.mark.numerics
def test_our_resnet_becomes_damped_with_weights_carried_over(rng):
    plain = create_model("resnet20", input_shape=(8, 8, 3))
    x = rng.uniform(size=(2, 8, 8, 3)).astype("float32")
    same = damp(plain, "fixed", value=0.0)
    np.testing.assert_allclose(same(x), plain(x), atol=1e-6)
    damped = damp(plain, "lambda_in", identity_only=True)
    adds = damped_adds(damped, trainable_only=True)
    assert len(adds) == 7  # every identity block, stage 1's first one included
    assert not damped_adds(plain, trainable_only=True)
    for add in adds.values():
        add.k.assign(0.0)  # lambda = 0: the ResNet again
    np.testing.assert_allclose(damped(x), plain(x), atol=1e-5)


def test_model_without_residual_merge_is_refused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    with pytest.raises(ValueError, match="no residual merge"):
        damp(keras.Model(inputs, outputs, name="plain_cnn"))
    with pytest.raises(ValueError, match="variant='lambda'"):
        damp(keras.Model(inputs, outputs), variant="lambda")
