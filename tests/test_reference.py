"""Parity with the reference network: padding, old files, ported weights."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from jax_subprocess import run_on_jax
from numpy_reference import batch_norm
from numpy_reference import conv2d
from numpy_reference import reference_logits
from numpy_reference import relu

from keras_damped import BasicBlock
from keras_damped import BottleneckBlock
from keras_damped import DampedResNet
from keras_damped import create_model
from keras_damped import damped_adds
from keras_damped import damping_values
from keras_damped import load_reference_weights

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def randomise(model_or_layer, rng):
    """Non-trivial BN statistics and affine parameters, and random lambdas."""
    for weight in model_or_layer.weights:
        path = weight.path
        if "moving_variance" in path:
            weight.assign(rng.uniform(0.5, 1.5, weight.shape))
        elif any(p in path for p in ("gamma", "beta", "moving_mean")):
            base = 1.0 if "gamma" in path else 0.0
            weight.assign(base + rng.uniform(-0.3, 0.3, weight.shape))
        elif path.endswith("/k"):
            weight.assign(rng.uniform(0.1, 0.9, weight.shape))


def numpy_block(block, x):
    """A pre-activation block in eval mode, from its weights, padding by the paper."""
    h = x
    for bn, conv in zip(block.bns, block.convs):
        h = relu(batch_norm(h, *bn.get_weights()))
        h = conv2d(h, conv.get_weights()[0], conv.strides[0], conv.groups)
    if block.has_projection:
        s = relu(batch_norm(x, *block.shortcut_bn.get_weights()))
        s = conv2d(s, block.shortcut_conv.get_weights()[0], block.stride)
    else:
        s = x
    lam = 0.0 if block.damping is None else float(block.damped_add.damping)
    if block.damping == "lambda_in":
        return (1 + lam) * h + (1 - lam) * s
    return h + (1 - lam) * s


STRIDED = [
    ("basic", lambda: BasicBlock(6, stride=2)),
    ("bottleneck", lambda: BottleneckBlock(3, stride=2)),
    (
        "resnext",
        lambda: BottleneckBlock(4, stride=2, cardinality=2, bottleneck_width=2),
    ),
]


@pytest.mark.numerics
@pytest.mark.parametrize("size", [8, 7, 28])
@pytest.mark.parametrize("name,make", STRIDED, ids=[s[0] for s in STRIDED])
def test_strided_blocks_pad_one_pixel_on_every_side(name, make, size, rng):
    """docs/paper.md section 3: padding=1 at stride 2, also on even sizes."""
    keras.config.set_dtype_policy("float64")
    block = make()
    block.build((2, size, size, 4))
    randomise(block, rng)
    x = rng.uniform(-1, 1, (2, size, size, 4))
    expected = numpy_block(block, x)
    assert expected.shape[1] == (size + 1) // 2
    out = block(x, training=False).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-10)
    compiled = tf.function(lambda x: block(x, training=False), jit_compile=True)
    np.testing.assert_allclose(compiled(x).numpy(), expected, atol=1e-10)


@pytest.mark.numerics
def test_tf_same_padding_is_a_different_network(rng):
    """The check above can fail: TF's 'same' shifts the grid on even sizes."""
    keras.config.set_dtype_policy("float64")
    block = BasicBlock(6, stride=2, padding="same")
    block.build((2, 8, 8, 4))
    randomise(block, rng)
    x = rng.uniform(-1, 1, (2, 8, 8, 4))
    assert np.abs(block(x, training=False).numpy() - numpy_block(block, x)).max() > 0.1


def test_strided_block_under_mixed_precision(rng):
    keras.config.set_dtype_policy("mixed_bfloat16")
    block = BasicBlock(6, stride=2)
    block.build((2, 8, 8, 4))
    randomise(block, rng)
    x = rng.uniform(-1, 1, (2, 8, 8, 4)).astype("float32")
    out = block(x, training=False)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    expected = numpy_block(block, x)
    scale = np.abs(expected).max()
    assert np.abs(np.asarray(out, np.float64) - expected).max() <= 0.03 * scale


