"""AutoAttack (Croce & Hein, ICML 2020): APGD-CE, targeted APGD-DLR, FAB-T,
Square.

Written here rather than taken from a library (see `docs/ATTACKS.md`): the
Adversarial Robustness Toolbox's APGD works through numpy and a Python loop
per iteration, counts an example as broken only at the last iterate, has no
targeted DLR loss, and its `AutoAttack` is not the standard sequence. The
tests check these implementations against ART's on the same images.

Every attack takes pixels in [0, 1], a radius in pixel units (in the
L-infinity or the L2 ball, the runner's `norm`, each attack as the official
code runs it in that ball) and the true labels. The iterations run as
compiled TensorFlow steps on the examples still classified correctly: an
example, once misclassified, is recorded and leaves the batch (its result
cannot change, and robust accuracy is all the attacks are for), so the
cost falls with the accuracy.
"""

import functools
import math

import numpy as np
import tensorflow as tf

from keras_damped.robustness.fab import NORMS
from keras_damped.robustness.fab import FABTargeted
from keras_damped.robustness.standard import APGD_STEPS
from keras_damped.robustness.standard import RESTARTS
from keras_damped.robustness.standard import SQUARE_P_INIT
from keras_damped.robustness.standard import SQUARE_QUERIES
from keras_damped.robustness.standard import TARGET_CLASSES

MOMENTUM = 0.75  # APGD's alpha
RHO = 0.75  # APGD's oscillation threshold
DLR_EPS = 1e-12
STAGES = ("apgd_ce", "apgd_t", "fab_t", "square")
# Each stage's own random stream (`_seed_stage`), fixed per name: a stage
# added later takes a new slot, so the others keep drawing what they drew.
SEED_SLOTS = {"apgd_ce": 0, "apgd_t": 1, "square": 2, "fab_t": 3}
# APGD's per-example state: images and numbers.
APGD_IMAGES = ("x", "x_adv", "x_old", "grad", "x_best", "grad_best")
APGD_VECTORS = ("loss_best", "loss_prev", "loss_at_check", "increases", "step")


def apgd_checkpoints(steps):
    """Iterations (0-based) after which APGD may halve an example's step.

    The first check comes after 22% of the steps; each interval is 3% of the
    steps shorter than the one before, and at least 6% (the paper's
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)).
    """
    first = max(int(0.22 * steps), 1)
    shortest = max(int(0.06 * steps), 1)
    decrease = max(int(0.03 * steps), 1)
    points, length, at = [], first, -1
    while at + length < steps:
        at += length
        points.append((at, length))
        length = max(length - decrease, shortest)
    return points


def square_fraction(iteration, queries=SQUARE_QUERIES, p_init=SQUARE_P_INIT):
    """Square's fraction of pixels changed at an iteration.

    AutoAttack's schedule for its 5,000 queries (halved after 10, 50, 200,
    500, 1000, 2000 and 4000), stretched or shrunk in proportion for
    another budget, so a short run also reaches the small squares.
    """
    iteration = int(iteration * SQUARE_QUERIES / queries)
    for bound, divisor in (
        (10, 1),
        (50, 2),
        (200, 4),
        (500, 8),
        (1000, 16),
        (2000, 32),
        (4000, 64),
        (6000, 128),
        (8000, 256),
    ):
        if iteration <= bound:
            return p_init / divisor
    return p_init / 512


def cross_entropy(logits, y, target=None):
    del target
    return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)


def targeted_dlr(logits, y, target):
    """-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2): the targeted DLR loss."""
    top = tf.math.top_k(logits, k=4).values
    z_y = tf.gather(logits, y, batch_dims=1)
    z_t = tf.gather(logits, target, batch_dims=1)
    scale = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPS
    return -(z_y - z_t) / scale


def margin(logits, y):
    """z_y - max_{j != y} z_j: negative when the example is misclassified."""
    z_y = tf.gather(logits, y, batch_dims=1)
    others = logits - tf.one_hot(y, tf.shape(logits)[-1], on_value=np.inf)
    return z_y - tf.reduce_max(others, axis=-1)


