"""`evaluate()`: clean, noise and adversarial accuracy of models side by side."""

import dataclasses
import datetime
import functools
import time

import keras
import numpy as np
import tensorflow as tf

from keras_damped._versions import library_versions
from keras_damped._versions import machine_record
from keras_damped.models.loading import named_models
from keras_damped.models.logits import logits_fn
from keras_damped.robustness import checks
from keras_damped.robustness.autoattack import STAGES as AUTOATTACK_STAGES
from keras_damped.robustness.config import EvalConfig
from keras_damped.robustness.inputs import dataset_input_shape
from keras_damped.robustness.inputs import load_test_set
from keras_damped.robustness.partial import PartialResults
from keras_damped.robustness.partial import fingerprint
from keras_damped.robustness.partial import model_fingerprint
from keras_damped.robustness.protocols import AUTHORS_STEPS
from keras_damped.robustness.protocols import model_normalization
from keras_damped.robustness.protocols import pixel_radius
from keras_damped.robustness.registry import compiled
from keras_damped.robustness.registry import make_attack
from keras_damped.robustness.report import RobustnessReport
from keras_damped.robustness.report import eps_key
from keras_damped.robustness.report import pack_mask
from keras_damped.robustness.runner import evaluate_protocol
from keras_damped.robustness.runner import run_attack

# Keywords of earlier versions and their names today.
_RENAMED = {"limit": "test_limit"}


def evaluate(models, config=None, progress=True, partial=None, **settings):
    """Clean, noise and adversarial accuracy of one or several models.

    All models see the same test examples, the same noise draws and the same
    attack seeds. Every call also runs the sanity checks of a serious
    evaluation (`keras_damped.robustness.checks`) and reports their flags.
    Each eps also gets a worst case over the L-infinity attacks: an example
    counts as robust only if it is correct clean and every one of them left
    it correctly classified (report.json keeps the per-example masks).

    Args:
        models: a model, a `.keras` path, or a list / {name: model} of them.
        config: an `EvalConfig`; keyword `settings` (its field names) build
            one or change a copy of it. `dataset` may also be
            `(images, labels)` arrays.
        progress: True shows a progress bar weighted by each unit's cost; a
            callable is called as `progress(done, total)` instead.
        partial: a folder that keeps every finished attack batch
            (`keras_damped.robustness.partial`): a call interrupted (killed,
            out of time) and repeated with the same folder, models, images
            and settings reuses them and returns the report an
            uninterrupted call gives, plus a `resumed` record. The caller
            deletes the folder when it no longer needs it.

    Returns:
        A `RobustnessReport`; `report.save(out_dir)` writes its files.
    """
    for old, new in _RENAMED.items():
        if old in settings:
            raise TypeError(f"evaluate's {old}= was renamed {new}=.")
    config = dataclasses.replace(config or EvalConfig(), **settings).validate()
    started = time.monotonic(), time.process_time()
    named = named_models(models)
    _check_models(named, dataset_input_shape(config.dataset), config)
    norms = {
        name: model_normalization(model, config.mean, config.std)
        for name, model in named.items()
        if config.authors_protocols()
    }
    test = load_test_set(config)
    kept = None
    if partial is not None:
        record = _settings_record(config, test, norms)
        kept = PartialResults(partial, _partial_stamp(record, test, named))
    meter = _Meter(_total_cost(config, test, len(named)), progress)
    results, shown = {}, {}
    for name, model in named.items():
        batches = None if kept is None else functools.partial(kept.part, name)
        results[name], shown[name] = _evaluate_model(
            logits_fn(model), test, config, norms.get(name), meter, batches
        )
    data = {
        "settings": _settings_record(config, test, norms),
        "versions": library_versions(),
        "machine": machine_record(),
        "seconds": {
            "wall": round(time.monotonic() - started[0], 1),
            "cpu": round(time.process_time() - started[1], 1),
        },
        "models": results,
    }
    if kept is not None and kept.record() is not None:
        data["resumed"] = kept.record()
    attack = _example_attack(config)
    examples = None
    if attack is not None:
        examples = {
            "clean": test.images[: config.examples_shown],
            "adversarial": shown,
            "eps": config.eps_of(attack)[-1],
            "attack": attack,
            "norm": config.norm,
        }
    return RobustnessReport(data, examples)


