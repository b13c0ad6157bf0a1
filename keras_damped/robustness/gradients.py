"""The input gradient on every Keras backend.

`keras.ops` has no gradient; each backend has its own. Attacks written in
`keras.ops` (FAB, `keras_damped/robustness/fab.py`) take their gradients
here, so they run on TensorFlow, JAX and PyTorch alike.
"""

import keras


def value_and_gradient(fn, x):
    """`(fn(x), d sum(fn(x)) / dx)`: `fn` maps a batch to one number per
    example, so the gradient of the sum is each example's own gradient."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        return value, tape.gradient(value, x)
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        value, pullback = jax.vjp(fn, jnp.asarray(x))
        (gradient,) = pullback(jnp.ones_like(value))
        return value, gradient
    if backend == "torch":
        import torch

        x = torch.as_tensor(x).detach().requires_grad_(True)
        value = fn(x)
        (gradient,) = torch.autograd.grad(value.sum(), x)
        return value.detach(), gradient
    raise ValueError(
        "Input gradients are available on the tensorflow, jax and torch "
        f"backends. Received: backend={backend!r}"
    )
