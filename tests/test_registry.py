"""The Attack interface and its registry: every attack built by name, called
with an explicit seed, and an attack of a user's own from Python and the CLI."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_damped.cli import main as cli_main
from keras_damped.robustness import Attack
from keras_damped.robustness import AttackResult
from keras_damped.robustness import Budget
from keras_damped.robustness import attack_names
from keras_damped.robustness import evaluate
from keras_damped.robustness import logits_fn
from keras_damped.robustness import make_attack
from keras_damped.robustness import parse_attacks
from keras_damped.robustness import register_attack
from keras_damped.robustness import unregister_attack
from keras_damped.robustness.protocols import protocol_attack_name
from keras_damped.robustness.registry import attack_spec
from keras_damped.robustness.registry import compiled

PLUGINS = os.path.join(os.path.dirname(__file__), "plugins")
BUILT_IN = (
    "fgsm",
    "ifgsm",
    "pgd",
    "mim",
    "cw_l2",
    "spsa",
    "apgd_ce",
    "apgd_t",
    "square",
    "fab_t",
    "autoattack",
)
# Attacks with random draws (a start, directions, squares) and those without.
RANDOM = ("pgd", "spsa", "apgd_ce", "apgd_t", "square", "autoattack")
DETERMINISTIC = ("fgsm", "ifgsm", "mim", "fab_t")
SMALL = Budget(steps=3, apgd_steps=3, target_classes=2, square_queries=10)


@pytest.fixture(scope="module")
def dense(fm_images):
    """A small trained-free dense classifier and 16 images: fast attacks."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    x, y = fm_images
    return model, x[:16], y[:16]


def test_every_attack_is_built_by_name_and_returns_images_and_masks(dense):
    model, x, y = dense
    assert attack_names() == BUILT_IN
    assert parse_attacks(["all"]) == list(BUILT_IN)
    # "all" expands in place, each name once: pgd first, then the others.
    assert parse_attacks(["pgd", "all", "pgd"]) == ["pgd"] + [
        a for a in BUILT_IN if a != "pgd"
    ]
    fn = logits_fn(model)
    predicted = np.argmax(model(x).numpy(), -1)
    for name in BUILT_IN:
        attack = make_attack(name, fn, SMALL)
        result = attack(x[:4], y[:4], 8 / 255, seed=(0, 0))
        assert isinstance(result, AttackResult), name
        assert result.x_adv.shape == x[:4].shape and result.robust.dtype == bool
        assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1, name
        if attack.norm == "linf":
            assert np.abs(result.x_adv - x[:4]).max() <= 8 / 255 + 1e-6, name
            # Robust means still correct (AutoAttack's family: and correct
            # clean, which its masks start from).
            after = np.argmax(model(result.x_adv).numpy(), -1) == y[:4]
            if name in ("apgd_ce", "apgd_t", "fab_t", "square", "autoattack"):
                after &= predicted[:4] == y[:4]
            assert result.robust.tolist() == after.tolist(), name
        assert (result.stages is not None) == (name == "autoattack"), name
    stages = make_attack("autoattack", fn, SMALL)(x, y, 8 / 255).stages
    assert list(stages) == ["apgd_ce", "apgd_t", "fab_t", "square"]
    # Cumulative: robust after a stage only if robust after the earlier ones.
    for later, earlier in zip(list(stages)[1:], stages):
        assert np.all(stages[later] <= stages[earlier]), later
    # The authors' protocol variants are registered, not listed.
    assert protocol_attack_name("authors-2020-06", "pgd") in attack_names(False)
    assert protocol_attack_name("authors-2020-06", "pgd") not in attack_names()


def test_seeds_change_the_random_draws_and_nothing_else_does(dense):
    model, x, y = dense
    fn = logits_fn(model)
    for name in RANDOM + DETERMINISTIC:
        attack = make_attack(name, fn, SMALL)
        tf.random.set_seed(1)
        first = attack(x, y, 8 / 255, seed=(3, 0)).x_adv
        tf.random.set_seed(2)  # the global seed plays no part
        np.random.seed(2)
        again = attack(x, y, 8 / 255, seed=(3, 0)).x_adv
        other = attack(x, y, 8 / 255, seed=(3, 1)).x_adv
        np.testing.assert_array_equal(first, again, err_msg=name)
        if name in RANDOM:
            assert not np.array_equal(first, other), name
        else:
            np.testing.assert_array_equal(first, other, err_msg=name)
    # A fresh instance (a fresh process would do the same) repeats the draws.
    pgd = make_attack("pgd", fn, SMALL)(x, y, 8 / 255, seed=(3, 0)).x_adv
    again = make_attack("pgd", fn, SMALL)(x, y, 8 / 255, seed=(3, 0)).x_adv
    np.testing.assert_array_equal(pgd, again)


