"""CleverHans attacks and AutoAttack behind one signature, batched and compiled.

Every attack takes pixels in [0, 1], a radius `eps` in pixel units (8/255)
and the true labels (no label leaking: the model's predictions are never
used as labels); the model normalises internally, so the attacks work in
pixel space, unlike the reference code, which attacks normalised tensors.
"""

import numpy as np
import tensorflow as tf

from keras_damped.models.inspect import model_input
from keras_damped.robustness.autoattack import APGD_STEPS
from keras_damped.robustness.autoattack import SQUARE_QUERIES
from keras_damped.robustness.autoattack import STAGES
from keras_damped.robustness.autoattack import TARGET_CLASSES
from keras_damped.robustness.autoattack import AutoAttackRunner

# AutoAttack's attacks (keras_damped.robustness.autoattack) and the sequence.
AUTOATTACK = (*STAGES, "autoattack")
ATTACKS = ("fgsm", "ifgsm", "pgd", "mim", "cw_l2", "spsa", *AUTOATTACK)
# Attacks whose `eps` is an L-infinity radius; cw_l2 reports at an L2 radius.
LINF_ATTACKS = tuple(a for a in ATTACKS if a != "cw_l2")
# Attacks that follow the model's input gradient (Square and SPSA only query it).
GRADIENT_ATTACKS = ("fgsm", "ifgsm", "pgd", "mim", "apgd_ce", "apgd_t")
STEP_SIZE = 2 / 255
STEPS = 20


def check_attack(name):
    if name not in ATTACKS:
        raise ValueError(
            f"Unknown attack. Expected one of {ATTACKS} (or 'all'). "
            f"Received: attack={name!r}"
        )
    return name