@pytest.mark.numerics
def test_file_saved_before_the_fix_computes_what_it_did():
    data = np.load(os.path.join(FIXTURES, "legacy_same_padding.npz"))
    model = keras.saving.load_model(os.path.join(FIXTURES, "legacy_same_padding.keras"))
    blocks = [layer for layer in model.layers if layer.name.startswith("stage")]
    assert {b.padding for b in blocks} == {"same"}
    np.testing.assert_allclose(
        model(data["inputs"], training=False).numpy(), data["logits"], atol=1e-6
    )
    # A rebuilt model with the reference's padding is another function.
    fresh = DampedResNet(
        14, 3, (9, 10, 1), damping="lambda_in", normalization="fashion_mnist"
    )
    fresh.set_weights(model.get_weights())
    assert np.abs(fresh(data["inputs"], training=False) - data["logits"]).max() > 1e-3
    assert fresh.get_layer("stage2_block1").get_config()["padding"] == "symmetric"


def test_legacy_padding_survives_a_save_and_load(tmp_path):
    model = keras.saving.load_model(os.path.join(FIXTURES, "legacy_same_padding.keras"))
    path = str(tmp_path / "again.keras")
    model.save(path)
    again = keras.saving.load_model(path)
    assert again.get_layer("stage3_block1").padding == "same"


def test_odd_input_sizes_keep_their_shapes():
    model = DampedResNet(20, input_shape=(28, 28, 1), normalization="fashion_mnist")
    assert model.get_layer("stage2_block1").output.shape == (None, 14, 14, 32)
    assert model.get_layer("stage3_block1").output.shape == (None, 7, 7, 64)
    assert model(np.zeros((1, 28, 28, 1), "float32")).shape == (1, 10)


def test_bad_padding_is_refused():
    with pytest.raises(
        ValueError, match="padding.*symmetric.*Received: padding='valid'"
    ):
        BasicBlock(4, stride=2, padding="valid")
    with pytest.raises(ValueError, match="Received: padding='SAME'"):
        DampedResNet(20, padding="SAME")


# --- The reference's state dict -------------------------------------------------
# Written from the reference's module names (minicheshire/InResNet, InResNet.py),
# independently of keras_damped.models.reference.


_BN = ("weight", "bias", "running_mean", "running_var")


def to_reference_state(model, damped_variant):
    """The state dict the reference's ResNet / InResNet would hold for `model`."""
    state = {}

    def bn(prefix, layer):
        gamma, beta, mean, var = layer.get_weights()
        state.update(
            {
                f"{prefix}.weight": gamma,
                f"{prefix}.bias": beta,
                f"{prefix}.running_mean": mean,
                f"{prefix}.running_var": var,
                f"{prefix}.num_batches_tracked": np.array(7, np.int64),
            }
        )

    def conv(name, layer):
        state[name] = np.transpose(layer.get_weights()[0], (3, 2, 0, 1))

    conv("conv1.weight", model.get_layer("stem_conv"))
    # The stem's bn1, which the reference's forward never calls.
    state.update({f"bn1.{p}": np.ones(16, np.float32) for p in _BN})
    state["bn1.num_batches_tracked"] = np.array(0, np.int64)
    blocks = [layer for layer in model.layers if layer.name.startswith("stage")]
    bottleneck = isinstance(blocks[0], BottleneckBlock)
    n = len(blocks) // 3
    for i, block in enumerate(blocks):
        for j, (b, c) in enumerate(zip(block.bns, block.convs), 1):
            bn(f"blocks.{i}.bn{j}", b)
            conv(f"blocks.{i}.conv{j}.weight", c)
        if block.has_projection:
            name = {0: "downsample1", n: "downsample21", 2 * n: "downsample31"}[i]
            bn(f"{name}.downsample.0", block.shortcut_bn)
            conv(f"{name}.downsample.2.weight", block.shortcut_conv)
        if damped_variant:
            add = block.damped_add
            k = add.k.numpy() if hasattr(add, "k") else np.float32(0.77)
            state[f"ks.{i}"] = np.reshape(k, (1,))
    expansion = 4 if bottleneck else 1
    unused = [] if bottleneck else [("downsample1", 16, 64)]
    if not damped_variant:
        unused += [
            ("downsample22", 16 * expansion, 32 * expansion),
            ("downsample32", 32 * expansion, 64 * expansion),
        ]
    for name, cin, cout in unused:
        state.update(
            {
                f"{name}.downsample.0.{p}": np.ones(cin, np.float32)
                for p in ("weight", "bias", "running_mean", "running_var")
            }
        )
        state[f"{name}.downsample.0.num_batches_tracked"] = np.array(0, np.int64)
        state[f"{name}.downsample.2.weight"] = np.ones((cout, cin, 1, 1), np.float32)
    bn("bn", model.get_layer("head_bn"))
    fc = model.get_layer("predictions")
    state["fc.weight"] = fc.kernel.numpy().T
    state["fc.bias"] = fc.bias.numpy()
    return state


