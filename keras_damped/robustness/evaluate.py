"""`evaluate()`: clean, noise and adversarial accuracy of models side by side."""

import datetime
import logging
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_damped._versions import library_versions
from keras_damped.data.corruptions import NOISES
from keras_damped.data.corruptions import SEVERITIES
from keras_damped.data.corruptions import check_level
from keras_damped.data.corruptions import check_noise
from keras_damped.data.corruptions import corrupt
from keras_damped.robustness.attacks import APGD_STEPS
from keras_damped.robustness.attacks import ATTACKS
from keras_damped.robustness.attacks import GRADIENT_ATTACKS
from keras_damped.robustness.attacks import LINF_ATTACKS
from keras_damped.robustness.attacks import SQUARE_QUERIES
from keras_damped.robustness.attacks import STEP_SIZE
from keras_damped.robustness.attacks import STEPS
from keras_damped.robustness.attacks import TARGET_CLASSES
from keras_damped.robustness.attacks import check_attack
from keras_damped.robustness.attacks import check_budget
from keras_damped.robustness.attacks import logits_fn
from keras_damped.robustness.attacks import make_attack
from keras_damped.robustness.protocols import AUTHORS_PROTOCOLS
from keras_damped.robustness.protocols import AUTHORS_STEPS
from keras_damped.robustness.protocols import check_protocols
from keras_damped.robustness.protocols import evaluate_protocol
from keras_damped.robustness.protocols import model_normalization
from keras_damped.robustness.protocols import pixel_radius
from keras_damped.robustness.report import RobustnessReport
from keras_damped.robustness.report import eps_key

logger = logging.getLogger("keras_damped")
NOISE_SOURCES = ("auto", "tfds", "generated")
# Tolerances of the sanity checks (fractions of the examples).
MONOTONE_TOLERANCE = 0.01
PGD_VS_FGSM_TOLERANCE = 0.02
LARGE_EPS_MAX_ACCURACY = 0.10
BALL_TOLERANCE = 1e-6
SQUARE_GAIN_TOLERANCE = 0.02


def pack_mask(mask):
    """A boolean per-example mask as a compact hex string (report.json)."""
    return np.packbits(np.asarray(mask, dtype=bool)).tobytes().hex()


def unpack_mask(text, count):
    """The inverse of `pack_mask` for `count` examples."""
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))
    return bits[:count].astype(bool)


def parse_attacks(attacks):
    """Attack names, checked; "all" (alone or in the list) means every attack."""
    if isinstance(attacks, str):
        attacks = [attacks]
    names = []
    for name in attacks:
        for attack in ATTACKS if name == "all" else [check_attack(name)]:
            if attack not in names:
                names.append(attack)
    return names


def worst_case(masks, attacks, key, count, clean=None):
    """Per example: correct after every L-infinity attack in `attacks` at the
    eps labelled `key` (the AND of their packed masks) and, given the packed
    `clean` mask, correct on the clean image too (an attack can turn a
    misclassified example into a correct one; it was never robust); None
    without an L-infinity attack."""
    linf = [a for a in attacks if a in LINF_ATTACKS]
    if not linf:
        return None
    survive = np.ones(count, dtype=bool)
    if clean is not None:
        survive &= unpack_mask(clean, count)
    for attack in linf:
        survive &= unpack_mask(masks[attack][key], count)
    return survive


def parse_eps(values):
    """Radii in pixel units from numbers; every one finite and >= 0."""
    if isinstance(values, (int, float)):
        values = [values]
    out = []
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or (not math.isfinite(value) or value < 0)
        ):
            raise ValueError(
                f"eps must be finite numbers >= 0 in pixel units (e.g. 8/255). "
                f"Received: eps={value!r}"
            )
        out.append(float(value))
    return sorted(set(out))


