"""The paper's Lyapunov argument, measured: perturbation growth per block and
block Jacobian spectral norms, plus the learned lambdas against depth."""

import keras
import numpy as np
import tensorflow as tf

from keras_damped.layers.damped_add import DampedAdd
from keras_damped.models.inspect import damped_adds
from keras_damped.models.inspect import damping_values
from keras_damped.models.inspect import model_input

PERTURBATIONS = ("random", "adversarial")


def block_names(model, blocks=None):
    """The residual blocks to probe: given names, or every damped merge's block."""
    known = list(damped_adds(model))
    if blocks is None:
        blocks = known
    for block in blocks:
        if block not in known:
            raise ValueError(
                f"{block!r} is not a block of model {model.name!r} (a residual "
                f"block or DampedAdd). Expected names among {known}."
            )
    if not blocks:
        raise ValueError(f"Model {model.name!r} has no residual block to probe.")
    return list(blocks)


def _per_example_norm(t):
    return tf.norm(tf.reshape(t, (tf.shape(t)[0], -1)), axis=1)


def _unit(t):
    norm = _per_example_norm(t)
    return t / tf.reshape(tf.maximum(norm, 1e-12), (-1,) + (1,) * (t.shape.rank - 1))


def perturbation_growth(
    model, x, y=None, kind="random", epsilon=1e-2, blocks=None, seed=0
):
    """`||h_n(x + delta) - h_n(x)|| / ||delta||` at the output of every block n.

    Args:
        model: a functional model.
        x: a batch of inputs.
        y: labels; needed for `kind="adversarial"`.
        kind: `"random"` (a Gaussian direction) or `"adversarial"` (the input
            gradient of the loss); scaled to L2 norm `epsilon` per example.
        epsilon: the perturbation's L2 norm.
        blocks: block layer names; default every damped merge's block.
        seed: seed of the random direction.

    Returns:
        {"blocks": [...], "ratio": [...] (mean over the batch), "kind",
        "epsilon"}.
    """
    if kind not in PERTURBATIONS:
        raise ValueError(
            f"Unknown perturbation kind. Expected one of {PERTURBATIONS}. "
            f"Received: kind={kind!r}"
        )
    blocks = block_names(model, blocks)
    x = tf.convert_to_tensor(x, tf.float32)
    if kind == "random":
        delta = tf.random.stateless_normal(tf.shape(x), seed=(seed, 11))
    else:
        if y is None:
            raise ValueError("kind='adversarial' needs the labels y.")
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
                tf.convert_to_tensor(y, tf.int32), tf.cast(model(x), tf.float32)
            )
        delta = tape.gradient(loss, x)
    delta = epsilon * _unit(delta)
    features = keras.Model(
        model_input(model), [model.get_layer(b).output for b in blocks]
    )
    clean = features(x, training=False)
    moved = features(x + delta, training=False)
    if len(blocks) == 1:
        clean, moved = [clean], [moved]
    size = _per_example_norm(delta)
    ratios = [
        float(tf.reduce_mean(_per_example_norm(tf.cast(b - a, tf.float32)) / size))
        for a, b in zip(clean, moved)
    ]
    return {"blocks": blocks, "ratio": ratios, "kind": kind, "epsilon": epsilon}


def spectral_norm(fn, h, iterations=30, seed=0):
    """Largest singular value of the Jacobian of `fn` at `h`, per example.

    Power iteration on `J^T J` with Jacobian-vector products (forward mode)
    and vector-Jacobian products (reverse mode); no dense Jacobian is formed.
    `fn` must treat the examples of the batch independently.
    """
    h = tf.convert_to_tensor(h, tf.float32)
    v = _unit(tf.random.stateless_normal(tf.shape(h), seed=(seed, 13)))

    def jvp(v):
        with tf.autodiff.ForwardAccumulator(h, v) as acc:
            out = fn(h)
        return acc.jvp(out)

    for _ in range(iterations):
        u = jvp(v)
        with tf.GradientTape() as tape:
            tape.watch(h)
            out = fn(h)
        v = _unit(tape.gradient(out, h, output_gradients=u))
    return _per_example_norm(jvp(v)).numpy()


def block_spectral_norms(model, x, blocks=None, iterations=30, seed=0):
    """Spectral norm of each block's Jacobian `d h_{n+1} / d h_n` at the inputs.

    Returns:
        {"blocks": [...], "sigma": [...] (mean over the batch),
        "sigma_max": [...] (max over the batch)}.
    """
    blocks = block_names(model, blocks)
    parts = [_block_map(model, b) for b in blocks]
    inputs_of = keras.Model(model_input(model), [tensor for tensor, _ in parts])
    hs = inputs_of(tf.convert_to_tensor(x, tf.float32), training=False)
    if len(blocks) == 1:
        hs = [hs]
    sigma, sigma_max = [], []
    for (_, fn), h in zip(parts, hs):
        values = spectral_norm(
            lambda t, fn=fn: tf.cast(fn(t, training=False), tf.float32),
            h,
            iterations,
            seed,
        )
        sigma.append(float(values.mean()))
        sigma_max.append(float(values.max()))
    return {"blocks": blocks, "sigma": sigma, "sigma_max": sigma_max}


def _block_map(model, name):
    """(block input tensor, callable h_n -> h_{n+1}) of a block.

    A block layer maps its input; a top-level `DampedAdd` (as made by
    `damp`) closes the block that starts at its shortcut input, so the map
    is the subgraph from that tensor to the merge's output.
    """
    layer = model.get_layer(name)
    if isinstance(layer, DampedAdd):
        shortcut = layer.input[1]
        return shortcut, keras.Model(shortcut, layer.output)
    return layer.input, layer


def damping_by_depth(model):
    """{"blocks": [...], "lambda": [...]}: every learned lambda in block order
    (the mean over channels for per-channel damping)."""
    values = damping_values(model)
    return {
        "blocks": list(values),
        "lambda": [float(np.mean(v)) for v in values.values()],
    }