def _partial_stamp(settings_record, test, named):
    """What an evaluation's kept batches depend on: the library, the
    settings, the test images and each model's weights."""
    from keras_damped import __version__

    return {
        "keras_damped": __version__,
        "settings": {k: v for k, v in settings_record.items() if k != "created"},
        "images": fingerprint(test.images, test.labels),
        "models": {name: model_fingerprint(model) for name, model in named.items()},
    }


def _check_models(named, expected, config):
    """Every model takes the images' shape and has enough classes."""
    from keras_damped.robustness.registry import attack_class

    for name, model in named.items():
        if tuple(model.input_shape) != tuple(expected):
            raise ValueError(
                f"Model {name!r} takes inputs {model.input_shape}, but the "
                f"{config.dataset if isinstance(config.dataset, str) else 'given'} "
                f"images are {expected}."
            )
        classes = model.output_shape[-1]
        for attack in config.pixel_attacks():
            needed = attack_class(attack).min_classes
            if classes < needed:
                raise ValueError(
                    f"{attack} needs a model with at least {needed} classes "
                    f"({attack_class(attack).__name__}.min_classes). Model "
                    f"{name!r} has {classes}; choose attacks that need fewer."
                )


def _example_attack(config):
    attacks = config.pixel_attacks()
    if config.example_attack is not None:
        return config.example_attack
    if not attacks:
        return None
    from keras_damped.robustness.registry import attack_class

    # The first of the attacks whose class ranks highest for the pictures.
    return max(attacks, key=lambda name: attack_class(name).example_priority)


class _Predictor:
    """Batched correctness of one model's predictions."""

    def __init__(self, model_fn, batch_size, image_shape):
        self.batch_size = batch_size
        self._predict = compiled(
            model_fn,
            "predict",
            lambda: tf.function(
                lambda x: tf.argmax(model_fn(x), -1, output_type=tf.int32),
                input_signature=[tf.TensorSpec((None, *image_shape), tf.float32)],
            ),
        )

    def __call__(self, x, y):
        step = self.batch_size
        return np.concatenate(
            [
                self._predict(x[i : i + step]).numpy() == y[i : i + step]
                for i in range(0, len(x), step)
            ]
        )


class _Meter:
    """Progress in units of work (forward-pass equivalents per image)."""

    def __init__(self, total, progress):
        self.total, self.done, self.progress = total, 0, progress
        self.bar = keras.utils.Progbar(
            total, verbose=1 if progress is True else 0, unit_name="pass"
        )

    def advance(self, units):
        self.done = min(self.total, self.done + units)
        self.bar.update(self.done)
        if callable(self.progress):
            self.progress(self.done, self.total)


def _cost(attack, config):
    return make_attack(attack, None, config.budget()).cost()


def _total_cost(config, test, models):
    n, attacked = len(test.images), test.attacked
    per_model = n * (1 + len(test.noise_sets) + len(test.level_sets))
    for attack in config.pixel_attacks():
        per_model += attacked * _cost(attack, config) * len(config.eps_of(attack))
    if config.pixel_attacks():
        per_model += attacked * _cost(checks.LARGE_EPS_ATTACK, config)
    for _ in config.authors_protocols():
        per_model += n * (1 + len(test.noise_sets))
        for attack in config.protocol_attack_names():
            per_model += attacked * _cost(attack, config) * len(config.protocol_radii())
    return per_model * models


