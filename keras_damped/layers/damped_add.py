"""The damped residual merge: the whole method of the paper in one layer."""

import math

import keras
from keras import constraints
from keras import initializers
from keras import ops
from keras import regularizers

VARIANTS = ("in", "lambda_in", "fixed")

# Initial ranges of the raw weight k used by the reference implementation
# (docs/paper.md section 2): lambda starts in [0.20, 0.25] for both variants.
_DEFAULT_K_RANGE = {"in": (0.75, 0.80), "lambda_in": (0.20, 0.25)}


def check_fixed_value(value):
    """Validates a constant damping coefficient and returns it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            "A fixed damping value must be a real number in [0, 1]. "
            f"Received: value={value!r}"
        )
    value = float(value)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(
            "A fixed damping value must be finite and in [0, 1] "
            "(0 is a ResNet add, 1 drops the shortcut like a plain CNN). "
            f"Received: value={value!r}"
        )
    return value


@keras.saving.register_keras_serializable(package="keras_damped")
class DampedAdd(keras.layers.Layer):
    """Merges a residual branch and its shortcut with a damping coefficient.

    One forward-Euler step of the damped ODE `dx/dt = f(x) - lambda * x`
    (Yang et al., ICML 2020). Called on `[residual, shortcut]` like
    `keras.layers.Add`.

    Formula:
    ```python
    # variant="in"         (In-ResNet)
    lam = relu(1 - k)
    y = residual + (1 - lam) * shortcut
    # variant="lambda_in"  (lambda-In-ResNet)
    lam = relu(k)
    y = (1 + lam) * residual + (1 - lam) * shortcut
    # variant="fixed"      (constant lam = value, nothing trainable)
    y = residual + (1 - value) * shortcut
    ```
    `lam = 0` is exactly a ResNet add and `lam = 1` exactly drops the
    shortcut (a plain CNN layer). `k` is the raw trainable weight, stored
    as in the reference code so weights port one to one; it is always
    float32, also under mixed precision.

    Args:
        variant: `"in"`, `"lambda_in"` or `"fixed"`.
        value: the constant lambda in [0, 1]; only with `variant="fixed"`.
        per_channel: one `k` per channel (last axis) instead of one scalar.
        initializer: initializer for `k`. Defaults to U(0.75, 0.80) for
            `"in"` and U(0.20, 0.25) for `"lambda_in"`, as in the paper.
        regularizer: regularizer applied to `k`.
        constraint: constraint applied to `k` after each update.
        **kwargs: base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list `[residual, shortcut]` of two tensors of one shape.
        residual_scaled: the residual is already multiplied by
            `residual_scale()` (`"lambda_in"` only; see that method).

    Returns:
        A tensor of the inputs' shape.

    Example:
    ```python
    x = keras.Input((8, 8, 16))
    y = keras.layers.Conv2D(16, 3, padding="same")(x)
    out = DampedAdd("in")([y, x])
    ```

    Reference:
        Z. Yang, Y. Liu, C. Bao, Z. Shi. Interpolation between Residual and
        Non-Residual Networks. ICML 2020.
    """

    def __init__(
        self,
        variant="in",
        value=None,
        per_channel=False,
        initializer=None,
        regularizer=None,
        constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError(
                f"Unknown DampedAdd variant. Expected one of {VARIANTS}. "
                f"Received: variant={variant!r}"
            )
        if variant == "fixed":
            if value is None:
                raise ValueError(
                    "variant='fixed' needs a damping value in [0, 1]. "
                    "Received: value=None"
                )
            value = check_fixed_value(value)
            if per_channel or initializer or regularizer or constraint:
                raise ValueError(
                    "variant='fixed' has no trainable weight, so per_channel, "
                    "initializer, regularizer and constraint do not apply. "
                    f"Received: per_channel={per_channel!r}, "
                    f"initializer={initializer!r}, regularizer={regularizer!r}, "
                    f"constraint={constraint!r}"
                )
        elif value is not None:
            raise ValueError(
                f"value is only used with variant='fixed'. Received: "
                f"variant={variant!r}, value={value!r}"
            )
        self.variant = variant
        self.value = value
        self.per_channel = bool(per_channel)
        if initializer is None and variant != "fixed":
            low, high = _DEFAULT_K_RANGE[variant]
            initializer = initializers.RandomUniform(low, high)
        self.initializer = initializers.get(initializer) if initializer else None
        self.regularizer = regularizers.get(regularizer)
        self.constraint = constraints.get(constraint)

    def build(self, input_shape):
        if (
            not isinstance(input_shape, (list, tuple))
            or len(input_shape) != 2
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            raise ValueError(
                "DampedAdd is called on a list of two tensors "
                f"[residual, shortcut]. Received: input_shape={input_shape}"
            )
        residual, shortcut = (tuple(s) for s in input_shape)
        compatible = len(residual) == len(shortcut) and all(
            a is None or b is None or a == b for a, b in zip(residual, shortcut)
        )
        if not compatible:
            raise ValueError(
                "DampedAdd needs a residual and a shortcut of the same shape. "
                f"Received: residual shape={residual}, shortcut shape={shortcut}"
            )
        if self.variant != "fixed":
            channels = residual[-1] if residual[-1] is not None else shortcut[-1]
            if self.per_channel and channels is None:
                raise ValueError(
                    "per_channel=True needs a known channel (last) dimension. "
                    f"Received: input shape={residual}"
                )
            self.k = self.add_weight(
                shape=(channels,) if self.per_channel else (),
                name="k",
                initializer=self.initializer,
                regularizer=self.regularizer,
                constraint=self.constraint,
                dtype="float32",
                autocast=False,
            )

    def _lambda(self, k):
        if self.variant == "in":
            return ops.relu(1.0 - k)
        return ops.relu(k)

    @property
    def damping(self):
        """The current lambda: a float for `"fixed"`, else a float32 tensor."""
        if self.variant == "fixed":
            return self.value
        return self._lambda(ops.convert_to_tensor(self.k))

    def residual_scale(self):
        """`1 + lambda` of `"lambda_in"` as float32 (scalar or per channel), else None.

        A block can fold this factor into the kernel of the convolution that
        produces the residual (a multiply the size of the weights instead of
        one the size of the activations, forward and backward) and then call
        this layer with `residual_scaled=True`.
        """
        if self.variant != "lambda_in":
            return None
        return 1.0 + self._lambda(self.k)

    def call(self, inputs, residual_scaled=False):
        residual, shortcut = inputs
        if self.variant == "fixed":
            # Exact special cases: no multiply at all for ResNet and CNN.
            if self.value == 0.0:
                return ops.add(residual, shortcut)
            if self.value == 1.0:
                return residual
            return ops.add(residual, ops.multiply(1.0 - self.value, shortcut))
        lam = self._lambda(self.k)
        keep = ops.cast(1.0 - lam, shortcut.dtype)
        if self.variant == "in" or residual_scaled:
            return ops.add(residual, ops.multiply(keep, shortcut))
        boost = ops.cast(1.0 + lam, residual.dtype)
        return ops.add(ops.multiply(boost, residual), ops.multiply(keep, shortcut))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "variant": self.variant,
                "value": self.value,
                "per_channel": self.per_channel,
                "initializer": initializers.serialize(self.initializer)
                if self.initializer
                else None,
                "regularizer": regularizers.serialize(self.regularizer),
                "constraint": constraints.serialize(self.constraint),
            }
        )
        return config
