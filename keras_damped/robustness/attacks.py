"""The built-in attacks (CleverHans and AutoAttack) behind `Attack`.

Every attack takes pixels in [0, 1], a radius `eps` in pixel units (8/255
in L-infinity, 0.5 in L2: the budget's `norm` says which ball the attacks
that can run in both use) and the true labels (no label leaking: the
model's predictions are never used as labels); the model normalises
internally, so the attacks work in pixel space, unlike the reference code,
which attacks normalised tensors.
Random starts come from the explicit seed of each call (stateless draws),
never from TensorFlow's global seed.

Each attack compiles one graph per model, for any batch size and radius,
and shares it between instances (a second PGD with another step size, the
gradient-masking check's, reuses the first one's graph).
"""

import numpy as np
import tensorflow as tf

from keras_damped.models.logits import logits_fn  # noqa: F401 (its old home)
from keras_damped.robustness import standard
from keras_damped.robustness.autoattack import STAGES
from keras_damped.robustness.autoattack import AutoAttackRunner
from keras_damped.robustness.registry import Attack
from keras_damped.robustness.registry import AttackResult
from keras_damped.robustness.registry import compiled
from keras_damped.robustness.registry import register_attack


def _signature(x, *extra):
    return [
        tf.TensorSpec((None, *x.shape[1:]), tf.float32),
        tf.TensorSpec((None,), tf.int32),
        *extra,
    ]


_SCALAR = tf.TensorSpec((), tf.float32)
_SEED = tf.TensorSpec((2,), tf.int64)
# CleverHans' name of each norm.
_ORD = {"linf": np.inf, "l2": 2}


def l2_ball_start(x, seed, eps):
    """Uniform draws from the L2 ball of radius `eps` around the origin, one
    per example of `x`: a Gaussian direction, scaled to a radius eps *
    u^(1/d) for d pixels."""
    axes = list(range(1, x.shape.rank))
    direction = tf.random.stateless_normal(tf.shape(x), seed)
    length = tf.sqrt(tf.reduce_sum(tf.square(direction), axis=axes, keepdims=True))
    direction /= tf.maximum(length, 1e-12)
    dims = float(np.prod(x.shape[1:]))
    u = tf.random.stateless_uniform(
        [tf.shape(x)[0]] + [1] * len(axes),
        tf.random.experimental.stateless_fold_in(seed, 1),
    )
    return direction * eps * u ** (1.0 / dims)


def iterative_step(budget, norm, eps):
    """The step of the iterative attacks: min(step_size, eps) in L-infinity;
    in L2, 2.5 * eps / steps (Madry et al.'s rule: `step_size` is a pixel
    change, not an L2 length)."""
    if norm == "l2":
        return 2.5 * eps / budget.steps
    return min(budget.step_size, eps)


class _VariableList(list):
    def __call__(self):
        return self


def _keras_two_style_adam_class():
    import keras

    class KerasTwoStyleAdam(keras.optimizers.Adam):
        """Adam whose `variables()` is callable and lists only its state.

        CleverHans 4's C&W was written for tf.keras 2: it calls
        `optimizer.variables()` and zeroes every variable it gets at each
        binary-search step. In Keras 3 `variables` is a property and also
        holds the learning rate, which zeroing would freeze; this lists the
        iteration counter and the moment estimates, as tf.keras 2 did.
        """

        @property
        def variables(self):
            return _VariableList(
                v for v in super().variables if not v.path.endswith("learning_rate")
            )

    return KerasTwoStyleAdam


def _KerasTwoStyleAdam(learning_rate):
    return _keras_two_style_adam_class()(learning_rate)


