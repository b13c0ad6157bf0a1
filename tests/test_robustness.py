"""Attacks, evaluation sanity checks, reports and the `evaluate` command."""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import tensor_events
from tensorboard.util import tensor_util

from keras_damped import DampedResNet
from keras_damped.data import corrupt
from keras_damped.robustness import Budget
from keras_damped.robustness import RobustnessReport
from keras_damped.robustness import attack_names
from keras_damped.robustness import evaluate
from keras_damped.robustness import logits_fn
from keras_damped.robustness import make_attack
from keras_damped.robustness.report import unpack_mask

ATTACKS = attack_names()


@keras.saving.register_keras_serializable(package="tests")
class ZeroInputGradient(keras.layers.Layer):
    """Identity forward, zero gradient backward: a gradient-masking defence."""

    def call(self, x):
        return keras.ops.stop_gradient(x)


@pytest.mark.slow
def test_every_attack_stays_in_its_ball_and_range_and_weakens_with_eps(
    trained_small_model, fm_images
):
    """Every registered attack, through the evaluation: inside its ball
    (L-inf; C&W is reported at an L2 radius) and [0, 1], and of the
    examples correct clean, leaving no more robust at the larger eps.

    Among the examples correct clean: an attack's accuracy is taken on its
    adversarial images, and a weak attack can make an example misclassified
    clean right (SPSA's random start of +-16/255 at 3 steps does on the
    in_resnet14 this suite trains with AVX2 arithmetic, whose test image 1
    is narrowly wrong); such an example was never robust."""
    images, labels = fm_images
    every = evaluate(
        trained_small_model,
        dataset=(images, labels),
        attacks=list(ATTACKS),
        eps=[4 / 255, 16 / 255],
        noises=[],
        test_limit=8,
        batch_size=8,
        steps=3,
        progress=False,
        apgd_steps=3,
        target_classes=2,
        square_queries=20,
    )
    entry = every.data["models"]["in_resnet14"]
    assert entry["sanity"]["in_ball"] and entry["sanity"]["in_range"]
    assert set(entry["sanity"]["max_linf"]) == set(ATTACKS) - {"cw_l2"}
    clean = unpack_mask(entry["masks"]["clean"], 8)
    for attack in ATTACKS:
        masks = entry["masks"]["attacks"][attack]
        robust = [(unpack_mask(masks[k], 8) & clean).sum() for k in ("4", "16")]
        assert robust[1] <= robust[0], (attack, robust)
    cw = make_attack("cw_l2", logits_fn(trained_small_model), Budget(steps=3))
    adv = cw(images[:4], labels[:4], 0.5).x_adv
    assert adv.min() >= 0 and adv.max() <= 1


@pytest.fixture(scope="module")
def invariants_report(trained_small_model, fm_images):
    """The trained model and a copy whose input gradient is zero (a
    gradient-masking defence), evaluated on 64 images."""
    images, labels = fm_images
    masked = keras.Sequential(
        [keras.Input((28, 28, 1)), ZeroInputGradient(), trained_small_model],
        name="masked",
    )
    return evaluate(
        {"in_resnet14": trained_small_model, "masked": masked},
        dataset=(images, labels),
        attacks=["fgsm", "ifgsm", "pgd"],
        eps=[2 / 255, 16 / 255],
        noises=["gaussian"],
        severities=[1, 5],
        test_limit=64,
        batch_size=64,
        steps=10,
        progress=False,
        noise_levels={"gaussian": [0.3]},
    )


@pytest.mark.slow
def test_evaluation_invariants_and_the_gradient_masking_flag(
    invariants_report, trained_small_model, fm_images
):
    images, labels = fm_images
    report = invariants_report
    m = report.data["models"]["in_resnet14"]
    # Per-example masks decode to the reported accuracies.
    assert unpack_mask(m["masks"]["clean"], 64).mean() == m["clean"]
    for attack, by_eps in m["masks"]["attacks"].items():
        for k, packed in by_eps.items():
            assert unpack_mask(packed, 64).mean() == m["attacks"][attack][k]
    # An explicit level: seeded draws, the same for every model.
    noisy = corrupt(images, "gaussian", level=0.3, seed=(0, 1000))
    predicted = np.argmax(trained_small_model.predict(noisy, verbose=0), -1)
    assert m["noise_levels"]["gaussian"]["0.3"] == np.mean(predicted == labels)
    assert report.data["settings"]["noise_levels"] == {"gaussian": ["0.3"]}
    assert m["clean"] >= 0.5  # it is trained
    for attack in ("fgsm", "ifgsm", "pgd"):
        accs = [m["clean"]] + [m["attacks"][attack][k] for k in ("2", "16")]
        assert all(b <= a + 0.01 for a, b in zip(accs, accs[1:]))  # non-increasing
    for k in ("2", "16"):
        assert m["attacks"]["pgd"][k] <= m["attacks"]["fgsm"][k] + 0.02
    assert m["sanity"]["large_eps_pgd"] <= 0.05
    assert m["sanity"]["in_ball"] and m["sanity"]["in_range"]
    assert m["sanity"]["flags"] == []
    # The masked model: same clean accuracy, attacks see no gradient.
    masked_entry = report.data["models"]["masked"]
    assert masked_entry["clean"] == m["clean"]
    assert masked_entry["sanity"]["gradient_masking_suspected"]
    assert any("gradient masking" in f for f in masked_entry["sanity"]["flags"])


