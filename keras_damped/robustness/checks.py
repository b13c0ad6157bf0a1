"""The sanity checks of a serious evaluation, on one model's results.

Adversarial points inside the eps-ball and [0, 1]; accuracy non-increasing
in eps; each attack no weaker than those its class names in
`not_weaker_than` (PGD and IFGSM than FGSM, AutoAttack than PGD); PGD at a
large eps (64/255) close to 0%; the gradient-free attacks not more than 2
points stronger than every gradient attack together (otherwise gradient
masking is suspected). Plus the worst case over the attacks in the
evaluation's ball (L-infinity or L2), per example.

The checks know attacks only by the specs a report records
(`registry.attack_spec`: norm, gradient or not, stages, ...), so an attack
a user registers is checked like a built-in one.
"""

import warnings

import numpy as np

from keras_damped.robustness.report import eps_key
from keras_damped.robustness.report import eps_text
from keras_damped.robustness.report import unpack_mask

# Tolerances (fractions of the examples).
MONOTONE_TOLERANCE = 0.01
NOT_WEAKER_TOLERANCE = 0.02
LARGE_EPS_MAX_ACCURACY = 0.10
BALL_TOLERANCE = 1e-6
# An L2 length sums float32 roundings over every pixel: relative slack too.
L2_RELATIVE_TOLERANCE = 1e-5
SQUARE_GAIN_TOLERANCE = 0.02
# The attack of the large-eps check (a check of its own, whatever ran).
LARGE_EPS_ATTACK = "pgd"


def norm_attacks(attacks, specs, norm="linf"):
    """The attacks that ran in the `norm` ball, by their recorded specs."""
    return [a for a in attacks if specs[a]["norm"] == norm]


def worst_case(masks, attacks, key, count, specs, clean=None, norm="linf"):
    """Per example: correct after every attack in `attacks` that ran in the
    `norm` ball at the eps labelled `key` (the AND of their packed masks)
    and, given the packed `clean` mask, correct on the clean image too (an
    attack can turn a misclassified example into a correct one; it was
    never robust); None when no such attack ran at `key`. `specs`: the
    attacks' recorded specs (their norms)."""
    ran = [a for a in norm_attacks(attacks, specs, norm) if key in masks.get(a, {})]
    if not ran:
        return None
    survive = np.ones(count, dtype=bool)
    if clean is not None:
        survive &= unpack_mask(clean, count)
    for attack in ran:
        survive &= unpack_mask(masks[attack][key], count)
    return survive


def square_gain(entry, attacks, key, count, specs, norm="linf"):
    """How much the gradient-free attacks lower the worst case of the
    gradient attacks at one eps (a fraction of the examples), or None
    without both kinds.

    Each side takes the attacks in the `norm` ball of its kind that ran at `key`
    and, of a sequence such as AutoAttack, the mask after its last stage of
    that kind (its gradient-free stages run on what the others left).
    """
    masks = entry["masks"]
    gradient, free = [], []
    for attack in norm_attacks(attacks, specs, norm):
        spec = specs[attack]
        if spec["stages"]:
            stages = masks.get(f"{attack}_stages", {}).get(key, {})
            kinds = [(stage, specs[stage]["gradient"]) for stage in stages]
            last_gradient = [stage for stage, g in kinds if g]
            if last_gradient and not kinds[-1][1]:
                gradient.append(stages[last_gradient[-1]])
                free.append(stages[kinds[-1][0]])
        elif key in masks["attacks"].get(attack, {}):
            (gradient if spec["gradient"] else free).append(
                masks["attacks"][attack][key]
            )
    if not gradient or not free:
        return None
    # An example misclassified clean was never robust, whatever an attack did.
    survive = unpack_mask(masks["clean"], count)
    for packed in gradient:
        survive &= unpack_mask(packed, count)
    before = survive.mean()
    for packed in free:
        survive &= unpack_mask(packed, count)
    return float(before - survive.mean())


