import keras
import numpy as np
import pytest
import tensorflow as tf
from plain_resnet import copy_weights_into_plain
from plain_resnet import plain_preact_resnet

from keras_damped import BasicBlock
from keras_damped import BottleneckBlock
from keras_damped import DampedAdd
from keras_damped import DampedResNet
from keras_damped import DampedResNeXt
from keras_damped import create_model
from keras_damped import damped_adds
from keras_damped import damping_values
from keras_damped import list_models


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def unweighted(build, *args, **kwargs):
    """`build(*args, **kwargs)` for a test that reads only the structure and
    the weights' shapes: built in a stateless scope, which leaves the
    weights uninitialised (as `keras-damped models` builds; the deep presets
    in half the time)."""
    with keras.StatelessScope(initialize_variables=False):
        return build(*args, **kwargs)


def randomise_batchnorm(model, rng):
    """Gives every BN non-trivial statistics so inference mode is a real test."""
    for weight in model.weights:
        if any(part in weight.path for part in ("gamma", "beta", "moving_mean")):
            weight.assign(
                rng.uniform(-0.2, 0.2, weight.shape)
                + (1.0 if "gamma" in weight.path else 0.0)
            )
        elif "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.8, 1.5, weight.shape))


def outputs_and_input_gradients(model, x, probe):
    results = []
    for training in (False, True):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            logits = model(xt, training=training)
            scalar = tf.reduce_sum(logits * probe)
        results.append((logits.numpy(), tape.gradient(scalar, xt).numpy()))
    return results


@pytest.mark.numerics
@pytest.mark.parametrize("value,drop", [(0.0, False), (1.0, True)])
def test_fixed_lambda_equals_plain_keras_network(value, drop, rng):
    # float64, so that the two networks may differ only by float64 rounding.
    keras.config.set_dtype_policy("float64")
    damped = DampedResNet(20, damping=value, input_shape=(16, 16, 3))
    plain = plain_preact_resnet(20, 10, (16, 16, 3), drop_damped_shortcuts=drop)
    randomise_batchnorm(damped, rng)
    copy_weights_into_plain(damped, plain)
    assert trainable_count(damped) == trainable_count(plain)
    x = rng.uniform(0, 1, (4, 16, 16, 3))
    probe = rng.normal(size=(4, 10))
    ours = outputs_and_input_gradients(damped, x, probe)
    theirs = outputs_and_input_gradients(plain, x, probe)
    for (out_a, grad_a), (out_b, grad_b) in zip(ours, theirs):
        assert out_a.dtype == np.float64
        assert np.abs(out_a - out_b).max() <= 1e-12
        assert np.abs(grad_a - grad_b).max() <= 1e-12
        assert np.abs(grad_a).max() > 0


@pytest.mark.numerics
def test_in_resnet_differs_from_resnet_only_by_damping(rng):
    """An In-ResNet with k = 1 (lambda = 0) is exactly the ResNet again."""
    damped = DampedResNet(20, damping="in", input_shape=(8, 8, 3))
    plain = plain_preact_resnet(20, 10, (8, 8, 3))
    copy_weights_into_plain(damped, plain)
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    assert np.abs(damped(x) - plain(x)).max() > 1e-3  # lambda ~ 0.2 matters
    for add in damped_adds(damped, trainable_only=True).values():
        add.k.assign(1.0)
    np.testing.assert_allclose(damped(x), plain(x), atol=1e-5)


@pytest.mark.parametrize(
    "name,count",
    [
        ("resnet20", 272_378),
        ("in_resnet20", 272_384),
        ("resnet110", 1_730_618),
        ("in_resnet110", 1_730_669),
        ("resnet164", 1_703_674),
    ],
)
def test_parameter_counts_match_the_paper(name, count):
    assert trainable_count(unweighted(create_model, name)) == count


@pytest.mark.parametrize("cardinality,expected", [(8, 34.4e6), (16, 68.1e6)])
def test_resnext29_parameter_count(cardinality, expected):
    model = unweighted(create_model, f"in_resnext29_{cardinality}x64d")
    assert abs(trainable_count(model) - expected) / expected < 0.02


