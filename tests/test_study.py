"""`keras-damped study`: statistics, resume after a kill, outputs, TensorBoard."""

import contextlib
import dataclasses
import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow_datasets as tfds

from keras_damped import cli
from keras_damped.robustness.report import pack_mask
from keras_damped.robustness.report import unpack_mask
from keras_damped.study import StudyConfig
from keras_damped.study import StudyExistsError
from keras_damped.study import paired_difference
from keras_damped.study import run_study
from keras_damped.study import summarize
from keras_damped.study.recipes import CIFAR10_PAPER
from keras_damped.study.runner import WHOLE
from keras_damped.study.runner import _check_out
from keras_damped.study.runner import _Clock
from keras_damped.study.runner import _state
from keras_damped.study.stats import clean_on_attacked
from keras_damped.study.stats import depth_contrast
from keras_damped.study.stats import depth_table
from keras_damped.study.stats import detectable
from keras_damped.study.stats import example_floor
from keras_damped.study.stats import holm
from keras_damped.study.stats import power_at_half_width
from keras_damped.study.stats import protocol_columns
from keras_damped.study.stats import relative
from keras_damped.study.stats import run_columns
from keras_damped.study.stats import seeds_needed
from keras_damped.study.stats import t_test_p

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Student t quantiles t(0.975, df) from printed tables.
T975 = {1: 12.7062, 2: 4.3027, 4: 2.7764}


# --- statistics against hand-computed values ------------------------------------


def test_summarize_matches_hand_computation():
    s = summarize([0.80, 0.90, 0.85])
    # mean 0.85; deviations -0.05, 0.05, 0 -> sd = sqrt(0.005 / 2) = 0.05
    assert s["n"] == 3 and s["mean"] == pytest.approx(0.85)
    assert s["sd"] == pytest.approx(0.05)
    half = T975[2] * 0.05 / np.sqrt(3)
    assert s["half_width"] == pytest.approx(half, rel=1e-4)
    assert (s["low"], s["high"]) == pytest.approx((0.85 - half, 0.85 + half), rel=1e-4)
    two = summarize([1.0, 3.0])  # sd = sqrt(2), half = t(1) * sqrt(2) / sqrt(2)
    assert two["half_width"] == pytest.approx(T975[1], rel=1e-4)
    five = summarize([2, 4, 4, 4, 6])  # sd = sqrt(8 / 4)
    assert five["half_width"] == pytest.approx(T975[4] * np.sqrt(2) / np.sqrt(5), 1e-4)


def test_one_seed_has_no_interval():
    s = summarize([0.7])
    assert s["mean"] == 0.7 and np.isnan(s["sd"]) and np.isnan(s["half_width"])
    with pytest.raises(ValueError, match="at least one value"):
        summarize([])


def test_paired_differences_are_seed_matched():
    model = {0: 0.50, 1: 0.60, 2: 0.70, 3: 0.99}  # seed 3 has no partner
    base = {0: 0.40, 1: 0.45, 2: 0.50, 7: 0.10}
    d = paired_difference(model, base)
    # differences 0.10, 0.15, 0.20: mean 0.15, sd 0.05
    assert d["seeds"] == [0, 1, 2]
    assert d["mean"] == pytest.approx(0.15) and d["sd"] == pytest.approx(0.05)
    assert d["low"] == pytest.approx(0.15 - T975[2] * 0.05 / np.sqrt(3), rel=1e-4)
    assert d["verdict"] == "higher"
    # -0.20, -0.25, -0.25: mean -0.2333, sd 0.0289, half 4.3027 * 0.0289 / 1.732
    worse = paired_difference({0: 0.3, 1: 0.2, 2: 0.25}, {0: 0.5, 1: 0.45, 2: 0.5})
    assert worse["high"] == pytest.approx(-0.7 / 3 + T975[2] * 0.05 / 3, rel=1e-3)
    assert worse["verdict"] == "lower"
    # Two seeds, -0.20 and -0.25: t(1) = 12.7 makes the interval include zero.
    two = paired_difference({0: 0.3, 1: 0.2}, {0: 0.5, 1: 0.45})
    assert two["low"] < 0 < two["high"] and two["verdict"] == "no difference shown"
    mixed = paired_difference({0: 0.5, 1: 0.4, 2: 0.6}, {0: 0.45, 1: 0.45, 2: 0.5})
    assert (
        mixed["low"] < 0 < mixed["high"] and mixed["verdict"] == "no difference shown"
    )
    with pytest.raises(ValueError, match="common"):
        paired_difference({0: 1.0}, {1: 1.0})


def test_holm_adjustment_matches_a_hand_computation():
    # Sorted: a 0.01, c 0.03, b 0.04 (m = 3): 3 x 0.01 = 0.03; max(0.03,
    # 2 x 0.03) = 0.06; max(0.06, 1 x 0.04) = 0.06. NaN stays out.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": float("nan")})
    assert adjusted["a"] == pytest.approx(0.03)
    assert adjusted["c"] == pytest.approx(0.06)
    assert adjusted["b"] == pytest.approx(0.06)
    assert np.isnan(adjusted["d"])
    assert holm({"x": 0.5, "y": 0.6}) == {"x": 1.0, "y": 1.0}  # capped at 1


def test_the_holm_sentence_names_what_survives_the_adjustment():
    from keras_damped.study.outputs import _holm_sentence

    def diffs(verdict="no difference shown", **p_holm):
        return {c: {"p_holm": p, "verdict": verdict} for c, p in p_holm.items()}

    one = _holm_sentence(diffs(a=0.01, b=0.2, c=float("nan")), ["a", "b", "c"])
    assert one == (
        " After Holm's adjustment over these 2 columns, 1 stays below 0.05: "
        "a (p = 0.010)."
    )
    two = _holm_sentence(diffs(a=0.01, b=0.04), ["a", "b"])
    assert "2 stay below 0.05: a (p = 0.010), b (p = 0.040)." in two
    # Nothing excludes zero before the adjustment: no word about chance.
    none = _holm_sentence(diffs(a=0.3, b=0.2), ["a", "b"])
    assert none == (
        " After Holm's adjustment over these 2 columns, none stays below 0.05 "
        "(smallest adjusted p = 0.20, b)."
    )
    lower = _holm_sentence(diffs(verdict="lower", a=0.09, b=0.08), ["a", "b"])
    assert lower.endswith(
        "(smallest adjusted p = 0.08, b): the 2 intervals that exclude zero "
        "do not survive the correction for 2 columns."
    )
    one_resolved = diffs(a=0.3, b=0.2) | diffs(verdict="higher", c=0.1)
    assert _holm_sentence(one_resolved, ["a", "b", "c"]).endswith(
        ": the interval that excludes zero does not survive the correction for 3 "
        "columns."
    )
    assert _holm_sentence(diffs(a=float("nan")), ["a"]) == ""