def check_budget(name, value):
    """A positive integer budget (steps, queries, target classes)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(
            f"{name} must be a positive integer. Received: {name}={value!r}"
        )
    return int(value)


class AutoAttackFn:
    """`(x, y, eps) -> x_adv` for AutoAttack or one of its attacks.

    After each call `last_robust` holds, per attack of the sequence, the
    per-example mask of the examples still correctly classified after it.
    """

    def __init__(self, name, model_fn, apgd_steps, square_queries, target_classes):
        self.stages = STAGES if name == "autoattack" else (name,)
        self.runner = AutoAttackRunner(
            model_fn,
            apgd_steps=check_budget("apgd_steps", apgd_steps),
            square_queries=check_budget("square_queries", square_queries),
            target_classes=check_budget("target_classes", target_classes),
        )
        self.last_robust = None

    def __call__(self, x, y, eps):
        x_adv, self.last_robust = self.runner.run(
            np.asarray(x), np.asarray(y), float(eps), self.stages
        )
        return tf.constant(x_adv)


def logits_fn(model):
    """`x -> float32 logits` of a Keras model; refuses or unwraps a softmax head.

    Attacks need logits: the cross-entropy of probabilities saturates and
    masks gradients. A functional model whose last layer applies a softmax
    (a `Softmax` layer, an `Activation("softmax")` or a `Dense` with softmax)
    is evaluated up to the logits before it; any other softmax model is
    refused with a clear message.
    """
    import keras

    last = model.layers[-1]
    activation = getattr(last, "activation", None)
    is_softmax = isinstance(last, keras.layers.Softmax) or (
        activation is not None and getattr(activation, "__name__", "") == "softmax"
    )
    if not is_softmax:
        return _with_defined_gradient(lambda x: model(x, training=False))
    try:
        inputs = last.input
        if isinstance(last, (keras.layers.Softmax, keras.layers.Activation)):
            logits = inputs
        else:
            config = dict(
                last.get_config(), activation=None, name=f"{last.name}_logits"
            )
            head = type(last).from_config(config)
            logits = head(inputs)
            head.set_weights(last.get_weights())
        logit_model = keras.Model(model_input(model), logits)
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Model {model.name!r} ends in a softmax and its logits cannot be "
            f"recovered ({error}). Attacks need logits: rebuild the model with "
            "classifier_activation=None."
        ) from None
    return _with_defined_gradient(lambda x: logit_model(x, training=False))


def _with_defined_gradient(fn):
    """float32 logits whose input gradient is zero, never None, when the model
    blocks it (a gradient-masking defence): the attacks then run, fail, and
    the sanity checks flag the model instead of CleverHans crashing."""

    def logits(x):
        out = tf.cast(fn(x), tf.float32)
        return out + 0.0 * tf.reduce_mean(x)

    return logits


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
    """CleverHans' SPSA optimizer, constructed the Keras 3 way.

    `cleverhans.tf2.attacks.spsa.SPSAAdam` passes `lr=` to Keras' Adam,
    which Keras 3 rejects, and reads `self.lr`; its gradient estimate and
    update rule (its own code) are used unchanged.
    """
    import keras
    from cleverhans.tf2.attacks.spsa import SPSAAdam

    class KerasThreeSPSAAdam(SPSAAdam):
        def __init__(self):
            keras.optimizers.Adam.__init__(self, learning_rate=learning_rate)
            self.lr = learning_rate
            self._delta = delta
            self._num_samples = samples // 2  # mirrored +/- delta samples
            self._num_iters = 1
            self._compare_to_analytic_grad = False

    return KerasThreeSPSAAdam()


def _any_batch_size(fn, jit_compile, with_eps=False):
    """`tf.function(fn)` traced once, on the first call, for any batch size.

    A last, smaller batch would otherwise trace the attack a second time.
    """
    compiled = []

    def call(x, y, *eps):
        if not compiled:
            signature = [
                tf.TensorSpec((None, *x.shape[1:]), x.dtype),
                tf.TensorSpec((None,), y.dtype),
            ] + ([tf.TensorSpec((), tf.float32)] if with_eps else [])
            compiled.append(
                tf.function(fn, input_signature=signature, jit_compile=jit_compile)
            )
        return compiled[0](x, y, *eps)

    return call


def make_attack(
    name,
    model_fn,
    steps=STEPS,
    step_size=STEP_SIZE,
    jit_compile=False,
    apgd_steps=APGD_STEPS,
    square_queries=SQUARE_QUERIES,
    target_classes=TARGET_CLASSES,
):
    """A compiled `(x, y, eps) -> x_adv` for one attack.

    Args:
        name: one of `ATTACKS`.
        model_fn: `x -> logits` (see `logits_fn`).
        steps: iterations of `ifgsm`, `pgd`, `mim` and `spsa`; `cw_l2` runs
            `10 * steps` optimisation steps in each of 3 binary-search steps.
        step_size: step of the iterative attacks, capped at `eps` (CleverHans
            requires `eps_iter <= eps`).
        jit_compile: compile the CleverHans attacks with XLA (AutoAttack's
            run in graph mode: XLA recompiles for every batch size).
        apgd_steps: iterations of `apgd_ce` and of each `apgd_t` target.
        square_queries: queries of `square`.
        target_classes: target classes of `apgd_t`.

    `apgd_ce`, `apgd_t`, `square` and `autoattack` (the three in sequence)
    are `AutoAttackFn`s; their random draws follow TensorFlow's global seed.

    The radius `eps` is in pixel units (L-infinity; an L2 radius for
    `cw_l2`, whose minimal-norm result the caller compares with `eps`). It
    is a tensor for FGSM (one graph for every radius); the iterative
    attacks compile one graph per radius.
    """
    from cleverhans.tf2.attacks.basic_iterative_method import basic_iterative_method
    from cleverhans.tf2.attacks.carlini_wagner_l2 import CarliniWagnerL2
    from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method
    from cleverhans.tf2.attacks.momentum_iterative_method import (
        momentum_iterative_method,
    )
    from cleverhans.tf2.attacks.projected_gradient_descent import (
        projected_gradient_descent,
    )
    from cleverhans.tf2.attacks.spsa import margin_logit_loss
    from cleverhans.tf2.attacks.spsa import projected_optimization

    check_attack(name)
    if name in AUTOATTACK:
        return AutoAttackFn(name, model_fn, apgd_steps, square_queries, target_classes)
    common = {"clip_min": 0.0, "clip_max": 1.0, "sanity_checks": False}
    if name == "cw_l2":
        # CleverHans' C&W runs its own optimisation loop eagerly; eps unused.
        def run_cw(x, y, eps):
            attack = CarliniWagnerL2(
                model_fn,
                y=y,
                clip_min=0.0,
                clip_max=1.0,
                batch_size=int(x.shape[0]),
                max_iterations=10 * steps,
                binary_search_steps=3,
            )
            attack.optimizer = _KerasTwoStyleAdam(attack.learning_rate)
            return tf.convert_to_tensor(attack.attack(x), x.dtype)

        return run_cw
    if name == "spsa":
        optimizer = _spsa_optimizer(learning_rate=0.01, delta=0.01, samples=32)

        def run_one(x, y, eps):
            def loss_fn(x, label):  # untargeted: push the label's margin down
                logits = model_fn(x)
                return -margin_logit_loss(logits, label, nb_classes=logits.shape[-1])

            return projected_optimization(
                loss_fn, x, y, eps, steps, optimizer, clip_min=0.0, clip_max=1.0
            )

        compiled_one = tf.function(
            run_one, jit_compile=jit_compile, reduce_retracing=True
        )

        def run_spsa(x, y, eps):  # CleverHans' SPSA takes one image at a time.
            eps = tf.constant(eps, tf.float32)
            return tf.concat(
                [
                    compiled_one(x[i : i + 1], y[i : i + 1], eps)
                    for i in range(int(x.shape[0]))
                ],
                axis=0,
            )

        return run_spsa

    if name == "fgsm":

        def run_fgsm(x, y, eps):
            return fast_gradient_method(model_fn, x, eps, np.inf, y=y, **common)

        compiled_fgsm = _any_batch_size(run_fgsm, jit_compile, with_eps=True)
        return lambda x, y, eps: compiled_fgsm(x, y, tf.constant(eps, tf.float32))

    # The iterative attacks check `eps_iter <= eps` in Python, so their
    # radius must be a number: one graph per radius, cached.
    graphs = {}

    def run_iterative(x, y, eps):
        eps = float(eps)
        if eps not in graphs:
            step = min(step_size, eps)
            if name == "ifgsm":

                def run(x, y):
                    return basic_iterative_method(
                        model_fn, x, eps, step, steps, np.inf, y=y, **common
                    )
            elif name == "pgd":

                def run(x, y):
                    return projected_gradient_descent(
                        model_fn,
                        x,
                        eps,
                        step,
                        steps,
                        np.inf,
                        y=y,
                        rand_init=True,
                        rand_minmax=eps,
                        **common,
                    )
            else:

                def run(x, y):
                    return momentum_iterative_method(
                        model_fn, x, eps, step, steps, np.inf, y=y, **common
                    )

            graphs[eps] = _any_batch_size(run, jit_compile)
        return graphs[eps](x, y)

    return run_iterative


def attack_fn(
    name, model_fn, eps, steps=STEPS, step_size=STEP_SIZE, jit_compile=False, **budgets
):
    """`(x, y) -> x_adv` at one radius; see `make_attack`."""
    attack = make_attack(name, model_fn, steps, step_size, jit_compile, **budgets)
    return lambda x, y: attack(x, y, eps)