PRESETS = [
    pytest.param(
        f"{prefix}resnet{depth}", marks=[pytest.mark.slow] if depth > 56 else []
    )
    for depth in (20, 32, 44, 56, 110, 164)
    for prefix in ("", "in_", "lambda_in_")
]


@pytest.mark.parametrize("name", PRESETS)
def test_reference_weights_round_trip_on_every_preset(name, rng):
    source = create_model(name, input_shape=(8, 8, 3))
    randomise(source, rng)
    variant = name.split("resnet")[0].rstrip("_") or None
    state = to_reference_state(source, variant)
    target = create_model(name, input_shape=(8, 8, 3))
    load_reference_weights(target, state)
    for a, b in zip(source.weights, target.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    x = rng.uniform(0, 1, (2, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(target(x), source(x), atol=1e-6)


@pytest.mark.parametrize(
    "name,bottleneck",
    [
        ("resnet20", False),
        ("in_resnet20", False),
        ("lambda_in_resnet20", False),
        ("lambda_in_resnet20", True),
        ("in_resnet20", True),
    ],
)
@pytest.mark.numerics
def test_ported_weights_compute_the_reference_network(name, bottleneck, rng):
    """Our model with loaded weights equals the reference's forward in NumPy."""
    keras.config.set_dtype_policy("float64")
    kwargs = {"block": "bottleneck"} if bottleneck else {}
    source = create_model(name, input_shape=(16, 16, 3), **kwargs)
    randomise(source, rng)
    variant = name.split("resnet")[0].rstrip("_") or "resnet"
    state = to_reference_state(source, None if variant == "resnet" else variant)
    model = create_model(name, input_shape=(16, 16, 3), **kwargs)
    load_reference_weights(model, state)
    x = rng.uniform(0, 1, (2, 16, 16, 3))
    expected = reference_logits(state, x, variant, bottleneck)
    # float64 throughout but for the normalisation constants, which Keras'
    # Normalization layer keeps in float32 (about 1e-7 relative).
    np.testing.assert_allclose(
        model(x, training=False).numpy(), expected, rtol=1e-6, atol=1e-6
    )


def test_bottleneck_preset_starts_as_the_reference_notes():
    for name in ("in_resnet164", "lambda_in_resnet164"):
        lams = np.array(list(damping_values(create_model(name)).values()))
        assert len(lams) == 51
        assert lams.min() >= 0.1 - 1e-6 and lams.max() <= 0.2 + 1e-6
        assert lams.max() - lams.min() > 0.05  # drawn per block, not one value


def _state(name, rng):
    model = create_model(name, input_shape=(8, 8, 3))
    randomise(model, rng)
    variant = name.split("resnet")[0].rstrip("_") or None
    return model, to_reference_state(model, variant)


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda s: s.pop("blocks.4.conv2.weight"),
            r"missing: blocks\.4\.conv2\.weight",
        ),
        (lambda s: s.pop("ks.5"), r"missing: ks\.5"),
        (
            lambda s: s.update({"blocks.9.conv1.weight": np.zeros((64, 64, 3, 3))}),
            r"unexpected: blocks\.9\.conv1\.weight",
        ),
        (
            lambda s: s.update({"fc.weight": s["fc.weight"].T}),
            r"wrong shape: fc\.weight \(64, 10\) \(expected \(10, 64\)\)",
        ),
        (
            lambda s: s.update({"blocks.0.conv1.weight": np.zeros((16, 16, 1, 3))}),
            r"wrong shape: blocks\.0\.conv1\.weight",
        ),
    ],
)
def test_bad_state_dicts_are_refused_by_name(edit, match, rng):
    _, state = _state("in_resnet20", rng)
    edit(state)
    target = create_model("in_resnet20", input_shape=(8, 8, 3))
    before = [w.numpy().copy() for w in target.weights]
    with pytest.raises(ValueError, match=match):
        load_reference_weights(target, state)
    for a, w in zip(before, target.weights):
        np.testing.assert_array_equal(a, w.numpy())  # nothing was loaded