def load_model_file(path):
    """Loads a `.keras` model with a clear error for a missing or corrupt file."""
    if not os.path.isfile(path):
        raise ValueError(f"No such model file. Received: model={path!r}")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:
        raise ValueError(
            f"Cannot load the model file {path!r} (missing or corrupt): "
            f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
        ) from None


def _named_models(models):
    if isinstance(models, keras.Model) or isinstance(models, str):
        models = [models]
    if isinstance(models, dict):
        items = list(models.items())
    else:
        items = []
        for model in models:
            if isinstance(model, str):
                loaded = load_model_file(model)
                label = loaded.name
                parent = os.path.basename(os.path.dirname(os.path.abspath(model)))
                items.append((label, loaded, parent))
            else:
                items.append((model.name, model, None))
        names = [label for label, _, _ in items]
        items = [
            (f"{label} ({parent})" if names.count(label) > 1 and parent else label, m)
            for label, m, parent in items
        ]
        seen = {}
        for i, (label, model) in enumerate(items):
            seen[label] = seen.get(label, 0) + 1
            if seen[label] > 1:
                items[i] = (f"{label} #{seen[label]}", model)
    if not items:
        raise ValueError("evaluate needs at least one model.")
    labels = [label for label, _ in items]
    if len(set(labels)) != len(labels):
        raise ValueError(f"Model names must be unique. Received: {labels}")
    return dict(items)


def _noise_sets(dataset, images, noises, severities, seed, source, data_dir, limit):
    """{(noise, severity): float images in [0, 1]} with labels, and the source used."""
    use_tfds = source == "tfds" or (source == "auto" and dataset == "cifar10")
    if use_tfds:
        from keras_damped.data.pipeline import DatasetUnavailableError
        from keras_damped.data.pipeline import load_arrays

        try:
            sets = {}
            for noise in noises:
                for severity in severities:
                    x, y = load_arrays(
                        f"cifar10_corrupted/{noise}_noise_{severity}",
                        "test",
                        data_dir,
                        limit,
                        download=source == "tfds",
                    )
                    sets[(noise, severity)] = (x.astype("float32") / 255.0, y)
            return sets, "CIFAR-10-C files (TFDS cifar10_corrupted)"
        except DatasetUnavailableError as error:
            if source == "tfds":
                raise
            logger.info(
                "CIFAR-10-C files unavailable, generating the noise: %s",
                str(error).split(".")[0],
            )
    sets = {}
    for i, noise in enumerate(NOISES):
        if noise not in noises:
            continue
        for severity in severities:
            corrupted = corrupt(images, noise, severity, seed=(seed, 10 * i + severity))
            sets[(noise, severity)] = (corrupted.numpy(), None)
    return sets, "generated with the CIFAR-10-C parameters (keras_damped.data.corrupt)"


