"""Pre-activation residual blocks whose merge is a `DampedAdd`."""

import keras
from keras import ops

from keras_damped.layers.damped_add import DampedAdd
from keras_damped.layers.damped_add import check_fixed_value

DAMPING_CHOICES = (None, "resnet", "in", "lambda_in", "cnn", "a float in [0, 1]")
_DAMPING_OPTION_KEYS = ("per_channel", "initializer", "regularizer", "constraint")
# How a strided k x k convolution pads. "symmetric": (k - 1) // 2 on every
# side, as PyTorch's `padding=1` in the reference. "same": TensorFlow's
# "same", which at stride 2 on an even size pads 0 before and 1 after (a grid
# shifted by one pixel); blocks saved before the padding was fixed used it.
PADDINGS = ("symmetric", "same")
LEGACY_PADDING = "same"


def check_padding(padding):
    if padding not in PADDINGS:
        raise ValueError(
            f"Unknown padding. Expected one of {PADDINGS} (symmetric is the "
            f"reference's; same is TensorFlow's, kept for models saved before "
            f"it was fixed). Received: padding={padding!r}"
        )
    return padding


def damping_to_add_kwargs(damping):
    """Maps a block's `damping` argument to `DampedAdd` keyword arguments."""
    if damping is None or damping == "resnet":
        return {"variant": "fixed", "value": 0.0}
    if damping == "cnn":
        return {"variant": "fixed", "value": 1.0}
    if damping in ("in", "lambda_in"):
        return {"variant": damping}
    if isinstance(damping, (int, float)) and not isinstance(damping, bool):
        return {"variant": "fixed", "value": check_fixed_value(damping)}
    raise ValueError(
        f"Unknown damping. Expected one of {DAMPING_CHOICES}. "
        f"Received: damping={damping!r}"
    )


def is_damped(damping):
    """True when `damping` makes the merge differ from a plain ResNet add."""
    kwargs = damping_to_add_kwargs(damping)
    return not (kwargs["variant"] == "fixed" and kwargs["value"] == 0.0)


def conv_initializer():
    """He initialisation with fan-out, as in the reference backbone."""
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_out", distribution="untruncated_normal"
    )


def _serialize_option(value):
    if value is None or isinstance(value, (bool, int, float, str, dict)):
        return value
    return keras.saving.serialize_keras_object(value)


def _scaled_conv(conv, inputs, scale):
    """`conv(inputs) * scale` (scale per output channel), as one convolution."""
    work = keras.backend.result_type(conv.kernel.dtype, "float32")
    kernel = ops.cast(ops.cast(conv.kernel, work) * ops.cast(scale, work), inputs.dtype)
    return ops.conv(
        inputs,
        kernel,
        strides=conv.strides,
        padding=conv.padding,
        data_format=conv.data_format,
        dilation_rate=conv.dilation_rate,
    )


