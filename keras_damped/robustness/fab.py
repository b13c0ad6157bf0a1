"""FAB-T: the targeted fast adaptive boundary attack (Croce and Hein,
"Minimally distorted adversarial examples with a fast adaptive boundary
attack", ICML 2020), AutoAttack's third stage, in L-infinity and L2.

Written in `keras.ops` with the input gradient of each backend
(`keras_damped.robustness.gradients`), so it runs on TensorFlow, JAX and
PyTorch. It follows the official implementation (fra31/auto-attack,
`fab_base.py`) in every choice the paper leaves open: the targets are the
classes with the 2nd to (targets + 1)th highest clean logits, one run each
on the points still robust, no random start (one restart); each iteration
linearises the target's margin at the current point, projects both the
current point and the original onto that hyperplane within the [0, 1] box
(`project`), steps towards a mix of the two (alpha <= alpha_max, overshoot
eta) and, once misclassified, keeps the point if it is the closest so far
and moves back towards the original by beta. A point counts as broken when
the closest misclassified point found is within eps.

Unlike the official code, an example leaves the batch as soon as it has a
misclassified point within eps: the robust accuracy at eps is then decided
(FAB would only shrink that point's distance further).
"""

import math

import numpy as np

# The official defaults (Croce and Hein 2020; AutoAttack's standard version).
ITERATIONS = 100
TARGETS = 9
ALPHA_MAX = 0.1
ETA = 1.05
BETA = 0.9
NORMS = ("linf", "l2")
_TINY = 1e-12
_NO_LIMIT = 1e12


def _level(weights, limits, need):
    """Per row, the level lam >= 0 with sum_i weights_i * min(lam, limits_i)
    = need (weights >= 0), and whether one exists (else lam is infinite: the
    most the box allows still falls short).

    The sum is piecewise linear and increasing in lam, with kinks at the
    limits: sorted, its value at every kink is a cumulative sum, and lam lies
    on the first segment where the value reaches `need`.
    """
    from keras import ops

    order = ops.argsort(limits, axis=-1)
    r = ops.take_along_axis(limits, order, axis=-1)
    a = ops.take_along_axis(weights, order, axis=-1)
    a_through = ops.cumsum(a, axis=-1)
    ar_through = ops.cumsum(a * r, axis=-1)
    total = a_through[:, -1:]
    at_kinks = ar_through + r * (total - a_through)
    k = ops.sum(ops.cast(at_kinks < need[:, None], "int32"), axis=-1)
    n = ops.shape(limits)[-1]
    feasible = k < n
    # The sums over the kinks before the k-th (zero when k = 0).
    before = ops.maximum(k - 1, 0)[:, None]
    first = (k == 0)[:, None]
    ar_before = ops.where(first, 0.0, ops.take_along_axis(ar_through, before, -1))
    a_before = ops.where(first, 0.0, ops.take_along_axis(a_through, before, -1))
    rest = ops.maximum(total - a_before, _TINY)
    lam = (need[:, None] - ar_before) / rest
    return ops.where(feasible[:, None], lam, math.inf)[:, 0], feasible


def project(points, w, b, norm):
    """The smallest step `d` (in `norm`) with `w . (points + d) = b` and
    `points + d` in [0, 1], per row ([m, n] points and w, [m] b); where no
    step within the box reaches the hyperplane, the step to the box corner
    that comes closest. Coordinates with w = 0 do not move."""
    from keras import ops

    points, w, b = (ops.cast(v, "float32") for v in (points, w, b))
    c = ops.sum(w * points, axis=-1) - b
    toward = ops.where(c >= 0, -1.0, 1.0)[:, None]  # the side w . z must move to
    moving = ops.abs(w) > 1e-8 if norm == "l2" else w != 0
    if norm == "linf":
        # Each coordinate moves by lam in the direction that changes w . z
        # the right way, as far as the box lets it.
        direction = toward * ops.sign(w)
        room = ops.where(direction > 0, 1.0 - points, points)
        lam, _ = _level(ops.abs(w), room, ops.abs(c))
        step = direction * ops.minimum(lam[:, None], room)
    elif norm == "l2":
        # d = -mu * w (signed towards the plane), each coordinate clipped to
        # the box: coordinate i stops at mu_i; sum w_i^2 min(mu, mu_i) = |c|.
        v = -toward * w  # the step is -mu * v
        safe = ops.where(moving, v, 1.0)
        stop = ops.where(v > 0, points / safe, (points - 1.0) / safe)
        stop = ops.where(moving, stop, _NO_LIMIT)
        lam, _ = _level(ops.where(moving, v * v, 0.0), stop, ops.abs(c))
        step = -v * ops.minimum(lam[:, None], stop)
    else:
        raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
    return ops.where(moving, step, 0.0)


def distance(d, norm):
    """Per row of `d` ([m, n]): its L-infinity or L2 norm."""
    from keras import ops

    if norm == "linf":
        return ops.max(ops.abs(d), axis=-1)
    return ops.sqrt(ops.sum(d * d, axis=-1))