def test_report_files_round_trip(invariants_report, tmp_path):
    """The files: JSON round trip with every requested cell, Markdown, PNGs, TB."""
    report = invariants_report
    out = report.save(tmp_path / "eval")
    assert sorted(os.listdir(out)) == ["plots", "report.json", "report.md", "tb"]
    again = RobustnessReport.from_json(os.path.join(out, "report.json"))
    assert again.data == json.loads(json.dumps(report.data))
    for name in ("in_resnet14", "masked"):
        cells = again.data["models"][name]
        assert set(cells["attacks"]) == {"fgsm", "ifgsm", "pgd"}
        assert all(set(v) == {"2", "16"} for v in cells["attacks"].values())
        assert set(cells["noises"]["gaussian"]) == {"1", "5", "mean"}
    assert again.data["settings"]["config"]["attacks"] == ["fgsm", "ifgsm", "pgd"]
    markdown = open(os.path.join(out, "report.md")).read()
    assert "| in_resnet14 |" in markdown and "gradient masking" in markdown
    for png in (
        "accuracy_vs_eps.png",
        "accuracy_vs_severity.png",
        "adversarial_examples.png",
    ):
        path = os.path.join(out, "plots", png)
        assert os.path.getsize(path) > 1000
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # TensorBoard holds the report's numbers: PGD at 16/255 (step 16) and
    # the Gaussian noise at severity 5 of each model.
    for name in ("in_resnet14", "masked"):
        events = tensor_events(os.path.join(out, "tb", name))
        (pgd,) = [e for e in events.Tensors("robustness/pgd") if e.step == 16]
        assert float(tensor_util.make_ndarray(pgd.tensor_proto)) == pytest.approx(
            again.data["models"][name]["attacks"]["pgd"]["16"]
        )
        (noise,) = [
            e for e in events.Tensors("robustness/gaussian_noise") if e.step == 5
        ]
        assert float(tensor_util.make_ndarray(noise.tensor_proto)) == pytest.approx(
            again.data["models"][name]["noises"]["gaussian"]["5"]
        )
    with pytest.raises(FileExistsError, match="already holds results"):
        report.save(out)


def test_softmax_head_is_evaluated_on_its_logits(rng):
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    probs = keras.layers.Dense(3, activation="softmax", name="head")(hidden)
    model = keras.Model(inputs, probs)
    x = rng.normal(size=(4, 6)).astype("float32")
    logits = logits_fn(model)(x).numpy()
    np.testing.assert_allclose(
        keras.ops.softmax(logits), model(x), rtol=1e-5, atol=1e-6
    )
    head = model.get_layer("head")
    expected = hidden_out = keras.Model(inputs, hidden)(x)
    expected = hidden_out @ head.kernel + head.bias
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)


def test_tfds_cifar10_corrupted_path_in_evaluate(tmp_path):
    import tensorflow_datasets as tfds

    model = DampedResNet(20, input_shape=(32, 32, 3))
    with tfds.testing.mock_data(num_examples=8, data_dir=str(tmp_path)):
        report = evaluate(
            model,
            dataset="cifar10",
            attacks=[],
            eps=[],
            noises=["impulse"],
            severities=[2, 4],
            test_limit=8,
            noise_source="tfds",
            progress=False,
        )
        # The same files read with TFDS directly, and the model on them.
        expected = {}
        for severity in (2, 4):
            examples = tfds.load(
                f"cifar10_corrupted/impulse_noise_{severity}",
                split="test",
                data_dir=str(tmp_path),
            )
            pairs = [(e["image"], e["label"]) for e in tfds.as_numpy(examples.take(8))]
            x = np.stack([image for image, _ in pairs]).astype("float32") / 255.0
            pred = np.argmax(model(x, training=False).numpy(), -1)
            labels = np.array([label for _, label in pairs])
            expected[str(severity)] = float(np.mean(pred == labels))
    settings = report.data["settings"]
    assert settings["noise_source"].startswith("CIFAR-10-C files")
    scores = report.data["models"]["in_resnet20"]["noises"]["impulse"]
    assert scores == {
        **expected,
        "mean": pytest.approx(np.mean(list(expected.values()))),
    }


@pytest.fixture
def saved_model(tiny_model_path):
    return tiny_model_path