class _PreActivationBlock(keras.layers.Layer):
    """Shared machinery: BN-ReLU-Conv units, shortcut and the damped merge."""

    def __init__(
        self,
        filters,
        stride=1,
        damping=None,
        damping_options=None,
        padding="symmetric",
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_padding(padding)
        if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
            raise ValueError(
                f"filters must be a positive integer. Received: filters={filters!r}"
            )
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2. Received: stride={stride!r}")
        self._add_kwargs = damping_to_add_kwargs(damping)
        damping_options = dict(damping_options or {})
        unknown = sorted(set(damping_options) - set(_DAMPING_OPTION_KEYS))
        if unknown:
            raise ValueError(
                f"Unknown damping_options {unknown}. Expected keys among "
                f"{_DAMPING_OPTION_KEYS}. Received: damping_options={damping_options}"
            )
        self.filters = filters
        self.stride = stride
        self.damping = damping
        self.damping_options = damping_options
        self.padding = padding
        self.has_projection = None

    @property
    def out_channels(self):
        raise NotImplementedError

    def _unit_specs(self):
        """(filters, kernel size, stride, groups) of each BN-ReLU-Conv unit."""
        raise NotImplementedError

    def _bn(self, name):
        return keras.layers.BatchNormalization(
            momentum=0.9, epsilon=1e-5, dtype=self.dtype_policy, name=name
        )

    def _pads(self, size, stride):
        """Explicit (before, after) padding of a unit, or None for "same"."""
        if self.padding == "symmetric" and stride > 1 and size > 1:
            return ((size - 1) // 2, (size - 1) // 2)
        return None

    def _conv(self, filters, size, stride, groups, name):
        # At stride 1 (and for 1x1 kernels) "same" already pads symmetrically.
        return keras.layers.Conv2D(
            filters,
            size,
            strides=stride,
            padding="valid" if self._pads(size, stride) else "same",
            groups=groups,
            use_bias=False,
            kernel_initializer=conv_initializer(),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        self.has_projection = self.stride != 1 or input_shape[-1] != self.out_channels
        damped = self._add_kwargs != {"variant": "fixed", "value": 0.0}
        if self.has_projection and damped:
            raise ValueError(
                "Only blocks with an identity shortcut are damped (docs/paper.md "
                f"section 2); block {self.name!r} needs a projection shortcut "
                f"(input channels {input_shape[-1]} -> {self.out_channels}, "
                f"stride {self.stride}). Use damping=None for it. "
                f"Received: damping={self.damping!r}"
            )
        self.bns, self.convs, self.pads = [], [], []
        shape = input_shape
        for i, (filters, size, stride, groups) in enumerate(self._unit_specs(), 1):
            bn = self._bn(f"bn{i}")
            conv = self._conv(filters, size, stride, groups, f"conv{i}")
            pads = self._pads(size, stride)
            bn.build(shape)
            padded = shape
            if pads:
                padded = tuple(None if d is None else d + sum(pads) for d in shape[1:3])
                padded = (shape[0], *padded, shape[3])
            conv.build(padded)
            shape = conv.compute_output_shape(padded)
            self.bns.append(bn)
            self.convs.append(conv)
            self.pads.append(pads)
        if self.has_projection:
            self.shortcut_bn = self._bn("shortcut_bn")
            self.shortcut_conv = self._conv(
                self.out_channels, 1, self.stride, 1, "shortcut_conv"
            )
            self.shortcut_bn.build(input_shape)
            self.shortcut_conv.build(input_shape)
        options = self.damping_options if damped else {}
        self.damped_add = DampedAdd(
            **self._add_kwargs, **options, dtype=self.dtype_policy, name="add"
        )
        self.damped_add.build([shape, shape])

    def call(self, inputs, training=None):
        # lambda-In: (1 + lambda) scales the last convolution's kernel, not
        # its output, so the damping costs no extra pass over the activations.
        scale = self.damped_add.residual_scale()
        x = inputs
        last = len(self.convs) - 1
        for i, (bn, conv, pads) in enumerate(zip(self.bns, self.convs, self.pads)):
            h = ops.relu(bn(x, training=training))
            if pads:
                h = ops.pad(h, ((0, 0), pads, pads, (0, 0)))
            x = conv(h) if i < last or scale is None else _scaled_conv(conv, h, scale)
        if self.has_projection:
            shortcut = self.shortcut_conv(
                ops.relu(self.shortcut_bn(inputs, training=training))
            )
        else:
            shortcut = inputs
        return self.damped_add([x, shortcut], residual_scaled=scale is not None)

    def compute_output_shape(self, input_shape):
        def down(size):
            return None if size is None else -(-size // self.stride)

        batch, height, width, _ = input_shape
        return (batch, down(height), down(width), self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "stride": self.stride,
                "damping": self.damping,
                "padding": self.padding,
                "damping_options": {
                    key: _serialize_option(value)
                    for key, value in self.damping_options.items()
                },
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Blocks saved before `padding` existed used TensorFlow's "same".
        config = dict(config)
        config.setdefault("padding", LEGACY_PADDING)
        return super().from_config(config)


@keras.saving.register_keras_serializable(package="keras_damped")
class BasicBlock(_PreActivationBlock):
    """Pre-activation basic block: BN-ReLU-Conv3x3(stride)-BN-ReLU-Conv3x3.

    The shortcut is the identity, or BN-ReLU-Conv1x1(stride) where the stride
    or the width changes; the two are merged by a `DampedAdd`.

    Args:
        filters: output channels of both convolutions.
        stride: 1, or 2 to halve the spatial size.
        damping: `None`/`"resnet"` (plain add), `"in"`, `"lambda_in"`,
            `"cnn"` (lambda = 1) or a float lambda in [0, 1]. Blocks with a
            projection shortcut are never damped.
        damping_options: extra `DampedAdd` arguments for a trainable damping
            (`per_channel`, `initializer`, `regularizer`, `constraint`).
        padding: how the strided 3x3 convolution pads: `"symmetric"` (1 pixel
            on every side, as the reference's PyTorch `padding=1`) or
            `"same"` (TensorFlow's, 0 before and 1 after on an even size; what
            blocks saved before this option existed use when loaded).
        **kwargs: base layer keyword arguments.

    Call arguments:
        inputs: a 4D channels-last tensor.
        training: whether batch normalisation uses batch statistics.

    Example:
    ```python
    y = BasicBlock(16, damping="in")(keras.Input((32, 32, 16)))
    ```
    """

    @property
    def out_channels(self):
        return self.filters

    def _unit_specs(self):
        return [(self.filters, 3, self.stride, 1), (self.filters, 3, 1, 1)]


@keras.saving.register_keras_serializable(package="keras_damped")
class BottleneckBlock(_PreActivationBlock):
    """Pre-activation bottleneck block; with `cardinality > 1` a ResNeXt block.

    BN-ReLU-Conv1x1(width)-BN-ReLU-Conv3x3(width, stride, groups=cardinality)
    -BN-ReLU-Conv1x1(expansion * filters), merged with its shortcut (identity,
    or BN-ReLU-Conv1x1(stride)) by a `DampedAdd`.

    Args:
        filters: base width; the block outputs `expansion * filters` channels.
        stride: 1, or 2 to halve the spatial size.
        cardinality: number of groups of the 3x3 convolution (1: ResNet).
        bottleneck_width: channels per group; the inner width is then
            `cardinality * bottleneck_width`. `None` uses `filters`.
        expansion: output channels per base filter (4 in the paper).
        damping: see `BasicBlock`.
        damping_options: see `BasicBlock`.
        padding: see `BasicBlock` (applies to the strided grouped 3x3).
        **kwargs: base layer keyword arguments.

    Example:
    ```python
    y = BottleneckBlock(64, cardinality=8, bottleneck_width=64)(
        keras.Input((32, 32, 64)))
    ```
    """

    def __init__(
        self,
        filters,
        stride=1,
        cardinality=1,
        bottleneck_width=None,
        expansion=4,
        damping=None,
        damping_options=None,
        padding="symmetric",
        **kwargs,
    ):
        super().__init__(filters, stride, damping, damping_options, padding, **kwargs)
        for name, value in (("cardinality", cardinality), ("expansion", expansion)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"{name} must be a positive integer. Received: {name}={value!r}"
                )
        if bottleneck_width is not None and (
            isinstance(bottleneck_width, bool)
            or not isinstance(bottleneck_width, int)
            or bottleneck_width < 1
        ):
            raise ValueError(
                "bottleneck_width must be a positive integer or None. "
                f"Received: bottleneck_width={bottleneck_width!r}"
            )
        width = filters if bottleneck_width is None else cardinality * bottleneck_width
        if width % cardinality:
            raise ValueError(
                f"cardinality must divide the bottleneck width {width}. "
                f"Received: cardinality={cardinality}"
            )
        self.cardinality = cardinality
        self.bottleneck_width = bottleneck_width
        self.expansion = expansion
        self.width = width

    @property
    def out_channels(self):
        return self.expansion * self.filters

    def _unit_specs(self):
        return [
            (self.width, 1, 1, 1),
            (self.width, 3, self.stride, self.cardinality),
            (self.out_channels, 1, 1, 1),
        ]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "cardinality": self.cardinality,
                "bottleneck_width": self.bottleneck_width,
                "expansion": self.expansion,
            }
        )
        return config
