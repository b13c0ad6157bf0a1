"""`EvalConfig`: one meaning per setting, validated copies, no stale values."""

import dataclasses

import pytest

from keras_damped.cli import build_parser
from keras_damped.cli._configs import eval_config
from keras_damped.robustness import EvalConfig
from keras_damped.training import resolve_jit_compile

STUDY = ["study", "--model", "resnet20", "--out", "unused"]


@pytest.mark.parametrize("setting", ["auto", "on", "off"])
def test_a_studys_jit_compile_means_for_its_attacks_what_it_means_for_training(
    setting,
):
    """Regression: the study's --jit-compile reached EvalConfig as a string
    and `budget()` made it bool(...), True for all three."""
    args = build_parser().parse_args([*STUDY, "--jit-compile", setting])
    config = eval_config(args)
    assert config.jit_compile == setting
    expected = {"on": True, "off": False, "auto": resolve_jit_compile("auto")}
    assert config.budget().jit_compile is expected[setting]


def test_evaluate_takes_the_same_jit_compile_vocabulary():
    base = ["evaluate", "--model", "m.keras", "--out", "o"]
    args = build_parser().parse_args([*base, "--jit-compile", "off"])
    assert eval_config(args).budget().jit_compile is False
    assert build_parser().parse_args(base).jit_compile == "auto"


@pytest.mark.parametrize("value,expected", [(True, "on"), (False, "off")])
def test_booleans_read_as_on_and_off(value, expected):
    config = EvalConfig(dataset="fashion_mnist", jit_compile=value).validate()
    assert config.jit_compile == expected
    assert config.budget().jit_compile is value


@pytest.mark.parametrize("value", ["yes", "xla", 1, None, "AUTO"])
def test_an_unknown_jit_compile_is_refused_with_the_choices(value):
    with pytest.raises(ValueError, match=r"jit_compile.*'auto', 'on', 'off'"):
        EvalConfig(dataset="fashion_mnist", jit_compile=value).validate()


def test_a_changed_copy_of_a_validated_config_derives_anew():
    """Regression: validate() stored protocol_eps as a copy of eps, so a
    changed copy kept the old radii for the authors' protocols."""
    config = EvalConfig(
        dataset="fashion_mnist",
        attacks=["fgsm"],
        eps=[2 / 255],
        protocols=["pixel", "authors-2020-08"],
    ).validate()
    assert config.protocol_radii() == [2 / 255]
    changed = dataclasses.replace(config, eps=[8 / 255]).validate()
    assert changed.protocol_radii() == [8 / 255]
    assert changed.protocol_attack_names() == ["fgsm"]
    again = dataclasses.replace(changed, attacks=["pgd"]).validate()
    assert again.protocol_attack_names() == ["pgd"]
    # Given explicitly, the protocols' own values stay.
    own = dataclasses.replace(config, protocol_eps=[4 / 255]).validate()
    assert dataclasses.replace(own, eps=[1 / 255]).validate().protocol_radii() == [
        4 / 255
    ]


def test_validate_returns_a_new_frozen_config_and_leaves_the_old_alone():
    raw = EvalConfig(dataset="fashion_mnist", attacks="all", eps=[8 / 255, 2 / 255])
    config = raw.validate()
    assert config is not raw
    assert raw.attacks == "all" and raw.eps == [8 / 255, 2 / 255]
    assert config.eps == [2 / 255, 8 / 255] and "pgd" in config.attacks
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.eps = [1 / 255]


def test_evaluate_uses_the_radii_it_is_given(tiny_model_path):
    """`evaluate(model, cfg, eps=...)` on a validated config evaluates the
    authors' protocols at the new radii, not the old ones."""
    from keras_damped.robustness import evaluate

    config = EvalConfig(
        dataset="fashion_mnist",
        attacks=["fgsm"],
        eps=[2 / 255],
        noises=[],
        test_limit=8,
        protocols=["pixel", "authors-2020-08"],
    ).validate()
    report = evaluate(tiny_model_path, config, eps=[8 / 255], progress=False)
    settings = report.data["settings"]
    assert settings["eps_255"] == settings["protocol_eps_255"] == ["8"]


FM = {"dataset": "fashion_mnist"}
REFUSALS = [
    ({"dataset": 5}, r"dataset must be a dataset name or \(images, labels\).*int"),
    ({"dataset": "mnist2"}, r"mnist2"),
    ({"eps": [], "attacks": ["fgsm"]}, r"Attacks need at least one eps.*\['fgsm'\]"),
    ({"attack_eps": {"pgd": [1 / 255]}, "attacks": ["fgsm"]}, r"do not run: \['pgd'\]"),
    ({"example_attack": "pgd", "attacks": ["fgsm"]}, r"example_attack must be one"),
    ({"mean": [0.5, float("nan")]}, r"mean must be a finite number"),
    ({"std": "wide"}, r"std must be a finite number"),
    ({"noises": ["fog"]}, r"noise='fog'"),
    ({"severities": [6]}, r"severity must be an integer in 1-5"),
    ({"test_limit": 0}, r"test_limit must be a positive integer"),
    ({"attack_limit": -1}, r"attack_limit must be a positive integer"),
    ({"batch_size": 2.5}, r"batch_size must be a positive integer"),
    ({"seed": -1}, r"seed must be an integer >= 0"),
    ({"examples_shown": 0}, r"examples_shown must be a positive integer"),
    ({"noise_source": "disk"}, r"noise_source.*'disk'"),
    ({"large_eps": 0}, r"large_eps must be radii in \(0, 255\]"),
    ({"protocol_eps": [2]}, r"protocol_eps must be radii in \(0, 255\]"),
    ({"steps": 0}, r"steps must be a positive integer"),
    ({"step_size": -1 / 255}, r"step_size must be > 0"),
    ({"protocols": []}, r"protocols must name at least one of"),
    ({"protocols": ["authors"]}, r"Expected one of \('pixel'.*protocol='authors'"),
    (
        {"protocols": ["authors-2020-08"], "attacks": ["autoattack"]},
        r"cover the attacks they ran.*attack='autoattack'.*protocol_attacks",
    ),
    (
        {"protocols": ["authors-2020-08"], "attacks": [], "eps": []},
        r"The authors' protocols need at least one protocol_eps",
    ),
]


@pytest.mark.parametrize("changes,message", REFUSALS)
def test_each_bad_setting_is_refused_by_name(changes, message):
    config = EvalConfig(**{**FM, **changes})
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_the_protocols_need_both_mean_and_std_and_a_positive_std():
    import keras

    from keras_damped.robustness.protocols import model_normalization

    bare = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match=r"Pass both mean= and std=.*std=None"):
        model_normalization(bare, mean=0.5)
    with pytest.raises(ValueError, match=r"std must be positive.*\[0.2, 0.0, 0.2\]"):
        model_normalization(bare, mean=0.5, std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match="has no keras.layers.Normalization"):
        model_normalization(bare)
    mean, std = model_normalization(bare, mean=[0.1, 0.2, 0.3], std=0.25)
    assert mean.tolist() == [0.1, 0.2, 0.3] and std.tolist() == [0.25] * 3
