"""The authors' evaluation protocols against a NumPy replay of their scripts.

The reference below is written from the four differences of docs/paper.md
section 5 (eps and step in normalised units or divided by std, the clamp of
the normalised tensor, PGD's ball centred at its random start, per-file
noise standardisation), in float64 with the gradient of a linear softmax
classifier worked out by hand: for logits `z W + b` on the normalised
input z, the gradient of the summed cross-entropy is `(softmax - onehot) W^T`.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped import cli
from keras_damped.robustness import RobustnessReport
from keras_damped.robustness import evaluate
from keras_damped.robustness import make_attack
from keras_damped.robustness.protocols import clamp_only
from keras_damped.robustness.protocols import model_normalization
from keras_damped.robustness.protocols import protocol_attack_name
from keras_damped.robustness.protocols import standardise_file
from keras_damped.robustness.registry import AttackContext
from keras_damped.robustness.report import unpack_mask

MEAN, STD = np.array([0.3, 0.5]), np.array([0.25, 0.4])
SHAPE, CLASSES = (4, 4, 2), 5


@pytest.fixture(scope="module")
def linear():
    """Normalization -> Flatten -> Dense in float64, and its images."""
    rng = np.random.default_rng(3)
    inputs = keras.Input(SHAPE, dtype="float64")
    z = keras.layers.Normalization(
        mean=MEAN, variance=STD**2, dtype="float64", name="normalization"
    )(inputs)
    z = keras.layers.Flatten(dtype="float64")(z)
    outputs = keras.layers.Dense(CLASSES, dtype="float64")(z)
    model = keras.Model(inputs, outputs)
    w = rng.normal(size=(int(np.prod(SHAPE)), CLASSES)) * 3
    b = rng.normal(size=CLASSES)
    model.layers[-1].set_weights([w, b])
    x = rng.uniform(size=(24, *SHAPE))
    y = rng.integers(0, CLASSES, 24).astype("int32")
    return model, w, b, x, y


def make_protocol_attack(protocol, attack, model):
    """The registered authors' attack on a float64 model; `perturb` keeps
    the images' dtype (float64 here, for an exact comparison)."""
    name = protocol_attack_name(protocol, attack)
    context = AttackContext(tuple(MEAN), tuple(STD))
    built = make_attack(name, lambda v: model(v), context=context)
    return lambda x, y, eps, seed=(0, 0): built.perturb(
        tf.constant(x), tf.constant(y), eps, seed
    )


def _grad_z(z, y, w, b):
    logits = z.reshape(len(z), -1) @ w + b
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return (p @ w.T).reshape(z.shape)


def _reference(protocol, attack, x, y, w, b, eps, start=None):
    """The authors' attack, replayed in NumPy; returns pixels."""
    if protocol == "authors-2020-06":
        radius, step = np.full(2, eps), np.full(2, 2 / 255)
        lo, hi = np.zeros(2), np.ones(2)
    else:
        radius, step = eps / STD, (1 / 255) / STD
        lo, hi = -MEAN / STD, (1 - MEAN) / STD
    z = (x - MEAN) / STD
    if attack == "fgsm":
        z = np.clip(z + radius * np.sign(_grad_z(z, y, w, b)), lo, hi)
        return z * STD + MEAN
    if attack == "pgd":
        z = z + radius * start  # the start first, then the centre
    centre = z.copy()
    for _ in range(20):
        z = z + step * np.sign(_grad_z(z, y, w, b))
        z = np.clip(z, centre - radius, centre + radius)
        z = np.clip(z, lo, hi)
    return z * STD + MEAN


