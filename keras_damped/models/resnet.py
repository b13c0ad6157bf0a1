"""The CIFAR pre-activation ResNet with damped identity blocks."""

from keras_damped.layers.blocks import BasicBlock
from keras_damped.layers.blocks import BottleneckBlock
from keras_damped.layers.blocks import check_padding
from keras_damped.models import backbone

BLOCK_KINDS = ("auto", "basic", "bottleneck")


def resolve_block(depth, block):
    """Returns ("basic" or "bottleneck", blocks per stage) for a depth."""
    if block not in BLOCK_KINDS:
        raise ValueError(
            f"Unknown block. Expected one of {BLOCK_KINDS}. Received: block={block!r}"
        )
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8:
        raise ValueError(
            "depth must be an integer 6n+2 (basic blocks: 20, 32, 44, 56, 110) "
            f"or 9n+2 (bottlenecks: 164) with n >= 1. Received: depth={depth!r}"
        )
    basic_ok = (depth - 2) % 6 == 0
    bottleneck_ok = (depth - 2) % 9 == 0 and depth >= 11
    if block == "auto":
        # The reference uses bottlenecks from 164 layers up.
        block = (
            "bottleneck"
            if bottleneck_ok and (depth >= 164 or not basic_ok)
            else ("basic" if basic_ok else None)
        )
    if block == "basic" and basic_ok:
        return "basic", (depth - 2) // 6
    if block == "bottleneck" and bottleneck_ok:
        return "bottleneck", (depth - 2) // 9
    raise ValueError(
        "depth must be 6n+2 for basic blocks (20, 32, 44, 56, 110) or 9n+2 for "
        f"bottleneck blocks (29, 164), n >= 1. Received: depth={depth!r}, "
        f"block={block!r}"
    )


def DampedResNet(
    depth=110,
    num_classes=10,
    input_shape=(32, 32, 3),
    damping="in",
    block="auto",
    normalization="cifar10",
    damping_options=None,
    classifier_activation=None,
    padding="symmetric",
    name=None,
):
    """The CIFAR pre-activation ResNet of the paper, with damped blocks.

    Stem Conv3x3(16); three stages of 16, 32, 64 base filters with strides
    1, 2, 2; head BN-ReLU-global average pool-Dense. Every block whose
    shortcut is the identity, except the first block of each stage, merges
    with `DampedAdd` according to `damping`; the others are plain residual
    blocks (docs/paper.md section 2).

    Args:
        depth: 6n+2 with basic blocks, 9n+2 with bottleneck blocks.
        num_classes: size of the output layer.
        input_shape: (height, width, channels) of pixels in [0, 1]; height and
            width at least 4 (or None).
        damping: `"in"`, `"lambda_in"`, `None`/`"resnet"`, `"cnn"` or a float
            lambda in [0, 1], applied to the damped blocks.
        block: `"auto"` (bottlenecks for depth >= 164), `"basic"` or
            `"bottleneck"`.
        normalization: `"cifar10"`, `"cifar100"`, `"fashion_mnist"`, a
            (mean, std) pair or None; applied by the model's first layer.
        damping_options: extra `DampedAdd` arguments (`per_channel`,
            `initializer`, `regularizer`, `constraint`).
        classifier_activation: activation of the output layer; None gives
            logits (what attacks need).
        padding: `"symmetric"` (the reference's: every strided 3x3
            convolution pads 1 pixel on each side) or `"same"` (TensorFlow's
            shifted grid; only to rebuild models saved before the fix).
        name: model name; defaults to e.g. `"in_resnet110"`.

    Returns:
        A functional `keras.Model` with layers `stem_conv`,
        `stage{s}_block{b}` (each with its `DampedAdd` as `.damped_add`),
        `head_bn`, `avg_pool` and `predictions`.

    Example:
    ```python
    model = DampedResNet(depth=20, damping="in")
    logits = model(np.random.rand(2, 32, 32, 3))
    ```
    """
    kind, blocks = resolve_block(depth, block)
    backbone.check_positive_int("num_classes", num_classes)
    input_shape = backbone.check_input_shape(input_shape)
    backbone.check_damping(damping)
    check_padding(padding)
    name = name or f"{backbone.name_prefix(damping)}resnet{depth}"

    return backbone.build_classifier(
        input_shape,
        num_classes,
        normalization,
        stem_filters=16,
        stages=[(blocks, 1), (blocks, 2), (blocks, 2)],
        make_block=_block_maker(kind, damping, damping_options, padding),
        classifier_activation=classifier_activation,
        name=name,
    )


def _block_maker(kind, damping, damping_options, padding):
    """`make_block(stage, index, stride, is_first, name)` for
    `backbone.build_classifier`: a basic or bottleneck block of 16 x 2^(stage
    - 1) base filters, damped unless it is the first of its stage."""

    def make_block(stage, index, stride, is_first, block_name):
        filters = 16 * 2 ** (stage - 1)
        block_damping = None if is_first else damping
        options = None if is_first else damping_options
        if kind == "basic":
            return BasicBlock(
                filters,
                stride,
                block_damping,
                options,
                padding=padding,
                name=block_name,
            )
        return BottleneckBlock(
            filters,
            stride,
            damping=block_damping,
            damping_options=options,
            padding=padding,
            name=block_name,
        )

    return make_block