def test_pgd_start_is_the_seeded_uniform_draw(dense):
    """With zero steps' worth of movement (a step far below float32's
    resolution) PGD returns its start: x + U(-eps, eps) from the seed."""
    model, x, y = dense
    pgd = make_attack("pgd", logits_fn(model), Budget(steps=1, step_size=1e-30))
    got = pgd(x, y, 8 / 255, seed=(4, 2)).x_adv
    start = tf.random.stateless_uniform(x.shape, (4, 2), -8 / 255, 8 / 255).numpy()
    np.testing.assert_allclose(got, np.clip(x + start, 0, 1), atol=1e-6)


def _sign_noise_reference(model, x, y, eps, batch, seed=0):
    """The plug-in's attack replayed batch by batch with evaluate's seeds
    `(seed, batch index)`; returns the per-example robust mask."""
    robust = []
    for i, start in enumerate(range(0, len(x), batch)):
        part = x[start : start + batch]
        signs = np.random.default_rng([seed, i]).choice([-1.0, 1.0], part.shape)
        adv = np.clip(part + eps * signs, 0, 1).astype("float32")
        robust.append(np.argmax(model(adv).numpy(), -1) == y[start : start + batch])
    return np.concatenate(robust)


@pytest.fixture
def plugin_path(monkeypatch):
    """The plug-in folder on the path; its attack unregistered afterwards
    (other tests' "all" stays the built-in list)."""
    monkeypatch.syspath_prepend(PLUGINS)
    yield
    if "sign_noise" in attack_names():
        unregister_attack("sign_noise")


def test_a_users_attack_works_from_python_and_the_cli(
    dense, tmp_path, plugin_path, capsys
):
    model, x, y = dense
    expected = _sign_noise_reference(model, x, y, 32 / 255, batch=6)
    report = evaluate(
        {"dense": model},
        dataset=(x, y),
        attacks=["fgsm", "sign_noise"],
        eps=[32 / 255],
        noises=[],
        batch_size=6,
        plugins=["sign_noise"],
        progress=False,
    )
    entry = report.data["models"]["dense"]
    assert entry["attacks"]["sign_noise"]["32"] == expected.mean()
    assert report.data["settings"]["plugins"] == ["sign_noise"]
    assert "sign_noise" in entry["sanity"]["max_linf"]  # an L-inf attack

    # The CLI imports the module named by --import before checking names.
    path = str(tmp_path / "dense.keras")
    model.save(path)
    out = tmp_path / "eval"
    argv = ["evaluate", "--model", path, "--dataset", "fashion_mnist"]
    argv += ["--import", "sign_noise", "--attacks", "sign_noise", "--eps", "32"]
    argv += ["--noises", "none", "--test-limit", "16", "--eval-batch-size", "6"]
    assert cli_main([*argv, "--out", str(out)]) == 0
    assert "| SIGN_NOISE 32 |" in capsys.readouterr().out
    saved = json.loads((out / "report.json").read_text())
    (name,) = saved["models"]
    assert saved["models"][name]["attacks"]["sign_noise"]["32"] == expected.mean()
    argv = ["evaluate", "--model", path, "--import", "no_such_module"]
    code = cli_main([*argv, "--out", str(tmp_path / "never")])
    assert code == 2 and "no_such_module" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


def test_registration_refuses_what_it_cannot_use():
    class Shift(Attack):
        def perturb(self, x, y, eps, seed):
            return x

    register_attack("shift_for_test", Shift, listed=False)
    with pytest.raises(ValueError, match="registered already"):
        register_attack("shift_for_test", Shift)
    assert "shift_for_test" not in attack_names()  # not listed: not in "all"
    unregister_attack("shift_for_test")
    with pytest.raises(ValueError, match="attack='shift_for_test'"):
        make_attack("shift_for_test", None)
    with pytest.raises(TypeError, match="subclass of keras_damped.robustness.Attack"):
        register_attack("plain", object)

    class Manhattan(Shift):
        norm = "l1"

    with pytest.raises(ValueError, match=r"Manhattan.norm must be one of.*'l1'"):
        register_attack("manhattan", Manhattan)
    assert "manhattan" not in attack_names(listed_only=False)
    for bad in ("", "a,b", "all", 3):
        with pytest.raises(ValueError, match="non-empty string"):
            register_attack(bad, Shift)
    with pytest.raises(ValueError, match=r"register_attack.*attack='shfit'"):
        make_attack("shfit", None)
    for budget, value in (("square_queries", 0), ("apgd_steps", 2.5), ("steps", True)):
        with pytest.raises(ValueError, match=rf"{budget} must be a positive integer"):
            Budget(**{budget: value})
    with pytest.raises(ValueError, match="step_size must be > 0"):
        Budget(step_size=0.0)