@pytest.mark.numerics
@pytest.mark.parametrize("protocol", ["authors-2020-06", "authors-2020-08"])
@pytest.mark.parametrize("attack", ["fgsm", "ifgsm", "pgd"])
def test_protocol_attacks_match_the_numpy_replay(protocol, attack, linear):
    model, w, b, x, y = linear
    eps = 8 / 255
    run = make_protocol_attack(protocol, attack, model)
    ours = run(x, y, eps, (7, 1)).numpy()
    start = tf.random.stateless_uniform(
        x.shape, tf.constant([7, 1], tf.int64), -1.0, 1.0, dtype=tf.float64
    ).numpy()
    expected = _reference(protocol, attack, x, y, w, b, eps, start)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)
    # Not a no-op: the points moved.
    assert np.abs(ours - x).max() > 1e-3


def test_june_clamp_alone_is_the_band_mean_to_mean_plus_std(linear):
    """eps = 0 under authors-2020-06 is the accuracy on the clamp-distorted
    clean images: in pixels, every value is clipped to [mean, mean + std]."""
    model, _, _, x, y = linear
    np.testing.assert_allclose(
        clamp_only("authors-2020-06", x, MEAN, STD),
        np.clip(x, MEAN, MEAN + STD),
        atol=1e-12,
    )
    np.testing.assert_allclose(clamp_only("authors-2020-08", x, MEAN, STD), x)
    report = evaluate(
        {"linear": model},
        dataset=(x.astype("float32"), y),
        attacks=["fgsm"],
        eps=[2 / 255],
        noises=[],
        protocols=["pixel", "authors-2020-06"],
        progress=False,
    )
    entry = report.data["models"]["linear"]
    distorted = np.argmax(model.predict(np.clip(x, MEAN, MEAN + STD), verbose=0), -1)
    assert entry["protocols"]["authors-2020-06"]["eps0"] == pytest.approx(
        np.mean(distorted == y)
    )
    assert entry["protocols"]["authors-2020-06"]["eps0"] != entry["clean"]


def test_august_fgsm_is_pixel_fgsm_and_pgd_may_leave_the_ball(linear):
    model, w, b, x, y = linear
    eps = 8 / 255
    august = make_protocol_attack("authors-2020-08", "fgsm", model)
    ours = august(x, y, eps).numpy()
    # Pixel FGSM: x + eps sign(grad_x), clipped to [0, 1]; grad_x = grad_z / std.
    pixel = np.clip(x + eps * np.sign(_grad_z((x - MEAN) / STD, y, w, b)), 0, 1)
    np.testing.assert_allclose(ours, pixel, atol=1e-12)
    pgd = make_protocol_attack("authors-2020-08", "pgd", model)
    distance = np.abs(pgd(x, y, eps, (0, 0)).numpy() - x)
    assert distance.max() <= 2 * eps + 1e-12
    assert distance.max() > eps + 1e-3  # the ball was centred at the start


def test_noise_files_are_standardised_by_their_own_statistics(linear):
    model, _, _, x, y = linear
    rng = np.random.default_rng(0)
    stack = rng.uniform(0.1, 0.7, size=(48, *SHAPE))
    fed, file_mean, file_std = standardise_file(stack, MEAN, STD)
    flat = stack.reshape(-1, 2)
    np.testing.assert_allclose(file_mean, flat.mean(0))
    np.testing.assert_allclose(file_std, np.sqrt(((flat - flat.mean(0)) ** 2).mean(0)))
    # The model's first layer turns what it is fed into the standardised file.
    inside = (fed.astype("float64") - MEAN) / STD
    np.testing.assert_allclose(inside, (stack - file_mean) / file_std, atol=1e-5)

    report = evaluate(
        {"linear": model},
        dataset=(x.astype("float32"), y),
        attacks=[],
        noises=["gaussian"],
        severities=[1, 5],
        protocols=["pixel", "authors-2020-08"],
        protocol_attacks=[],
        progress=False,
    )
    from keras_damped.data.corruptions import corrupt

    sets = [
        corrupt(x.astype("float32"), "gaussian", s, seed=(0, s)).numpy() for s in (1, 5)
    ]
    fed, _, _ = standardise_file(np.concatenate(sets), MEAN, STD)
    pred = np.argmax(model.predict(fed.astype("float64"), verbose=0), -1)
    scores = report.data["models"]["linear"]["protocols"]["authors-2020-08"]["noises"]
    assert scores["gaussian"]["1"] == pytest.approx(np.mean(pred[:24] == y))
    assert scores["gaussian"]["5"] == pytest.approx(np.mean(pred[24:] == y))