def test_bad_evaluate_messages(saved_model, tmp_path):
    from keras_damped.validators import eps_list

    with pytest.raises(ValueError, match=r"eps=-1/255"):
        eps_list("eps", [-1 / 255])
    with pytest.raises(ValueError, match="eps='1'"):
        eps_list("eps", ["1"])
    assert eps_list("eps", [1.0, 2 / 255, 2 / 255]) == [2 / 255, 1.0]
    for settings, match in (
        ({"attacks": ["deepfool"]}, "attack='deepfool'"),
        ({"noises": ["fog"]}, "noise='fog'"),
        ({"severities": [6]}, "severity=6"),
        ({"eps": [300 / 255]}, "eps=300/255"),
        ({"attack_eps": {"pgd": [0.0]}}, r"attack_eps\['pgd'\]=0/255"),
        ({"large_eps": 2.0}, "large_eps=510/255"),
        ({"test_limit": 0}, "test_limit must be a positive integer"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            evaluate(saved_model, dataset="fashion_mnist", **settings)
    with pytest.raises(TypeError, match="limit"):
        evaluate(saved_model, dataset="fashion_mnist", limit=8)
    with pytest.raises(ValueError, match=re.escape("No such model file")):
        evaluate(str(tmp_path / "nope.keras"), dataset="fashion_mnist")
    corrupt_file = tmp_path / "corrupt.keras"
    corrupt_file.write_bytes(b"not a zip archive")
    with pytest.raises(ValueError, match="missing or corrupt"):
        evaluate(str(corrupt_file), dataset="fashion_mnist")
    with pytest.raises(ValueError, match=r"takes inputs \(None, 28, 28, 1\)"):
        evaluate(saved_model, dataset="cifar10")


@pytest.mark.parametrize(
    "head",
    [lambda: keras.layers.Softmax(), lambda: keras.layers.Activation("softmax")],
    ids=["Softmax", "Activation"],
)
def test_a_separate_softmax_layer_is_cut_off(head, rng):
    """The logits are the output of the layer before the softmax layer."""
    inputs = keras.Input((6,))
    scores = keras.layers.Dense(3, name="scores")(inputs)
    model = keras.Model(inputs, head()(scores))
    x = rng.normal(size=(4, 6)).astype("float32")
    expected = x @ model.get_layer("scores").kernel.numpy()
    expected += model.get_layer("scores").bias.numpy()
    np.testing.assert_allclose(logits_fn(model)(x).numpy(), expected, atol=1e-5)


def test_a_softmax_whose_logits_cannot_be_recovered_is_refused(rng):
    class Probabilities(keras.Model):
        def __init__(self):
            super().__init__(name="probabilities")
            self.head = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.head(x)

    model = Probabilities()
    model(rng.normal(size=(2, 6)).astype("float32"))
    with pytest.raises(
        ValueError,
        match=r"'probabilities' ends in a softmax.*"
        r"classifier_activation=None",
    ):
        logits_fn(model)


def test_an_spsa_step_is_the_mirrored_sign_estimate_drawn_from_its_seed():
    """SPSA's step takes its directions from the seed it is given (no seed
    kept on the optimizer): the finite-difference estimate of a linear loss
    along +/- delta * sign(u), then Adam's first step, in NumPy."""
    from keras_damped.robustness.attacks import _spsa_optimizer

    rng = np.random.default_rng(3)
    optimizer = _spsa_optimizer(learning_rate=0.01, delta=0.01, samples=32)
    w = rng.normal(size=(1, 4, 4, 2)).astype("float32")
    x = rng.uniform(size=(1, 4, 4, 2)).astype("float32")

    def loss(z):
        return tf.reduce_sum(z * w, axis=[1, 2, 3])

    seed = tf.constant([3, 4], tf.int64)
    state = optimizer.init_state([tf.constant(x)])
    new, state = optimizer.seeded_step(loss, tf.constant(x), state, seed)
    u = tf.random.stateless_uniform([16, 4, 4, 2], seed, -1.0, 1.0).numpy()
    d = 0.01 * np.sign(u)
    fx, wd = float((w * x).sum()), (w * d).sum(axis=(1, 2, 3))
    plus = (fx + wd)[:, None, None, None] * d
    minus = (fx - wd)[:, None, None, None] * -d
    grad = np.concatenate([plus, minus]).mean(axis=0, keepdims=True) / 0.01
    # Adam's first step from zero moments: m_hat = g, u_hat = g^2.
    expected = x - 0.01 * grad / (np.abs(grad) + optimizer.epsilon)
    np.testing.assert_allclose(np.asarray(new), expected, rtol=1e-4, atol=1e-6)
    assert float(state["t"]) == 1.0
    other, _ = optimizer.seeded_step(
        loss, tf.constant(x), optimizer.init_state([tf.constant(x)]), seed + 1
    )
    assert not np.allclose(np.asarray(other), np.asarray(new))
