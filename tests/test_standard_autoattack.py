"""AutoAttack's standard sequence: each attack in order on what the ones
before left, its forward passes counted by the model itself; and
AutoAttack's own checks, each on a model built to trigger it."""

import keras
import numpy as np
import pytest

from keras_damped.robustness import checks
from keras_damped.robustness import evaluate
from keras_damped.robustness import logits_fn
from keras_damped.robustness.autoattack import STAGES
from keras_damped.robustness.autoattack import AutoAttackRunner

SHAPE = (8, 8, 1)
CLASSES = 4


class CountImages(keras.layers.Layer):
    """The identity that counts the images through it, in a variable (so
    compiled graphs count too)."""

    def build(self, input_shape):
        self.seen = self.add_weight(
            shape=(), dtype="int64", initializer="zeros", trainable=False
        )

    def call(self, x):
        self.seen.assign_add(keras.ops.cast(keras.ops.shape(x)[0], "int64"))
        return x


class Quantise(keras.layers.Layer):
    """Rounds to 8-bit levels: no input gradient anywhere."""

    def call(self, x):
        return keras.ops.round(x * 255.0) / 255.0


class Noisy(keras.layers.Layer):
    """Adds fresh noise at every call, inference too."""

    def call(self, x):
        return x + 0.1 * keras.random.normal(keras.ops.shape(x))


def small_model(*front, softmax=False):
    rng = np.random.default_rng(3)
    dense = keras.layers.Dense(CLASSES, activation="softmax" if softmax else None)
    model = keras.Sequential(
        [keras.Input(SHAPE), *front, keras.layers.Flatten(), dense]
    )
    dense.set_weights(
        [
            rng.normal(size=(int(np.prod(SHAPE)), CLASSES)).astype("float32"),
            np.zeros(CLASSES, "float32"),
        ]
    )
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, (48, *SHAPE)).astype("float32")
    y = rng.integers(0, CLASSES, 48).astype("int32")
    return x, y


def test_each_stage_runs_in_order_on_the_survivors_and_its_passes_are_counted(data):
    x, _ = data
    counter = CountImages()
    model = small_model(counter)
    y = model(x).numpy().argmax(-1).astype("int32")
    y[:8] = (y[:8] + 1) % CLASSES  # 8 examples wrong clean: never attacked
    runner = AutoAttackRunner(
        logits_fn(model), apgd_steps=8, square_queries=60, target_classes=3
    )
    survivors = (model(x).numpy().argmax(-1) == y).sum()
    before = int(counter.seen.numpy())
    _, masks = runner.run(x, y, 0.08, STAGES, seed=(0, 1))
    counted = int(counter.seen.numpy()) - before
    record = runner.last_run
    assert list(record["stages"]) == list(STAGES)  # the standard order
    assert survivors == 40 and record["clean_passes"] == len(x)
    for stage in STAGES:
        assert record["stages"][stage]["attacked"] == survivors, stage
        survivors = masks[stage].sum()
    # Some examples survive APGD-CE, so the later stages do work, on fewer.
    assert 0 < record["stages"]["apgd_t"]["attacked"] < 40
    # Every image the model saw is in the runner's count, and no more.
    total = record["clean_passes"] + sum(
        s["forward_passes"] for s in record["stages"].values()
    )
    assert total == counted


def test_the_model_checks_flag_random_outputs_and_probabilities(data):
    x, y = data

    def numpy_logits(model):
        return lambda v: model(v).numpy()

    plain = checks.model_checks(numpy_logits(small_model()), x, y)
    assert plain == {"randomized": False, "probabilities": False}
    noisy = checks.model_checks(numpy_logits(small_model(Noisy())), x, y)
    assert noisy["randomized"] and not noisy["probabilities"]
    softmax = checks.model_checks(numpy_logits(small_model(softmax=True)), x, y)
    assert softmax["probabilities"] and not softmax["randomized"]
    with pytest.warns(UserWarning, match="AutoAttack check: the model's outputs look"):
        _, messages = checks.autoattack_flags(softmax, 0, {}, CLASSES, {})
    assert len(messages) == 1


def test_zero_gradients_square_and_too_many_targets_are_flagged(data):
    """A quantised linear model: APGD starts with a zero gradient on every
    example and breaks none, Square breaks many, and 9 targets is more than
    its 4 classes allow."""
    x, _ = data
    model = small_model(Quantise())
    y = model(x).numpy().argmax(-1).astype("int32")
    with pytest.warns(UserWarning, match="AutoAttack check"):
        report = evaluate(
            {"quantised": model},
            dataset=(x, y),
            attacks=["autoattack"],
            eps=[32 / 255],
            noises=[],
            test_limit=len(x),
            apgd_steps=5,
            square_queries=200,
            target_classes=9,
            progress=False,
        )
    m = report.data["models"]["quantised"]
    sanity = m["sanity"]
    found = sanity["autoattack_checks"]
    # Every random start has a zero gradient: APGD-CE's one per example, and
    # APGD-T's one per example per target (3 usable) until it falls.
    stages = m["cost"]["autoattack"]["32"]["stages"]
    ce, targeted = stages["apgd_ce"]["attacked"], stages["apgd_t"]["attacked"]
    assert ce + targeted <= found["zero_gradients"] <= ce + 3 * targeted
    assert targeted > 0
    assert found["square_gain"]["32"] > checks.SQUARE_TOLERANCE
    assert found["too_many_targets"] == {
        "AUTOATTACK (reduced)": 9,
        "APGD_T": 9,
        "FAB-T": 9,
    }
    flags = " | ".join(sanity["autoattack_flags"])
    assert f"{found['zero_gradients']} random starts with an all-zero input" in flags
    assert "Square lowered AUTOATTACK (reduced)'s robust accuracy" in flags
    assert "asks for 9 target classes, more than the 3 possible" in flags
    assert "AutoAttack's own checks:" in report.to_markdown()