def test_models_without_normalisation_and_bad_names_are_refused(
    linear, tmp_path, capsys
):
    model, _, _, x, y = linear
    bare = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(CLASSES)]
    )
    data = (x.astype("float32"), y)
    common = {"attacks": ["fgsm"], "eps": [0.01], "noises": [], "progress": False}
    with pytest.raises(ValueError, match="no keras.layers.Normalization.*mean="):
        evaluate(bare, dataset=data, protocols=["authors-2020-06"], **common)
    mean, std = model_normalization(bare, mean=0.5, std=[0.2, 0.3])
    assert mean.tolist() == [0.5, 0.5] and std.tolist() == [0.2, 0.3]
    report = evaluate(
        bare, dataset=data, protocols=["authors-2020-06"], mean=0.5, std=0.2, **common
    )
    settings = report.data["settings"]
    (name,) = report.data["models"]
    # June: the stated radius in units of z, so eps * std in pixels (per
    # channel, units of 1/255): 0.01 * 0.2 * 255 = 0.51.
    assert settings["pixel_radius_255"]["authors-2020-06"][name] == {
        "2.55": [0.51, 0.51]
    }
    assert settings["normalization"][name] == {"mean": [0.5, 0.5], "std": [0.2, 0.2]}
    with pytest.raises(ValueError, match=r"Expected one of \('pixel', 'authors"):
        evaluate(model, dataset=data, protocols=["authors"], **common)
    with pytest.raises(ValueError, match="attack='apgd_ce'"):
        apgd = {**common, "attacks": ["apgd_ce"]}
        evaluate(model, dataset=data, protocols=["pixel", "authors-2020-08"], **apgd)
    out = tmp_path / "never"
    code = cli.main(
        [
            "evaluate",
            "--model",
            "x.keras",
            "--dataset",
            "fashion_mnist",
            "--protocols",
            "pixel,authors-2021",
            "--out",
            str(out),
        ]
    )
    assert code == 2 and not out.exists()
    assert "protocol='authors-2021'" in capsys.readouterr().err


def test_cli_runs_the_three_protocols_side_by_side(trained_small_model_path, tmp_path):
    path = trained_small_model_path
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", path, "--dataset", "fashion_mnist"]
    argv += ["--test-limit", "64"]
    argv += ["--attacks", "fgsm,pgd", "--eps", "2,8", "--noises", "gaussian,impulse"]
    argv += ["--severities", "1,5", "--out", str(out)]
    argv += ["--protocols", "pixel,authors-2020-06,authors-2020-08"]
    assert cli.main(argv) == 0
    report = RobustnessReport.from_json(str(out / "report.json")).data
    entry = report["models"]["in_resnet14"]
    settings = report["settings"]
    assert settings["protocols"] == ["pixel", "authors-2020-06", "authors-2020-08"]
    # Fashion-MNIST's std is 0.3530: 8/255 under June's protocol is 2.82/255.
    radii = settings["pixel_radius_255"]["authors-2020-06"]["in_resnet14"]
    assert radii["8"] == [pytest.approx(8 * 0.3530, abs=1e-3)]
    for protocol in ("authors-2020-06", "authors-2020-08"):
        scores = entry["protocols"][protocol]
        assert set(scores["attacks"]) == {"fgsm", "pgd"}
        assert set(scores["noises"]) == {"gaussian", "impulse"}
    # August: eps 0 is the clean accuracy and FGSM is pixel FGSM.
    august = entry["protocols"]["authors-2020-08"]
    assert august["eps0"] == entry["clean"]
    assert august["attacks"]["fgsm"]["8"] == pytest.approx(
        entry["attacks"]["fgsm"]["8"], abs=1 / 64
    )
    text = (out / "report.md").read_text()
    assert "| in_resnet14 | authors-2020-06 |" in text and "eps 0" in text


