import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# The tests check results, not speed: XLA's lowest LLVM optimisation level
# compiles the deep presets' training steps about a quarter faster.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts with float32, a fixed seed and no leftover graph state."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    yield
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def trained_small_model():
    """An In-ResNet-14 trained for two epochs on 3,000 real Fashion-MNIST images."""
    from keras_damped import DampedResNet
    from keras_damped.data import load

    keras.utils.set_random_seed(0)
    model = DampedResNet(
        14, input_shape=(28, 28, 1), normalization="fashion_mnist", name="in_resnet14"
    )
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(
        load("fashion_mnist", "train", 64, limit=3000, epochs=2),
        epochs=2,
        steps_per_epoch=47,
        shuffle=False,
        verbose=0,
    )
    return model