def test_t_test_p_matches_the_closed_form_and_the_interval():
    # df = 2: the t distribution's tail is 1/2 - t / (2 sqrt(2 + t^2)).
    s = summarize([1.0, 2.0, 3.0])  # mean 2, sd 1: t = 2 sqrt(3)
    t = 2 * np.sqrt(3)
    assert t_test_p(s) == pytest.approx(2 * (0.5 - t / (2 * np.sqrt(2 + t * t))))
    # p < 0.05 exactly where the interval excludes zero, floor included.
    floored = summarize([0.01, 0.01, 0.01], floor=0.02)
    assert floored["low"] < 0 and t_test_p(floored) > 0.05
    assert t_test_p(summarize([0.03, 0.03, 0.03], floor=0.02)) < 0.05


def test_detectable_difference_has_the_power_it_claims():
    """Against a simulation of the paired t-test: the 80%-power difference
    is rejected in 80% of simulated studies; the half-width in about half."""
    from scipy import stats

    s = summarize([0.00, 0.02, -0.01, 0.03, 0.01])  # n = 5
    sd, n = s["sd"], s["n"]
    rng = np.random.default_rng(0)

    def power(delta):
        draws = rng.normal(delta, sd, size=(40_000, n))
        t = draws.mean(1) / (draws.std(1, ddof=1) / np.sqrt(n))
        return float(np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1)))

    d80 = detectable(s, power=0.8)
    assert power(d80) == pytest.approx(0.8, abs=0.01)
    # At the half-width: the noncentral t at its own critical value, 0.557
    # at 5 seeds.
    assert power(s["half_width"]) == pytest.approx(0.557, abs=0.01)
    assert power_at_half_width(n) == pytest.approx(power(s["half_width"]), abs=0.01)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert d80 > z * sd / np.sqrt(n)  # t's heavier tails need more than z


@pytest.mark.parametrize("n", [2, 3, 10])
def test_power_at_the_half_width_against_a_simulated_t_test(n):
    """The power study.md quotes for its seed count: the share of simulated
    paired t-tests that reject when the true difference is the half-width."""
    from scipy import stats

    rng = np.random.default_rng(n)
    t_crit = stats.t.ppf(0.975, n - 1)
    draws = rng.normal(t_crit / np.sqrt(n), 1.0, size=(100_000, n))  # sd 1
    t = draws.mean(1) / (draws.std(1, ddof=1) / np.sqrt(n))
    simulated = float(np.mean(np.abs(t) > t_crit))
    assert power_at_half_width(n) == pytest.approx(simulated, abs=0.006)
    assert np.isnan(power_at_half_width(1))


def test_the_resolution_text_quotes_the_power_at_the_study_seed_count():
    from keras_damped.study.outputs import _resolution_lines

    def diff(n):
        s = summarize(list(np.linspace(0.0, 0.02, n)))
        return dict(s, detectable_80=detectable(s), seeds_needed={})

    for n in (3, 5):
        result = {"differences": {"m": {"clean": diff(n)}}}
        text = " ".join(_resolution_lines(result, ["clean"], 95))
        expected = f"{power_at_half_width(n):.2f} at {n} seeds"
        assert f"the power of a paired t-test there is {expected})" in text
    assert "0.56 at 5 seeds" in text


def test_depth_contrast_matches_a_hand_computed_welch_interval():
    # Means 0.03 and 0; variances 1e-4 each, n = 3: se = sqrt(2e-4 / 3),
    # Welch df = se^4 / (2 (1e-4 / 3)^2 / 2) = 4, t(0.975, 4) = 2.7764.
    d = depth_contrast([0.02, 0.04, 0.03], [0.0, 0.01, -0.01])
    se = np.sqrt(2e-4 / 3)
    assert d["mean"] == pytest.approx(0.03) and d["df"] == pytest.approx(4)
    assert d["half_width"] == pytest.approx(T975[4] * se, rel=1e-4)
    assert d["low"] == pytest.approx(0.03 - T975[4] * se, rel=1e-4)
    assert d["verdict"] == "higher" and d["p"] < 0.05
    same = depth_contrast([0.01, 0.02, 0.03], [0.02, 0.01, 0.03])
    assert same["mean"] == pytest.approx(0) and same["verdict"] == "no difference shown"
    with pytest.raises(ValueError, match="at least two seeds"):
        depth_contrast([0.1], [0.1, 0.2])


def test_relative_accuracy_divides_by_clean_on_the_same_images():
    """Attacks ran on the first 4 of 10 examples: their relative accuracy
    divides by the clean accuracy on those 4 (2 of 4 correct), noise by the
    clean accuracy on all 10 (6 of 10); the protocol's eps 0 is measured on
    the same 4 images as its attacks."""
    clean = [1, 1, 0, 0, 1, 1, 1, 0, 0, 1]
    eps0 = [1, 0, 1, 0] + [1] * 6
    settings = {
        "examples": 10,
        "attack_examples": 4,
        "noises": [],
        "severities": [],
        "attacks": [],
        "eps_255": [],
        "protocols": ["pixel", "authors-2020-08"],
    }
    entry = {
        "clean": 0.6,
        "noises": {},
        "attacks": {},
        "masks": {
            "clean": pack_mask(clean),
            "attacks": {},
            "protocols": {"authors-2020-08": {"eps0": pack_mask(eps0)}},
        },
        "protocols": {"authors-2020-08": {"eps0": 0.8, "attacks": {}, "noises": {}}},
    }
    assert clean_on_attacked(entry, settings) == pytest.approx(0.5)
    run = {"clean": 0.6, "pgd 8": 0.25, "gaussian": 0.3}
    assert relative(run, "pgd 8", 0.5, {"pgd 8"}) == pytest.approx(0.25 / 0.5)
    assert relative(run, "gaussian", 0.5, {"pgd 8"}) == pytest.approx(0.3 / 0.6)
    columns = run_columns(entry, settings)
    assert columns["authors-2020-08: eps 0"] == pytest.approx(0.5)  # not 0.8


