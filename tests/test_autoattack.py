"""AutoAttack: APGD-CE, APGD-T, Square, the sequence and what the report does
with them, against the paper's formulas and the Adversarial Robustness
Toolbox's implementations on the same images."""

import re

import keras
import numpy as np
import pytest

from keras_damped.robustness import Budget
from keras_damped.robustness import evaluate
from keras_damped.robustness import logits_fn
from keras_damped.robustness import make_attack
from keras_damped.robustness.autoattack import STAGES
from keras_damped.robustness.autoattack import apgd_checkpoints
from keras_damped.robustness.autoattack import margin
from keras_damped.robustness.autoattack import square_fraction
from keras_damped.robustness.autoattack import targeted_dlr
from keras_damped.robustness.report import unpack_mask

EXAMPLES = 64
# Ours may be weaker than ART's on the same 64 images by at most this many
# examples (random starts and Square's draws differ); in the runs that set it
# ours was equal or stronger.
ART_TOLERANCE = 2 / EXAMPLES


class Quantise(keras.layers.Layer):
    """Rounds to 8-bit levels: a no-op on the test images, and no gradient."""

    def call(self, x):
        return keras.ops.round(x * 255.0) / 255.0


@pytest.fixture(scope="module")
def radius(trained_small_model, images):
    """(eps, its label): the smallest of 2, 4, 8, 16 and 32/255 at which
    PGD-20 breaks at least a quarter of the examples the shared model gets
    right. The model is trained by these tests, and how robust it comes out
    depends on the CPU's kernels (at 4/255 an AVX2 build of it lost none):
    the comparisons below need a radius where the attacks break some."""
    x, y = images
    fn = logits_fn(trained_small_model)
    correct = np.argmax(trained_small_model(x, training=False).numpy(), -1) == y
    for k in (2, 4, 8, 16, 32):
        robust = make_attack("pgd", fn, Budget())(x, y, k / 255, (0, 0)).robust
        if (robust & correct).sum() <= 0.75 * correct.sum():
            return k / 255, str(k)
    raise AssertionError("PGD-20 breaks under a quarter of the examples at 32/255")


@pytest.fixture
def saved_model_path(tiny_model_path):
    return tiny_model_path


@pytest.fixture(scope="module")
def images(fm_images):
    return fm_images


def accuracy(model, x, y):
    # An eager call: `predict` would retrace the session-wide model's
    # predict function for every batch size.
    return float(np.mean(np.argmax(model(x, training=False).numpy(), -1) == y))


def test_apgd_checkpoints_follow_the_paper():
    # p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06):
    # the step size is checked after ceil(p_j * N) iterations.
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    expected = [round(v * 100) for v in p[1:]]
    points = apgd_checkpoints(100)
    assert [at + 1 for at, _ in points] == expected
    assert [length for _, length in points] == list(np.diff([0, *expected]))
    assert apgd_checkpoints(1) == [(0, 1)]  # at least one step per interval


@pytest.mark.numerics
def test_losses_and_square_schedule_match_their_formulas(rng):
    logits = rng.normal(size=(16, 10)).astype("float32")
    y = rng.integers(0, 10, 16).astype("int32")
    target = (y + 1 + rng.integers(0, 9, 16)).astype("int32") % 10
    z = np.sort(logits, -1)[:, ::-1]
    rows = np.arange(16)
    dlr = -(logits[rows, y] - logits[rows, target]) / (
        z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12
    )
    np.testing.assert_allclose(targeted_dlr(logits, y, target), dlr, rtol=1e-5)
    others = np.where(np.eye(10, dtype=bool)[y], -np.inf, logits).max(-1)
    np.testing.assert_allclose(margin(logits, y), logits[rows, y] - others, rtol=1e-6)
    # AutoAttack's schedule at its 5,000 queries, in proportion for 500.
    halvings = [square_fraction(i) for i in (1, 10, 11, 50, 51, 4000, 4001, 6001)]
    assert halvings == [0.8, 0.8, 0.4, 0.4, 0.2, 0.8 / 64, 0.8 / 128, 0.8 / 256]
    assert [square_fraction(i, 500) for i in (2, 5, 6, 400, 401, 601)] == halvings[2:]