def test_mismatched_models_are_refused(rng):
    _, state = _state("in_resnet20", rng)
    with pytest.raises(ValueError, match=r"unexpected: ks\.0, ks\.1"):
        load_reference_weights(create_model("resnet20", input_shape=(8, 8, 3)), state)
    with pytest.raises(ValueError, match=r"missing: blocks\.10"):
        load_reference_weights(
            create_model("in_resnet32", input_shape=(8, 8, 3)), state
        )
    with pytest.raises(ValueError, match="DampedResNet"):
        load_reference_weights(create_model("in_resnext29_8x64d"), state)
    legacy = DampedResNet(20, input_shape=(8, 8, 3), padding="same")
    with pytest.raises(ValueError, match="padding='symmetric'"):
        load_reference_weights(legacy, state)
    with pytest.raises(ValueError, match="dict"):
        load_reference_weights(legacy, list(state.items()))


def test_undamped_blocks_ks_are_ignored(rng):
    model, state = _state("lambda_in_resnet20", rng)
    state["ks.0"] = np.array([123.0], np.float32)  # the reference never reads it
    target = create_model("lambda_in_resnet20", input_shape=(8, 8, 3))
    load_reference_weights(target, state)
    assert set(damping_values(target)) == set(damped_adds(target, trainable_only=True))
    x = rng.uniform(0, 1, (1, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(target(x), model(x), atol=1e-6)


def test_strided_padding_on_jax():
    """keras.ops only: the same symmetric padding on the JAX backend (and jit)."""
    import textwrap

    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[1])
        import jax, keras, numpy as np
        assert keras.backend.backend() == "jax"
        from numpy_reference import batch_norm, conv2d, relu
        from keras_damped import BasicBlock, BottleneckBlock
        keras.config.set_dtype_policy("float32")
        rng = np.random.default_rng(0)
        for make in (lambda: BasicBlock(6, stride=2),
                     lambda: BottleneckBlock(4, stride=2, cardinality=2,
                                             bottleneck_width=2)):
            for size in (8, 7):
                block = make()
                block.build((2, size, size, 4))
                for w in block.weights:
                    if "moving_variance" in w.path:
                        w.assign(rng.uniform(0.5, 1.5, w.shape))
                    else:
                        w.assign(w.numpy() + rng.uniform(-0.3, 0.3, w.shape))
                x = rng.uniform(-1, 1, (2, size, size, 4)).astype("float32")
                h = x.astype("float64")
                for bn, conv in zip(block.bns, block.convs):
                    h = relu(batch_norm(h, *bn.get_weights()))
                    h = conv2d(h, conv.get_weights()[0], conv.strides[0],
                               conv.groups)
                s = relu(batch_norm(x, *block.shortcut_bn.get_weights()))
                s = conv2d(s, block.shortcut_conv.get_weights()[0], 2)
                run = jax.jit(lambda x: block(x, training=False))
                err = np.abs(np.asarray(run(x)) - (h + s)).max()
                assert err < 1e-4, (size, err)
        print("JAX-PADDING-OK")
    """)
    run_on_jax(script, os.path.dirname(__file__), marker="JAX-PADDING-OK")