def _spsa_optimizer(learning_rate, delta, samples):
    """CleverHans' SPSA optimizer, constructed the Keras 3 way, with a step
    whose random directions come from an explicit seed.

    `cleverhans.tf2.attacks.spsa.SPSAAdam` passes `lr=` to Keras' Adam,
    which Keras 3 rejects, and reads `self.lr`; its update rule (its own
    `_apply_gradients`) is used unchanged. Its gradient estimate draws from
    TensorFlow's global generator; `seeded_step` computes the same estimate
    (one batch of mirrored sign directions) from the step's seed.
    """
    import keras
    from cleverhans.tf2.attacks.spsa import SPSAAdam

    class KerasThreeSPSAAdam(SPSAAdam):
        def __init__(self):
            keras.optimizers.Adam.__init__(self, learning_rate=learning_rate)
            self.lr = learning_rate
            self._delta = delta
            self._num_samples = samples // 2  # mirrored +/- delta samples

        def seeded_step(self, loss_fn, x, state, seed):
            """One step from `x` (a [1, H, W, C] tensor): the finite-difference
            estimate along `samples` directions +/- delta * sign(u), u drawn
            from `seed`, then Adam. Returns `(new x, new state)`."""
            shape = [self._num_samples, *x.shape[1:]]
            uniform = tf.random.stateless_uniform(shape, seed, -1.0, 1.0)
            directions = self._delta * tf.sign(uniform)
            directions = tf.concat([directions, -directions], axis=0)
            losses = tf.reshape(
                loss_fn(x + directions), [-1] + [1] * (len(x.shape) - 1)
            )
            grad = tf.reduce_mean(losses * directions, axis=0, keepdims=True)
            (new,), state = self._apply_gradients([grad / self._delta], [x], state)
            return new, state

    return KerasThreeSPSAAdam()


_COMMON = {"clip_min": 0.0, "clip_max": 1.0}


class FGSM(Attack):
    """CleverHans' fast gradient method: one step of size eps (the gradient's
    sign in L-infinity, its direction in L2)."""

    norms = ("linf", "l2")

    def perturb(self, x, y, eps, seed):
        from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method

        model_fn, order = self.model_fn, _ORD[self.norm]

        def fgsm(x, y, eps):
            return fast_gradient_method(
                model_fn, x, eps, order, y=y, sanity_checks=False, **_COMMON
            )

        graph = compiled(
            model_fn,
            ("fgsm", self.norm, self.budget.jit_compile),
            lambda: tf.function(
                fgsm,
                input_signature=_signature(x, _SCALAR),
                jit_compile=self.budget.jit_compile,
            ),
            self.graphs,
        )
        return graph(x, y, tf.constant(eps, tf.float32))


def _projected_steps(model_fn, x, y, eps, step, steps, start, norm="linf"):
    """CleverHans' projected gradient descent (L-infinity or L2, clipped to
    [0, 1]) from `x + start`: its FGM step and `clip_eta` projection, the
    start given by the caller (zeros for IFGSM, a seeded draw from the ball
    for PGD)."""
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.utils import clip_eta

    order = _ORD[norm]
    eta = clip_eta(start, order, eps)
    adv_x = tf.clip_by_value(x + eta, 0.0, 1.0)
    for _ in range(steps):
        adv_x = fast_gradient_method(
            model_fn, adv_x, step, order, y=y, sanity_checks=False, **_COMMON
        )
        eta = clip_eta(adv_x - x, order, eps)
        adv_x = tf.clip_by_value(x + eta, 0.0, 1.0)
    return adv_x


class IFGSM(Attack):
    """The basic iterative method: `steps` FGSM steps (`iterative_step`) from
    the clean image, projected on the eps-ball."""

    norms = ("linf", "l2")
    budget_fields = ("steps", "step_size")
    not_weaker_than = ("fgsm",)

    def cost(self):
        return 3 * self.budget.steps

    def _graph(self, x, y, eps, step, seed):
        return _projected_steps(
            self.model_fn,
            x,
            y,
            eps,
            step,
            self.budget.steps,
            tf.zeros_like(x),
            self.norm,
        )

    def perturb(self, x, y, eps, seed):
        graph = compiled(
            self.model_fn,
            (
                type(self).__name__,
                self.norm,
                self.budget.steps,
                self.budget.jit_compile,
            ),
            lambda: tf.function(
                self._graph,
                input_signature=_signature(x, _SCALAR, _SCALAR, _SEED),
                jit_compile=self.budget.jit_compile,
            ),
            self.graphs,
        )
        step = iterative_step(self.budget, self.norm, eps)
        return graph(
            x,
            y,
            tf.constant(eps, tf.float32),
            tf.constant(step, tf.float32),
            tf.constant(seed, tf.int64),
        )


class PGD(IFGSM):
    """Madry et al.'s PGD: IFGSM from a uniform random start in the eps-ball,
    drawn from the call's seed."""

    example_priority = 1

    def _graph(self, x, y, eps, step, seed):
        if self.norm == "l2":
            start = l2_ball_start(x, seed, eps)
        else:
            start = tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps)
        return _projected_steps(
            self.model_fn, x, y, eps, step, self.budget.steps, start, self.norm
        )