@pytest.mark.slow
def test_autoattack_is_at_least_as_strong_as_pgd_and_the_worst_case_is_the_and(
    trained_small_model, images, radius
):
    x, y = images
    eps, k = radius
    report = evaluate(
        trained_small_model,
        dataset=(x, y),
        attacks=["fgsm", "pgd", "apgd_ce", "autoattack"],
        eps=[1 / 255, eps],
        attack_eps={"fgsm": [eps]},
        noises=[],
        test_limit=EXAMPLES,
        batch_size=EXAMPLES,
        progress=False,
        apgd_steps=30,
        target_classes=3,
        square_queries=100,
    )
    m = report.data["models"]["in_resnet14"]
    acc = m["attacks"]
    assert m["sanity"]["in_ball"] and m["sanity"]["in_range"]
    for attack in ("apgd_ce", "autoattack"):
        assert acc[attack]["1"] <= m["clean"]
        assert m["sanity"]["max_linf"][attack][k] <= eps + 1e-6
    # FGSM ran at its own radius only (attack_eps); the worst case at 1/255
    # takes the attacks that ran there.
    assert list(acc["fgsm"]) == [k]
    assert m["worst"]["1"] <= min(acc[a]["1"] for a in ("pgd", "apgd_ce"))
    # At the radius that breaks some examples:
    assert acc["apgd_ce"][k] <= acc["pgd"][k]
    assert acc["autoattack"][k] <= acc["pgd"][k]
    # The sequence starts with the same APGD-CE run (same seed).
    assert acc["autoattack"][k] <= acc["apgd_ce"][k]
    stages = m["autoattack_stages"][k]
    assert stages["apgd_ce"] == acc["apgd_ce"][k]
    assert stages["apgd_ce"] >= stages["apgd_t"] >= stages["square"]
    # Worst case: robust only if correct clean and every attack left the
    # example correct.
    survive = unpack_mask(m["masks"]["clean"], EXAMPLES)
    for attack in acc:
        survive &= unpack_mask(m["masks"]["attacks"][attack][k], EXAMPLES)
    assert m["worst"][k] == survive.mean()
    assert unpack_mask(m["masks"]["worst"][k], EXAMPLES).tolist() == (survive.tolist())
    assert m["worst"][k] <= min(a[k] for a in acc.values())
    assert 0 < acc["autoattack"][k] < m["clean"]  # breaks some, not all
    assert m["sanity"]["square_beats_gradient"] is False
    assert m["seconds"]["autoattack"][k] > 0
    # Each stage against its attack run alone on what the stages before
    # left, with the seed evaluate gave the batch (seed 0, batch 0).
    budget = Budget(apgd_steps=30, target_classes=3, square_queries=100)
    fn = logits_fn(trained_small_model)
    alive = np.argmax(trained_small_model(x, training=False).numpy(), -1) == y
    for stage in STAGES:  # APGD-CE, APGD-T, FAB-T, Square
        todo = np.flatnonzero(alive)
        alone = make_attack(stage, fn, budget)(x[todo], y[todo], eps, (0, 0))
        alive[todo] = alone.robust
        recorded = m["masks"]["autoattack_stages"][k][stage]
        np.testing.assert_array_equal(unpack_mask(recorded, EXAMPLES), alive, stage)
    assert acc["autoattack"][k] == alive.mean()
    markdown = report.to_markdown()
    assert f"| FGSM {k} | PGD 1 | PGD {k} |" in markdown
    reduced = "AUTOATTACK (reduced)"  # not the standard budget, and it says so
    assert f"| {reduced} 1 | {reduced} {k} | WORST 1 | WORST {k} |" in markdown
    assert f"| in_resnet14 | {k} |" in markdown  # the step-by-step table


@pytest.mark.slow
def test_square_breaks_a_model_without_input_gradient_and_is_flagged(
    trained_small_model, images
):
    x, y = images
    quantised = keras.Sequential(
        [keras.Input((28, 28, 1)), Quantise(), trained_small_model], name="quantised"
    )
    assert accuracy(quantised, x, y) == accuracy(trained_small_model, x, y)
    report = evaluate(
        quantised,
        dataset=(x, y),
        attacks=["pgd", "square"],
        eps=[16 / 255],
        noises=[],
        test_limit=EXAMPLES,
        batch_size=EXAMPLES,
        progress=False,
        square_queries=300,
    )
    m = report.data["models"]["quantised"]
    pgd, square = m["attacks"]["pgd"]["16"], m["attacks"]["square"]["16"]
    assert pgd >= m["clean"] - 0.1  # PGD sees a zero gradient and fails
    assert square <= pgd - 0.2
    # The gain: what Square broke among the examples correct clean and after PGD.
    clean = unpack_mask(m["masks"]["clean"], EXAMPLES)
    after_pgd = clean & unpack_mask(m["masks"]["attacks"]["pgd"]["16"], EXAMPLES)
    assert m["sanity"]["square_gain"]["16"] == pytest.approx(
        after_pgd.mean() - m["worst"]["16"]
    )
    assert m["sanity"]["square_beats_gradient"]
    assert any(
        re.search(r"Square \(gradient-free\) beats the gradient attacks by", f)
        for f in m["sanity"]["flags"]
    )
    assert "possible gradient masking" in report.to_markdown()