def _per_example(v):
    return tf.reshape(v, [-1, 1, 1, 1])


def _project(x_new, x, eps):
    return tf.clip_by_value(tf.clip_by_value(x_new, x - eps, x + eps), 0.0, 1.0)


def _l2(v):
    """Per example: the L2 norm of `v` ([batch, h, w, c]), as [batch, 1, 1, 1]."""
    return tf.sqrt(tf.reduce_sum(tf.square(v), axis=[1, 2, 3], keepdims=True))


def _project_l2(x_new, x, eps):
    """Into the L2 ball of radius eps around x, then into [0, 1], as the
    official APGD does (the change rescaled to length min(eps, its own))."""
    delta = x_new - x
    length = _l2(delta)
    return tf.clip_by_value(
        x + delta / (length + 1e-12) * tf.minimum(eps, length), 0.0, 1.0
    )


def _rectangles(height, width):
    """Square-L2's building block: nested rectangles around the centre of a
    height x width window, the k-th ring weighted 1 / (k + 1)^2, unit L2
    norm (the official `eta_rectangles`)."""
    delta = np.zeros((height, width))
    row, col = height // 2, width // 2
    for k in range(max(height // 2 + 1, width // 2 + 1)):
        delta[max(row, 0) : row + 2 * k + 1, max(col, 0) : col + 2 * k + 1] += (
            1.0 / (k + 1) ** 2
        )
        row, col = row - 1, col - 1
    return delta / np.sqrt((delta**2).sum())


@functools.cache
def square_l2_pattern(size):
    """Square-L2's perturbation of a size x size window: the upper half
    `_rectangles`, the lower half their negative, unit L2 norm (the official
    `eta`, before its random transpose)."""
    delta = np.zeros((size, size))
    delta[: size // 2] = _rectangles(size // 2, size) if size // 2 else 0.0
    delta[size // 2 :] = -_rectangles(size - size // 2, size)
    return (delta / np.sqrt((delta**2).sum())).astype(np.float32)


def square_l2_size(iteration, height, width, queries=SQUARE_QUERIES):
    """Square-L2's window side at an iteration: at least 3, odd, at most the
    image's side (the official schedule)."""
    fraction = square_fraction(iteration, queries)
    size = max(int(round(math.sqrt(fraction * height * width))), 3)
    size += 1 - size % 2
    return min(size, height, width)


class _Active:
    """Per-example state of the examples an attack still works on."""

    def __init__(self, index, **tensors):
        self.index = index
        self.tensors = tensors

    def keep(self, mask):
        self.index = self.index[mask]
        self.tensors = {k: tf.boolean_mask(v, mask) for k, v in self.tensors.items()}

    def __getattr__(self, name):
        try:
            return self.__dict__["tensors"][name]
        except KeyError:
            raise AttributeError(name) from None


class AutoAttackRunner:
    """The attacks of AutoAttack on one model, compiled once.

    Args:
        model_fn: `x -> float32 logits` (see `keras_damped.robustness.logits_fn`).
        apgd_steps: iterations of each APGD run (100).
        square_queries: queries of the Square attack (5,000).
        target_classes: target classes of APGD-T (9, at most classes - 1).
        restarts: random restarts of each APGD run (1, as in AutoAttack's
            standard version).
        norm: "linf" or "l2", the ball every attack runs in.

    The random starts and Square's draws come from the seed each `run`
    is given (per stage, so that a stage draws as the same attack run
    alone does): nothing carries over from one call to the next.
    """

    def __init__(
        self,
        model_fn,
        apgd_steps=APGD_STEPS,
        square_queries=SQUARE_QUERIES,
        target_classes=TARGET_CLASSES,
        restarts=RESTARTS,
        norm="linf",
    ):
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}. Received: norm={norm!r}")
        self.model_fn = model_fn
        self.apgd_steps = apgd_steps
        self.square_queries = square_queries
        self.target_classes = target_classes
        self.restarts = restarts
        self.norm = norm
        # FAB-T: AutoAttack's iteration budget and targets; it draws nothing.
        self.fab = FABTargeted(
            model_fn, norm, iterations=apgd_steps, targets=target_classes
        )
        # Reset from the call's seed before each stage (`_seed_stage`).
        self.generator = tf.random.Generator.from_seed(0)
        self._image_shape = None
        # Images through the model (a gradient's pass counted once) and the
        # random starts whose input gradient was all zeros, since creation.
        self.passes = 0
        self.zero_gradients = 0

    def _compile(self, image_shape):
        """Traces the steps once for images of `image_shape`, any batch size."""
        if self._image_shape == image_shape:
            return
        self._image_shape = image_shape
        spec = tf.TensorSpec
        image = spec((None, *image_shape), tf.float32)
        labels = spec((None,), tf.int32)
        vector = spec((None,), tf.float32)
        scalar = spec((), tf.float32)
        # One graph per loss and runner; partials (not lambdas of one code
        # object) so that TensorFlow counts each as its own function.
        self._loss_and_grad = {
            loss: tf.function(
                functools.partial(self._value_and_grad, loss=loss),
                input_signature=[image, labels, labels],
            )
            for loss in (cross_entropy, targeted_dlr)
        }
        state = {key: image for key in APGD_IMAGES}
        state.update({key: vector for key in APGD_VECTORS})
        state.update(y=labels, target=labels, reduced_at_check=spec((None,), tf.bool))
        self._apgd_iteration = {
            loss: tf.function(
                functools.partial(self._iteration, loss=loss),
                input_signature=[state, scalar, scalar],
            )
            for loss in (cross_entropy, targeted_dlr)
        }
        self._apgd_checkpoint = tf.function(
            self._checkpoint, input_signature=[state, scalar]
        )
        self._square_step = tf.function(
            self._square if self.norm == "linf" else self._square_l2,
            input_signature=[
                image,
                image,
                vector,
                labels,
                scalar,
                spec((), tf.int32),
                spec((None, None), tf.float32),
            ],
        )
        self._logits = tf.function(self.model_fn, input_signature=[image])

    # -- APGD ---------------------------------------------------------------

    def _value_and_grad(self, x, y, target, loss):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = self.model_fn(x)
            value = loss(logits, y, target)
        grad = tape.gradient(value, x)
        return value, grad, tf.argmax(logits, -1, output_type=tf.int32)

    def _ball(self, x_new, x, eps):
        return (_project if self.norm == "linf" else _project_l2)(x_new, x, eps)

    def _iteration(self, s, eps, alpha, loss):
        """One APGD iteration on every example of the state: a step along the
        gradient's sign (L-infinity) or its direction (L2), momentum, the new
        loss and gradient, the best point so far."""
        if self.norm == "linf":
            direction = tf.sign(s["grad"])
        else:
            direction = s["grad"] / (_l2(s["grad"]) + 1e-12)
        z = self._ball(s["x_adv"] + _per_example(s["step"]) * direction, s["x"], eps)
        x_new = self._ball(
            s["x_adv"]
            + alpha * (z - s["x_adv"])
            + (1 - alpha) * (s["x_adv"] - s["x_old"]),
            s["x"],
            eps,
        )
        value, grad, pred = self._value_and_grad(x_new, s["y"], s["target"], loss)
        improved = _per_example(value > s["loss_best"])
        s = dict(s)
        s["increases"] = s["increases"] + tf.cast(value > s["loss_prev"], tf.float32)
        s["loss_prev"] = value
        s["x_best"] = tf.where(improved, x_new, s["x_best"])
        s["grad_best"] = tf.where(improved, grad, s["grad_best"])
        s["loss_best"] = tf.maximum(value, s["loss_best"])
        s["x_old"], s["x_adv"], s["grad"] = s["x_adv"], x_new, grad
        return s, pred != s["y"]

    @staticmethod
    def _checkpoint(s, length):
        """Halves the step of an example whose loss rose in at most rho of
        the interval's iterations, or whose best loss did not improve since a
        check that left its step unchanged; it goes back to its best point."""
        oscillates = s["increases"] <= length * RHO
        stalled = tf.logical_and(
            tf.logical_not(s["reduced_at_check"]), s["loss_at_check"] >= s["loss_best"]
        )
        reduce = tf.logical_or(oscillates, stalled)
        s = dict(s)
        s["reduced_at_check"] = reduce
        s["loss_at_check"] = s["loss_best"]
        s["step"] = tf.where(reduce, s["step"] / 2, s["step"])
        s["x_adv"] = tf.where(_per_example(reduce), s["x_best"], s["x_adv"])
        s["grad"] = tf.where(_per_example(reduce), s["grad_best"], s["grad"])
        s["increases"] = tf.zeros_like(s["increases"])
        return s

    def apgd(self, x, y, eps, loss="ce", target=None):
        """One APGD run from a random start: `(x_adv, fooled)` (numpy).

        `x_adv[i]` is the first misclassified iterate for the examples with
        `fooled[i]`, else `x[i]`. `loss` is "ce" or "dlr_targeted" (which
        needs `target`, the class to push each example to).
        """
        x = tf.convert_to_tensor(x, tf.float32)
        y = tf.convert_to_tensor(y, tf.int32)
        count = int(x.shape[0])
        target = y if target is None else tf.convert_to_tensor(target, tf.int32)
        step_fn = self._loss_and_grad[cross_entropy if loss == "ce" else targeted_dlr]
        eps_t = tf.constant(eps, tf.float32)
        out = x.numpy().copy()
        fooled = np.zeros(count, dtype=bool)
        if self.norm == "linf":
            noise = self.generator.uniform(tf.shape(x), -1.0, 1.0)
            largest = tf.reduce_max(tf.abs(noise), axis=[1, 2, 3], keepdims=True)
        else:
            noise = self.generator.normal(tf.shape(x))
            largest = _l2(noise) + 1e-12
        start = tf.clip_by_value(x + eps_t * noise / largest, 0.0, 1.0)
        value, grad, pred = step_fn(start, y, target)
        self.passes += count
        flat = tf.reshape(tf.abs(grad), [count, -1])
        self.zero_gradients += int(np.sum(tf.reduce_sum(flat, -1).numpy() == 0))
        state = _Active(
            np.arange(count),
            x=x,
            y=y,
            target=target,
            x_adv=start,
            x_old=start,
            grad=grad,
            x_best=start,
            grad_best=grad,
            loss_best=value,
            loss_prev=value,
            loss_at_check=value,
            reduced_at_check=tf.zeros([count], tf.bool),
            increases=tf.zeros([count], tf.float32),
            step=tf.fill([count], 2.0 * eps_t),
        )
        fooled_now = (pred != y).numpy()
        checkpoints = dict(apgd_checkpoints(self.apgd_steps))

        def record_and_drop(fooled_now, x_now):
            if fooled_now.any():
                out[state.index[fooled_now]] = x_now.numpy()[fooled_now]
                fooled[state.index[fooled_now]] = True
                state.keep(~fooled_now)

        record_and_drop(fooled_now, start)
        iteration = self._apgd_iteration[
            cross_entropy if loss == "ce" else targeted_dlr
        ]
        for i in range(self.apgd_steps):
            if len(state.index) == 0:
                break
            alpha = tf.constant(MOMENTUM if i > 0 else 1.0, tf.float32)
            self.passes += len(state.index)
            state.tensors, fooled_now = iteration(state.tensors, eps_t, alpha)
            record_and_drop(fooled_now.numpy(), state.tensors["x_adv"])
            if i in checkpoints and len(state.index):
                state.tensors = self._apgd_checkpoint(
                    state.tensors, tf.constant(checkpoints[i], tf.float32)
                )
        return out, fooled

    def apgd_with_restarts(self, x, y, eps, loss="ce", target=None):
        x = np.asarray(x, np.float32)
        out, fooled = x.copy(), np.zeros(len(x), dtype=bool)
        for _ in range(self.restarts):
            todo = np.flatnonzero(~fooled)
            if len(todo) == 0:
                break
            adv, hit = self.apgd(
                x[todo], y[todo], eps, loss, None if target is None else target[todo]
            )
            out[todo[hit]] = adv[hit]
            fooled[todo[hit]] = True
        return out, fooled

    def apgd_targeted(self, x, y, eps):
        """APGD-DLR against each of the `target_classes` classes with the
        highest clean logits after the top one, on the examples not yet
        broken."""
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.int32)
        out, fooled = x.copy(), np.zeros(len(x), dtype=bool)
        if len(x) == 0:
            return out, fooled
        logits = self._logits(tf.constant(x)).numpy()
        self.passes += len(x)
        classes = logits.shape[-1]
        if classes < 4:
            raise ValueError(
                f"apgd_t's DLR loss needs at least 4 classes. Received a model "
                f"with {classes} classes."
            )
        ranked = np.argsort(-logits, axis=-1)
        for rank in range(1, min(self.target_classes, classes - 1) + 1):
            todo = np.flatnonzero(~fooled)
            if len(todo) == 0:
                break
            target = ranked[todo, rank].astype(np.int32)
            adv, hit = self.apgd_with_restarts(
                x[todo], y[todo], eps, "dlr_targeted", target
            )
            out[todo[hit]] = adv[hit]
            fooled[todo[hit]] = True
        return out, fooled

    # -- FAB-T --------------------------------------------------------------

    def fab_targeted(self, x, y, eps):
        """FAB-T (`keras_damped.robustness.fab`) on examples the model gets
        right: `(x_adv, fooled)`."""
        before = self.fab.forward_passes
        x_adv, robust = self.fab.run(x, y, eps)
        self.passes += self.fab.forward_passes - before
        return x_adv, ~robust

    # -- Square -------------------------------------------------------------

    def _window(self, shape, size):
        """A size x size window at a random place per image: its top-left
        corner and its [batch, h, w, 1] mask."""
        batch, height, width = shape[0], shape[1], shape[2]
        top = self.generator.uniform([batch, 1, 1, 1], 0, height - size + 1, tf.int32)
        left = self.generator.uniform([batch, 1, 1, 1], 0, width - size + 1, tf.int32)
        rows = tf.reshape(tf.range(height), [1, -1, 1, 1])
        cols = tf.reshape(tf.range(width), [1, 1, -1, 1])
        inside_rows = (rows >= top) & (rows < top + size)
        mask = inside_rows & (cols >= left) & (cols < left + size)
        return rows - top, cols - left, mask

    def _keep_better(self, x_new, x_best, margin_best, y):
        new_margin = margin(self._model(x_new), y)
        better = new_margin < margin_best
        return (
            tf.where(_per_example(better), x_new, x_best),
            tf.minimum(new_margin, margin_best),
        )

    def _square_l2(self, x, x_best, margin_best, y, eps, size, pattern):
        """One Square-L2 query per example (the official update): the
        perturbation of a random window is replaced by the window pattern
        (random sign per channel, randomly transposed) plus its old content,
        another random window's is moved into it, the total rescaled to
        length eps; kept if the margin falls."""
        shape = tf.shape(x)
        batch, channels = shape[0], tf.cast(shape[3], tf.float32)
        delta = x_best - x
        row, col, first = self._window(shape, size)
        _, _, second = self._window(shape, size)
        first_f, second_f = tf.cast(first, tf.float32), tf.cast(second, tf.float32)

        def window_norm(v):  # per example and channel
            return tf.sqrt(tf.reduce_sum(tf.square(v), axis=[1, 2], keepdims=True))

        norm_first = window_norm(delta * first_f)
        norm_both = window_norm(delta * tf.maximum(first_f, second_f))
        norm_image = _l2(delta)
        row = tf.broadcast_to(tf.clip_by_value(row, 0, size - 1), tf.shape(first))
        col = tf.broadcast_to(tf.clip_by_value(col, 0, size - 1), tf.shape(first))
        transpose = self.generator.uniform([batch, 1, 1, 1]) > 0.5
        index = tf.stack(
            [tf.where(transpose, col, row), tf.where(transpose, row, col)], axis=-1
        )
        placed = tf.gather_nd(pattern, index)
        signs = tf.sign(self.generator.uniform([batch, 1, 1, shape[3]], -1.0, 1.0))
        new = (placed * signs + delta / (norm_first + 1e-12)) * first_f
        room = tf.maximum(tf.square(eps) - tf.square(norm_image), 0.0) / channels
        new = new / (window_norm(new) + 1e-12) * tf.sqrt(room + tf.square(norm_both))
        delta = tf.where(first, new, tf.where(second, 0.0, delta))
        x_new = tf.clip_by_value(x + delta / (_l2(delta) + 1e-12) * eps, 0.0, 1.0)
        return self._keep_better(x_new, x_best, margin_best, y)

    def _square(self, x, x_best, margin_best, y, eps, size, pattern):
        """One Square query per example: a size x size window, at a random
        place per image, set to x +/- eps (a random sign per channel); kept
        if the margin falls (`pattern` is Square-L2's)."""
        del pattern
        shape = tf.shape(x)
        _, _, window = self._window(shape, size)
        signs = tf.sign(self.generator.uniform([shape[0], 1, 1, shape[3]], -1.0, 1.0))
        candidate = tf.where(window, x_best + 2.0 * eps * signs, x_best)
        return self._keep_better(_project(candidate, x, eps), x_best, margin_best, y)

    def _model(self, x):
        return self.model_fn(x)

    def square(self, x, y, eps):
        """The Square attack in the runner's ball: `(x_adv, fooled)` (numpy)."""
        x_np = np.asarray(x, np.float32)
        y_np = np.asarray(y, np.int32)
        out, fooled = x_np.copy(), np.zeros(len(x_np), dtype=bool)
        if len(x_np) == 0:
            return out, fooled
        x = tf.constant(x_np)
        y = tf.constant(y_np)
        eps_t = tf.constant(eps, tf.float32)
        _, height, width, channels = x_np.shape
        if self.norm == "linf":
            # Start from vertical stripes of +/- eps.
            stripes = tf.sign(
                self.generator.uniform([len(x_np), 1, width, channels], -1.0, 1.0)
            )
            start = tf.clip_by_value(x + eps_t * stripes, 0.0, 1.0)
        else:
            start = self._square_l2_start(x, eps_t)
        margin_start = margin(self._logits(start), y)
        margin_clean = margin(self._logits(x), y)
        self.passes += 2 * len(x_np)
        use_start = margin_start < margin_clean
        x_best = tf.where(_per_example(use_start), start, x)
        state = _Active(
            np.arange(len(x_np)),
            x=x,
            y=y,
            x_best=x_best,
            margin=tf.minimum(margin_start, margin_clean),
        )

        def record_and_drop():
            done = (state.margin <= 0).numpy()
            if done.any():
                out[state.index[done]] = state.x_best.numpy()[done]
                fooled[state.index[done]] = True
                state.keep(~done)

        record_and_drop()
        for i in range(1, self.square_queries):
            if len(state.index) == 0:
                break
            if self.norm == "linf":
                fraction = square_fraction(i, self.square_queries)
                size = max(int(round(math.sqrt(fraction * height * width))), 1)
                size = min(size, height - 1, width - 1)
                pattern = np.zeros((1, 1), np.float32)
            else:
                size = square_l2_size(i, height, width, self.square_queries)
                pattern = square_l2_pattern(size)
            s = state.tensors
            self.passes += len(state.index)
            s["x_best"], s["margin"] = self._square_step(
                s["x"],
                s["x_best"],
                s["margin"],
                s["y"],
                eps_t,
                tf.constant(size),
                tf.constant(pattern),
            )
            record_and_drop()
        return out, fooled

    def _square_l2_start(self, x, eps):
        """Square-L2's first point: a grid of windows of side h // 5, each the
        window pattern (randomly transposed) with a random sign per example
        and channel, rescaled to length eps (the official start)."""
        count, height, width, channels = x.shape
        side = max(height // 5, 1)
        offset = (height - side * 5) // 2
        pattern = square_l2_pattern(side)
        delta = np.zeros(x.shape, np.float32)
        for top in range(offset, offset + side * (height // side), side):
            for left in range(offset, offset + side * (width // side), side):
                if top + side > height or left + side > width:
                    continue
                transpose = bool(self.generator.uniform([]) > 0.5)
                window = pattern.T if transpose else pattern
                signs = tf.sign(self.generator.uniform([count, 1, 1, channels], -1, 1))
                delta[:, top : top + side, left : left + side, :] += (
                    window[None, :, :, None] * signs.numpy()
                )
        delta = tf.constant(delta)
        return tf.clip_by_value(x + delta / (_l2(delta) + 1e-12) * eps, 0.0, 1.0)

    # -- the sequence -------------------------------------------------------

    def _seed_stage(self, seed, stage):
        """Restarts the draws from `seed` (an integer or a pair of them) and
        the stage's slot in `SEED_SLOTS`: one Philox key per pair and stage."""
        pair = tf.constant((seed, 0) if np.ndim(seed) == 0 else seed, tf.int64)
        folded = tf.random.experimental.stateless_fold_in(pair, SEED_SLOTS[stage])
        key = tf.random.stateless_uniform([], folded, None, None, tf.int64)
        self.generator.reset_from_key_counter(int(key) & (2**63 - 1), [0, 0])

    def run(self, x, y, eps, stages=STAGES, seed=(0, 0)):
        """The attacks in `stages`, each on the examples all earlier ones
        left correctly classified, each drawing from `seed` and its own
        name: a stage draws what that attack alone draws on the same
        examples with the same seed.

        Returns `(x_adv, robust)`: the adversarial example (or `x`) and, per
        stage, the boolean mask of the examples still correct after it
        (cumulative; the clean misclassifications are never robust).
        `last_run` then holds what the call cost: the images each stage
        attacked and the forward passes it made (counted where the model
        is called; a gradient's pass counted once), the clean pass's, and
        the random starts with an all-zero input gradient.
        """
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.int32)
        self._compile(tuple(x.shape[1:]))
        out = x.copy()
        zero_before = self.zero_gradients
        clean = (
            (self._logits(tf.constant(x)).numpy().argmax(-1) == y)
            if len(x)
            else (np.zeros(0, dtype=bool))
        )
        self.passes += len(x)
        record = {"clean_passes": len(x), "stages": {}}
        robust = clean.copy()
        masks = {}
        attacks = {
            "apgd_ce": lambda a, b: self.apgd_with_restarts(a, b, eps, "ce"),
            "apgd_t": lambda a, b: self.apgd_targeted(a, b, eps),
            "fab_t": lambda a, b: self.fab_targeted(a, b, eps),
            "square": lambda a, b: self.square(a, b, eps),
        }
        for stage in stages:
            todo = np.flatnonzero(robust)
            before = self.passes
            if eps > 0 and len(todo):
                self._seed_stage(seed, stage)
                adv, hit = attacks[stage](x[todo], y[todo])
                out[todo[hit]] = adv[hit]
                robust[todo[hit]] = False
            masks[stage] = robust.copy()
            record["stages"][stage] = {
                "attacked": int(len(todo)) if eps > 0 else 0,
                "forward_passes": self.passes - before,
            }
        record["zero_gradients"] = self.zero_gradients - zero_before
        self.last_run = record
        return out, masks
