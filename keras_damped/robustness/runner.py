"""Runs attacks over a test set: the layer between the attacks (and the
authors' protocol attacks) below and `evaluate` above.

`run_attack` runs one attack at one radius over the attacked images, batch
by batch; `evaluate_protocol` runs one of the authors' protocols (its
attacks, eps = 0 and its noise) on one model.
"""

import time

import numpy as np

from keras_damped._cpu import cpu_name
from keras_damped.robustness.protocols import clamp_only
from keras_damped.robustness.protocols import protocol_attack_name
from keras_damped.robustness.protocols import standardise_file
from keras_damped.robustness.registry import AttackContext
from keras_damped.robustness.registry import make_attack
from keras_damped.robustness.report import eps_key
from keras_damped.robustness.report import pack_mask


def run_attack(attack, test, eps, config, meter=None, keep=0, batches=None):
    """One attack at one radius over the attacked images, batch by batch,
    each batch with the seed `(config.seed, batch index)`.

    Returns `{"robust", "stages", "max_linf", "max_l2", "in_range", "kept",
    "seconds", "cost"}`: the per-example mask, the per-stage masks of a
    sequence, the largest pixel change, the longest change (L2), whether
    every point stayed in [0, 1], the first `keep` adversarial images, the
    seconds the batches took and the attack's counted work summed over the
    batches (None when it does not count). `batches` (a
    `partial.AttackBatches`) keeps each finished batch and hands back the
    ones an interrupted run finished.
    """
    machine = cpu_name() if batches is not None else None
    parts = []
    for i, start in enumerate(range(0, test.attacked, config.batch_size)):
        stop = min(start + config.batch_size, test.attacked)
        part = batches.load(i) if batches is not None else None
        if part is None:
            part = _attack_batch(attack, test, start, stop, eps, (config.seed, i))
            x_adv = part.pop("x_adv")
            part["kept"] = x_adv[:keep] if i == 0 and keep else None
            if batches is not None:
                batches.save(i, part, machine)
        parts.append(part)
        if meter is not None:
            meter.advance((stop - start) * attack.cost())
    cost = None
    for part in parts:
        if part["cost"] is not None:
            cost = add_counts(cost or {}, part["cost"])
    return {
        "robust": np.concatenate([p["robust"] for p in parts]),
        "stages": {
            s: np.concatenate([p["stages"][s] for p in parts])
            for s in parts[0]["stages"]
        },
        "max_linf": max(p["max_linf"] for p in parts),
        "max_l2": max(p["max_l2"] for p in parts),
        "in_range": all(p["in_range"] for p in parts),
        "kept": parts[0]["kept"],
        "seconds": round(sum(p["seconds"] for p in parts), 1),
        "cost": cost,
    }


def _attack_batch(attack, test, start, stop, eps, seed):
    """One batch's result (with its adversarial images as `x_adv`)."""
    started = time.perf_counter(), time.process_time()
    x = test.images[start:stop]
    result = attack(x, test.labels[start:stop], eps, seed=seed)
    change = (result.x_adv - x).reshape(len(x), -1)
    return {
        "robust": result.robust,
        "stages": dict(result.stages or {}),
        "max_linf": float(np.abs(change).max()),
        "max_l2": float(np.sqrt((change**2).sum(-1)).max()),
        "in_range": bool(result.x_adv.min() >= 0 and result.x_adv.max() <= 1),
        "x_adv": result.x_adv,
        "seconds": time.perf_counter() - started[0],
        "cpu_seconds": time.process_time() - started[1],
        "cost": result.cost,
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


def evaluate_protocol(
    protocol, model_fn, correct, test, config, norm, advance, batches=None
):
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
        batches: `batches(attack, radius key)` gives an attack run's
            `partial.AttackBatches` (None: nothing kept).

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
            part = batches and batches(name, eps_key(eps))
            robust = run_attack(attack, test, eps, config, batches=part)["robust"]
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
