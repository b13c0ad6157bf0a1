"""The CIFAR-10-C noise group as seeded TensorFlow functions.

Parameters and quantisation follow Hendrycks & Dietterich (2019) for 32x32
images (docs/paper.md section 5): each corruption works on x in [0, 1] and the
result is stored as `uint8(clip(corrupt(x), 0, 1) * 255)`, a truncation.
"""

import math

import tensorflow as tf

# Severity 1..5 parameters of CIFAR-10-C (not the ImageNet-C values).
NOISES = {
    "gaussian": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot": (500, 250, 100, 75, 50),
    "impulse": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle": (0.06, 0.10, 0.12, 0.16, 0.20),
}
SEVERITIES = (1, 2, 3, 4, 5)


def check_noise(noise, severity):
    if noise not in NOISES:
        raise ValueError(
            f"Unknown noise. Expected one of {sorted(NOISES)}. "
            f"Received: noise={noise!r}"
        )
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise ValueError(
            f"severity must be an integer in 1-5. Received: severity={severity!r}"
        )
    return NOISES[noise][severity - 1]


def check_level(noise, level):
    """Validates an explicit noise parameter c (beyond the five severities)."""
    if noise not in NOISES:
        raise ValueError(
            f"Unknown noise. Expected one of {sorted(NOISES)}. "
            f"Received: noise={noise!r}"
        )
    if (
        isinstance(level, bool)
        or not isinstance(level, (int, float))
        or not math.isfinite(level)
        or level <= 0
        or (noise == "impulse" and level > 1)
    ):
        raise ValueError(
            f"A {noise} noise level must be a finite number > 0"
            + (" and <= 1 (a fraction)" if noise == "impulse" else "")
            + f" (the severities use {NOISES[noise]}). Received: level={level!r}"
        )
    return float(level)


def corrupt(images, noise, severity=None, seed=(0, 0), quantize=True, level=None):
    """Applies one CIFAR-10-C noise to a batch of images in [0, 1].

    Args:
        images: float tensor of pixels in [0, 1], any shape.
        noise: `"gaussian"`, `"shot"`, `"impulse"` or `"speckle"`.
        severity: 1 to 5 (the CIFAR-10-C parameter c); or None with `level`.
        seed: a stateless seed, a pair of integers; the same seed gives the
            same noise.
        quantize: store as CIFAR-10-C does, `uint8(clip(x, 0, 1) * 255)`
            (truncation), and return that divided by 255.
        level: an explicit parameter c instead of a severity (e.g. a
            Gaussian sigma of 0.3, beyond severity 5's 0.10).

    Returns:
        A float32 tensor of the images' shape, in [0, 1].

    Formula:
    ```python
    gaussian: x + N(0, c^2)          shot:    Poisson(x * c) / c
    impulse:  a fraction c of values set to 0 or 1 (1:1)
    speckle:  x + x * N(0, c^2)
    ```
    """
    if (severity is None) == (level is None):
        raise ValueError(
            "Pass exactly one of severity (1-5) and level (an explicit c). "
            f"Received: severity={severity!r}, level={level!r}"
        )
    c = check_noise(noise, severity) if level is None else check_level(noise, level)
    x = tf.convert_to_tensor(images, tf.float32)
    seed = tf.convert_to_tensor(seed, tf.int64)
    shape = tf.shape(x)
    if noise == "gaussian":
        out = x + c * tf.random.stateless_normal(shape, seed)
    elif noise == "speckle":
        out = x + x * c * tf.random.stateless_normal(shape, seed)
    elif noise == "shot":
        out = tf.random.stateless_poisson(shape, seed, lam=x * c, dtype=tf.float32) / c
    else:
        hit_seed, salt_seed = tf.unstack(tf.random.experimental.stateless_split(seed))
        hit = tf.random.stateless_uniform(shape, hit_seed) < c
        salt = tf.random.stateless_uniform(shape, salt_seed) < 0.5
        out = tf.where(hit, tf.cast(salt, tf.float32), x)
    out = tf.clip_by_value(out, 0.0, 1.0)
    if quantize:
        out = tf.floor(out * 255.0) / 255.0
    return out
