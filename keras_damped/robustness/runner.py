"""Runs attacks over a test set: the layer between the attacks (and the
authors' protocol attacks) below and `evaluate` above.

`run_attack` runs one attack at one radius over the attacked images, batch
by batch; `evaluate_protocol` runs one of the authors' protocols (its
attacks, eps = 0 and its noise) on one model.
"""

import time

import numpy as np

from keras_damped.robustness.protocols import clamp_only
from keras_damped.robustness.protocols import protocol_attack_name
from keras_damped.robustness.protocols import standardise_file
from keras_damped.robustness.registry import AttackContext
from keras_damped.robustness.registry import make_attack
from keras_damped.robustness.report import eps_key
from keras_damped.robustness.report import pack_mask


def run_attack(attack, test, eps, config, meter=None, keep=0):
    """One attack at one radius over the attacked images, batch by batch,
    each batch with the seed `(config.seed, batch index)`.

    Returns `{"robust", "stages", "max_linf", "max_l2", "in_range", "kept",
    "seconds", "cost"}`: the per-example mask, the per-stage masks of a
    sequence, the largest pixel change, the longest change (L2), whether
    every point stayed in [0, 1], the first `keep` adversarial images, the
    wall time and the attack's counted work summed over the batches (None
    when it does not count).
    """
    started = time.perf_counter()
    robust, stages, kept, cost = [], {}, None, None
    max_linf, max_l2, in_range = 0.0, 0.0, True
    for i, start in enumerate(range(0, test.attacked, config.batch_size)):
        stop = min(start + config.batch_size, test.attacked)
        x = test.images[start:stop]
        result = attack(x, test.labels[start:stop], eps, seed=(config.seed, i))
        robust.append(result.robust)
        for stage, mask in (result.stages or {}).items():
            stages.setdefault(stage, []).append(mask)
        if result.cost is not None:
            cost = add_counts(cost or {}, result.cost)
        change = (result.x_adv - x).reshape(len(x), -1)
        max_linf = max(max_linf, float(np.abs(change).max()))
        max_l2 = max(max_l2, float(np.sqrt((change**2).sum(-1)).max()))
        in_range = in_range and bool(
            result.x_adv.min() >= 0 and result.x_adv.max() <= 1
        )
        if kept is None:
            kept = result.x_adv[:keep]
        if meter is not None:
            meter.advance(len(x) * attack.cost())
    return {
        "robust": np.concatenate(robust),
        "stages": {k: np.concatenate(v) for k, v in stages.items()},
        "max_linf": max_linf,
        "max_l2": max_l2,
        "in_range": in_range,
        "kept": kept,
        "seconds": round(time.perf_counter() - started, 1),
        "cost": cost,
    }


def add_counts(total, more):
    """`total` plus `more`, nested dicts of counts added key by key."""
    out = dict(total)
    for key, value in more.items():
        if isinstance(value, dict):
            out[key] = add_counts(out.get(key, {}), value)
        else:
            out[key] = out.get(key, 0) + value
    return out


def evaluate_protocol(protocol, model_fn, correct, test, config, norm, advance):
    """One model under one authors' protocol: eps = 0, the attacks, the noise.

    Args:
        protocol: one of `AUTHORS_PROTOCOLS`.
        model_fn: `x -> logits` on pixels.
        correct: `(x, y) -> boolean mask` of correct predictions, batched.
        test: the `TestSet`: the attacks run on its first `attacked`
            images, eps 0 and the noise on all of them.
        config: the `EvalConfig` (its protocol attacks and radii,
            `batch_size`, `seed`).
        norm: the model's `(mean, std)` in pixel units.
        advance: called with the units of work done.

    Returns:
        `(results, masks)`: accuracies and packed per-example masks.
    """
    mean, std = norm
    clamped = correct(clamp_only(protocol, test.images, mean, std), test.labels)
    results = {"eps0": float(clamped.mean()), "attacks": {}, "noises": {}}
    masks = {"eps0": pack_mask(clamped), "attacks": {}}
    advance(len(test.images))
    for name in config.protocol_attack_names():
        attack = make_attack(
            protocol_attack_name(protocol, name),
            model_fn,
            context=AttackContext(tuple(mean), tuple(std)),
        )
        for eps in config.protocol_radii():
            robust = run_attack(attack, test, eps, config)["robust"]
            advance(test.attacked * attack.cost())
            results["attacks"].setdefault(name, {})[eps_key(eps)] = float(robust.mean())
            masks["attacks"].setdefault(name, {})[eps_key(eps)] = pack_mask(robust)
    by_noise = {}
    for (noise, severity), (x, y) in test.noise_sets.items():
        by_noise.setdefault(noise, []).append((severity, x, y))
    for noise, parts in by_noise.items():
        stack = np.concatenate([x for _, x, _ in parts])
        fed, _, _ = standardise_file(stack, mean, std)
        scores, offset = {}, 0
        for severity, x, y in parts:
            y = test.labels if y is None else y.astype("int32")
            scores[str(severity)] = float(
                correct(fed[offset : offset + len(x)], y).mean()
            )
            offset += len(x)
        scores["mean"] = float(np.mean(list(scores.values())))
        results["noises"][noise] = scores
        advance(len(stack))
    return results, masks
