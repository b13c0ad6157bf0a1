"""FAB-T (keras_damped/robustness/fab.py): its projections against a NumPy
bisection, the minimal perturbation of a linear classifier in closed form,
the targets and survivors of a run, and the same numbers on JAX."""

import json
import textwrap

import keras
import numpy as np
import pytest
from jax_subprocess import run_on_jax
from keras import ops

from keras_damped.robustness.fab import FABTargeted
from keras_damped.robustness.fab import project


def bisection_projection(t, w, b, norm):
    """The box-constrained projection by bisection on its level (another
    algorithm than fab.py's sorted kinks): the step moves each coordinate
    towards the plane, L-infinity by min(lam, room), L2 by -mu * w clipped
    to the box; where even the whole box falls short, its corner."""
    c = w @ t - b
    side = -np.sign(c)
    if norm == "linf":
        direction = side * np.sign(w)
        limit = np.where(direction > 0, 1 - t, t)
        weight = np.abs(w)

        def step(lam):
            return direction * np.minimum(lam, limit)
    else:
        v = -side * w
        moving = np.abs(w) > 1e-8
        safe = np.where(moving, v, 1.0)
        limit = np.where(moving, np.where(v > 0, t / safe, (t - 1) / safe), 0.0)
        weight = v * v

        def step(lam):
            return -v * np.minimum(lam, limit)

    def reach(lam):
        return np.sum(weight * np.minimum(lam, limit))

    low, high = 0.0, limit.max()
    if reach(high) >= abs(c):
        for _ in range(100):
            middle = (low + high) / 2
            low, high = (middle, high) if reach(middle) < abs(c) else (low, middle)
    return np.where(w != 0, step(high), 0.0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_the_projections_are_the_box_constrained_minimum(norm):
    rng = np.random.default_rng(7)
    count, n = 300, 24
    t = rng.uniform(0, 1, (count, n)).astype("float32")
    w = rng.normal(size=(count, n)).astype("float32")
    w[rng.uniform(size=(count, n)) < 0.2] = 0  # pixels without gradient
    t[:, :3] = rng.choice([0.0, 1.0], (count, 3))  # on the box's faces
    # Planes near (inside the box) and far (the box's corner falls short).
    scale = rng.choice([0.05, 0.5, 3.0, 30.0], count)
    b = np.sum(w * t, -1) + rng.normal(size=count) * scale
    d = ops.convert_to_numpy(project(t, w, b, norm))
    expected = np.stack(
        [
            bisection_projection(*map(np.float64, (t[i], w[i], b[i])), norm)
            for i in range(count)
        ]
    )
    np.testing.assert_allclose(d, expected, atol=2e-5)
    assert np.all(t + d >= -1e-6) and np.all(t + d <= 1 + 1e-6)
    assert np.all(d[w == 0] == 0)
    reached = np.abs(np.sum(w * (t + d), -1) - b) < 1e-3 * (1 + np.abs(b))
    assert 0 < reached.sum() < count  # both kinds of plane were drawn


def linear_problem():
    """A two-class linear model and points 0.02-0.12 from its boundary
    (well inside the [0, 1] box), with the closed-form minimal distances."""
    rng = np.random.default_rng(0)
    n = 12
    kernel = rng.normal(size=(n, 2)).astype("float32")
    dw = kernel[:, 1] - kernel[:, 0]
    bias = np.array([0.0, -0.5 * dw.sum() - 0.1 * np.linalg.norm(dw)], "float32")
    x = (0.5 + rng.uniform(-0.02, 0.02, (8, 2, 2, 3))).astype("float32")
    # Half of them moved 0.2 (L2) across the boundary, to the other class.
    x[4:] += (0.2 * dw / np.linalg.norm(dw)).reshape(2, 2, 3)
    margin = x.reshape(8, -1) @ dw + bias[1] - bias[0]
    model = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Flatten()])
    model.add(keras.layers.Dense(2))
    model.layers[-1].set_weights([kernel, bias])
    y = (margin > 0).astype("int64")
    closed = {
        "linf": np.abs(margin) / np.abs(dw).sum(),
        "l2": np.abs(margin) / np.linalg.norm(dw),
    }
    return model, x, y, closed


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_t_finds_a_linear_classifiers_minimal_perturbation(norm):
    """On a linear model every projection is exact; what remains is FAB's own
    overshoot (eta) and back-step (beta): about 0.5% of the distance at the
    official defaults, under 1e-3 here."""
    model, x, y, closed = linear_problem()
    assert set(y) == {0, 1}
    fab = FABTargeted(model, norm=norm)
    adv, hit = fab.attack(x, y, 1 - y, eps=0.0)  # eps 0: keep minimising
    d = (adv - x).reshape(len(x), -1)
    found = np.abs(d).max(-1) if norm == "linf" else np.linalg.norm(d, axis=-1)
    assert np.all(model.predict(adv, verbose=0).argmax(-1) != y)
    assert np.all(found >= closed[norm] * (1 - 1e-4))  # never below the minimum
    np.testing.assert_allclose(found, closed[norm], atol=1e-3)
    assert not hit.any()
    # With eps the run stops where it is decided: broken iff the minimum is
    # within eps (the overshoot aside).
    eps = float(np.median(closed[norm]))
    _, robust = fab.run(x, y, eps)
    assert np.array_equal(robust, closed[norm] > eps * 0.99)