@pytest.mark.parametrize("protocol", ["authors-2020-06", "authors-2020-08"])
def test_evaluate_records_the_masks_of_the_numpy_replay(protocol, linear):
    """Through `evaluate` (float32 images, one batch, seed (0, 0)): each
    protocol attack's recorded per-example mask and accuracy are those of
    the NumPy replay's adversarial images."""
    model, w, b, x, y = linear
    x = x.astype("float32")
    report = evaluate(
        {"linear": model},
        dataset=(x, y),
        attacks=["fgsm"],
        eps=[8 / 255],
        noises=[],
        protocols=[protocol],
        protocol_attacks=["fgsm", "pgd"],
        progress=False,
    )
    entry = report.data["models"]["linear"]
    start = tf.random.stateless_uniform(
        x.shape, tf.constant([0, 0], tf.int64), -1.0, 1.0
    ).numpy()
    for attack in ("fgsm", "pgd"):
        adv = _reference(protocol, attack, x.astype("float64"), y, w, b, 8 / 255, start)
        expected = np.argmax(model.predict(adv, verbose=0), -1) == y
        packed = entry["masks"]["protocols"][protocol]["attacks"][attack]["8"]
        np.testing.assert_array_equal(unpack_mask(packed, len(y)), expected, attack)
        scores = entry["protocols"][protocol]["attacks"][attack]
        assert scores["8"] == expected.mean()
        assert 0 < expected.mean() < 1  # the replay broke some, not all


def test_attack_limit_attacks_the_first_examples_only(linear):
    """Clean and noise on all 24 images, the attacks (pixel and the authors')
    on the first 10: the same numbers as an evaluation of those 10 alone."""
    model, _, _, x, y = linear
    data = (x.astype("float32"), y)
    options = {
        "attacks": ["fgsm", "pgd"],
        "eps": [8 / 255],
        "noises": ["gaussian"],
        "severities": [1],
        "protocols": ["pixel", "authors-2020-08"],
        "batch_size": 32,
        "progress": False,
    }
    part = evaluate({"linear": model}, dataset=data, attack_limit=10, **options).data
    alone = evaluate({"linear": model}, dataset=(data[0][:10], y[:10]), **options).data
    settings = part["settings"]
    assert settings["examples"] == 24 and settings["attack_examples"] == 10
    entry, small = part["models"]["linear"], alone["models"]["linear"]
    assert entry["attacks"] == small["attacks"]
    assert entry["masks"]["attacks"] == small["masks"]["attacks"]
    assert entry["worst"] == small["worst"] and entry["attack_clean"] == small["clean"]
    protocol = entry["protocols"]["authors-2020-08"]["attacks"]
    assert protocol == small["protocols"]["authors-2020-08"]["attacks"]
    clean = np.argmax(model.predict(x, verbose=0), -1) == y
    assert entry["clean"] == pytest.approx(clean.mean())
    assert "(attacks on the first 10)" in RobustnessReport(part).to_markdown()
    with pytest.raises(ValueError, match="attack_limit=0"):
        evaluate(model, dataset=data, attack_limit=0, **options)


def test_an_authors_attack_without_the_models_normalisation_is_refused(linear):
    model, _, _, x, y = linear
    attack = make_attack("authors-2020-08:fgsm", lambda v: model(v))
    with pytest.raises(ValueError, match=r"context=AttackContext\(mean=.*std="):
        attack.perturb(tf.constant(x), tf.constant(y), 8 / 255, (0, 0))