def sanity(entry, attacks, extremes, large, count, specs, norm="linf"):
    """The checks' results and flags of one model's `entry`.

    `extremes`: `{"max_distance": {attack: {key: largest change in the
    norm}}, "in_range": bool}` of the adversarial points of the attacks in
    the `norm` ball; `large`: `{"eps", "accuracy", "max_distance"}` of PGD
    at the large radius (None without attacks: not run); `count`: attacked
    examples; `specs`: the attacks' recorded specs. The result records the
    largest changes as `max_linf` or `max_l2`.
    """
    flags = []

    def inside(distance, radius):
        slack = L2_RELATIVE_TOLERANCE * radius if norm == "l2" else 0.0
        return distance <= radius + slack + BALL_TOLERANCE

    in_ball = all(
        inside(worst, float(key) / 255)
        for by_key in extremes["max_distance"].values()
        for key, worst in by_key.items()
    ) and (large is None or inside(large["max_distance"], large["eps"]))
    if not in_ball:
        flags.append("adversarial points outside the eps-ball")
    if not extremes["in_range"]:
        flags.append("adversarial points outside [0, 1]")
    monotone = {}
    for attack, by_key in entry["attacks"].items():
        accs = [by_key[k] for k in sorted(by_key, key=float)]
        monotone[attack] = all(
            b <= a + MONOTONE_TOLERANCE for a, b in zip(accs, accs[1:])
        )
        if not monotone[attack]:
            flags.append(f"{attack} accuracy increases with eps")
    not_weaker = _not_weaker(entry["attacks"], specs, flags, norm)
    masking = large is not None and large["accuracy"] > LARGE_EPS_MAX_ACCURACY
    if masking:
        flags.append(
            "possible gradient masking: PGD at "
            f"{eps_text(eps_key(large['eps']), norm)} leaves "
            f"{100 * large['accuracy']:.1f}% accuracy (expected <= "
            f"{100 * LARGE_EPS_MAX_ACCURACY:.0f}%)"
        )
    result = {
        "in_ball": in_ball,
        "in_range": extremes["in_range"],
        f"max_{norm}": extremes["max_distance"],
        "monotone": monotone,
        "not_weaker": not_weaker,
        "large_eps_pgd": None if large is None else large["accuracy"],
        "large_eps": None if large is None else large["eps"],
        "gradient_masking_suspected": masking,
        "flags": flags,
    }
    _square_check(result, entry, attacks, count, specs, norm)
    return result


def _not_weaker(accuracies, specs, flags, norm):
    """`{attack: True/False}` for each attack that ran beside one its spec
    says it must not be weaker than: False (and a flag) where it left more
    than 2 points more accuracy at a common eps."""
    results = {}
    for attack, by_key in accuracies.items():
        for weaker in specs[attack]["not_weaker_than"]:
            if weaker not in accuracies:
                continue
            results.setdefault(attack, True)
            for key, accuracy in by_key.items():
                base = accuracies[weaker].get(key)
                if base is not None and accuracy > base + NOT_WEAKER_TOLERANCE:
                    results[attack] = False
                    flags.append(
                        f"{specs[attack]['label']} weaker than "
                        f"{specs[weaker]['label']} at eps {eps_text(key, norm)}"
                    )
    return results


def _square_check(sanity_result, entry, attacks, count, specs, norm):
    """Adds the gradient-free-vs-gradient check."""
    keys = sorted(
        {k for by_key in entry["attacks"].values() for k in by_key}, key=float
    )
    gains = {}
    for key in keys:
        gain = square_gain(entry, attacks, key, count, specs, norm)
        if gain is not None:
            gains[key] = gain
    sanity_result["square_gain"] = gains
    masked = [k for k, gain in gains.items() if gain > SQUARE_GAIN_TOLERANCE]
    sanity_result["square_beats_gradient"] = bool(masked) if gains else None
    for k in masked:
        sanity_result["flags"].append(
            f"Square (gradient-free) beats the gradient attacks by "
            f"{100 * gains[k]:.1f} points at eps {eps_text(k, norm)} (more than "
            f"{100 * SQUARE_GAIN_TOLERANCE:.0f}): possible gradient masking"
        )
    if masked:
        sanity_result["gradient_masking_suspected"] = True


