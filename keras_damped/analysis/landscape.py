"""Input-space loss landscapes along the attack direction and a random one."""

import numpy as np
import tensorflow as tf

from keras_damped.models.logits import logits_fn

DIRECTIONS = ("sign_gradient", "gradient", "random")


def _check(T, points):
    if not isinstance(T, (int, float)) or isinstance(T, bool) or not T > 0:
        raise ValueError(f"T must be a number > 0. Received: T={T!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(
            "A landscape needs a grid of at least 3 points. "
            f"Received: points={points!r}"
        )


def direction(model, x, y, kind="sign_gradient", seed=0):
    """A per-example direction in input space.

    `sign_gradient`: the sign of the input gradient of the loss (FGSM's
    direction, unit L-infinity norm); `gradient`: the input gradient scaled
    to unit L2 norm per example; `random`: a random sign vector (seeded).
    """
    if kind not in DIRECTIONS:
        raise ValueError(
            f"Unknown direction kind. Expected one of {DIRECTIONS}. "
            f"Received: kind={kind!r}"
        )
    x = tf.convert_to_tensor(x, tf.float32)
    if kind == "random":
        bits = tf.random.stateless_uniform(tf.shape(x), seed=(seed, 7)) < 0.5
        return tf.where(bits, 1.0, -1.0)
    fn = logits_fn(model)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(y, fn(x))
    grad = tape.gradient(loss, x)
    if kind == "sign_gradient":
        return tf.sign(grad)
    flat = tf.reshape(grad, (tf.shape(grad)[0], -1))
    norm = tf.norm(flat, axis=1)
    return grad / tf.reshape(tf.maximum(norm, 1e-12), (-1,) + (1,) * (x.shape.rank - 1))


def _probe(model, x, probes=None):
    """`probe(x, y, d_a, a, d_b, b, clip) -> (loss, accuracy)` at
    `x + a * d_a + b * d_b` (clipped to [0, 1] if `clip`): one graph per
    model, traced once for `x`'s shape, so a grid of points costs forward
    passes, not eager layer-by-layer dispatch (the tiny study's landscape
    and the analysis test ran about 2.5x faster). `probes` ({}): graphs
    already traced, reused for the same model and shape (`analyze` probes
    each model along several directions and in the plane)."""
    key = (id(model), tuple(x.shape))
    if probes is not None and key in probes:
        return probes[key][1]
    fn = logits_fn(model)
    spec = tf.TensorSpec(x.shape, tf.float32)
    scalar = tf.TensorSpec((), tf.float32)
    labels = tf.TensorSpec((x.shape[0],), tf.int32)

    @tf.function(
        input_signature=[
            spec,
            labels,
            spec,
            scalar,
            spec,
            scalar,
            tf.TensorSpec((), tf.bool),
        ]
    )
    def probe(x, y, d_a, a, d_b, b, clip):
        xt = x + a * d_a + b * d_b
        xt = tf.cond(clip, lambda: tf.clip_by_value(xt, 0.0, 1.0), lambda: xt)
        logits = fn(xt)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        correct = tf.argmax(logits, -1, output_type=tf.int32) == y
        return loss, tf.reduce_mean(tf.cast(correct, tf.float32))

    if probes is not None:
        probes[key] = (model, probe)  # the model kept: its id stays its own
    return probe


def landscape_1d(
    models,
    x,
    y,
    kind="sign_gradient",
    T=16 / 255,
    points=33,
    clip=True,
    seed=0,
    probes=None,
):
    """Mean loss and accuracy of `model(x + t * d)` for t in [-T, T].

    Each model is probed along its own attack direction (for
    `sign_gradient` and `gradient`) or along one shared random direction, on
    the same inputs and the same grid.

    Args:
        models: {name: model}.
        x, y: a batch of pixels in [0, 1] and true labels.
        kind: see `direction`.
        T: half-width of the grid (pixel units for sign directions).
        points: grid points (odd includes t = 0).
        clip: clip `x + t * d` to [0, 1] (the plots say which).
        seed: seed of the random direction.
        probes: a dict in which the traced probe of each model is kept for
            later calls with the same models and batch shape (see
            `analyze`); None traces afresh.

    Returns:
        {"t": [...], "kind", "clip", "models": {name: {"loss": [...],
        "accuracy": [...]}}}.
    """
    _check(T, points)
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.int32)
    ts = np.linspace(-T, T, points)
    out = {"t": ts.tolist(), "kind": kind, "clip": clip, "T": T, "models": {}}
    for name, model in models.items():
        d = direction(model, x, y, kind, seed)
        probe = _probe(model, x, probes)
        zero = tf.zeros_like(x)
        losses, accs = [], []
        for t in ts:
            loss, acc = probe(x, y, d, float(t), zero, 0.0, clip)
            losses.append(float(loss))
            accs.append(float(acc))
        out["models"][name] = {"loss": losses, "accuracy": accs}
    return out


def landscape_2d(model, x, y, T=16 / 255, points=11, clip=True, seed=0, probes=None):
    """Mean loss over the plane (attack direction, random direction).

    `probes`: as in `landscape_1d`.

    Returns:
        {"t": grid, "loss": points x points list (rows: attack direction
        coordinate, columns: random direction coordinate), "clip", "T"}.
    """
    _check(T, points)
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.int32)
    attack = direction(model, x, y, "sign_gradient")
    random = direction(model, x, y, "random", seed)
    probe = _probe(model, x, probes)
    ts = np.linspace(-T, T, points)
    grid = np.zeros((points, points))
    for i, a in enumerate(ts):
        for j, b in enumerate(ts):
            loss, _ = probe(x, y, attack, float(a), random, float(b), clip)
            grid[i, j] = float(loss)
    return {"t": ts.tolist(), "loss": grid.tolist(), "clip": clip, "T": T}
