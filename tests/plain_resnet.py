"""An independent plain-Keras pre-activation ResNet (keras.layers.Add only).

Written without keras_damped so that the damped models can be checked
against it on identical weights. Strided 3x3 convolutions pad explicitly
(`ZeroPadding2D(1)` then "valid"), as the reference's PyTorch `padding=1`
and `keras.applications` do, not with TensorFlow's "same" (0 before and 1
after at stride 2 on an even size).
"""

import keras


def plain_preact_resnet(depth, num_classes, input_shape, drop_damped_shortcuts=False):
    """CIFAR pre-activation ResNet with basic blocks, built from Keras layers.

    With `drop_damped_shortcuts`, the blocks that keras_damped damps (all but
    the first of each stage) have no shortcut: the plain CNN of lambda = 1.
    """
    n = (depth - 2) // 6
    inputs = keras.Input(input_shape)
    x = keras.layers.Normalization(
        mean=(0.4914, 0.4822, 0.4465),
        variance=[s**2 for s in (0.2023, 0.1994, 0.2010)],
    )(inputs)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(x)
    for stage in range(1, 4):
        filters = 16 * 2 ** (stage - 1)
        for index in range(1, n + 1):
            name = f"stage{stage}_block{index}"
            stride = 2 if stage > 1 and index == 1 else 1
            h = x
            for unit, unit_stride in ((1, stride), (2, 1)):
                h = keras.layers.BatchNormalization(
                    momentum=0.9, epsilon=1e-5, name=f"{name}_bn{unit}"
                )(h)
                h = keras.layers.ReLU()(h)
                h = keras.layers.ZeroPadding2D(1)(h)
                h = keras.layers.Conv2D(
                    filters,
                    3,
                    strides=unit_stride,
                    padding="valid",
                    use_bias=False,
                    name=f"{name}_conv{unit}",
                )(h)
            if x.shape[-1] != filters or stride != 1:
                s = keras.layers.BatchNormalization(
                    momentum=0.9, epsilon=1e-5, name=f"{name}_shortcut_bn"
                )(x)
                s = keras.layers.ReLU()(s)
                s = keras.layers.Conv2D(
                    filters,
                    1,
                    strides=stride,
                    use_bias=False,
                    name=f"{name}_shortcut_conv",
                )(s)
            else:
                s = x
            if drop_damped_shortcuts and index > 1:
                x = h
            else:
                x = keras.layers.Add()([h, s])
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name="head_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs)


def copy_weights_into_plain(damped, plain):
    """Copies every weight of a keras_damped ResNet into `plain_preact_resnet`."""
    for name in ("stem_conv", "head_bn", "predictions"):
        plain.get_layer(name).set_weights(damped.get_layer(name).get_weights())
    for layer in damped.layers:
        if not layer.name.startswith("stage"):
            continue
        for i, (bn, conv) in enumerate(zip(layer.bns, layer.convs), 1):
            plain.get_layer(f"{layer.name}_bn{i}").set_weights(bn.get_weights())
            plain.get_layer(f"{layer.name}_conv{i}").set_weights(conv.get_weights())
        if layer.has_projection:
            for part in ("shortcut_bn", "shortcut_conv"):
                plain.get_layer(f"{layer.name}_{part}").set_weights(
                    getattr(layer, part).get_weights()
                )