class FABTargeted:
    """FAB-T on one model: `run(x, y, eps)` attacks with each target in turn.

    Args:
        model_fn: `x -> logits` (a Keras model or any backend callable).
        norm: "linf" or "l2".
        iterations, targets, alpha_max, eta, beta: the official defaults.
    """

    def __init__(
        self,
        model_fn,
        norm="linf",
        iterations=ITERATIONS,
        targets=TARGETS,
        alpha_max=ALPHA_MAX,
        eta=ETA,
        beta=BETA,
    ):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
        self.model_fn = model_fn
        self.norm = norm
        self.iterations = iterations
        self.targets = targets
        self.alpha_max = alpha_max
        self.eta = eta
        self.beta = beta
        self.forward_passes = 0  # images through the model, gradients counted once

    def _logits(self, x):
        from keras import ops

        self.forward_passes += int(x.shape[0])
        return ops.convert_to_numpy(self.model_fn(x))

    def run(self, x, y, eps):
        """`(x_adv, robust)` (NumPy): each example's closest misclassified
        point found within eps (else x) and whether none was found; clean
        misclassifications are not robust."""
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.int64)
        out = x.copy()
        logits = self._logits(x) if len(x) else np.zeros((0, 2))
        robust = logits.argmax(-1) == y
        ranked = np.argsort(-logits, axis=-1, kind="stable")
        for rank in range(1, min(self.targets, logits.shape[-1] - 1) + 1):
            todo = np.flatnonzero(robust)
            if len(todo) == 0:
                break
            adv, hit = self.attack(x[todo], y[todo], ranked[todo, rank], eps)
            out[todo[hit]] = adv[hit]
            robust[todo[hit]] = False
        return out, robust

    def attack(self, x, y, target, eps):
        """One FAB run towards `target` per example: `(x_adv, hit)`, hit
        where a misclassified point within eps was found."""
        from keras import ops

        count, shape = len(x), x.shape
        x0 = x.reshape(count, -1)
        x1 = x0.copy()
        adv = x0.copy()
        best = np.full(count, np.inf, np.float32)
        active = np.arange(count)
        step = self._compiled_step()
        for _ in range(self.iterations):
            if len(active) == 0:
                break
            moved, predicted, dist = (
                ops.convert_to_numpy(v)
                for v in step(
                    ops.convert_to_tensor(x1[active].reshape(-1, *shape[1:])),
                    ops.convert_to_tensor(x0[active]),
                    ops.convert_to_tensor(y[active].astype("int32")),
                    ops.convert_to_tensor(target[active].astype("int32")),
                )
            )
            # A gradient (one pass forward and back) and a forward pass.
            self.forward_passes += 2 * len(active)
            fooled = predicted != y[active]
            closer = fooled & (dist < best[active])
            adv[active[closer]] = moved[closer]
            best[active[closer]] = dist[closer]
            back = x0[active] + (moved - x0[active]) * self.beta
            x1[active] = np.where(fooled[:, None], back, moved)
            active = active[best[active] > eps]
        return adv.reshape(shape), best <= eps

    def _compiled_step(self):
        """`_step`, traced once by TensorFlow (for any batch size) on that
        backend; as it is on the others."""
        import keras

        if keras.backend.backend() != "tensorflow":
            return self._step
        if not hasattr(self, "_traced"):
            import tensorflow as tf

            self._traced = tf.function(self._step, reduce_retracing=True)
        return self._traced

    def _step(self, images, origin, y, target):
        """One FAB iteration on a batch: linearise the target's margin at
        `images`, project them and `origin` (flattened originals) onto its
        hyperplane, mix the two steps. Returns the new points (flattened),
        their predicted labels and their distances to the originals."""
        from keras import ops

        from keras_damped.robustness.gradients import value_and_gradient

        def margin(z):
            logits = self.model_fn(z)
            pick = ops.take_along_axis
            return (pick(logits, target[:, None], -1) - pick(logits, y[:, None], -1))[
                :, 0
            ]

        count = ops.shape(origin)[0]
        f, g = value_and_gradient(margin, images)
        w = ops.reshape(ops.cast(g, "float32"), (count, -1))
        current = ops.reshape(images, (count, -1))
        b = ops.sum(w * current, axis=-1) - ops.cast(f, "float32")
        both = project(
            ops.concatenate([current, origin], 0),
            ops.concatenate([w, w], 0),
            ops.concatenate([b, b], 0),
            self.norm,
        )
        d1, d2 = both[:count], both[count:]
        a = ops.maximum(distance(both, self.norm), 1e-8)
        alpha = ops.clip(a[:count] / (a[:count] + a[count:]), 0.0, self.alpha_max)
        alpha = alpha[:, None]
        moved = (current + self.eta * d1) * (1.0 - alpha) + (
            origin + self.eta * d2
        ) * alpha
        moved = ops.clip(moved, 0.0, 1.0)
        logits = self.model_fn(ops.reshape(moved, ops.shape(images)))
        predicted = ops.argmax(logits, axis=-1)
        return moved, predicted, distance(moved - origin, self.norm)