# -- AutoAttack's own checks (fra31/auto-attack `checks.py`) ----------------
#
# What the official AutoAttack checks before and after it runs, with its
# thresholds, reported beside the checks above as `autoattack_flags` (and
# as Python warnings, as the official code warns). Its check for dynamic
# defences traces PyTorch's autograd calls; like the official code on
# TensorFlow models, it is not run.
RANDOMIZED_RUNS = 5
RANDOMIZED_TOLERANCE = 1e-4
PROBABILITY_TOLERANCE = 1e-5
SQUARE_TOLERANCE = 0.002


def model_checks(logits_of, x, y):
    """The checks on the model's outputs for one batch `x` (labels `y`):
    `{"randomized", "probabilities"}`. `logits_of(x)` returns NumPy logits.

    randomized: over `RANDOMIZED_RUNS` calls, the count of correct
    predictions changes or two L2-normalised outputs differ by more than
    `RANDOMIZED_TOLERANCE`; probabilities: the outputs lie in [0, 1] and
    sum to 1 (softmax outputs, not logits).
    """
    outputs = [np.asarray(logits_of(x), np.float64) for _ in range(RANDOMIZED_RUNS)]
    correct = {int((o.argmax(-1) == y).sum()) for o in outputs}
    unit = [o / (np.linalg.norm(o, axis=-1, keepdims=True) + 1e-10) for o in outputs]
    spread = max(
        (
            np.linalg.norm(a - b, axis=-1).max()
            for i, a in enumerate(unit)
            for b in unit[i + 1 :]
        ),
        default=0.0,
    )
    first = outputs[0]
    probabilities = bool(
        first.max() < 1 + PROBABILITY_TOLERANCE
        and first.min() > -PROBABILITY_TOLERANCE
        and np.all(np.abs(first.sum(-1) - 1) < PROBABILITY_TOLERANCE)
    )
    return {
        "randomized": bool(len(correct) > 1 or spread > RANDOMIZED_TOLERANCE),
        "probabilities": probabilities,
    }


def autoattack_flags(
    model, zero_gradients, stage_accuracies, classes, specs, norm="linf"
):
    """AutoAttack's flags: `(checks, messages)`.

    `model`: `model_checks`' result; `zero_gradients`: APGD's random starts
    with an all-zero input gradient; `stage_accuracies`: `{attack: {key:
    {stage: accuracy after it}}}` of the sequences that ran; `classes`: the
    model's; `specs`: the attacks' recorded specs (their stages and
    target classes).
    """
    messages = []
    if model["randomized"]:
        messages.append(
            "the model's outputs change from call to call: it looks like a "
            "randomized defence, which the standard version does not evaluate "
            "reliably (the official code asks for version='rand')"
        )
    if model["probabilities"]:
        messages.append(
            "the model's outputs look like probabilities (in [0, 1], summing to "
            "1): the attacks need logits"
        )
    if zero_gradients:
        messages.append(
            f"{zero_gradients} random starts with an all-zero input gradient: the "
            "gradient attacks cannot move those points"
        )
    square = {}
    for attack, by_key in stage_accuracies.items():
        for key, by_stage in by_key.items():
            others = [v for s, v in by_stage.items() if s != "square"]
            if "square" in by_stage and len(by_stage) > 2:
                gain = min(others) - by_stage["square"]
                square[key] = gain
                if gain > SQUARE_TOLERANCE:
                    messages.append(
                        f"Square lowered {specs[attack]['label']}'s robust accuracy "
                        f"by {100 * gain:.2f} points at eps {eps_text(key, norm)}: "
                        "the gradient attacks may be failing (try more Square "
                        "queries or an adaptive attack)"
                    )
    # Too few classes for the DLR loss is refused before any work (the
    # attacks' `min_classes`); more targets than classes - 1 only warns,
    # as in the official code (the attacks use classes - 1).
    too_many = {
        spec["label"]: spec["budget"]["target_classes"]
        for spec in specs.values()
        if spec["budget"].get("target_classes", 0) + 1 > classes
    }
    for label, count in too_many.items():
        messages.append(
            f"{label} asks for {count} target classes, more than the "
            f"{classes - 1} possible"
        )
    for message in messages:
        warnings.warn(f"AutoAttack check: {message}", stacklevel=2)
    return {
        **model,
        "zero_gradients": int(zero_gradients),
        "square_gain": square,
        "too_many_targets": too_many,
        "dynamic": None,
    }, messages