@pytest.mark.parametrize(
    "name,damped,blocks",
    [
        ("in_resnet20", 6, 9),
        ("lambda_in_resnet110", 51, 54),
        ("in_resnet164", 51, 54),
        ("in_resnext29_8x64d", 6, 9),
        ("cnn20", 6, 9),
        ("resnet20", 0, 9),
    ],
)
def test_only_identity_blocks_after_the_first_of_a_stage_are_damped(
    name, damped, blocks
):
    model = unweighted(create_model, name, input_shape=(8, 8, 3))
    adds = damped_adds(model)
    assert len(adds) == blocks
    assert len(damping_values(model)) == damped
    for block_name, add in adds.items():
        block = model.get_layer(block_name)
        first = block_name.endswith("_block1")
        if first or block.has_projection:
            assert add.variant == "fixed" and add.value == 0.0
        assert block.has_projection == (
            first and ("stage1" not in block_name or isinstance(block, BottleneckBlock))
        )


def test_readable_layer_names():
    model = create_model("in_resnet56", input_shape=(8, 8, 3))
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["pixels", "normalization", "stem_conv"]
    assert "stage2_block5" in names and names[-1] == "predictions"
    assert model.get_layer("stage2_block5").damped_add.name == "add"
    assert list(damping_values(model))[0] == "stage1_block2"


def test_initial_lambdas_follow_the_paper():
    for name in ("in_resnet56", "lambda_in_resnet56"):
        lams = np.array(list(damping_values(create_model(name)).values()))
        assert lams.min() >= 0.2 - 1e-6 and lams.max() <= 0.25 + 1e-6
    cnn = damping_values(create_model("cnn20", input_shape=(8, 8, 3)))
    assert set(np.array(list(cnn.values())).tolist()) == {1.0}


def test_fashion_mnist_shape_and_custom_normalisation(rng):
    model = DampedResNet(20, input_shape=(28, 28, 1), normalization="fashion_mnist")
    assert model(rng.uniform(size=(2, 28, 28, 1))).shape == (2, 10)
    layer = model.get_layer("normalization")
    x = np.full((1, 28, 28, 1), 0.5, "float32")
    np.testing.assert_allclose(layer(x), (0.5 - 0.2860) / 0.3530, rtol=1e-5)
    custom = DampedResNet(20, input_shape=(8, 8, 2), normalization=((0.1, 0.2), (1, 2)))
    np.testing.assert_allclose(
        custom.get_layer("normalization")(np.ones((1, 8, 8, 2), "float32"))[0, 0, 0],
        [0.9, 0.4],
        rtol=1e-5,
    )
    none = DampedResNet(20, input_shape=(8, 8, 3), normalization=None)
    assert "normalization" not in [layer.name for layer in none.layers]


def test_per_channel_damping_options():
    model = DampedResNet(
        20, input_shape=(8, 8, 3), damping_options={"per_channel": True}
    )
    assert trainable_count(model) == 272_378 + 2 * 16 + 2 * 32 + 2 * 64
    assert damping_values(model)["stage3_block3"].shape == (64,)


def test_depth_164_uses_bottlenecks_and_29_too():
    def first_block(build, *args, **kwargs):
        return unweighted(build, *args, **kwargs).get_layer("stage1_block1")

    assert isinstance(first_block(create_model, "resnet164"), BottleneckBlock)
    assert isinstance(first_block(DampedResNet, 56), BasicBlock)
    assert isinstance(
        first_block(DampedResNet, 29, input_shape=(8, 8, 3)), BottleneckBlock
    )
    assert isinstance(
        first_block(DampedResNet, 56, block="bottleneck", input_shape=(8, 8, 3)),
        BottleneckBlock,
    )


def test_resnext_block_widths():
    model = DampedResNeXt(cardinality=2, bottleneck_width=4, input_shape=(8, 8, 3))
    widths = [
        (b.width, b.out_channels, b.cardinality)
        for b in (model.get_layer(f"stage{s}_block1") for s in (1, 2, 3))
    ]
    assert widths == [(8, 256, 2), (16, 512, 2), (32, 1024, 2)]
    conv = model.get_layer("stage2_block2").convs[1]
    assert conv.groups == 2 and tuple(conv.kernel.shape) == (3, 3, 8, 16)