def _fake_study(out, depth, pgd, lambdas):
    """A `summarize_study`-shaped result: resnet<depth> (the baseline) and
    in_resnet<depth>, 3 seeds, columns clean and pgd 8 (100 attacked of
    1,000 examples)."""
    settings = {
        "examples": 1000,
        "attack_examples": 100,
        "attacks": ["pgd"],
        "eps_255": ["8"],
        "noises": [],
        "severities": [],
        "protocols": ["pixel"],
    }
    models = {}
    for prefix in ("", "in_"):
        runs = {str(s): {"clean": 0.9, "pgd 8": v} for s, v in enumerate(pgd[prefix])}
        models[f"{prefix}resnet{depth}"] = {
            "runs": runs,
            "summary": {"clean": summarize([r["clean"] for r in runs.values()])},
            "lambdas": lambdas if prefix else {},
        }
    base = models[f"resnet{depth}"]["runs"]
    damped = models[f"in_resnet{depth}"]["runs"]
    differences = {
        f"in_resnet{depth}": {
            c: paired_difference(
                {int(k): r[c] for k, r in damped.items()},
                {int(k): r[c] for k, r in base.items()},
            )
            for c in ("clean", "pgd 8")
        }
    }
    return {
        "config": {
            "models": list(models),
            "baseline": f"resnet{depth}",
            "out": out,
        },
        "columns": ["clean", "pgd 8"],
        "protocol_columns": [],
        "families": {"pixel": ["clean", "pgd 8"]},
        "evaluation": settings,
        "models": models,
        "differences": differences,
    }