class TracedForward:
    """A Keras model's forward pass as one traced function, called the way
    ART calls a model (`model(x, training=...)`). ART would run the model
    eagerly, which made its two APGD runs here 2.5x slower; the function and
    its gradient are the same."""

    def __init__(self, model):
        import tensorflow as tf

        self._call = tf.function(
            lambda x, training: model(x, training=training), reduce_retracing=True
        )

    def __call__(self, x, training=False):
        return self._call(x, training)


def art_classifier(model):
    from art.estimators.classification import TensorFlowV2Classifier

    return TensorFlowV2Classifier(
        model=TracedForward(model),
        nb_classes=10,
        input_shape=(28, 28, 1),
        loss_object=keras.losses.CategoricalCrossentropy(from_logits=True),
        clip_values=(0.0, 1.0),
    )


def art_apgd(classifier, x, y, eps, steps, targeted=False):
    from art.attacks.evasion import AutoProjectedGradientDescent

    attack = AutoProjectedGradientDescent(
        classifier,
        norm=np.inf,
        eps=eps,
        eps_step=2 * eps,  # APGD's first step is 2 eps
        max_iter=steps,
        targeted=targeted,
        nb_random_init=1,
        batch_size=len(x),
        loss_type="cross_entropy",
        verbose=False,
    )
    return attack.generate(x, np.eye(10, dtype="float32")[y])


@pytest.mark.slow
def test_our_attacks_are_as_strong_as_art_on_the_same_images(
    trained_small_model, images, radius
):
    from art.attacks.evasion import SquareAttack

    # ART traces the model it is given with shapes it relaxes as it goes:
    # give it a copy, not the model other tests share.
    model = keras.models.clone_model(trained_small_model)
    model.set_weights(trained_small_model.get_weights())
    x, y = images
    (eps, _), steps, queries = radius, 20, 200
    classifier = art_classifier(model)
    fn = logits_fn(model)
    np.random.seed(0)
    ours, theirs = {}, {}

    def our(name, **budget):
        attack = make_attack(name, fn, Budget(**budget))
        x_adv = attack(x, y, eps, seed=(0, 0)).x_adv
        assert np.abs(x_adv - x).max() <= eps + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1
        return accuracy(model, x_adv, y)

    ours["apgd_ce"] = our("apgd_ce", apgd_steps=steps)
    theirs["apgd_ce"] = accuracy(model, art_apgd(classifier, x, y, eps, steps), y)

    # APGD-T against the 2 classes ranked next after the top one; ART has no
    # targeted DLR loss, so its targeted APGD runs with cross-entropy.
    ours["apgd_t"] = our("apgd_t", apgd_steps=steps, target_classes=2)
    ranked = np.argsort(-model(x, training=False).numpy(), -1)
    robust = np.ones(EXAMPLES, dtype=bool)
    for rank in (1, 2):
        todo = np.flatnonzero(robust)
        x_adv = art_apgd(classifier, x[todo], ranked[todo, rank], eps, steps, True)
        robust[todo] &= np.argmax(model(x_adv, training=False).numpy(), -1) == y[todo]
    theirs["apgd_t"] = float(np.mean(robust & (ranked[:, 0] == y)))

    ours["square"] = our("square", square_queries=queries)
    square = SquareAttack(
        classifier, norm=np.inf, eps=eps, max_iter=queries, nb_restarts=1, verbose=False
    )
    theirs["square"] = accuracy(model, square.generate(x, y), y)

    clean = accuracy(model, x, y)
    for name in ours:
        assert ours[name] <= theirs[name] + ART_TOLERANCE, (name, ours, theirs)
        assert ours[name] < clean, name  # each breaks some examples


def test_budgets_are_checked(saved_model_path):
    for budget, value in (
        ("square_queries", 0),
        ("apgd_steps", 2.5),
        ("target_classes", -1),
        ("apgd_steps", True),
    ):
        with pytest.raises(ValueError, match=rf"{budget} must be a positive integer"):
            evaluate(saved_model_path, dataset="fashion_mnist", **{budget: value})


def test_targeted_attacks_refuse_a_model_with_fewer_than_4_classes(images):
    x, y = images
    three = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    for attack in ("apgd_t", "autoattack"):
        with pytest.raises(ValueError, match=rf"{attack} needs .* 4 classes.*has 3"):
            evaluate(
                three, dataset=(x, y % 3), attacks=[attack], eps=[8 / 255], noises=[]
            )