@pytest.mark.parametrize("name", ["fgsm", "ifgsm", "pgd", "mim"])
def test_the_graph_cache_keeps_xla_and_graph_mode_apart(dense, name):
    """An attack compiled with XLA on a model and the same attack in graph
    mode on that model are two graphs (FGSM's cache key once left
    jit_compile out, so the second reused the first)."""
    model, x, y = dense
    fn = logits_fn(model)
    for jit in (False, True):
        make_attack(name, fn, Budget(steps=1, jit_compile=jit)).perturb(
            tf.constant(x), tf.constant(y), 8 / 255, (0, 0)
        )
    graphs = fn.graphs.items()
    modes = {g._jit_compile for key, g in graphs if name in str(key).lower()}
    assert modes == {False, True}


def test_graphs_live_with_the_model_function_or_the_attack_never_elsewhere(dense):
    """`logits_fn`'s ModelLogits holds the graphs every attack on the model
    shares; a plain function gets none set on it: the attack keeps its
    own, traced once for all its calls."""
    model, x, y = dense
    shared = logits_fn(model)
    assert logits_fn(model) is shared
    for _ in range(2):
        make_attack("pgd", shared, Budget(steps=1)).perturb(
            tf.constant(x), tf.constant(y), 8 / 255, (0, 0)
        )
    # Two attack instances, one graph traced once, found again, not rebuilt.
    pgd = shared.graphs[("PGD", "linf", 1, False)]
    assert pgd.experimental_get_tracing_count() == 1
    assert (
        compiled(shared, ("PGD", "linf", 1, False), lambda: pytest.fail("rebuilt"))
        is pgd
    )

    def plain(v):
        return model(v)

    attack = make_attack("pgd", plain, Budget(steps=1))
    for seed in ((0, 0), (0, 1)):
        attack.perturb(tf.constant(x), tf.constant(y), 8 / 255, seed)
    ((key, graph),) = attack.graphs.items()
    assert graph.experimental_get_tracing_count() == 1
    assert not hasattr(plain, "graphs") and vars(plain) == {}


class _Darken(Attack):
    """A user's attack, declared only by its class attributes: every pixel
    darkened by eps (gradient-free, L-infinity), said to be no weaker than
    FGSM, reading the `steps` field of the budget."""

    gradient = False
    label = "DARKEN"
    budget_fields = ("steps",)
    not_weaker_than = ("fgsm",)

    def cost(self):
        return 1

    def perturb(self, x, y, eps, seed):
        return tf.clip_by_value(x - eps, 0.0, 1.0)


@pytest.fixture
def darken():
    register_attack("darken", _Darken)
    yield
    if "darken" in attack_names():
        unregister_attack("darken")


