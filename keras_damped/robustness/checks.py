"""The sanity checks of a serious evaluation, on one model's results.

Adversarial points inside the eps-ball and [0, 1]; accuracy non-increasing
in eps; each attack no weaker than those its class names in
`not_weaker_than` (PGD and IFGSM than FGSM, AutoAttack than PGD); PGD at a
large eps (64/255) close to 0%; the gradient-free attacks not more than 2
points stronger than every gradient attack together (otherwise gradient
masking is suspected). Plus the worst case over the L-infinity attacks,
per example.

The checks know attacks only by the specs a report records
(`registry.attack_spec`: norm, gradient or not, stages, ...), so an attack
a user registers is checked like a built-in one.
"""

import numpy as np

from keras_damped.robustness.report import eps_key
from keras_damped.robustness.report import unpack_mask

# Tolerances (fractions of the examples).
MONOTONE_TOLERANCE = 0.01
NOT_WEAKER_TOLERANCE = 0.02
LARGE_EPS_MAX_ACCURACY = 0.10
BALL_TOLERANCE = 1e-6
SQUARE_GAIN_TOLERANCE = 0.02
# The attack of the large-eps check (a check of its own, whatever ran).
LARGE_EPS_ATTACK = "pgd"


def linf_attacks(attacks, specs):
    return [a for a in attacks if specs[a]["norm"] == "linf"]


def worst_case(masks, attacks, key, count, specs, clean=None):
    """Per example: correct after every L-infinity attack in `attacks` that
    ran at the eps labelled `key` (the AND of their packed masks) and, given
    the packed `clean` mask, correct on the clean image too (an attack can
    turn a misclassified example into a correct one; it was never robust);
    None when no L-infinity attack ran at `key`. `specs`: the attacks'
    recorded specs (their norms)."""
    ran = [a for a in linf_attacks(attacks, specs) if key in masks.get(a, {})]
    if not ran:
        return None
    survive = np.ones(count, dtype=bool)
    if clean is not None:
        survive &= unpack_mask(clean, count)
    for attack in ran:
        survive &= unpack_mask(masks[attack][key], count)
    return survive


def square_gain(entry, attacks, key, count, specs):
    """How much the gradient-free attacks lower the worst case of the
    gradient attacks at one eps (a fraction of the examples), or None
    without both kinds.

    Each side takes the L-infinity attacks of its kind that ran at `key`
    and, of a sequence such as AutoAttack, the mask after its last stage of
    that kind (its gradient-free stages run on what the others left).
    """
    masks = entry["masks"]
    gradient, free = [], []
    for attack in linf_attacks(attacks, specs):
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


def sanity(entry, attacks, extremes, large, count, specs):
    """The checks' results and flags of one model's `entry`.

    `extremes`: `{"max_linf": {attack: {key: largest change}}, "in_range":
    bool}` of the adversarial points; `large`: `{"eps", "accuracy",
    "max_linf"}` of PGD at the large radius (None without attacks: not
    run); `count`: attacked examples; `specs`: the attacks' recorded
    specs.
    """
    flags = []
    in_ball = all(
        worst <= float(key) / 255 + BALL_TOLERANCE
        for by_key in extremes["max_linf"].values()
        for key, worst in by_key.items()
    ) and (large is None or large["max_linf"] <= large["eps"] + BALL_TOLERANCE)
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
    not_weaker = _not_weaker(entry["attacks"], specs, flags)
    masking = large is not None and large["accuracy"] > LARGE_EPS_MAX_ACCURACY
    if masking:
        flags.append(
            f"possible gradient masking: PGD at {eps_key(large['eps'])}/255 leaves "
            f"{100 * large['accuracy']:.1f}% accuracy (expected <= "
            f"{100 * LARGE_EPS_MAX_ACCURACY:.0f}%)"
        )
    result = {
        "in_ball": in_ball,
        "in_range": extremes["in_range"],
        "max_linf": extremes["max_linf"],
        "monotone": monotone,
        "not_weaker": not_weaker,
        "large_eps_pgd": None if large is None else large["accuracy"],
        "gradient_masking_suspected": masking,
        "flags": flags,
    }
    _square_check(result, entry, attacks, count, specs)
    return result


def _not_weaker(accuracies, specs, flags):
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
                        f"{specs[weaker]['label']} at eps {key}/255"
                    )
    return results


def _square_check(sanity_result, entry, attacks, count, specs):
    """Adds the gradient-free-vs-gradient check."""
    keys = sorted(
        {k for by_key in entry["attacks"].values() for k in by_key}, key=float
    )
    gains = {}
    for key in keys:
        gain = square_gain(entry, attacks, key, count, specs)
        if gain is not None:
            gains[key] = gain
    sanity_result["square_gain"] = gains
    masked = [k for k, gain in gains.items() if gain > SQUARE_GAIN_TOLERANCE]
    sanity_result["square_beats_gradient"] = bool(masked) if gains else None
    for k in masked:
        sanity_result["flags"].append(
            f"Square (gradient-free) beats the gradient attacks by "
            f"{100 * gains[k]:.1f} points at eps {k}/255 (more than "
            f"{100 * SQUARE_GAIN_TOLERANCE:.0f}): possible gradient masking"
        )
    if masked:
        sanity_result["gradient_masking_suspected"] = True
