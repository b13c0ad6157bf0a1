"""Learning-rate schedules and the optimizer of the paper's protocol."""

import keras

SCHEDULES = ("paper", "cosine", "constant")
# The reference divides the rate by 10 at 50% and 75% of training (CIFAR-10:
# epochs 80 and 120 of 160; CIFAR-100: 150 and 225 of 300).
PAPER_FRACTIONS = (0.5, 0.75)


def paper_switch_steps(epochs, steps_per_epoch):
    """The first optimizer step at 0.1x and at 0.01x the rate (0-based).

    The reference divides the rate at 50% and 75% of training. The switch
    points are taken on the *steps* of the whole run, not on rounded
    epochs, so every length gets the three phases in the paper's
    proportions (at 3 epochs, rounded epochs would put both switches at
    epoch 2 and skip the 0.01 phase). When the number of epochs is a
    multiple of 4 they fall on epoch boundaries (160 epochs: 80 and 120).
    """
    total = epochs * steps_per_epoch
    return [max(int(f * total), 1) for f in PAPER_FRACTIONS]


def learning_rate_schedule(kind, lr, epochs, steps_per_epoch):
    """The learning rate as a Keras schedule over optimizer steps."""
    if kind not in SCHEDULES:
        raise ValueError(
            f"Unknown schedule. Expected one of {SCHEDULES}. "
            f"Received: schedule={kind!r}"
        )
    total = epochs * steps_per_epoch
    if kind == "paper":
        # PiecewiseConstantDecay keeps values[0] while step <= boundaries[0]:
        # the boundary is the last step of a phase, one before the switch.
        boundaries = [s - 1 for s in paper_switch_steps(epochs, steps_per_epoch)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(
            boundaries, [lr, lr * 0.1, lr * 0.01]
        )
    if kind == "cosine":
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    return lr


def add_weight_decay(model, weight_decay, decay_damping=True):
    """Coupled L2 weight decay, as PyTorch's `SGD(weight_decay=...)` applies it.

    Adds `weight_decay / 2 * ||w||^2` for every trainable weight to the loss,
    so `weight_decay * w` joins the gradient and passes through momentum,
    exactly as in the reference code. (Keras' `weight_decay=` argument is
    decoupled: it shrinks weights outside momentum, which with momentum 0.9
    is about ten times weaker; that is not the paper's protocol.) With
    `decay_damping=False` the damping weights `k` are not decayed (decay
    pulls In-ResNet's lambda towards 1 and lambda-In-ResNet's towards 0).

    Returns:
        The number of weights that were decayed.
    """
    if not weight_decay:
        return 0
    from keras_damped.models.inspect import damped_adds

    damping = {id(add.k) for add in damped_adds(model, trainable_only=True).values()}
    regularizer = keras.regularizers.L2(weight_decay / 2.0)
    count = 0
    for variable in model.trainable_variables:
        if id(variable) in damping and not decay_damping:
            continue
        variable.regularizer = regularizer
        count += 1
    return count