def evaluate(
    models,
    dataset="cifar10",
    attacks=("fgsm", "ifgsm", "pgd"),
    eps=(1 / 255, 2 / 255, 4 / 255, 8 / 255),
    noises=tuple(NOISES),
    severities=SEVERITIES,
    limit=1000,
    batch_size=128,
    seed=0,
    noise_source="auto",
    data_dir=None,
    steps=STEPS,
    step_size=STEP_SIZE,
    large_eps=64 / 255,
    jit_compile=False,
    progress=True,
    num_examples_shown=4,
    noise_levels=None,
    apgd_steps=APGD_STEPS,
    square_queries=SQUARE_QUERIES,
    target_classes=TARGET_CLASSES,
    protocols=("pixel",),
    protocol_attacks=None,
    protocol_eps=None,
    mean=None,
    std=None,
    attack_limit=None,
):
    """Clean, noise and adversarial accuracy of one or several models.

    All models see the same test examples, the same noise draws and the same
    attack seeds. Every call also runs the sanity checks of a serious
    evaluation and reports their flags: adversarial points inside the
    eps-ball and [0, 1]; accuracy non-increasing in eps; PGD and IFGSM no
    weaker than FGSM and AutoAttack no weaker than PGD; PGD at a large eps
    (64/255) close to 0% and Square (gradient-free) not more than 2 points
    stronger than every gradient attack together, otherwise gradient masking
    is suspected.

    Each eps also gets a worst case over the L-infinity attacks: an example
    counts as robust only if every one of them left it correctly classified
    (the AND of the per-example masks, which report.json keeps).

    Args:
        models: a model, a `.keras` path, or a list / {name: model} of them.
        dataset: a dataset name (`keras_damped.data`) or `(images, labels)`.
        attacks: names from `keras_damped.robustness.ATTACKS`, or "all".
        eps: radii in pixel units (8/255); 0 gives the clean accuracy.
        noises: from gaussian, shot, impulse, speckle.
        severities: from 1 to 5.
        limit: the first `limit` test examples.
        batch_size: examples per attack batch.
        seed: seeds the noise and the attacks' random starts.
        noise_source: "auto" (CIFAR-10-C files through TFDS for cifar10 when
            available, else generated), "tfds" or "generated".
        data_dir: TFDS data folder.
        steps, step_size: of the iterative attacks (20 steps of 2/255).
        large_eps: radius of the gradient-masking check.
        jit_compile: compile the attacks with XLA.
        progress: True shows a progress bar; a callable is called as
            `progress(done, total)` after each evaluation and each attack
            batch instead.
        num_examples_shown: images kept for the picture grid.
        noise_levels: `{noise: [c, ...]}`, explicit noise parameters beyond
            the five severities (e.g. `{"gaussian": [0.2, 0.3]}`: sigmas),
            always generated with seeded draws; results under
            `noise_levels[noise][c]`.
        apgd_steps, square_queries, target_classes: AutoAttack's budget
            (100 APGD iterations, 5,000 Square queries, 9 APGD-T targets).
        protocols: from `PROTOCOLS` (`keras_damped.robustness.protocols`):
            "pixel" runs `attacks` in the standard threat model (left out:
            no pixel-space attacks); "authors-2020-06" and
            "authors-2020-08" replay the authors' scripts (eps = 0, their
            attacks, the noise group with per-file standardisation).
        protocol_attacks, protocol_eps: the attacks (FGSM, IFGSM, PGD) and
            stated radii of the authors' protocols (default: `attacks`,
            `eps`).
        mean, std: the normalisation (pixel units, per channel) of models
            without a `Normalization` layer on their input, for the authors'
            protocols.
        attack_limit: attack only the first `attack_limit` of the `limit`
            examples (None: all of them); clean accuracy and noise use all.
            Attacks cost hundreds of forward and backward passes per image,
            the rest one forward pass.

    Returns:
        A `RobustnessReport`; `report.save(out_dir)` writes its files.
    """
    from keras_damped.data.pipeline import dataset_info
    from keras_damped.data.pipeline import load_arrays

    attacks = parse_attacks(attacks)
    budgets = {
        "apgd_steps": check_budget("apgd_steps", apgd_steps),
        "square_queries": check_budget("square_queries", square_queries),
        "target_classes": check_budget("target_classes", target_classes),
    }
    eps = parse_eps(eps)
    if attacks and not eps:
        raise ValueError("Attacks need at least one eps. Received: eps=[]")
    for noise in noises:
        check_noise(noise, 1)
    for severity in severities:
        check_noise("gaussian", severity)
    noise_levels = {
        noise: sorted({check_level(noise, c) for c in levels})
        for noise, levels in (noise_levels or {}).items()
    }
    if noise_source not in NOISE_SOURCES:
        raise ValueError(
            f"Unknown noise_source. Expected one of {NOISE_SOURCES}. "
            f"Received: noise_source={noise_source!r}"
        )
    protocol_attacks = parse_attacks(
        attacks if protocol_attacks is None else protocol_attacks
    )
    protocol_eps = eps if protocol_eps is None else parse_eps(protocol_eps)
    protocols = check_protocols(protocols, protocol_attacks)
    if attack_limit is not None:
        check_budget("attack_limit", attack_limit)
    authors = [p for p in protocols if p in AUTHORS_PROTOCOLS]
    if not authors:
        protocol_attacks, protocol_eps = [], []
    if "pixel" not in protocols:
        attacks = []
    named = _named_models(models)
    if isinstance(dataset, str):
        info = dataset_info(dataset)
        expected = (None, *info.input_shape)
    else:
        expected = (None, *np.asarray(dataset[0]).shape[1:])
        if len(expected) == 3:
            expected = (*expected, 1)
    model_fns = {}
    for name, model in named.items():
        if tuple(model.input_shape) != expected:
            raise ValueError(
                f"Model {name!r} takes inputs {model.input_shape}, but the "
                f"{dataset if isinstance(dataset, str) else 'given'} images are "
                f"{expected}."
            )
        targeted = [a for a in attacks if a in ("apgd_t", "autoattack")]
        if targeted and model.output_shape[-1] < 4:
            raise ValueError(
                f"{targeted[0]}'s targeted DLR loss needs a model with at least 4 "
                f"classes. Model {name!r} has {model.output_shape[-1]}; choose "
                "other attacks (e.g. apgd_ce, square)."
            )
        model_fns[name] = logits_fn(model)
    norms = {
        name: model_normalization(model, mean, std)
        for name, model in named.items()
        if authors
    }

    if isinstance(dataset, str):
        images, labels = load_arrays(dataset, "test", data_dir, limit)
    else:
        images, labels = np.asarray(dataset[0])[:limit], np.asarray(dataset[1])[:limit]
    if images.ndim == 3:
        images = images[..., None]
    images = images.astype("float32") / (255.0 if images.dtype == np.uint8 else 1.0)
    labels = labels.astype("int32")
    attacked = len(images) if attack_limit is None else min(attack_limit, len(images))
    name_of_dataset = dataset if isinstance(dataset, str) else "arrays"
    noise_sets, source_used = _noise_sets(
        name_of_dataset,
        images,
        list(noises),
        list(severities),
        seed,
        noise_source,
        data_dir,
        limit,
    )

    level_sets = {}
    for i, noise in enumerate(NOISES):
        for j, c in enumerate(noise_levels.get(noise, ())):
            level_seed = (seed, 1000 + 100 * i + j)
            level_sets[(noise, c)] = corrupt(
                images, noise, seed=level_seed, level=c
            ).numpy()

    linf = [a for a in attacks if a in LINF_ATTACKS]
    total = len(named) * (
        1
        + len(noise_sets)
        + len(level_sets)
        + len(attacks) * len(eps)
        + 1
        + len(authors) * (1 + len(protocol_attacks) * len(protocol_eps) + len(noises))
    )
    bar = keras.utils.Progbar(
        total, verbose=1 if progress is True else 0, unit_name="evaluation"
    )
    done = 0

    def tick():
        nonlocal done
        done += 1
        bar.update(done)
        if callable(progress):
            progress(done, total)

    results = {}
    examples = {"clean": images[:num_examples_shown], "adversarial": {}}
    shown = ("pgd" if "pgd" in attacks else attacks[-1]) if attacks else None
    for name, fn in model_fns.items():
        predict = tf.function(
            lambda x, fn=fn: tf.argmax(fn(x), -1, output_type=tf.int32),
            input_signature=[tf.TensorSpec((None, *images.shape[1:]), tf.float32)],
        )

        def correct(x, y=labels, predict=predict):
            return np.concatenate(
                [
                    predict(x[start : start + batch_size]).numpy()
                    == y[start : start + batch_size]
                    for start in range(0, len(x), batch_size)
                ]
            )

        def accuracy(x, y=labels):
            return float(np.mean(correct(x, y)))

        clean_mask = correct(images)
        entry = {
            "clean": float(np.mean(clean_mask)),
            # Clean accuracy on the attacked examples (the first attack_limit).
            "attack_clean": float(np.mean(clean_mask[:attacked])),
            "noises": {},
            "noise_levels": {},
            "attacks": {},
            "masks": {"clean": pack_mask(clean_mask), "attacks": {}},
        }
        tick()
        for (noise, severity), (x, y) in noise_sets.items():
            by_sev = entry["noises"].setdefault(noise, {})
            by_sev[str(severity)] = accuracy(
                x, labels if y is None else y.astype("int32")
            )
            tick()
        for by_sev in entry["noises"].values():
            by_sev["mean"] = float(np.mean(list(by_sev.values())))
        for (noise, c), x in level_sets.items():
            entry["noise_levels"].setdefault(noise, {})[repr(c)] = accuracy(x)
            tick()

        max_linf, in_range = {}, True

        def run_attack(attack, adv_fn, radius, keep=False, predict=predict):
            nonlocal in_range
            tf.random.set_seed(seed)
            worst = 0.0
            kept, masks, stages = None, [], {}
            for start in range(0, attacked, batch_size):
                stop = min(start + batch_size, attacked)
                x = tf.constant(images[start:stop])
                y = tf.constant(labels[start:stop])
                x_adv = adv_fn(x, y, radius)
                for stage, robust in (
                    getattr(adv_fn, "last_robust", None) or {}
                ).items():
                    stages.setdefault(stage, []).append(robust)
                delta = (x_adv - x).numpy()
                pred = predict(x_adv).numpy()
                if attack == "cw_l2":
                    # Robust at L2 radius eps: correct on the clean input and
                    # C&W's (minimal) adversarial example lies outside eps.
                    norms = np.sqrt((delta**2).reshape(len(delta), -1).sum(-1))
                    clean_ok = predict(x).numpy() == y.numpy()
                    masks.append(clean_ok & ((pred == y.numpy()) | (norms > radius)))
                else:
                    masks.append(pred == y.numpy())
                    worst = max(worst, float(np.abs(delta).max()))
                x_adv = x_adv.numpy()
                in_range = in_range and bool(x_adv.min() >= 0 and x_adv.max() <= 1)
                if callable(progress):  # a heartbeat within a long attack
                    progress(done, total)
                if keep and kept is None:
                    kept = x_adv[:num_examples_shown]
            mask = np.concatenate(masks)
            if stages:  # AutoAttack: its examples in its own order of attacks
                stages = {k: np.concatenate(v) for k, v in stages.items()}
                mask = mask & stages[list(stages)[-1]]
            return float(np.mean(mask)), worst, kept, mask, stages

        attack_fns = {
            a: make_attack(a, fn, steps, step_size, jit_compile, **budgets)
            for a in attacks
        }
        # The masking check needs steps that can cross the large ball:
        # 2.5 * eps / steps (Madry et al.), at least the usual step.
        attack_fns["large_eps_pgd"] = make_attack(
            "pgd", fn, steps, max(step_size, 2.5 * large_eps / steps), jit_compile
        )
        for attack in attacks:
            entry["attacks"][attack] = {}
            entry["masks"]["attacks"][attack] = {}
            for radius in eps:
                keep = attack == shown and radius == eps[-1]
                started = time.perf_counter()
                acc, worst, kept, mask, stages = run_attack(
                    attack, attack_fns[attack], radius, keep
                )
                entry.setdefault("seconds", {}).setdefault(attack, {})[
                    eps_key(radius)
                ] = round(time.perf_counter() - started, 1)
                entry["attacks"][attack][eps_key(radius)] = acc
                entry["masks"]["attacks"][attack][eps_key(radius)] = pack_mask(mask)
                if attack == "autoattack":
                    entry.setdefault("autoattack_stages", {})[eps_key(radius)] = {
                        stage: float(np.mean(robust))
                        for stage, robust in stages.items()
                    }
                    entry["masks"].setdefault("autoattack_stages", {})[
                        eps_key(radius)
                    ] = {stage: pack_mask(robust) for stage, robust in stages.items()}
                if attack in linf:
                    max_linf.setdefault(attack, {})[eps_key(radius)] = worst
                if keep:
                    examples["adversarial"][name] = kept
                tick()
        large_acc, large_worst, _, _, _ = run_attack(
            "pgd", attack_fns["large_eps_pgd"], large_eps
        )
        tick()
        count = attacked
        for radius in eps:
            survive = worst_case(
                entry["masks"]["attacks"],
                attacks,
                eps_key(radius),
                count,
                clean=pack_mask(clean_mask[:attacked]),
            )
            if survive is not None:
                entry.setdefault("worst", {})[eps_key(radius)] = float(survive.mean())
                entry["masks"].setdefault("worst", {})[eps_key(radius)] = pack_mask(
                    survive
                )
        entry["sanity"] = _sanity(
            entry, eps, attacks, max_linf, in_range, large_acc, large_worst, large_eps
        )
        _square_check(entry, eps, attacks, count)
        for protocol in authors:
            scores, masks = evaluate_protocol(
                protocol,
                fn,
                correct,
                (images, labels, attacked),
                protocol_attacks,
                protocol_eps,
                noise_sets,
                norms[name],
                {"batch_size": batch_size, "seed": seed, "tick": tick},
            )
            entry.setdefault("protocols", {})[protocol] = scores
            entry["masks"].setdefault("protocols", {})[protocol] = masks
        results[name] = entry

    data = {
        "settings": {
            "dataset": name_of_dataset,
            "examples": int(len(images)),
            "attack_examples": int(attacked),
            "attacks": attacks,
            "eps": eps,
            "eps_255": [eps_key(e) for e in eps],
            "noises": [n for n in NOISES if n in noises],
            "severities": list(severities),
            "noise_levels": {
                n: [repr(c) for c in cs] for n, cs in noise_levels.items()
            },
            "noise_source": source_used,
            "seed": seed,
            "steps": steps,
            "step_size": step_size,
            **budgets,
            "large_eps": large_eps,
            "large_eps_step": max(step_size, 2.5 * large_eps / steps),
            "batch_size": batch_size,
            "pixel_space": True,
            "protocols": protocols,
            **(
                {
                    "protocol_attacks": protocol_attacks,
                    "protocol_eps_255": [eps_key(e) for e in protocol_eps],
                    "protocol_steps": AUTHORS_STEPS,
                    "normalization": {
                        name: {"mean": m.tolist(), "std": s.tolist()}
                        for name, (m, s) in norms.items()
                    },
                    "pixel_radius_255": {
                        protocol: {
                            name: {
                                eps_key(e): [
                                    round(float(255 * r), 4)
                                    for r in pixel_radius(protocol, e, s)
                                ]
                                for e in protocol_eps
                            }
                            for name, (m, s) in norms.items()
                        }
                        for protocol in authors
                    },
                }
                if authors
                else {}
            ),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
        "versions": library_versions(),
        "models": results,
    }
    examples["eps"] = eps[-1] if eps else 0.0
    examples["attack"] = shown
    return RobustnessReport(data, examples if shown else None)


def square_gain(entry, attacks, key, count):
    """How much Square lowers the worst case of the gradient attacks at one
    eps (a fraction of the examples), or None without both kinds.

    The gradient side is every gradient attack in `attacks` together with
    AutoAttack's APGD stages; the Square side is `square` and AutoAttack's
    Square stage, which ran on what its APGD stages left.
    """
    masks = entry["masks"]
    gradient, square = [], []
    for attack in attacks:
        if attack in GRADIENT_ATTACKS:
            gradient.append(masks["attacks"][attack][key])
        elif attack == "square":
            square.append(masks["attacks"][attack][key])
    stages = masks.get("autoattack_stages", {}).get(key, {})
    if "apgd_t" in stages and "square" in stages:
        gradient.append(stages["apgd_t"])
        square.append(stages["square"])
    if not gradient or not square:
        return None
    # An example misclassified clean was never robust, whatever an attack did.
    survive = unpack_mask(masks["clean"], count)
    for packed in gradient:
        survive &= unpack_mask(packed, count)
    before = survive.mean()
    for packed in square:
        survive &= unpack_mask(packed, count)
    return float(before - survive.mean())


def _square_check(entry, eps, attacks, count):
    """Adds the Square-vs-gradient check to `entry["sanity"]`."""
    sanity = entry["sanity"]
    gains = {}
    for radius in eps:
        gain = square_gain(entry, attacks, eps_key(radius), count)
        if gain is not None:
            gains[eps_key(radius)] = gain
    sanity["square_gain"] = gains
    masked = [k for k, gain in gains.items() if gain > SQUARE_GAIN_TOLERANCE]
    sanity["square_beats_gradient"] = bool(masked) if gains else None
    for k in masked:
        sanity["flags"].append(
            f"Square (gradient-free) beats the gradient attacks by "
            f"{100 * gains[k]:.1f} points at eps {k}/255 (more than "
            f"{100 * SQUARE_GAIN_TOLERANCE:.0f}): possible gradient masking"
        )
    if masked:
        sanity["gradient_masking_suspected"] = True


def _sanity(entry, eps, attacks, max_linf, in_range, large_acc, large_worst, large_eps):
    flags = []
    in_ball = (
        all(
            worst <= float(e) / 255 + BALL_TOLERANCE
            for by_eps in max_linf.values()
            for e, worst in by_eps.items()
        )
        and large_worst <= large_eps + BALL_TOLERANCE
    )
    if not in_ball:
        flags.append("adversarial points outside the eps-ball")
    if not in_range:
        flags.append("adversarial points outside [0, 1]")
    monotone = {}
    for attack, by_eps in entry["attacks"].items():
        accs = [by_eps[eps_key(e)] for e in eps]
        monotone[attack] = all(
            b <= a + MONOTONE_TOLERANCE for a, b in zip(accs, accs[1:])
        )
        if not monotone[attack]:
            flags.append(f"{attack} accuracy increases with eps")
    stronger = None
    if "fgsm" in attacks:
        stronger = True
        for attack in ("pgd", "ifgsm"):
            if attack in attacks:
                for e in eps:
                    k = eps_key(e)
                    if entry["attacks"][attack][k] > (
                        entry["attacks"]["fgsm"][k] + PGD_VS_FGSM_TOLERANCE
                    ):
                        stronger = False
                        flags.append(f"{attack} weaker than FGSM at eps {k}/255")
    if "autoattack" in attacks and "pgd" in attacks:
        for e in eps:
            k = eps_key(e)
            if entry["attacks"]["autoattack"][k] > (
                entry["attacks"]["pgd"][k] + PGD_VS_FGSM_TOLERANCE
            ):
                flags.append(f"autoattack weaker than PGD at eps {k}/255")
    if 0.0 in eps:
        for attack in attacks:
            if abs(entry["attacks"][attack]["0"] - entry["attack_clean"]) > 1e-9:
                flags.append(f"{attack} at eps 0 differs from the clean accuracy")
    masking = large_acc > LARGE_EPS_MAX_ACCURACY
    if masking:
        flags.append(
            f"possible gradient masking: PGD at {eps_key(large_eps)}/255 leaves "
            f"{100 * large_acc:.1f}% accuracy (expected <= "
            f"{100 * LARGE_EPS_MAX_ACCURACY:.0f}%)"
        )
    return {
        "in_ball": in_ball,
        "in_range": in_range,
        "max_linf": max_linf,
        "monotone": monotone,
        "iterative_not_weaker_than_fgsm": stronger,
        "large_eps_pgd": large_acc,
        "gradient_masking_suspected": masking,
        "flags": flags,
    }