def test_registry():
    names = list_models()
    for depth in (20, 32, 44, 56, 110, 164):
        for prefix in ("", "in_", "lambda_in_"):
            assert f"{prefix}resnet{depth}" in names
        assert f"cnn{depth}" in names
    for prefix in ("", "in_", "lambda_in_"):
        for size in ("8x64d", "16x64d"):
            assert f"{prefix}resnext29_{size}" in names
    assert list_models("lambda_in_resnet1*") == [
        "lambda_in_resnet110",
        "lambda_in_resnet164",
    ]
    model = create_model("lambda_in_resnet20", num_classes=3, input_shape=(8, 8, 3))
    assert model.name == "lambda_in_resnet20" and model.output_shape == (None, 3)


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: DampedResNet(21), "depth=21"),
        (lambda: DampedResNet(32, block="bottleneck"), "depth=32, block='bottleneck'"),
        (lambda: DampedResNet(20, block="wide"), "block='wide'"),
        (lambda: DampedResNet(20, damping="strong"), "damping='strong'"),
        (lambda: DampedResNet(20, damping=1.2), "value=1.2"),
        (lambda: DampedResNet(20, damping=float("nan")), "value=nan"),
        (lambda: DampedResNet(20, num_classes=0), "num_classes=0"),
        (lambda: DampedResNet(20, input_shape=(2, 2, 3)), "too small"),
        (lambda: DampedResNet(20, input_shape=(28, 28, 1)), "3 mean and 3 std"),
        (
            lambda: DampedResNet(20, normalization="imagenet"),
            "normalization='imagenet'",
        ),
        (lambda: DampedResNeXt(30), "depth=30"),
        (lambda: DampedResNeXt(cardinality=0), "cardinality=0"),
        (lambda: BottleneckBlock(10, cardinality=3), "cardinality=3"),
        (lambda: create_model("resnet21"), "resnet20.*name='resnet21'"),
        (
            lambda: BasicBlock(16, stride=2, damping="in")(keras.Input((8, 8, 16))),
            "identity shortcut",
        ),
        (lambda: BasicBlock(16, damping_options={"gain": 1}), "gain"),
    ],
)
def test_bad_input_raises_a_clear_error(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_block_config_round_trip():
    block = BottleneckBlock(
        8, stride=2, cardinality=2, bottleneck_width=4, damping=None, name="b"
    )
    clone = BottleneckBlock.from_config(block.get_config())
    assert clone.get_config() == block.get_config()
    damped = BasicBlock(
        8,
        damping="lambda_in",
        damping_options={
            "per_channel": True,
            "regularizer": keras.regularizers.L2(1e-4),
        },
    )
    clone = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(damped)
    )
    out = clone(keras.Input((4, 4, 8)))
    assert out.shape == (None, 4, 4, 8)
    assert clone.damped_add.k.shape == (8,) and clone.damped_add.regularizer
    assert isinstance(clone.damped_add, DampedAdd)


@pytest.mark.numerics
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("block_class", [BasicBlock, BottleneckBlock])
def test_lambda_in_block_folds_the_boost_into_the_kernel_exactly(
    block_class, per_channel, rng
):
    """(1 + lambda) scales the last kernel; the result is the paper's formula."""
    keras.config.set_dtype_policy("float64")
    kwargs = (
        {"cardinality": 2, "bottleneck_width": 4}
        if block_class is BottleneckBlock
        else {}
    )
    block = block_class(
        8, damping="lambda_in", damping_options={"per_channel": per_channel}, **kwargs
    )
    shape = (3, 5, 5, block.out_channels)
    block.build(shape)
    add = block.damped_add
    add.k.assign(rng.uniform(0.1, 0.6, add.k.shape))
    x = tf.constant(rng.normal(size=shape))
    probe = rng.normal(size=shape)

    def reference(x):
        h = x
        for bn, conv in zip(block.bns, block.convs):
            h = conv(tf.nn.relu(bn(h, training=True)))
        lam = tf.nn.relu(add.k)  # float32, as the layer keeps it
        boost, keep = (tf.cast(c, tf.float64) for c in (1 + lam, 1 - lam))
        return boost * h + keep * x

    results = []
    for fn in (lambda x: block(x, training=True), reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = fn(x)
            scalar = tf.reduce_sum(out * probe)
        grads = tape.gradient(scalar, [x, add.k] + [c.kernel for c in block.convs])
        results.append([out] + grads)
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
