"""Shared pieces of the CIFAR-style pre-activation backbones."""

import math

import keras

from keras_damped.layers.blocks import conv_initializer
from keras_damped.layers.blocks import damping_to_add_kwargs
from keras_damped.validators import positive_int

# Per-channel (mean, std) of the training sets, for pixels in [0, 1].
NORMALIZATIONS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
}
# Two stride-2 stages must leave at least one pixel of a 4x4 input.
MIN_SPATIAL = 4


def check_positive_int(name, value):
    return positive_int(name, value)


def check_input_shape(input_shape):
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 3:
        raise ValueError(
            "input_shape must be (height, width, channels). "
            f"Received: input_shape={input_shape!r}"
        )
    height, width, channels = shape
    for size in (height, width):
        if size is not None and (not isinstance(size, int) or size < MIN_SPATIAL):
            raise ValueError(
                f"The input is too small for the network: height and width "
                f"must be at least {MIN_SPATIAL} to survive two stride-2 stages "
                f"(or None). Received: input_shape={input_shape!r}"
            )
    check_positive_int("channels", channels)
    return shape


def resolve_normalization(normalization, channels):
    """Returns (mean, std) tuples of length `channels`, or None."""
    if normalization is None or normalization == "none":
        return None
    if isinstance(normalization, str):
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"Unknown normalization. Expected one of "
                f"{sorted(NORMALIZATIONS)}, None or a (mean, std) pair. "
                f"Received: normalization={normalization!r}"
            )
        mean, std = NORMALIZATIONS[normalization]
    else:
        try:
            mean, std = normalization
        except (TypeError, ValueError):
            raise ValueError(
                "normalization must be a name, None or a (mean, std) pair. "
                f"Received: normalization={normalization!r}"
            ) from None
    mean = [float(m) for m in ([mean] if isinstance(mean, (int, float)) else mean)]
    std = [float(s) for s in ([std] if isinstance(std, (int, float)) else std)]
    if len(mean) == 1 and len(std) == 1 and channels > 1:
        mean, std = mean * channels, std * channels
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"normalization has {len(mean)} mean and {len(std)} std values for "
            f"an input with {channels} channels. Received: "
            f"normalization={normalization!r}"
        )
    if not all(math.isfinite(s) and s > 0 for s in std):
        raise ValueError(
            f"normalization std values must be positive. Received: std={std}"
        )
    return tuple(mean), tuple(std)


def check_damping(damping):
    """Validates the model-level damping argument (same choices as blocks)."""
    damping_to_add_kwargs(damping)
    return damping


def name_prefix(damping):
    """`in_`, `lambda_in_`, `cnn_`, `damped_` (a float) or nothing (ResNet)."""
    if damping is None or damping == "resnet":
        return ""
    if isinstance(damping, str):
        return f"{damping}_"
    return "damped_"


def build_classifier(
    input_shape,
    num_classes,
    normalization,
    stem_filters,
    stages,
    make_block,
    classifier_activation,
    name,
):
    """Builds input -> normalisation -> stem -> stages -> head as a functional model.

    `stages` is a list of (number of blocks, stride) per stage; `make_block`
    is called as `make_block(stage, index, stride, is_first, name)` and
    returns the block layer.
    """
    dtype = keras.config.dtype_policy()
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = inputs
    stats = resolve_normalization(normalization, input_shape[-1])
    if stats is not None:
        mean, std = stats
        x = keras.layers.Normalization(
            mean=mean, variance=[s * s for s in std], name="normalization"
        )(x)
    x = keras.layers.Conv2D(
        stem_filters,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer=conv_initializer(),
        name="stem_conv",
    )(x)
    for stage, (blocks, stride) in enumerate(stages, 1):
        for index in range(1, blocks + 1):
            block = make_block(
                stage,
                index,
                stride if index == 1 else 1,
                index == 1,
                f"stage{stage}_block{index}",
            )
            x = block(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="head_bn")(x)
    x = keras.layers.Activation("relu", name="head_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(
        num_classes,
        activation=classifier_activation,
        dtype="float32" if dtype.name.startswith("mixed") else None,
        name="predictions",
    )(x)
    return keras.Model(inputs, outputs, name=name)
