import keras
import numpy as np
import pytest

from keras_damped import ReferenceSGD


@pytest.mark.parametrize("nesterov", [False, True])
def test_reference_sgd_matches_pytorch_momentum_formula(nesterov, rng):
    """PyTorch SGD: v = m v + g; w -= lr v (nesterov: w -= lr (g + m v))."""
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
        [2, 4], [0.1, 0.01, 0.001]
    )
    optimizer = ReferenceSGD(schedule, momentum=0.9, nesterov=nesterov)
    w = keras.Variable(rng.normal(size=(3, 2)).astype("float32"))
    w_ref = np.array(w.numpy(), dtype="float64")
    velocity = np.zeros_like(w_ref)
    for step in range(8):
        grad = rng.normal(size=(3, 2)).astype("float32")
        lr = 0.1 if step <= 2 else (0.01 if step <= 4 else 0.001)
        optimizer.apply([grad], [w])
        velocity = 0.9 * velocity + grad
        update = grad + 0.9 * velocity if nesterov else velocity
        w_ref -= lr * update
    np.testing.assert_allclose(w.numpy(), w_ref, rtol=1e-5, atol=1e-6)


def test_constant_rate_equals_keras_sgd(rng):
    """With a constant rate the two momentum formulations are the same method."""
    grads = [rng.normal(size=(4,)).astype("float32") for _ in range(6)]
    start = rng.normal(size=(4,)).astype("float32")
    results = []
    for cls in (ReferenceSGD, keras.optimizers.SGD):
        w = keras.Variable(start)
        optimizer = cls(0.05, momentum=0.9)
        for grad in grads:
            optimizer.apply([grad], [w])
        results.append(w.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


def test_serializes_by_name():
    optimizer = ReferenceSGD(0.1, momentum=0.9)
    clone = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(clone, ReferenceSGD) and clone.momentum == 0.9
