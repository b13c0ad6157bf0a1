import textwrap

import keras
import numpy as np
import pytest
from jax_subprocess import run_on_jax

from keras_damped import create_model
from keras_damped import damped_adds


def test_in_resnet20_runs_on_jax():
    """Layers and models use keras.ops only: the JAX backend must work."""
    script = textwrap.dedent("""
        import sys
        import keras, numpy as np
        assert keras.backend.backend() == "jax"
        from keras_damped import create_model, damping_values
        model = create_model("in_resnet20", input_shape=(8, 8, 3))
        x = np.random.default_rng(0).uniform(size=(4, 8, 8, 3)).astype("float32")
        y = np.array([0, 1, 2, 3])
        assert model(x).shape == (4, 10)
        before = damping_values(model)
        model.compile(keras.optimizers.SGD(0.1),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=True)
        loss = model.train_on_batch(x, y)
        after = damping_values(model)
        assert np.isfinite(loss)
        assert all(not np.array_equal(before[k], after[k]) for k in before)
        assert "tensorflow" not in sys.modules, "layers must not import TF"
        print("JAX-OK", len(after))
    """)
    run_on_jax(script, marker="JAX-OK 6")


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_training_step_keeps_lambda_float32(policy, rng):
    keras.config.set_dtype_policy(policy)
    model = create_model("in_resnet20", input_shape=(8, 8, 3))
    adds = damped_adds(model, trainable_only=True)
    assert model.get_layer("stage2_block2").compute_dtype == policy.split("_")[1]
    x = rng.uniform(size=(8, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, 8)
    optimizer = keras.optimizers.SGD(0.1)
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer,
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    before = {k: float(a.k.numpy()) for k, a in adds.items()}
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    assert model(x).dtype == "float32"  # the head stays float32 for a stable loss
    for name, add in adds.items():
        assert add.k.dtype == "float32"
        assert keras.backend.standardize_dtype(add.damping.dtype) == "float32"
        if policy == "mixed_bfloat16":
            assert float(add.k.numpy()) != before[name]