def test_depth_table_against_a_hand_computed_contrast():
    lambdas = {"block1": {"mean": 0.3, "seeds": {"0": 0.2, "1": 0.3, "2": 0.4}}}
    shallow = _fake_study(
        "s20", 20, {"": [0.30, 0.32, 0.31], "in_": [0.31, 0.34, 0.31]}, lambdas
    )
    deep = _fake_study(
        "s56", 56, {"": [0.30, 0.30, 0.30], "in_": [0.33, 0.35, 0.34]}, lambdas
    )
    table = depth_table(shallow, deep)
    assert table["models"]["in_resnet"] == {
        "shallow": "in_resnet20",
        "deep": "in_resnet56",
    }
    cell = table["rows"]["in_resnet"]["pgd 8"]
    # Per-seed differences: 0.01, 0.02, 0.00 (mean 0.01) at depth 20 and
    # 0.03, 0.05, 0.04 (mean 0.04) at 56, each variance 1e-4: Welch df 4,
    # se sqrt(2e-4 / 3); the floor (1 of 100 attacked examples) is smaller.
    assert cell["shallow"]["mean"] == pytest.approx(0.01)
    assert cell["deep"]["mean"] == pytest.approx(0.04)
    assert cell["contrast"]["mean"] == pytest.approx(0.03)
    half = T975[4] * np.sqrt(2e-4 / 3)
    assert cell["contrast"]["half_width"] == pytest.approx(half, rel=1e-4)
    assert cell["contrast"]["verdict"] == "higher"
    assert "resnet" not in table["rows"]  # the baseline has no difference
    spread = table["lambdas"]["in_resnet"]["deep"]["block1"]
    assert spread["mean"] == pytest.approx(0.3) and spread["sd"] == pytest.approx(0.1)
    assert (spread["min"], spread["max"]) == (0.2, 0.4)
    from keras_damped.study.outputs import _depth_lines

    assert table["baseline"] == {"shallow": "resnet20", "deep": "resnet56"}
    text = "\n".join(_depth_lines(table, 95))
    header = (
        "| column | in_resnet20 - resnet20 | in_resnet56 - resnet56 "
        "| in_resnet: change with depth |"
    )
    assert header in text
    # One row per column: depth 20's difference (+1.0 +- 2.5, unresolved),
    # depth 56's (+4.0 +- 2.5) and the contrast, bold where they exclude zero.
    row = next(line for line in text.splitlines() if line.startswith("| pgd 8 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1].startswith("+1.0 [") and not cells[1].startswith("**")
    assert cells[2].startswith("**+4.0 [")
    assert cells[3] == "**+3.0 [+0.7, +5.3]**"
    # Holm over the family (clean, pgd 8): Welch's p of pgd 8 (SciPy's
    # unequal-variance t-test on the per-seed differences) doubled; clean's
    # change is exactly 0 (p = 1), so its adjusted p stays 1.
    from scipy import stats

    welch = stats.ttest_ind(
        [0.03, 0.05, 0.04], [0.01, 0.02, 0.00], equal_var=False
    ).pvalue
    assert cell["contrast"]["p"] == pytest.approx(welch, rel=1e-6)
    assert cell["contrast"]["p_holm"] == pytest.approx(2 * welch, rel=1e-6)
    assert table["rows"]["in_resnet"]["clean"]["contrast"]["p_holm"] == 1.0
    assert (
        "- **in_resnet, change with depth**: the interval excludes zero in 1 "
        "of the 2 main columns: the difference grows from in_resnet20 to "
        "in_resnet56 in pgd 8 (+3.0 [+0.7, +5.3]). After Holm's adjustment "
        f"over these 2 columns, 1 stays below 0.05: pgd 8 (p = {2 * welch:.3f})."
    ) in text
    assert "\n| clean | " in text
    deep["config"]["baseline"] = "in_resnet56"
    with pytest.raises(ValueError, match="different baselines"):
        depth_table(shallow, deep)


def _with_lambda_kind(study, depth, pgd):
    """`study` with a lambda_in_resnet<depth> whose pgd 8 per seed is `pgd`
    (clean as the others'), and its differences against the baseline."""
    base = study["models"][f"resnet{depth}"]["runs"]
    name = f"lambda_in_resnet{depth}"
    runs = {str(s): {"clean": 0.9, "pgd 8": v} for s, v in enumerate(pgd)}
    study["models"][name] = dict(study["models"][f"in_resnet{depth}"], runs=runs)
    study["config"]["models"].append(name)
    study["differences"][name] = {
        c: paired_difference(
            {int(k): r[c] for k, r in runs.items()},
            {int(k): r[c] for k, r in base.items()},
        )
        for c in ("clean", "pgd 8")
    }
    return study


def test_the_depth_table_puts_every_damped_kind_side_by_side():
    from keras_damped.study.outputs import _depth_lines

    lambdas = {"block1": {"mean": 0.3, "seeds": {"0": 0.2, "1": 0.3, "2": 0.4}}}
    pgd = {"": [0.30, 0.30, 0.30], "in_": [0.31, 0.31, 0.31]}
    shallow = _with_lambda_kind(
        _fake_study("s20", 20, pgd, lambdas), 20, [0.28, 0.28, 0.28]
    )
    deep = _with_lambda_kind(
        _fake_study("s56", 56, pgd, lambdas), 56, [0.35, 0.35, 0.35]
    )
    lines = _depth_lines(depth_table(shallow, deep), 95)
    header = next(line for line in lines if line.startswith("| column |"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "column",
        "in_resnet20 - resnet20",
        "in_resnet56 - resnet56",
        "in_resnet: change with depth",
        "lambda_in_resnet20 - resnet20",
        "lambda_in_resnet56 - resnet56",
        "lambda_in_resnet: change with depth",
    ]
    row = next(line for line in lines if line.startswith("| pgd 8 |"))
    # Zero spread everywhere: each study's difference is its mean (no floor
    # in _fake_study) and the change with depth has the one-example floor
    # (1 of 100 attacked examples) as its half-width.
    assert [c.strip() for c in row.strip("|").split("|")][1:] == [
        "**+1.0 [+1.0, +1.0]**",
        "**+1.0 [+1.0, +1.0]**",
        "+0.0 [-1.0, +1.0]",
        "**-2.0 [-2.0, -2.0]**",
        "**+5.0 [+5.0, +5.0]**",
        "**+7.0 [+6.0, +8.0]**",
    ]


def test_worst_case_is_the_and_of_the_per_example_masks():
    fgsm = np.array([1, 1, 0, 1, 1, 0, 1, 1], bool)
    pgd = np.array([1, 0, 1, 1, 1, 0, 1, 0], bool)
    entry = {
        "clean": 1.0,
        "noises": {},
        "attacks": {"fgsm": {"8": fgsm.mean()}, "pgd": {"8": pgd.mean()}},
        "masks": {
            "clean": pack_mask(np.ones(20, bool)),
            "attacks": {"fgsm": {"8": pack_mask(fgsm)}, "pgd": {"8": pack_mask(pgd)}},
        },
    }
    settings = {
        "noises": [],
        "severities": [],
        "attacks": ["fgsm", "pgd"],
        "eps_255": ["8"],
        "examples": 20,  # clean and noise; the attacks ran on the first 8
        "attack_examples": 8,
    }
    columns = run_columns(entry, settings)
    assert columns["fgsm 8"] == 0.75 and columns["pgd 8"] == 0.625
    assert columns["worst 8"] == 0.5  # below the weaker of the two (0.625)
    np.testing.assert_array_equal(unpack_mask(pack_mask(fgsm), 8), fgsm)
    # Example 0 is misclassified clean and both attacks "left it correct" (an
    # attack step can land on the right class): it was never robust.
    entry["masks"]["clean"] = pack_mask(np.array([0] + [1] * 19, bool))
    assert run_columns(entry, settings)["worst 8"] == 0.375


def test_protocol_columns_and_their_one_example_floor():
    """Each authors' protocol adds `eps 0`, its attacks and its noise means
    as columns; its attacks ran on the attacked examples only."""
    entry = {
        "clean": 0.9,
        "noises": {"shot": {"1": 0.8, "mean": 0.8}},
        "attacks": {"fgsm": {"8": 0.5}},
        "masks": {"clean": pack_mask(np.ones(20, bool)), "attacks": {}},
        "protocols": {
            "authors-2020-06": {
                "eps0": 0.2,
                "attacks": {"fgsm": {"2": 0.15, "8": 0.1}},
                "noises": {"shot": {"1": 0.7, "mean": 0.7}},
            }
        },
    }
    settings = {
        "noises": ["shot"],
        "severities": [1],
        "attacks": ["fgsm"],
        "eps_255": ["8"],
        "examples": 20,
        "attack_examples": 8,
        "protocols": ["pixel", "authors-2020-06"],
        "protocol_attacks": ["fgsm"],
        "protocol_eps_255": ["2", "8"],
    }
    columns = run_columns(entry, settings)
    assert {c: v for c, v in columns.items() if c.startswith("authors")} == {
        "authors-2020-06: eps 0": 0.2,
        "authors-2020-06: fgsm 2": 0.15,
        "authors-2020-06: fgsm 8": 0.1,
        "authors-2020-06: shot": 0.7,
    }
    assert protocol_columns(list(columns), settings) == [
        "authors-2020-06: eps 0",
        "authors-2020-06: fgsm 2",
        "authors-2020-06: fgsm 8",
        "authors-2020-06: shot",
    ]
    floors = {c: example_floor(c, settings) for c in columns}
    # eps 0 is measured on the attacked examples, as the protocol's attacks.
    assert floors["authors-2020-06: fgsm 2"] == floors["fgsm 8"] == 1 / 8
    assert floors["authors-2020-06: eps 0"] == 1 / 8
    assert floors["authors-2020-06: shot"] == 1 / 20
    assert floors["clean"] == 1 / 20
    settings["protocols"] = ["pixel"]  # a study without the authors' protocols
    assert protocol_columns(list(columns), settings) == []


def test_seeds_needed_matches_a_hand_computation_with_t():
    # sd 0.05, half-width 0.02: need t(0.975, n-1) / sqrt(n) <= 0.4. From the
    # printed table, n = 26: 2.0595 / 5.0990 = 0.4039 (no); n = 27: 2.0555 /
    # 5.1962 = 0.3956 (yes). The normal approximation (1.96) would say 24.
    assert seeds_needed(0.05, 0.02) == 27
    # sd 0.1, half-width 0.1: n = 6 gives 2.5706 / 2.4495 = 1.049 (no), n = 7
    # gives 2.4469 / 2.6458 = 0.925 (yes).
    assert seeds_needed(0.1, 0.1) == 7
    assert seeds_needed(0.0, 0.01) == 2
    assert seeds_needed(float("nan"), 0.01) is None
    assert seeds_needed(1.0, 1e-4, most=100) is None


def test_zero_variance_does_not_resolve_below_one_example():
    """Three seeds, each exactly one example (of 1,000) better: sd 0 would give
    a zero-width interval and a verdict; the floor keeps it at 1/1000."""
    d = paired_difference({0: 0.501, 1: 0.601, 2: 0.701}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert d["sd"] == pytest.approx(0, abs=1e-12)
    floored = paired_difference(
        {0: 0.501, 1: 0.601, 2: 0.701}, {0: 0.5, 1: 0.6, 2: 0.7}, floor=1 / 1000
    )
    assert floored["half_width"] == pytest.approx(1 / 1000)
    assert floored["low"] <= 1e-12 and floored["verdict"] == "no difference shown"
    # A wide interval is not touched by the floor.
    wide = paired_difference({0: 0.3, 1: 0.2}, {0: 0.5, 1: 0.45}, floor=1 / 1000)
    assert wide["half_width"] > 0.1


# --- a tiny real study: killed, resumed, reused ---------------------------------

TINY = [
    "--model",
    "resnet20,in_resnet20",
    "--seeds",
    "0,1",
    "--dataset",
    "fashion_mnist",
    "--epochs",
    "3",
    "--batch-size",
    "32",
    "--train-limit",
    "256",
    "--attacks",
    "fgsm,pgd",
    "--eps",
    "8",
    "--noises",
    "gaussian,impulse",
    "--severities",
    "1,5",
    "--noise-levels",
    "gaussian=0.3",
    "--test-limit",
    "48",
    "--attack-limit",
    "32",
    "--steps",
    "3",
    # What the study tests check does not depend on XLA; graph mode skips
    # its compile on AVX2-only CPUs, where `auto` would choose it.
    "--jit-compile",
    "off",
    "--protocols",
    "pixel,authors-2020-08",
    "--protocol-attacks",
    "fgsm",
    "--protocol-eps",
    "8",
    "--landscape",
]


def _study_cli(out):
    return [sys.executable, "-m", "keras_damped.cli", "study", *TINY, "--out", out]


def _kill_and_resume(folder):
    """Runs the tiny study into `folder`/fm, kills it after its first
    epoch, re-runs it to the end and keeps the re-run's log. The re-run is
    the same command in this process (its runs train in worker processes as
    before): one TensorFlow start less than a second command."""
    os.makedirs(folder)
    out = os.path.join(folder, "fm")
    meta = os.path.join(
        out, "runs", "resnet20", "seed0", "checkpoints", "training_metadata.json"
    )
    process = subprocess.Popen(_study_cli(out), stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if os.path.exists(meta):
            with open(meta) as f:
                if json.loads(f.read() or "{}").get("epoch", 0) >= 1:
                    break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not os.path.exists(os.path.join(out, "study.json"))
    log = io.StringIO()
    with contextlib.redirect_stdout(log):
        code = cli.main(["study", *TINY, "--out", out])
    assert code == 0, log.getvalue()[-3000:]
    with open(os.path.join(folder, "rerun.log"), "w") as f:
        f.write(log.getvalue())


@pytest.fixture(scope="session")
def resumed_study(tmp_path_factory):
    """One tiny study, killed after its first epoch and re-run to the end;
    built once per test run (every xdist worker shares it)."""
    from conftest import shared_file

    folder = shared_file(tmp_path_factory, "study", _kill_and_resume)
    with open(folder / "rerun.log") as f:
        return str(folder / "fm"), f.read()


@pytest.mark.slow
def test_killed_study_resumes_and_finished_runs_are_reused(
    resumed_study, capsys, tmp_path
):
    out, log = resumed_study
    assert "[run 1/4] resnet20 seed 0: resuming its training" in log
    with open(os.path.join(out, "runs", "resnet20", "seed0", "config.json")) as f:
        assert json.load(f)["resumed_at_epoch"] >= 1
    for model in ("resnet20", "in_resnet20"):
        for seed in (0, 1):
            assert os.path.isfile(
                os.path.join(out, "runs", model, f"seed{seed}", "model.keras")
            )
    assert "about" in log and "elapsed" in log  # progress with an estimate
    # Each evaluation's kept attack batches went once its report was saved.
    assert not any("eval-partial" in dirs for _, dirs, _ in os.walk(out))
    # Where each run ran: the killed run has two training sessions.
    from keras_damped._cpu import cpu_name

    with open(os.path.join(out, "study.json")) as f:
        record = json.load(f)["models"]["resnet20"]["provenance"]["0"]
    assert [s["cpu"] for s in record["training"]] == [cpu_name()] * 2
    assert record["training"][0]["resumed_at_epoch"] is None
    assert record["training"][1]["resumed_at_epoch"] >= 1
    assert record["resumed"] == 1 and record["evaluated_on"] == cpu_name()
    assert record["evaluation_resumed"] is None
    with open(os.path.join(out, "study.md")) as f:
        assert f"| resnet20 | 0 | {cpu_name()} | 1 | {cpu_name()} |" in f.read()
    with open(os.path.join(out, "study.json")) as f:
        before = json.load(f)
    # The study folder as committed (a git repository of its own, kept out
    # of the folder): re-aggregating must leave `git status` clean.
    git = ["git", f"--git-dir={tmp_path / 'git'}", f"--work-tree={out}"]
    identity = ["-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], [*identity, "commit", "-qm", "s"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    # The same command once more (in this process: nothing is left to train,
    # so no worker and no thread setting is involved).
    capsys.readouterr()
    assert cli.main(["study", *TINY, "--out", out]) == 0
    assert capsys.readouterr().out.count("trained and evaluated earlier, reused") == 4
    with open(os.path.join(out, "study.json")) as f:
        assert json.load(f) == before  # re-aggregated to the same result
    status = subprocess.run(
        [*git, "status", "--porcelain"], check=True, capture_output=True, text=True
    )
    assert status.stdout == ""


@pytest.mark.slow
def test_jobs_do_not_change_a_runs_numbers(resumed_study, tmp_path, capsys):
    """The fixture's study ran two runs at once, each in a worker process,
    and its resnet20 seed 0 was SIGKILLed after its first epoch and resumed;
    the same run alone and straight through, in the study's own process
    (--jobs 1, trained with --train-only and then evaluated), has the same
    weights and the same evaluation, digit for digit (same thread count:
    the workers set 1 through tf.config, this process runs with the
    TF_NUM_INTRAOP_THREADS=1 of conftest.py)."""
    out, log = resumed_study
    assert "2 run(s) at once, 1 thread(s) each" in log
    argv = list(TINY)
    argv[argv.index("--model") + 1] = "resnet20"
    argv[argv.index("--seeds") + 1] = "0"
    argv.remove("--landscape")  # a study-level output, not compared here
    alone = str(tmp_path / "alone")
    # First --train-only (training, nothing else), then the same command
    # without it evaluates the trained run: together the same run as the
    # fixture's.
    capsys.readouterr()
    assert (
        cli.main(["study", *argv, "--jobs", "1", "--out", alone, "--train-only"]) == 0
    )
    printed = capsys.readouterr().out
    assert "1 run(s) at once, 1 thread(s) each" in printed
    assert "the same command without --train-only evaluates them" in printed
    run = os.path.join("runs", "resnet20", "seed0")
    assert os.path.isfile(os.path.join(alone, run, "model.keras"))
    assert not os.path.exists(os.path.join(alone, run, "eval"))
    assert not os.path.exists(os.path.join(alone, "study.json"))
    # Batches kept under other settings where an interrupted evaluation
    # keeps its finished ones: the study says it resumes; the evaluation
    # deletes them (their stamp differs) and computes the same report.
    partial = os.path.join(alone, run, "eval-partial")
    os.makedirs(partial)
    np.savez(os.path.join(partial, "stale-b0.npz"), robust=np.ones(4, bool))
    with open(os.path.join(partial, "stamp.json"), "w") as f:
        json.dump({"settings": "other"}, f)
    capsys.readouterr()
    assert cli.main(["study", *argv, "--jobs", "1", "--out", alone]) == 0
    printed = capsys.readouterr().out
    assert "resnet20 seed 0: trained earlier, resuming its evaluation" in printed
    assert not os.path.exists(partial)
    a = keras.saving.load_model(os.path.join(out, run, "model.keras"))
    b = keras.saving.load_model(os.path.join(alone, run, "model.keras"))
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(wa), np.asarray(wb), err_msg=wa.path)
    reports = []
    for folder in (out, alone):
        with open(os.path.join(folder, run, "eval", "report.json")) as f:
            entry = next(iter(json.load(f)["models"].values()))
        entry.pop("seconds")
        reports.append(entry)
    assert reports[0] == reports[1]
    records = []
    for folder in (out, alone):
        with open(os.path.join(folder, run, "config.json")) as f:
            records.append(json.load(f))
        assert records[-1]["resolved"]["intra_op_threads"] == 1
    assert records[0]["resumed_at_epoch"] >= 1
    assert records[1]["resumed_at_epoch"] is None


@pytest.mark.slow
def test_another_configuration_is_refused_without_overwrite(resumed_study):
    out, _ = resumed_study
    path = os.path.join(out, "study_config.json")
    before = open(path).read()
    config = StudyConfig.from_json(path)
    config.train.epochs = 4
    with pytest.raises(StudyExistsError, match=r"'epochs': \(3, 4\)"):
        run_study(config)
    assert open(path).read() == before
    code = cli.main(["study", *TINY, "--lr", "0.05", "--out", out])
    assert code == 2 and open(path).read() == before
    # Evaluation settings, models and seeds may change: the trained runs are
    # reused and the evaluations redone (a study grows across sessions).
    config = StudyConfig.from_json(path)
    assert _state(config, "resnet20", 0) is None  # nothing left to do
    config.evaluation = dataclasses.replace(
        config.evaluation, eps=[4 / 255], test_limit=32
    )
    config.seeds = [0, 1, 2]
    _check_out(config, overwrite=False)
    assert open(path).read() == before
    assert _state(config, "resnet20", 0) == "trained earlier, evaluating"
    assert _state(config, "resnet20", 2) == "starting"
    # Both start their work from the beginning: the time-left estimate
    # counts them (test_the_time_left_leaves_out_resumed_runs).
    assert {"trained earlier, evaluating", "starting"} == set(WHOLE)


def test_the_time_left_leaves_out_resumed_runs():
    """A run resumed from its checkpoint or kept attack batches did only the
    rest of its work: the estimate is the mean of the runs done from their
    start, times the rounds of `jobs` runs at once that are left."""
    clock = _Clock(total=6, jobs=2)
    clock.finish()  # reused: nothing to time
    clock.finish(600, whole=False)  # resumed: 10 min
    assert clock.remaining() == "time left unknown until a run is done from its start"
    clock.finish(5400)  # 90 min from its start
    # Three runs left, two at a time: two rounds of 90 min.
    assert clock.remaining() == "about 3.0 h left"
    clock.finish(3600)  # 60 min
    # Two runs left at the mean of 75 min, at once: one round.
    assert clock.remaining() == "about 75 min left"
    clock.finish(4000)
    clock.finish(4000)
    assert clock.remaining() == "nothing left"


def test_a_format_1_study_folder_is_read_and_resumes(tmp_path):
    """The converged study's folder was started in the flat format 1 (eps
    in units of 1/255, `limit` the test images; a copy of its
    study_config.json as written on 2026-12-01): it reads into today's
    nested config and the same study resumes in it."""
    path = os.path.join(REPO, "tests", "fixtures", "study_config_format1.json")
    with open(path) as f:
        flat = json.load(f)
    assert flat["format"] == 1 and "train" not in flat
    config = StudyConfig.from_dict(flat)
    assert config.train.epochs == 8 and config.train.train_limit is None
    assert config.train.test_limit == 10000 and config.evaluation.test_limit == 10000
    assert config.evaluation.eps == [e / 255 for e in (1, 2, 4, 8)]
    assert config.evaluation.noise_levels == {"gaussian": [0.15, 0.2, 0.3, 0.4]}
    assert config.threads == 1 and config.baseline == "resnet20"
    config.validate()
    out = tmp_path / "old"
    out.mkdir()
    (out / "study_config.json").write_text(json.dumps({**flat, "out": str(out)}))
    config.out = str(out)
    _check_out(config, overwrite=False)  # the same training settings: resumes
    config.train.lr = 0.05
    with pytest.raises(StudyExistsError, match=r"'lr': \(0.1, 0.05\)"):
        _check_out(config, overwrite=False)


@pytest.mark.slow
def test_study_statistics_agree_with_the_run_reports(resumed_study):
    out, _ = resumed_study
    with open(os.path.join(out, "study.json")) as f:
        study = json.load(f)
    reports = {}
    for model in ("resnet20", "in_resnet20"):
        for seed in (0, 1):
            path = os.path.join(
                out, "runs", model, f"seed{seed}", "eval", "report.json"
            )
            with open(path) as f:
                reports[model, seed] = json.load(f)
    settings = [r["settings"] for r in reports.values()]
    for key in ("examples", "seed", "noise_source", "noise_levels", "eps"):
        assert len({json.dumps(s[key]) for s in settings}) == 1  # same evaluation
    assert {(s["examples"], s["attack_examples"]) for s in settings} == {(48, 32)}
    for model in ("resnet20", "in_resnet20"):
        entries = [next(iter(reports[model, s]["models"].values())) for s in (0, 1)]
        pgd = [e["attacks"]["pgd"]["8"] for e in entries]
        summary = study["models"][model]["summary"]
        assert summary["pgd 8"]["mean"] == pytest.approx(np.mean(pgd))
        # Clean on all 48 examples, the attacks on the first 32; an example
        # is robust if correct clean and after both attacks.
        for e in entries:
            clean = unpack_mask(e["masks"]["clean"], 48)
            assert e["attack_clean"] == pytest.approx(clean[:32].mean())
        worst = [
            np.mean(
                unpack_mask(e["masks"]["clean"], 48)[:32]
                & unpack_mask(e["masks"]["attacks"]["fgsm"]["8"], 32)
                & unpack_mask(e["masks"]["attacks"]["pgd"]["8"], 32)
            )
            for e in entries
        ]
        assert summary["worst 8"]["mean"] == pytest.approx(np.mean(worst))
        assert (
            summary["worst 8"]["mean"]
            <= min(summary["pgd 8"]["mean"], summary["fgsm 8"]["mean"]) + 1e-12
        )
        assert summary["gaussian c=0.3"]["n"] == 2
        # The authors' August 2020 protocol, from the same reports.
        scores = [e["protocols"]["authors-2020-08"] for e in entries]
        eps0 = [e["masks"]["protocols"]["authors-2020-08"]["eps0"] for e in entries]
        expected = {
            # On the 32 attacked examples, as the protocol's attacks.
            "eps 0": [unpack_mask(m, 32).mean() for m in eps0],
            "fgsm 8": [p["attacks"]["fgsm"]["8"] for p in scores],
            "impulse": [p["noises"]["impulse"]["mean"] for p in scores],
        }
        for column, values in expected.items():
            name = f"authors-2020-08: {column}"
            assert summary[name]["mean"] == pytest.approx(np.mean(values))
            assert name not in study["models"][model]["relative"]
    assert study["protocol_columns"] == [
        f"authors-2020-08: {c}" for c in ("eps 0", "fgsm 8", "gaussian", "impulse")
    ]
    diff = study["differences"]["in_resnet20"]["clean"]
    runs = study["models"]
    expected = [
        runs["in_resnet20"]["runs"][s]["clean"] - runs["resnet20"]["runs"][s]["clean"]
        for s in ("0", "1")
    ]
    assert diff["mean"] == pytest.approx(np.mean(expected))
    lams = study["models"]["in_resnet20"]["lambdas"]
    assert len(lams) == 6 and not study["models"]["resnet20"]["lambdas"]
    with open(os.path.join(out, "study.md")) as f:
        text = f.read()
    assert "Paired differences against resnet20" in text and "In words:" in text
    assert "## Resolution" in text and "| in_resnet20 | pgd 8 |" in text
    main = text[text.index("## Accuracy") : text.index("## Paired differences")]
    assert "pgd 8" in main and "authors-2020-08" not in main
    protocols = text[text.index("## The authors' protocols") :]
    assert "### authors-2020-08" in protocols
    assert "| model | eps 0 | fgsm 8 | gaussian | impulse |" in protocols
    assert "| in_resnet20 - resnet20 |" in protocols
    assert "| in_resnet20 | authors-2020-08: fgsm 8 |" in protocols
    need = study["differences"]["in_resnet20"]["pgd 8"]["seeds_needed"]
    assert set(need) == {"1", "2", "5"}
    lambdas = text[text.index("## Learned lambda per damped block") :]
    assert "| in_resnet20 | 0 |" in lambdas and "| in_resnet20 | mean |" in lambdas
    with open(os.path.join(out, "landscape.json")) as f:
        landscape = json.load(f)
    # On the evaluation's 48 test images (fewer than the landscape's 128).
    assert landscape["settings"]["examples"] == 48
    assert landscape["study_settings"]["test_limit"] == 48
    curves = landscape["landscape_1d"]["sign_gradient"]["models"]
    assert sorted(curves) == [
        f"{m} (seed{s})" for m in ("in_resnet20", "resnet20") for s in (0, 1)
    ]
    assert all(len(c["accuracy"]) == 33 for c in curves.values())
    for name in (
        "accuracy_vs_eps",
        "accuracy_vs_severity",
        "noise_levels",
        "differences",
        "lambdas",
        "landscape_1d",
    ):
        assert os.path.getsize(os.path.join(out, "plots", f"{name}.png")) > 1000


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(port, path, body=None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow
def test_tensorboard_serves_the_hparams_and_the_damping(resumed_study):
    out, _ = resumed_study
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            out,
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
            "--load_fast",
            "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        groups = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                groups = _http(
                    port,
                    "/data/plugin/hparams/session_groups",
                    {
                        "experimentName": "",
                        "startIndex": 0,
                        "sliceSize": 100,
                        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS"],
                        "colParams": [],
                    },
                )["sessionGroups"]
            except OSError:
                groups = []
            if len(groups) == 4:
                break
            time.sleep(1)
        experiment = _http(
            port, "/data/plugin/hparams/experiment", {"experimentName": ""}
        )
        with open(os.path.join(out, "study.json")) as f:
            study = json.load(f)
        tags = _http(port, "/data/plugin/scalars/tags")
        run = "runs/in_resnet20/seed1/tb/damping"
        points = _http(
            port, f"/data/plugin/scalars/scalars?run={run}&tag=damping/stage3_block3"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    names = {h["name"] for h in experiment["hparamInfos"]}
    assert {"model", "seed", "damping", "epochs", "lr"} <= names
    metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
    assert {"study/clean", "study/pgd_8", "study/worst_8"} <= metrics
    assert sorted(g["name"] for g in groups) == [
        "in_resnet20/seed0",
        "in_resnet20/seed1",
        "resnet20/seed0",
        "resnet20/seed1",
    ]
    group = next(g for g in groups if g["name"] == "in_resnet20/seed1")
    assert group["hparams"]["damping"] == "in" and group["hparams"]["seed"] == 1
    clean = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}["study/clean"]
    assert clean == pytest.approx(study["models"]["in_resnet20"]["runs"]["1"]["clean"])
    # The training run's damping scalars, next to the study's sessions: the
    # last epoch's value is the trained model's lambda.
    assert "damping/stage1_block2" in tags[run]
    assert [p[1] for p in points] == [0, 1, 2]
    lam = study["models"]["in_resnet20"]["lambdas"]["stage3_block3"]["seeds"]["1"]
    assert points[-1][2] == pytest.approx(lam, abs=1e-6)


# --- arguments and the CIFAR-10 recipe -------------------------------------------


def test_the_results_page_shows_the_cifar10_recipe():
    with open(os.path.join(REPO, "docs", "results.md")) as f:
        assert CIFAR10_PAPER in f.read()


@pytest.mark.slow
def test_cifar10_recipe_end_to_end_on_mock_data(tmp_path, capsys):
    """The recipe's command, scaled down (models, seeds, epochs, examples), on
    TFDS mock data: the CIFAR-10 path, normalisation, schedule, augmentation
    and the CIFAR-10-C files through TFDS."""
    argv = shlex.split(CIFAR10_PAPER)[1:]
    at = argv.index("--model")  # repeated --model flags add up: replace it
    del argv[at : at + 2]
    argv += [
        "--model",
        "resnet20,in_resnet20",
        "--seeds",
        "0",
        "--epochs",
        "1",
        "--train-limit",
        "32",
        "--test-limit",
        "16",
        "--eps",
        "8",
        "--attacks",
        "fgsm,pgd",
        "--steps",
        "2",
        "--severities",
        "5",
        "--out",
        str(tmp_path / "c10"),
        "--data-dir",
        str(tmp_path / "tfds"),
        "--jobs",  # in this process: the mock data lives here
        "1",
        "--jit-compile",  # as TINY: nothing checked here depends on XLA
        "off",
    ]
    with tfds.testing.mock_data(num_examples=40, data_dir=str(tmp_path / "tfds")):
        assert cli.main(argv) == 0
    with open(tmp_path / "c10" / "study.json") as f:
        study = json.load(f)
    train = study["config"]["train"]
    assert train["dataset"] == "cifar10"
    assert train["schedule"] == "paper" and train["augment"] == "paper"
    assert "TFDS cifar10_corrupted" in study["evaluation"]["noise_source"]
    assert set(study["models"]) == {"resnet20", "in_resnet20"}
    assert "gaussian s5" in study["columns"] and "ifgsm 8" not in study["columns"]


@pytest.mark.slow
def test_a_diverged_run_fails_its_worker_with_exit_3_and_the_study_says_so(
    tmp_path, capfd
):
    """Two runs in worker processes at a learning rate that overflows: each
    worker stops with exit status 3 (training diverged), the study names
    both runs and their status, exits 3 and writes no study result."""
    out = str(tmp_path / "diverged")
    argv = ["study", "--model", "resnet20", "--seeds", "0,1", "--jobs", "2"]
    argv += ["--dataset", "fashion_mnist", "--epochs", "1", "--train-limit", "64"]
    argv += ["--batch-size", "32", "--lr", "1e30", "--jit-compile", "off"]
    argv += ["--out", out, "--train-only"]
    # The study in this process, its runs in worker processes.
    code = cli.main(argv)
    captured = capfd.readouterr()
    output = captured.out + captured.err
    assert code == 3, output[-3000:]
    assert "resnet20 seed 0 (exit 3)" in output and "resnet20 seed 1 (exit 3)" in output
    assert "diverged" in output.lower()
    assert not os.path.exists(os.path.join(out, "study.json"))
    for seed in (0, 1):
        run = os.path.join(out, "runs", "resnet20", f"seed{seed}")
        assert not os.path.exists(os.path.join(run, "model.keras"))


def test_the_lambda_table_takes_models_of_different_depths():
    from keras_damped.study.outputs import _lambda_lines

    def lambdas(blocks):
        return {b: {"seeds": {"0": 0.5}, "mean": 0.5} for b in blocks}

    models = {
        "in_resnet20": {"lambdas": lambdas(["stage1_block1", "stage1_block2"])},
        "in_resnet32": {"lambdas": lambdas(["stage1_block1", "stage1_block4"])},
        "resnet20": {"lambdas": {}},
    }
    table = [line for line in _lambda_lines(models) if line.startswith("| in_")]
    header = next(line for line in _lambda_lines(models) if "| model |" in line)
    assert header.count("stage1_block") == 3
    assert table[0] == "| in_resnet20 | 0 | 0.500 | 0.500 | - |"
    assert table[3] == "| in_resnet32 | mean | 0.500 | - | 0.500 |"


def test_the_provenance_table_names_each_session_and_a_resumed_evaluation():
    from keras_damped.study.outputs import _provenance_lines

    def session(cpu, epoch):
        return {"cpu": cpu, "started": "t", "resumed_at_epoch": epoch}

    def resumed_on_a(sessions, cpu):
        """Trained and evaluated on A; 9 batches (1,800 s wall) reused."""
        return {
            "training": [session("A", None)],
            "resumed": 0,
            "evaluated_on": "A",
            "evaluation_seconds": {"wall": 3000.0, "cpu": 2700.0},
            "evaluation_resumed": {
                "batches_reused": 9,
                "machines": ["A"],
                "sessions": sessions,
                "seconds": {"wall": 1800.0, "cpu": cpu},
            },
        }

    models = {
        "resnet56": {
            "provenance": {
                "0": {
                    "training": [session("A", None), session("B", 3), session("A", 6)],
                    "resumed": 2,
                    "evaluated_on": "B",
                    "evaluation_seconds": {"wall": 3000.0, "cpu": 2700.0},
                    "evaluation_resumed": {"batches_reused": 7, "machines": ["A"]},
                },
                "1": {
                    "training": [session("A", None)],
                    "resumed": 0,
                    "evaluated_on": None,
                    "evaluation_seconds": None,
                },
                # Reports that record the reused batches' sessions and
                # seconds: the time over every session.
                "2": resumed_on_a(sessions=2, cpu=1500.0),
                "3": resumed_on_a(sessions=1, cpu=None),
                "4": {
                    "training": [session("A", None)],
                    "resumed": 0,
                    "evaluated_on": "A",
                    "evaluation_seconds": {"wall": 600.0, "cpu": 540.0},
                },
            }
        }
    }
    lines = _provenance_lines(models)
    assert lines[:3] == ["", "## Where each run ran", ""]
    header = (
        "| model | seed | trained on | training resumed | evaluated on "
        "| evaluation time |"
    )
    assert header in lines
    assert (
        "| resnet56 | 0 | A -> B | 2 | B (resumed: 7 attack batches from A) | "
        "50 min wall, 45 min CPU in its last session |" in lines
    )
    assert "| resnet56 | 1 | A | 0 | - | - |" in lines
    resumed = "| resnet56 | {} | A | 0 | A (resumed: 9 attack batches from A) | {} |"
    assert resumed.format(2, "80 min wall, 70 min CPU over 3 sessions") in lines
    assert (
        resumed.format(3, "80 min wall over 2 sessions, 45 min CPU in the last")
        in lines
    )
    assert "| resnet56 | 4 | A | 0 | A | 10 min wall, 9 min CPU |" in lines