def _panel_titles(monkeypatch):
    """The panel titles of every figure saved from now on, per file name."""
    import matplotlib.figure

    titles = {}
    save = matplotlib.figure.Figure.savefig

    def record(fig, path, *args, **kwargs):
        titles[os.path.basename(str(path))] = [ax.get_title() for ax in fig.axes]
        return save(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", record)
    return titles


def test_a_registered_attack_appears_in_reports_plots_and_a_study(
    dense, darken, tmp_path, monkeypatch
):
    """No file of the library names the attack: its class declares what the
    report, the checks, the plots and a study need, and they read that
    declaration from the report (also once the attack is unregistered)."""
    from keras_damped.robustness import RobustnessReport
    from keras_damped.study.config import StudyConfig
    from keras_damped.study.config import run_dir
    from keras_damped.study.outputs import write_outputs
    from keras_damped.study.stats import summarize_study

    model, x, y = dense
    radii = (8, 32)
    expected = {  # the attack replayed with NumPy and the model
        str(e): float(
            np.mean(np.argmax(model(np.clip(x - e / 255, 0, 1)).numpy(), -1) == y)
        )
        for e in radii
    }
    settings = dict(
        dataset=(x, y),
        attacks=["fgsm", "darken"],
        eps=[e / 255 for e in radii],
        noises=[],
        steps=2,
        batch_size=8,
        progress=False,
    )
    report = evaluate({"dense": model}, **settings)
    report.save(str(tmp_path / "eval"))
    unregister_attack("darken")  # from here on only the report knows it
    saved = json.loads((tmp_path / "eval" / "report.json").read_text())
    entry = saved["models"]["dense"]
    assert entry["attacks"]["darken"] == expected
    assert saved["settings"]["attack_specs"]["darken"] == {
        "label": "DARKEN",
        "version": None,
        "norm": "linf",
        "gradient": False,
        "stages": None,
        "budget": {"steps": 2},
        "not_weaker_than": ["fgsm"],
    }
    assert "darken" in entry["sanity"]["max_linf"]  # an L-inf attack
    for e in radii:  # in the worst case: the AND with FGSM's mask
        assert entry["worst"][str(e)] <= min(
            expected[str(e)], entry["attacks"]["fgsm"][str(e)]
        )
    weaker = [
        str(e)
        for e in radii
        if expected[str(e)] > entry["attacks"]["fgsm"][str(e)] + 0.02
    ]
    flags = [f for f in entry["sanity"]["flags"] if f.startswith("DARKEN weaker")]
    assert flags == [f"DARKEN weaker than FGSM at eps {e}/255" for e in weaker]
    assert entry["sanity"]["not_weaker"] == {"darken": not weaker}

    markdown = RobustnessReport.from_json(
        tmp_path / "eval" / "report.json"
    ).to_markdown()
    assert (
        "| FGSM 8 | FGSM 32 | DARKEN 8 | DARKEN 32 | WORST 8 | WORST 32 |" in markdown
    )
    assert "Budgets: DARKEN: 2 steps." in markdown
    titles = _panel_titles(monkeypatch)
    RobustnessReport(saved).plot(str(tmp_path / "plots"))
    assert titles["accuracy_vs_eps.png"] == [
        "FGSM",
        "DARKEN",
        "worst case over attacks",
    ]

    # A tiny study of two "models" and two seeds from such reports: the
    # study's own aggregation and files.
    config = StudyConfig(
        models=["resnet20", "in_resnet20"], seeds=[0, 1], out=str(tmp_path / "study")
    )
    register_attack("darken", _Darken)
    reports = {}
    for name in config.models:
        for seed in config.seeds:
            folder = run_dir(config.out, name, seed)
            os.makedirs(folder)
            model.save(os.path.join(folder, "model.keras"))
            reports[name, seed] = evaluate(model, **settings, seed=seed)
    unregister_attack("darken")
    result = summarize_study(config, reports)
    write_outputs(config, result)
    study_md = (tmp_path / "study" / "study.md").read_text()
    for e in radii:
        assert f"darken {e}" in result["columns"]
        column = result["models"]["in_resnet20"]["summary"][f"darken {e}"]
        assert column["mean"] == pytest.approx(expected[str(e)])
    header = "| model | clean | fgsm 8 | fgsm 32 | darken 8 | darken 32 | worst 8 |"
    assert header in study_md
    assert titles["accuracy_vs_eps.png"] == [
        "FGSM",
        "DARKEN",
        "worst case over attacks",
    ]


def test_two_evaluations_give_the_same_numbers_in_either_order(dense):
    """Nothing an evaluation leaves behind (compiled graphs, AutoAttack's
    generator, SPSA's optimizer) changes the next one: A then B gives what
    B then A gives, to the last digit."""
    model, x, y = dense
    common = dict(
        dataset=(x, y),
        noises=[],
        attacks=["pgd", "spsa", "autoattack"],
        steps=2,
        apgd_steps=3,
        target_classes=2,
        square_queries=10,
        batch_size=8,
        progress=False,
    )
    first = dict(eps=[8 / 255], seed=1)
    second = dict(eps=[4 / 255, 16 / 255], seed=2)

    def numbers(settings):
        report = evaluate({"dense": model}, **common, **settings)
        entry = report.data["models"]["dense"]
        return entry["attacks"], entry["masks"]

    a1, b1 = numbers(first), numbers(second)
    b2, a2 = numbers(second), numbers(first)
    assert a1 == a2 and b1 == b2


def test_autoattack_below_its_standard_budget_is_labelled_reduced():
    standard = attack_spec("autoattack", Budget())
    assert (standard["label"], standard["version"]) == ("AUTOATTACK", "standard")
    for field in ("apgd_steps", "target_classes", "square_queries"):
        less = Budget(**{field: getattr(Budget(), field) - 1})
        spec = attack_spec("autoattack", less)
        assert (spec["label"], spec["version"]) == ("AUTOATTACK (reduced)", "reduced")
    assert attack_spec("pgd", Budget(steps=3))["version"] is None  # no standard
