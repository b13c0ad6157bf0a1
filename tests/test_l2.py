"""The L2 threat model: its projections and draws against NumPy, the
attacks against a linear classifier's known minimal L2 distance, and an
L2 evaluation's report and command line."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped.robustness import Budget
from keras_damped.robustness import EvalConfig
from keras_damped.robustness import evaluate
from keras_damped.robustness import logits_fn
from keras_damped.robustness import make_attack
from keras_damped.robustness.attacks import l2_ball_start
from keras_damped.robustness.autoattack import _project_l2
from keras_damped.robustness.autoattack import square_l2_pattern
from keras_damped.robustness.autoattack import square_l2_size

SHAPE = (6, 6, 1)
CLASSES = 4


def test_the_apgd_projection_is_numpys(rng):
    x = rng.uniform(0.2, 0.8, (5, *SHAPE)).astype("float32")
    x_new = (x + rng.normal(0, 0.3, x.shape)).astype("float32")
    eps = 0.5
    d = (x_new - x).reshape(5, -1)
    length = np.linalg.norm(d, axis=-1)
    expected = np.clip(
        x + (d * (np.minimum(eps, length) / length)[:, None]).reshape(x.shape), 0, 1
    )
    got = _project_l2(tf.constant(x_new), tf.constant(x), eps).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    inside = (x + 0.01 * np.sign(x_new - x)).astype("float32")  # length 0.06
    np.testing.assert_allclose(
        _project_l2(tf.constant(inside), tf.constant(x), eps).numpy(), inside, atol=1e-6
    )


def test_pgds_start_is_uniform_in_the_l2_ball():
    """In d = 2 dimensions a uniform draw's radius r has P(r <= eps * q) =
    q^2: its median is eps / sqrt(2), and every draw lies in the ball."""
    x = tf.zeros([20000, 2, 1, 1])
    start = l2_ball_start(x, tf.constant([3, 4], tf.int64), 0.5).numpy()
    radius = np.linalg.norm(start.reshape(len(start), -1), axis=-1)
    assert radius.max() <= 0.5 + 1e-6
    assert np.median(radius) == pytest.approx(0.5 / np.sqrt(2), abs=0.01)
    angle = np.arctan2(start[:, 1, 0, 0], start[:, 0, 0, 0])
    assert np.histogram(angle, bins=4)[0].min() > 4500  # no preferred direction


@pytest.mark.parametrize("size", [1, 3, 5, 6, 7])
def test_square_l2_pattern_is_the_nested_rectangles(size):
    """Square-L2's window: in each half, the value at a pixel is
    sum_{k >= m} 1/(k + 1)^2 over the rectangles around the half's centre
    that hold it (m: the pixel's Chebyshev distance to that centre), each
    half of unit norm, the lower one negated, the whole of unit norm."""

    def half(height, width):
        rings = max(height // 2 + 1, width // 2 + 1)
        out = np.zeros((height, width))
        for i in range(height):
            for j in range(width):
                m = max(abs(i - height // 2), abs(j - width // 2))
                out[i, j] = sum(1 / (k + 1) ** 2 for k in range(m, rings))
        return out / np.linalg.norm(out) if height else out

    expected = np.concatenate([half(size // 2, size), -half(size - size // 2, size)])
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(square_l2_pattern(size), expected, atol=1e-6)


def test_square_l2_window_is_odd_at_least_3_and_fits():
    sizes = [square_l2_size(i, 28, 28) for i in range(1, 5000)]
    assert sizes[0] == round(np.sqrt(0.8 * 28 * 28)) + 1 - round(np.sqrt(0.8 * 784)) % 2
    assert all(s % 2 == 1 and 3 <= s <= 28 for s in sizes)
    assert sizes == sorted(sizes, reverse=True)
    assert square_l2_size(1, 4, 4) == 4  # the image's side caps it


@pytest.fixture(scope="module")
def linear():
    """A linear classifier of 6x6 images, its images (pixels in [0.4, 0.6],
    so the box never binds) and each image's minimal L2 distance to a
    wrong class, min_t (z_y - z_t) / ||w_y - w_t||."""
    rng = np.random.default_rng(7)
    w = rng.normal(size=(int(np.prod(SHAPE)), CLASSES)).astype("float32")
    b = rng.normal(size=CLASSES).astype("float32")
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(CLASSES)]
    )
    model.layers[-1].set_weights([w, b])
    x = rng.uniform(0.4, 0.6, (24, *SHAPE)).astype("float32")
    z = x.reshape(len(x), -1) @ w + b
    y = z.argmax(-1).astype("int32")
    distance = np.full(len(x), np.inf)
    for t in range(CLASSES):
        gap = z[np.arange(len(x)), y] - z[:, t]
        norm = np.linalg.norm(w[:, y] - w[:, [t]], axis=0)
        other = t != y
        distance[other] = np.minimum(distance[other], gap[other] / norm[other])
    return model, x, y, distance


L2_ATTACKS = ["fgsm", "ifgsm", "pgd", "mim", "apgd_ce", "apgd_t", "fab_t", "square"]


@pytest.mark.parametrize("name", L2_ATTACKS + ["autoattack"])
def test_no_l2_attack_breaks_a_point_inside_its_minimal_distance(linear, name):
    """Scaled so each image's radius is 0.97 of its own minimal distance
    (one radius per call: images of one call share it), no attack can
    break anything; each stays in its L2 ball and in [0, 1]."""
    model, x, y, distance = linear
    budget = Budget(
        norm="l2", steps=10, apgd_steps=20, target_classes=3, square_queries=100
    )
    attack = make_attack(name, logits_fn(model), budget)
    assert attack.norm == "l2"
    for i in range(0, len(x), 6):
        eps = 0.97 * distance[i : i + 6].min()
        result = attack(x[i : i + 6], y[i : i + 6], eps, (0, i))
        change = (result.x_adv - x[i : i + 6]).reshape(6, -1)
        assert np.linalg.norm(change, axis=-1).max() <= eps * (1 + 1e-5)
        assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
        assert result.robust.all()


@pytest.mark.parametrize("name", ["apgd_t", "fab_t", "autoattack"])
def test_the_targeted_l2_attacks_reach_the_minimal_distance(linear, name):
    """Just beyond the minimal distance (1.03x, per image) the targeted
    attacks, whose loss is the margin to the closest class, break every
    image."""
    model, x, y, distance = linear
    budget = Budget(norm="l2", apgd_steps=50, target_classes=3, square_queries=100)
    attack = make_attack(name, logits_fn(model), budget)
    for i in range(len(x)):
        result = attack(x[i : i + 1], y[i : i + 1], 1.03 * distance[i], (0, i))
        assert not result.robust[0], (name, i)


def test_an_l2_config_checks_its_attacks_radii_and_protocols():
    with pytest.raises(ValueError, match=r"Attacks \['spsa'\] cannot run in the l2"):
        EvalConfig(
            dataset="fashion_mnist", norm="l2", attacks=["pgd", "spsa"]
        ).validate()
    with pytest.raises(ValueError, match=r"eps must be L2 radii.*-0.5"):
        EvalConfig(dataset="fashion_mnist", norm="l2", eps=[-0.5]).validate()
    with pytest.raises(ValueError, match=r"only protocols=\['pixel'\]"):
        EvalConfig(
            dataset="fashion_mnist", norm="l2", protocols=["pixel", "authors-2020-06"]
        ).validate()
    with pytest.raises(ValueError, match=r"Unknown norm.*\('linf', 'l2'\).*'L1'"):
        EvalConfig(dataset="fashion_mnist", norm="L1").validate()
    assert EvalConfig(dataset="fashion_mnist", norm="l2").validate().eps == [
        0.25,
        0.5,
        1.0,
    ]
    # Beyond 255/255 is fine in L2 (a length, not a pixel change).
    assert EvalConfig(dataset="fashion_mnist", norm="l2", eps=[3.0]).validate().eps == [
        3.0
    ]


def test_an_l2_evaluation_says_so_everywhere(linear, tmp_path):
    model, x, y, distance = linear
    report = evaluate(
        {"linear": model},
        dataset=(x, y),
        norm="l2",
        eps=[0.5],
        attacks=["fgsm", "pgd", "cw_l2"],
        noises=[],
        test_limit=len(x),
        steps=5,
        progress=False,
    )
    m = report.data["models"]["linear"]
    settings = report.data["settings"]
    assert settings["norm"] == "l2"
    assert settings["attack_specs"]["pgd"]["norm"] == "l2"
    # The worst case is over every L2 attack, C&W included; no attack can
    # break an image farther than 0.5 from every wrong class.
    assert m["worst"]["127.5"] <= min(m["attacks"][a]["127.5"] for a in m["attacks"])
    assert m["worst"]["127.5"] >= np.mean(distance > 0.5)
    assert set(m["sanity"]["max_l2"]) == {"fgsm", "pgd", "cw_l2"}
    assert m["sanity"]["in_ball"]
    markdown = report.to_markdown()
    assert "Threat model: L2" in markdown
    assert "| PGD 0.5 |" in markdown and "| WORST 0.5 |" in markdown
    assert "step 2.5 eps / steps" in markdown
    # The large-radius check runs in the L2 ball holding the 64/255 cube.
    assert m["sanity"]["large_eps"] == pytest.approx(64 / 255 * np.sqrt(36))
    report.save(str(tmp_path / "r"))
    saved = json.loads((tmp_path / "r" / "report.json").read_text())
    assert saved["settings"]["norm"] == "l2"