class MIM(Attack):
    """CleverHans' momentum iterative method (steps of `iterative_step`)."""

    norms = ("linf", "l2")
    budget_fields = ("steps", "step_size")

    def cost(self):
        return 3 * self.budget.steps

    def perturb(self, x, y, eps, seed):
        from cleverhans.tf2.attacks.momentum_iterative_method import (
            momentum_iterative_method,
        )

        model_fn, steps, order = self.model_fn, self.budget.steps, _ORD[self.norm]

        def mim(x, y, eps, step):
            return momentum_iterative_method(
                model_fn,
                x,
                eps,
                step,
                steps,
                order,
                y=y,
                sanity_checks=False,
                **_COMMON,
            )

        graph = compiled(
            model_fn,
            ("mim", self.norm, steps, self.budget.jit_compile),
            lambda: tf.function(
                mim,
                input_signature=_signature(x, _SCALAR, _SCALAR),
                jit_compile=self.budget.jit_compile,
            ),
            self.graphs,
        )
        step = iterative_step(self.budget, self.norm, eps)
        return graph(x, y, tf.constant(eps, tf.float32), tf.constant(step, tf.float32))


class CarliniWagner(Attack):
    """CleverHans' C&W L2 (3 binary-search steps of `10 * steps` iterations).

    It finds a minimal-norm adversarial example; an example is robust at
    the L2 radius eps when it is correct clean and C&W's example either
    fails or lies farther than eps.
    """

    norm = "l2"
    budget_fields = ("steps",)

    def cost(self):
        return 3 * 3 * 10 * self.budget.steps

    def perturb(self, x, y, eps, seed):
        from cleverhans.tf2.attacks.carlini_wagner_l2 import CarliniWagnerL2

        attack = CarliniWagnerL2(
            self.model_fn,
            y=y,
            clip_min=0.0,
            clip_max=1.0,
            batch_size=int(x.shape[0]),
            max_iterations=10 * self.budget.steps,
            binary_search_steps=3,
        )
        attack.optimizer = _KerasTwoStyleAdam(attack.learning_rate)
        return tf.convert_to_tensor(attack.attack(x), tf.float32)

    def __call__(self, x, y, eps, seed=(0, 0)):
        x = tf.convert_to_tensor(x, tf.float32)
        y = np.asarray(y, np.int32)
        x_adv = self.perturb(x, tf.constant(y), eps, seed).numpy()
        delta = (x_adv - x.numpy()).reshape(len(x_adv), -1)
        norms = np.sqrt((delta**2).sum(-1))
        clean = self.predict(x) == y
        robust = clean & ((self.predict(x_adv) == y) | (norms > eps))
        return AttackResult(x_adv, robust)


class SPSA(Attack):
    """CleverHans' SPSA (gradient-free: finite differences along random sign
    directions, Adam on the estimate), one image at a time, `steps`
    iterations of 32 samples; its random start and directions are drawn
    from the call's seed."""

    def cost(self):
        return self.SAMPLES * self.budget.steps

    gradient = False
    budget_fields = ("steps",)
    LEARNING_RATE = 0.01
    DELTA = 0.01
    SAMPLES = 32

    def perturb(self, x, y, eps, seed):
        self._optimizer()
        graph = compiled(
            self.model_fn,
            ("spsa", self.budget.steps, self.budget.jit_compile),
            lambda: tf.function(
                self._one_image,
                input_signature=_signature(x, _SCALAR, _SEED),
                jit_compile=self.budget.jit_compile,
            ),
            self.graphs,
        )
        eps = tf.constant(eps, tf.float32)
        base = tf.constant(seed, tf.int64)
        return tf.concat(
            [
                graph(
                    x[i : i + 1],
                    y[i : i + 1],
                    eps,
                    tf.cast(
                        tf.random.experimental.stateless_fold_in(base, i), tf.int64
                    ),
                )
                for i in range(int(x.shape[0]))
            ],
            axis=0,
        )

    def _one_image(self, x, y, eps, seed):
        from cleverhans.tf2.attacks.spsa import _project_perturbation
        from cleverhans.tf2.attacks.spsa import margin_logit_loss

        model_fn, optimizer = self.model_fn, self._optimizer()

        def loss_fn(image):  # untargeted: push the label's margin down
            logits = model_fn(image)
            return -margin_logit_loss(logits, y, nb_classes=logits.shape[-1])

        # CleverHans' projected_optimization, its start drawn from the seed.
        start = tf.random.stateless_uniform(tf.shape(x), seed, -eps, eps)
        perturbation = _project_perturbation(start, eps, x, 0.0, 1.0)
        state = optimizer.init_state([perturbation])
        for i in range(self.budget.steps):
            step_seed = tf.random.experimental.stateless_fold_in(seed, i + 1)
            new, state = optimizer.seeded_step(
                lambda p: loss_fn(x + p), perturbation, state, step_seed
            )
            perturbation = _project_perturbation(new, eps, x, 0.0, 1.0)
        return x + perturbation

    def _optimizer(self):
        # Built outside the traced function (Keras creates variables).
        if not hasattr(self, "_spsa_adam"):
            self._spsa_adam = _spsa_optimizer(
                self.LEARNING_RATE, self.DELTA, self.SAMPLES
            )
        return self._spsa_adam


