"""The CIFAR ResNeXt-29 (Xie et al. 2017) with damped identity blocks."""

from keras_damped.layers.blocks import BottleneckBlock
from keras_damped.layers.blocks import check_padding
from keras_damped.models import backbone


def DampedResNeXt(
    depth=29,
    cardinality=8,
    bottleneck_width=64,
    num_classes=10,
    input_shape=(32, 32, 3),
    damping="in",
    normalization="cifar10",
    damping_options=None,
    classifier_activation=None,
    padding="symmetric",
    name=None,
):
    """The CIFAR ResNeXt of Xie et al. (2017), pre-activation, damped.

    Stem Conv3x3(64); three stages of (depth - 2) / 9 bottleneck blocks with
    output widths 256, 512, 1024 and strides 1, 2, 2; the grouped 3x3
    convolution has `cardinality * bottleneck_width` channels in the first
    stage, doubling per stage. Identity-shortcut blocks other than the first
    of each stage are damped, as in `DampedResNet`.

    Args:
        depth: 9n+2 (29 in the paper).
        cardinality: groups of the 3x3 convolution (8 or 16 in the paper).
        bottleneck_width: channels per group in the first stage (64).
        num_classes, input_shape, damping, normalization, damping_options,
        classifier_activation, padding: as in `DampedResNet`.
        name: model name; defaults to e.g. `"in_resnext29_8x64d"`.

    Returns:
        A functional `keras.Model`.

    Example:
    ```python
    model = DampedResNeXt(cardinality=8, bottleneck_width=64, damping="in")
    ```
    """
    if (
        isinstance(depth, bool)
        or not isinstance(depth, int)
        or depth < 11
        or ((depth - 2) % 9)
    ):
        raise ValueError(
            "ResNeXt depth must be an integer 9n+2 with n >= 1 (29 in the "
            f"paper). Received: depth={depth!r}"
        )
    backbone.check_positive_int("cardinality", cardinality)
    backbone.check_positive_int("bottleneck_width", bottleneck_width)
    backbone.check_positive_int("num_classes", num_classes)
    input_shape = backbone.check_input_shape(input_shape)
    backbone.check_damping(damping)
    check_padding(padding)
    blocks = (depth - 2) // 9
    name = name or (
        f"{backbone.name_prefix(damping)}resnext{depth}_"
        f"{cardinality}x{bottleneck_width}d"
    )

    make_block = _block_maker(
        cardinality, bottleneck_width, damping, damping_options, padding
    )
    return backbone.build_classifier(
        input_shape,
        num_classes,
        normalization,
        stem_filters=64,
        stages=[(blocks, 1), (blocks, 2), (blocks, 2)],
        make_block=make_block,
        classifier_activation=classifier_activation,
        name=name,
    )


def _block_maker(cardinality, bottleneck_width, damping, damping_options, padding):
    """`make_block` for `backbone.build_classifier`: a grouped bottleneck
    block of 64 x 2^(stage - 1) filters, damped unless first in its stage."""

    def make_block(stage, index, stride, is_first, block_name):
        scale = 2 ** (stage - 1)
        return BottleneckBlock(
            64 * scale,
            stride,
            cardinality=cardinality,
            bottleneck_width=bottleneck_width * scale,
            damping=None if is_first else damping,
            damping_options=None if is_first else damping_options,
            padding=padding,
            name=block_name,
        )

    return make_block
