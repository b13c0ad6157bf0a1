"""`logits_fn`: a Keras model as `x -> float32 logits`, for attacks and
analyses alike (in `keras.ops`, so on any backend)."""

import keras

from keras_damped.models.inspect import model_input


class ModelLogits:
    """`x -> float32 logits` of one Keras model, with the graphs compiled on it.

    `graphs` maps a computation's key (the attack, its budget, XLA or not)
    to the compiled function the attacks built for this model
    (`keras_damped.robustness.registry.compiled`): every attack and every
    evaluation of the model shares them instead of tracing again.
    """

    def __init__(self, fn):
        self._fn = fn
        self.graphs = {}

    def __call__(self, x):
        return self._fn(x)


def logits_fn(model):
    """The `ModelLogits` of a Keras model (see `_logits_fn`): one per model,
    kept on the model (a cycle the garbage collector frees with it), so that
    its compiled graphs serve every evaluation of the model."""
    fn = getattr(model, "_keras_damped_logits", None)
    if fn is None:
        fn = ModelLogits(_logits_fn(model))
        object.__setattr__(model, "_keras_damped_logits", fn)
    return fn


def _logits_fn(model):
    """`x -> float32 logits` of a Keras model; refuses or unwraps a softmax head.

    Attacks need logits: the cross-entropy of probabilities saturates and
    masks gradients. A functional model whose last layer applies a softmax
    (a `Softmax` layer, an `Activation("softmax")` or a `Dense` with softmax)
    is evaluated up to the logits before it; any other softmax model is
    refused with a clear message.
    """
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
        out = keras.ops.cast(fn(x), "float32")
        return out + 0.0 * keras.ops.mean(x)

    return logits
