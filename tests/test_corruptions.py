"""The CIFAR-10-C noise functions against their formulas."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_damped.data import NOISES
from keras_damped.data import corrupt
from keras_damped.data import load_arrays

GRAY = np.full((200, 32, 32, 3), 0.5, "float32")


@pytest.mark.parametrize("severity", [1, 3, 5])
def test_gaussian_mean_and_variance(severity):
    c = NOISES["gaussian"][severity - 1]
    out = corrupt(GRAY, "gaussian", severity, seed=(1, 2), quantize=False).numpy()
    assert abs(out.mean() - 0.5) < 3e-4
    assert out.std() == pytest.approx(c, rel=0.01)


@pytest.mark.parametrize("severity", [1, 5])
def test_speckle_is_multiplicative(severity):
    c = NOISES["speckle"][severity - 1]
    x = np.full((100, 32, 32, 3), 0.25, "float32")
    out = corrupt(x, "speckle", severity, seed=(3, 4), quantize=False).numpy()
    assert abs(out.mean() - 0.25) < 3e-4
    assert out.std() == pytest.approx(0.25 * c, rel=0.01)


@pytest.mark.parametrize("severity", [1, 4])
def test_shot_noise_variance_is_x_over_c(severity):
    c = NOISES["shot"][severity - 1]
    x = np.full((100, 32, 32, 3), 0.4, "float32")
    out = corrupt(x, "shot", severity, seed=(5, 6), quantize=False).numpy()
    assert out.mean() == pytest.approx(0.4, abs=2e-3)
    assert out.var() == pytest.approx(0.4 / c, rel=0.02)
    assert np.allclose(out * c, np.round(out * c), atol=1e-3)  # Poisson counts / c


@pytest.mark.parametrize("severity", [2, 5])
def test_impulse_fraction_and_salt_pepper_balance(severity):
    c = NOISES["impulse"][severity - 1]
    out = corrupt(GRAY, "impulse", severity, seed=(7, 8), quantize=False).numpy()
    changed = out != 0.5
    assert changed.mean() == pytest.approx(c, rel=0.03)
    assert set(np.unique(out[changed])) <= {0.0, 1.0}
    assert (out == 1).sum() / changed.sum() == pytest.approx(0.5, abs=0.02)


def test_uint8_truncation_like_cifar10c(rng):
    x = rng.uniform(size=(4, 8, 8, 3)).astype("float32")
    raw = corrupt(x, "gaussian", 3, seed=(9, 9), quantize=False).numpy()
    stored = corrupt(x, "gaussian", 3, seed=(9, 9)).numpy()
    np.testing.assert_allclose(stored * 255, np.floor(raw * 255), atol=1e-3)
    assert stored.min() >= 0 and stored.max() <= 1


@pytest.mark.parametrize("noise", list(NOISES))
def test_seeded_and_ordered_by_severity(noise, rng):
    x = rng.uniform(size=(16, 16, 16, 3)).astype("float32")
    a = corrupt(x, noise, 2, seed=(0, 1)).numpy()
    np.testing.assert_array_equal(a, corrupt(x, noise, 2, seed=(0, 1)).numpy())
    assert not np.array_equal(a, corrupt(x, noise, 2, seed=(0, 2)).numpy())
    damage = [
        np.abs(corrupt(x, noise, s, seed=(0, 1)).numpy() - x).mean()
        for s in range(1, 6)
    ]
    assert all(a < b for a, b in zip(damage, damage[1:])), damage


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: corrupt(GRAY, "blur", 1), "noise='blur'"),
        (lambda: corrupt(GRAY, "shot", 6), "severity=6"),
        (lambda: corrupt(GRAY, "shot", 0), "severity=0"),
    ],
)
def test_bad_noise_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_cifar10_corrupted_through_tfds_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path)):
        images, labels = load_arrays("cifar10_corrupted/speckle_noise_3", "test")
    assert images.shape == (12, 32, 32, 3) and images.dtype == np.uint8
    assert labels.shape == (12,)


def test_explicit_level_beyond_the_severities():
    """`level=c` uses c itself: a Gaussian sigma of 0.3 (severity 5 is 0.10),
    clipped to [0, 1]; against NumPy's clipped normal of the same sigma."""
    out = corrupt(GRAY, "gaussian", level=0.3, seed=(1, 2), quantize=False).numpy()
    draws = np.random.default_rng(0).normal(0.5, 0.3, size=2_000_000)
    expected = np.clip(draws, 0, 1).std()  # about 0.25: the clip cuts the tails
    assert out.std() == pytest.approx(expected, rel=0.01)
    assert ((out == 0) | (out == 1)).mean() == pytest.approx(
        2 * 0.0478, abs=0.005
    )  # P(|N(0, 0.3)| > 0.5) = 2 x 0.0478
    raw = corrupt(GRAY * 0 + 0.5, "gaussian", level=0.05, seed=(1, 2), quantize=False)
    assert np.asarray(raw).std() == pytest.approx(0.05, rel=0.01)
    same = corrupt(GRAY, "gaussian", 3, seed=(1, 2)).numpy()
    np.testing.assert_array_equal(
        same, corrupt(GRAY, "gaussian", level=NOISES["gaussian"][2], seed=(1, 2))
    )
    # Severity 3 is sigma 0.08 (stored in truncated steps of 1/255).
    assert same.std() == pytest.approx(0.08, rel=0.03)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({}, "exactly one of severity"),
        ({"severity": 2, "level": 0.1}, "exactly one of severity"),
        ({"level": -0.1}, "level=-0.1"),
        ({"level": float("nan")}, "finite number > 0"),
    ],
)
def test_bad_levels_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        corrupt(GRAY[:1], "gaussian", **kwargs)
    with pytest.raises(ValueError, match=r"fraction.*level=1.5"):
        corrupt(GRAY[:1], "impulse", level=1.5)