def _evaluate_model(model_fn, test, config, norm, meter, batches=None):
    """One model's report entry and the images of the picture grid.
    `batches(*key)`, when given, is the `AttackBatches` of an attack run."""
    correct = _Predictor(model_fn, config.batch_size, test.images.shape[1:])
    clean = correct(test.images, test.labels)
    entry = {
        "clean": float(np.mean(clean)),
        # Clean accuracy on the attacked examples (the first attack_limit).
        "attack_clean": float(np.mean(clean[: test.attacked])),
        "noises": {},
        "noise_levels": {},
        "attacks": {},
        "masks": {"clean": pack_mask(clean), "attacks": {}},
    }
    meter.advance(len(test.images))
    _noise_entries(entry, correct, test, meter)
    shown, extremes = _attack_entries(entry, model_fn, test, config, meter, batches)
    large = None
    if config.pixel_attacks():
        _worst_entries(entry, config, test, clean)
        large = _large_eps_check(model_fn, test, config, meter, batches)
    entry["sanity"] = checks.sanity(
        entry,
        config.pixel_attacks(),
        extremes,
        large,
        test.attacked,
        config.attack_specs(),
        config.norm,
    )
    _autoattack_checks(entry, model_fn, test, config)
    for protocol in config.authors_protocols():
        scores, masks = evaluate_protocol(
            protocol,
            model_fn,
            correct,
            test,
            config,
            norm,
            meter.advance,
            batches and functools.partial(batches, protocol),
        )
        entry.setdefault("protocols", {})[protocol] = scores
        entry["masks"].setdefault("protocols", {})[protocol] = masks
    return entry, shown


def _autoattack_checks(entry, model_fn, test, config):
    """AutoAttack's own checks (`checks.autoattack_flags`) into the entry's
    `sanity`, when AutoAttack or one of its attacks ran."""
    from keras import ops

    specs = config.attack_specs()
    family = [
        a
        for a in config.pixel_attacks()
        if a in AUTOATTACK_STAGES
        or set(specs[a]["stages"] or ()) & {*AUTOATTACK_STAGES}
    ]
    if not family:
        return
    count = min(config.batch_size, test.attacked)
    x, y = test.images[:count], test.labels[:count]
    outputs = {}

    def logits_of(images):
        outputs["last"] = ops.convert_to_numpy(model_fn(ops.convert_to_tensor(images)))
        return outputs["last"]

    model = checks.model_checks(logits_of, x, y)
    zero = sum(
        cost.get("zero_gradients", 0)
        for a in family
        for cost in entry.get("cost", {}).get(a, {}).values()
    )
    stages = {a: entry[f"{a}_stages"] for a in family if f"{a}_stages" in entry}
    involved = {
        name: specs[name] for a in family for name in (a, *(specs[a]["stages"] or ()))
    }
    result, messages = checks.autoattack_flags(
        model,
        zero,
        stages,
        outputs["last"].shape[-1],
        involved,
        config.norm,
    )
    entry["sanity"]["autoattack_checks"] = result
    entry["sanity"]["autoattack_flags"] = messages


def _noise_entries(entry, correct, test, meter):
    for (noise, severity), (x, y) in test.noise_sets.items():
        labels = test.labels if y is None else y.astype("int32")
        entry["noises"].setdefault(noise, {})[str(severity)] = float(
            np.mean(correct(x, labels))
        )
        meter.advance(len(x))
    for by_severity in entry["noises"].values():
        by_severity["mean"] = float(np.mean(list(by_severity.values())))
    for (noise, c), x in test.level_sets.items():
        entry["noise_levels"].setdefault(noise, {})[repr(c)] = float(
            np.mean(correct(x, test.labels))
        )
        meter.advance(len(x))


def _attack_entries(entry, model_fn, test, config, meter, batches=None):
    """Runs every pixel-protocol attack at its radii into `entry`."""
    shown_attack = _example_attack(config)
    shown, extremes = None, {"max_distance": {}, "in_range": True}
    for name in config.pixel_attacks():
        attack = make_attack(name, model_fn, config.budget())
        radii = config.eps_of(name)
        for eps in radii:
            keep = (
                config.examples_shown if (name, eps) == (shown_attack, radii[-1]) else 0
            )
            key = eps_key(eps)
            run = run_attack(
                attack, test, eps, config, meter, keep, batches and batches(name, key)
            )
            entry["attacks"].setdefault(name, {})[key] = float(np.mean(run["robust"]))
            entry["masks"]["attacks"].setdefault(name, {})[key] = pack_mask(
                run["robust"]
            )
            entry.setdefault("seconds", {}).setdefault(name, {})[key] = run["seconds"]
            if run["cost"] is not None:
                entry.setdefault("cost", {}).setdefault(name, {})[key] = run["cost"]
            if run["stages"]:  # a sequence: each stage's mask too
                entry.setdefault(f"{name}_stages", {})[key] = {
                    s: float(np.mean(m)) for s, m in run["stages"].items()
                }
                entry["masks"].setdefault(f"{name}_stages", {})[key] = {
                    s: pack_mask(m) for s, m in run["stages"].items()
                }
            if attack.norm == config.norm:
                extremes["max_distance"].setdefault(name, {})[key] = run[
                    f"max_{config.norm}"
                ]
            extremes["in_range"] = extremes["in_range"] and run["in_range"]
            if keep:
                shown = run["kept"]
    return shown, extremes