def test_a_run_tries_the_targets_in_order_on_the_points_still_robust():
    """Logits x0, 5 x1, x2 and eps 0.02: A is broken towards its runner-up
    (class 2, 0.015 away), B only towards its third class (class 2 is 0.025
    away, class 1, with its steeper logit, 0.017), C is misclassified
    already: the second target is tried on B alone, C never."""
    model = keras.Sequential([keras.Input((1, 1, 3)), keras.layers.Flatten()])
    model.add(keras.layers.Dense(3, use_bias=False))
    model.layers[-1].set_weights([np.diag([1.0, 5.0, 1.0]).astype("float32")])
    x = np.array([[0.5, 0.0, 0.47], [0.5, 0.08, 0.45], [0.1, 0.0, 0.9]], "float32")
    x = x.reshape(3, 1, 1, 3)
    y = np.array([0, 0, 0])
    fab = FABTargeted(model, norm="linf", iterations=20, targets=2)
    calls, attack = [], fab.attack
    fab.attack = lambda x, y, t, eps: (
        calls.append((len(x), t.tolist())) or attack(x, y, t, eps)
    )
    x_adv, robust = fab.run(x, y, eps=0.02)
    assert calls == [(2, [2, 2]), (1, [1])]
    assert robust.tolist() == [False, False, False]
    assert np.array_equal(x_adv[2], x[2])  # misclassified: left as it is
    assert model.predict(x_adv, verbose=0).argmax(-1)[:2].tolist() == [2, 1]
    assert np.abs(x_adv - x).max() <= 0.02


def test_fab_t_gives_the_same_answer_on_jax():
    model, x, y, _ = linear_problem()
    tf_adv, _ = FABTargeted(model, norm="l2", iterations=30).attack(x, y, 1 - y, 0.0)
    weights = [w.tolist() for w in model.layers[-1].get_weights()]
    script = textwrap.dedent("""
        import json, sys
        import keras, numpy as np
        assert keras.backend.backend() == "jax"
        from keras_damped.robustness.fab import FABTargeted
        data = json.loads(sys.argv[1])
        model = keras.Sequential([keras.Input((2, 2, 3)), keras.layers.Flatten()])
        model.add(keras.layers.Dense(2))
        model.layers[-1].set_weights([np.array(w, "float32") for w in data["w"]])
        x, y = np.array(data["x"], "float32"), np.array(data["y"])
        adv, _ = FABTargeted(model, norm="l2", iterations=30).attack(x, y, 1 - y, 0.0)
        print("JAX-FAB", json.dumps(adv.tolist()))
    """)
    argument = json.dumps({"w": weights, "x": x.tolist(), "y": y.tolist()})
    out = run_on_jax(script, argument, marker="JAX-FAB")
    jax_adv = np.array(json.loads(out.split("JAX-FAB", 1)[1]), "float32")
    np.testing.assert_allclose(jax_adv, tf_adv, atol=1e-5)
