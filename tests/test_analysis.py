"""Loss landscapes, perturbation growth, spectral norms, `keras-damped analyze`."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tensor_events

from keras_damped import BasicBlock
from keras_damped import DampedAdd
from keras_damped import damping_values
from keras_damped.analysis import analyze
from keras_damped.analysis import block_spectral_norms
from keras_damped.analysis import landscape_1d
from keras_damped.analysis import landscape_2d
from keras_damped.analysis import perturbation_growth
from keras_damped.analysis import save_analysis
from keras_damped.analysis import spectral_norm
from keras_damped.cli import main as cli_main
from keras_damped.data import load_arrays


def linear_residual_net(a, lam, blocks=3, width=5):
    """h_{n+1} = a h_n + (1 - lam) h_n: every block multiplies by (a + 1 - lam)."""
    inputs = keras.Input((width,))
    h = inputs
    for n in range(1, blocks + 1):
        f = keras.layers.Dense(
            width,
            use_bias=False,
            name=f"f{n}",
            kernel_initializer=keras.initializers.Identity(gain=a),
        )(h)
        h = DampedAdd("fixed", value=lam, name=f"block{n}")([f, h])
    return keras.Model(inputs, h)


@pytest.mark.numerics
@pytest.mark.parametrize("lam", [0.0, 1.0])
@pytest.mark.parametrize("kind", ["random", "adversarial"])
def test_perturbation_growth_is_exact_on_linear_blocks(lam, kind, rng):
    a = 0.5
    model = linear_residual_net(a, lam)
    x = rng.normal(size=(4, 5)).astype("float32")
    y = np.array([0, 1, 2, 3])
    result = perturbation_growth(model, x, y, kind, epsilon=0.1)
    assert result["blocks"] == ["block1", "block2", "block3"]
    expected = [(a + 1 - lam) ** n for n in (1, 2, 3)]  # 1.5^n or 0.5^n
    np.testing.assert_allclose(result["ratio"], expected, rtol=1e-4)
    sigma = block_spectral_norms(model, x, iterations=5)["sigma"]
    np.testing.assert_allclose(sigma, [abs(a + 1 - lam)] * 3, rtol=1e-5)


@pytest.mark.numerics
def test_power_iteration_matches_a_dense_svd(rng):
    keras.utils.set_random_seed(3)
    block = BasicBlock(3, damping="lambda_in")
    h = tf.constant(rng.normal(size=(1, 4, 4, 3)).astype("float32"))
    block(h)
    for weight in block.weights:
        if "moving_variance" in weight.path:
            weight.assign(rng.uniform(0.5, 2.0, weight.shape))

    def fn(t):
        return block(t, training=False)

    with tf.GradientTape() as tape:
        tape.watch(h)
        out = fn(h)
    dense = tape.jacobian(out, h).numpy().reshape(48, 48)
    largest = np.linalg.svd(dense, compute_uv=False)[0]
    assert spectral_norm(fn, h, iterations=50)[0] == pytest.approx(largest, rel=0.01)


@pytest.mark.slow
def test_landscapes_on_a_trained_model(trained_small_model, tmp_path):
    images, labels = load_arrays("fashion_mnist", "test", limit=64)
    x, y = images / np.float32(255), labels
    model = trained_small_model
    models = {"in_resnet14": model}
    probes = {}  # the 1D and 2D landscapes below share one traced probe
    one = landscape_1d(
        models, x, y, "sign_gradient", T=8 / 255, points=9, probes=probes
    )
    losses = one["models"]["in_resnet14"]["loss"]
    plain = float(
        tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(
                y, model(x, training=False), from_logits=True
            )
        )
    )
    assert one["t"][4] == 0 and losses[4] == pytest.approx(plain, rel=1e-5)
    assert losses[5] >= losses[4]  # uphill along the attack direction
    assert losses[8] > losses[4]
    two = landscape_2d(model, x, y, T=8 / 255, points=5, probes=probes)
    assert len(probes) == 1  # traced once, probed along a line and a plane
    grid = np.array(two["loss"])
    assert grid.shape == (5, 5)
    np.testing.assert_allclose(two["t"], -np.array(two["t"][::-1]))
    assert grid[2, 2] == pytest.approx(plain, rel=1e-5)

    result = analyze(models, x[:16], y[:16], points=5, points_2d=3, iterations=3)
    out = save_analysis(result, tmp_path / "analysis")
    stored = json.loads(open(os.path.join(out, "analysis.json")).read())
    assert set(stored) >= {
        "landscape_1d",
        "landscape_2d",
        "perturbation_growth",
        "spectral_norms",
        "damping",
    }
    assert len(stored["damping"]["in_resnet14"]["lambda"]) == 3
    for png in (
        "landscape_1d",
        "landscape_2d",
        "perturbation_growth",
        "spectral_norms",
        "damping_by_depth",
    ):
        assert os.path.getsize(os.path.join(out, "plots", f"{png}.png")) > 1000
    # TensorBoard shows the same figures: each image event decodes to the
    # pixels of its PNG file.
    events = tensor_events(os.path.join(out, "tb"))
    for png in ("landscape_1d", "spectral_norms"):
        (event,) = events.Tensors(f"analysis/{png}")
        shown = tf.image.decode_png(event.tensor_proto.string_val[2], channels=4)
        with open(os.path.join(out, "plots", f"{png}.png"), "rb") as f:
            saved = tf.image.decode_png(f.read(), channels=4)
        np.testing.assert_array_equal(shown.numpy(), saved.numpy())


def test_analyze_command(tmp_path, capsys):
    from keras_damped import DampedResNet

    path = tmp_path / "model.keras"
    DampedResNet(14, input_shape=(28, 28, 1), normalization="fashion_mnist").save(path)
    out = tmp_path / "stability"
    args = [
        "analyze",
        "--model",
        str(path),
        "--dataset",
        "fashion_mnist",
        "--test-limit",
        "8",
        "--iterations",
        "2",
        "--out",
        str(out),
    ]
    assert cli_main(args) == 0
    assert f"tensorboard --logdir {out}/tb" in capsys.readouterr().out
    assert (out / "plots" / "perturbation_growth.png").exists()
    stored = json.loads((out / "analysis.json").read_text())
    model = keras.saving.load_model(path)
    # The saved model's lambdas, read back from the file, in block order:
    # three damped blocks (the first block of each stage changes shape).
    saved = damping_values(model)
    (name,) = stored["damping"]
    damping = stored["damping"][name]
    assert damping["blocks"] == list(saved) and len(saved) == 3
    assert damping["lambda"] == pytest.approx([float(v) for v in saved.values()])
    growth = stored["perturbation_growth"][name]["random"]
    assert len(growth["ratio"]) == len(growth["blocks"]) >= 3
    assert all(r > 0 for r in growth["ratio"])
    sigma = stored["spectral_norms"][name]["sigma"]
    assert len(sigma) == len(growth["blocks"]) and all(v > 0 for v in sigma)
    assert stored["settings"]["examples"] == 8
    assert stored["settings"]["iterations"] == 2
    assert "landscape_1d" not in stored  # analyze: the stability part
    assert cli_main(args) == 2 and "already holds" in capsys.readouterr().err

    # `landscape`: the loss along each direction at T/255 = 8/255, 5 points;
    # t = 0 is the model's plain cross-entropy on the same 8 images.
    landscape = tmp_path / "landscape"
    command = ["landscape", *args[1:7], "--T", "8", "--points", "5"]
    assert cli_main([*command, "--out", str(landscape)]) == 0
    stored = json.loads((landscape / "analysis.json").read_text())
    images, labels = load_arrays("fashion_mnist", "test", limit=8)
    plain = float(
        np.mean(
            keras.losses.sparse_categorical_crossentropy(
                labels,
                model(images / np.float32(255), training=False),
                from_logits=True,
            )
        )
    )
    for kind in ("sign_gradient", "random"):
        one = stored["landscape_1d"][kind]
        np.testing.assert_allclose(one["t"], np.linspace(-8 / 255, 8 / 255, 5))
        assert one["models"][name]["loss"][2] == pytest.approx(plain, rel=1e-5)
    assert "perturbation_growth" not in stored
    assert (landscape / "plots" / "landscape_1d.png").exists()
    bad = cli_main(
        [
            "landscape",
            "--model",
            str(path),
            "--dataset",
            "fashion_mnist",
            "--test-limit",
            "8",
            "--points",
            "2",
            "--out",
            str(tmp_path / "l"),
        ]
    )
    assert bad == 2 and "points=2" in capsys.readouterr().err
    assert not (tmp_path / "l").exists()


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda m, x, y: landscape_1d({"m": m}, x, y, kind="diagonal"),
            "kind='diagonal'",
        ),
        (lambda m, x, y: landscape_1d({"m": m}, x, y, T=0), "T=0"),
        (lambda m, x, y: landscape_1d({"m": m}, x, y, points=2), "points=2"),
        (lambda m, x, y: landscape_2d(m, x, y, T=-1.0), "T=-1.0"),
        (
            lambda m, x, y: perturbation_growth(m, x, blocks=["f1"]),
            "'f1' is not a block",
        ),
        (lambda m, x, y: perturbation_growth(m, x, blocks=["nope"]), "'nope' is not"),
        (lambda m, x, y: perturbation_growth(m, x, kind="sideways"), "kind='sideways'"),
    ],
)
def test_bad_analysis_input(call, match, rng):
    model = linear_residual_net(0.5, 0.0)
    x = rng.normal(size=(2, 5)).astype("float32")
    with pytest.raises(ValueError, match=match):
        call(model, x, np.array([0, 1]))