def _worst_entries(entry, config, test, clean):
    clean_packed = pack_mask(clean[: test.attacked])
    specs = config.attack_specs()
    for eps in config.all_eps():
        key = eps_key(eps)
        survive = checks.worst_case(
            entry["masks"]["attacks"],
            config.pixel_attacks(),
            key,
            test.attacked,
            specs,
            clean=clean_packed,
            norm=config.norm,
        )
        if survive is not None:
            entry.setdefault("worst", {})[key] = float(survive.mean())
            entry["masks"].setdefault("worst", {})[key] = pack_mask(survive)


def _large_eps_check(model_fn, test, config, meter, batches=None):
    """PGD at the large radius (`config.large_radius`), with steps that can
    cross its ball: 2.5 * eps / steps (Madry et al.), in L-infinity at
    least the usual step."""
    budget = config.budget(step_size=_large_eps_step(config))
    attack = make_attack(checks.LARGE_EPS_ATTACK, model_fn, budget)
    radius = config.large_radius(int(np.prod(test.images.shape[1:])))
    name = checks.LARGE_EPS_ATTACK
    run = run_attack(
        attack, test, radius, config, meter, 0, batches and batches("large", name)
    )
    return {
        "eps": radius,
        "accuracy": float(np.mean(run["robust"])),
        "max_distance": run[f"max_{config.norm}"],
    }


def _large_eps_step(config):
    return max(config.step_size, 2.5 * config.large_eps / config.steps)


def _settings_record(config, test, norms):
    """report.json's `settings`: every setting and what the data turned out."""
    record = {
        "dataset": test.name,
        "examples": int(len(test.images)),
        "attack_examples": int(test.attacked),
        "attacks": config.pixel_attacks(),
        "attack_specs": config.attack_specs(),
        "norm": config.norm,
        "eps": config.all_eps(),
        "eps_255": [eps_key(e) for e in config.all_eps()],
        "noises": list(config.noises),
        "severities": list(config.severities),
        "noise_levels": {
            n: [repr(c) for c in cs] for n, cs in config.noise_levels.items()
        },
        "noise_source": test.source,
        "seed": config.seed,
        "steps": config.steps,
        "step_size": config.step_size,
        "apgd_steps": config.apgd_steps,
        "square_queries": config.square_queries,
        "target_classes": config.target_classes,
        "large_eps": config.large_eps,
        # In L2 the check steps by 2.5 * radius / steps (`iterative_step`).
        "large_eps_step": _large_eps_step(config) if config.norm == "linf" else None,
        "batch_size": config.batch_size,
        "jit_compile": config.jit_compile,
        "attacks_compiled_with_xla": config.budget().jit_compile,
        "pixel_space": True,
        "protocols": config.protocols,
    }
    if config.attack_eps:
        record["attack_eps_255"] = {
            a: [eps_key(e) for e in config.eps_of(a)] for a in config.pixel_attacks()
        }
    if config.plugins:
        record["plugins"] = list(config.plugins)
    if config.authors_protocols():
        record.update(_protocol_record(config, norms))
    record["config"] = config.to_dict()
    record["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
    return record


def _protocol_record(config, norms):
    return {
        "protocol_attacks": config.protocol_attack_names(),
        "protocol_eps_255": [eps_key(e) for e in config.protocol_radii()],
        "protocol_steps": AUTHORS_STEPS,
        "normalization": {
            name: {"mean": m.tolist(), "std": s.tolist()}
            for name, (m, s) in norms.items()
        },
        "pixel_radius_255": {
            protocol: {
                name: {
                    eps_key(e): [
                        round(float(255 * r), 4) for r in pixel_radius(protocol, e, s)
                    ]
                    for e in config.protocol_radii()
                }
                for name, (m, s) in norms.items()
            }
            for protocol in config.authors_protocols()
        },
    }
