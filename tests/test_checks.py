"""The sanity checks fire on results built by hand to break each of them,
and stay quiet on results that pass."""

import numpy as np

from keras_damped.robustness import checks
from keras_damped.robustness.registry import attack_specs
from keras_damped.robustness.report import pack_mask

COUNT = 10
SPECS = attack_specs(["fgsm", "pgd", "square", "autoattack"])


def _entry(accuracies):
    """A report entry whose per-example masks have the given accuracies
    (the first k of COUNT examples robust), every example correct clean."""
    masks = {
        attack: {
            key: pack_mask(np.arange(COUNT) < round(acc * COUNT))
            for key, acc in by_key.items()
        }
        for attack, by_key in accuracies.items()
    }
    return {
        "clean": 1.0,
        "attacks": accuracies,
        "masks": {"clean": pack_mask(np.ones(COUNT, bool)), "attacks": masks},
    }


def _sanity(accuracies, max_linf=None, in_range=True, large=None):
    extremes = {"max_distance": max_linf or {}, "in_range": in_range}
    return checks.sanity(
        _entry(accuracies), list(accuracies), extremes, large, COUNT, SPECS
    )


def test_a_clean_result_raises_no_flag():
    result = _sanity(
        {"fgsm": {"2": 0.6, "8": 0.3}, "pgd": {"2": 0.5, "8": 0.1}},
        max_linf={"fgsm": {"2": 2 / 255, "8": 8 / 255}},
        large={"eps": 64 / 255, "accuracy": 0.0, "max_distance": 64 / 255},
    )
    assert result["flags"] == []
    assert result["in_ball"] and result["in_range"]
    assert result["monotone"] == {"fgsm": True, "pgd": True}
    assert result["not_weaker"] == {"pgd": True}
    assert result["gradient_masking_suspected"] is False


def test_each_check_fires_with_its_message():
    result = _sanity(
        {
            "fgsm": {"2": 0.4, "8": 0.5},  # rises with eps
            "pgd": {"2": 0.5, "8": 0.45},  # 10 points above FGSM at 2/255
            "autoattack": {"2": 0.6, "8": 0.3},  # above PGD at 2/255
        },
        max_linf={"pgd": {"8": 8 / 255 + 1e-4}},  # outside its ball
        in_range=False,
        large={"eps": 64 / 255, "accuracy": 0.3, "max_distance": 64 / 255},
    )
    assert result["flags"] == [
        "adversarial points outside the eps-ball",
        "adversarial points outside [0, 1]",
        "fgsm accuracy increases with eps",
        "PGD weaker than FGSM at eps 2/255",
        "AUTOATTACK weaker than PGD at eps 2/255",
        "possible gradient masking: PGD at 64/255 leaves 30.0% accuracy "
        "(expected <= 10%)",
    ]
    assert result["not_weaker"] == {"pgd": False, "autoattack": False}
    assert result["monotone"]["fgsm"] is False
    assert result["gradient_masking_suspected"] is True


def test_square_stronger_than_the_gradient_attacks_is_flagged():
    """PGD leaves examples 0-5 robust, Square only 0-2: Square gains 3 of
    10 examples (30 points) over the gradient attacks."""
    result = _sanity({"pgd": {"8": 0.6}, "square": {"8": 0.3}})
    assert result["square_gain"] == {"8": 0.3}
    assert result["square_beats_gradient"] is True
    assert result["flags"] == [
        "Square (gradient-free) beats the gradient attacks by 30.0 points at eps "
        "8/255 (more than 2): possible gradient masking"
    ]
    assert result["gradient_masking_suspected"] is True
    quiet = _sanity({"pgd": {"8": 0.3}, "square": {"8": 0.3}})
    assert quiet["square_gain"] == {"8": 0.0} and quiet["flags"] == []