class _AutoAttackFamily(Attack):
    """APGD-CE, APGD-T, FAB-T, Square or AutoAttack (`stages` in sequence, each on
    what the earlier ones left), on one shared compiled runner per model."""

    def cost(self):
        b = self.budget
        per_stage = {
            "apgd_ce": 3 * b.apgd_steps,
            "apgd_t": 3 * b.apgd_steps * b.target_classes,
            "fab_t": 4 * b.apgd_steps * b.target_classes,
            "square": b.square_queries,
        }
        return sum(per_stage[stage] for stage in self.stages)

    stages = STAGES
    norms = ("linf", "l2")

    def _runner(self):
        b = self.budget
        return compiled(
            self.model_fn,
            ("autoattack", self.norm, b.apgd_steps, b.square_queries, b.target_classes),
            lambda: AutoAttackRunner(
                self.model_fn,
                apgd_steps=b.apgd_steps,
                square_queries=b.square_queries,
                target_classes=b.target_classes,
                norm=self.norm,
            ),
            self.graphs,
        )

    def __call__(self, x, y, eps, seed=(0, 0)):
        runner = self._runner()
        x_adv, stages = runner.run(
            np.asarray(x, np.float32),
            np.asarray(y, np.int32),
            float(eps),
            self.stages,
            seed,
        )
        robust = stages[self.stages[-1]]
        return AttackResult(
            x_adv,
            robust,
            stages if len(self.stages) > 1 else None,
            runner.last_run,
        )


class APGDCE(_AutoAttackFamily):
    """APGD on the cross-entropy (Croce & Hein 2020)."""

    stages = ("apgd_ce",)
    budget_fields = ("apgd_steps",)


class APGDT(_AutoAttackFamily):
    """Targeted APGD on the DLR loss, over the top `target_classes` classes."""

    stages = ("apgd_t",)
    min_classes = 4
    budget_fields = ("apgd_steps", "target_classes")


class Square(_AutoAttackFamily):
    """The Square attack (gradient-free random search, `square_queries`)."""

    stages = ("square",)
    gradient = False
    budget_fields = ("square_queries",)


class FABT(_AutoAttackFamily):
    """FAB-T, the targeted fast adaptive boundary attack (L-infinity or L2,
    `keras_damped.robustness.fab`): one run per target, `target_classes`
    targets, `apgd_steps` iterations each (AutoAttack's iteration budget, 100
    in the standard version); no random start."""

    stages = ("fab_t",)
    budget_fields = ("apgd_steps", "target_classes")
    label = "FAB-T"


class AutoAttack(_AutoAttackFamily):
    """AutoAttack: APGD-CE, APGD-T, FAB-T and Square, each on what the ones
    before left; at `standard_budget` the official standard version, with
    less labelled "(reduced)" wherever its numbers appear."""

    min_classes = 4
    standard_budget = {
        "apgd_steps": standard.APGD_STEPS,
        "target_classes": standard.TARGET_CLASSES,
        "square_queries": standard.SQUARE_QUERIES,
    }
    budget_fields = ("apgd_steps", "target_classes", "square_queries")
    not_weaker_than = ("pgd",)


for _name, _cls in (
    ("fgsm", FGSM),
    ("ifgsm", IFGSM),
    ("pgd", PGD),
    ("mim", MIM),
    ("cw_l2", CarliniWagner),
    ("spsa", SPSA),
    ("apgd_ce", APGDCE),
    ("apgd_t", APGDT),
    ("square", Square),
    ("fab_t", FABT),
    ("autoattack", AutoAttack),
):
    register_attack(_name, _cls)
