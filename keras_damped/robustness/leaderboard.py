"""A RobustBench model entry (`model_info/<dataset>/<threat model>/<name>.json`)
from a standard AutoAttack evaluation.

RobustBench lists a model with its paper's details (link, name, authors,
venue), what it was trained on, the forward passes one prediction takes,
and its clean and AutoAttack accuracy in percent at one radius. An entry
written here fills what an evaluation knows and leaves the paper's details
to the user (null); `reported` (the paper's own AutoAttack number) is null
too: these numbers are reproduced, by this evaluation, which the
`keras_damped` section records (version, examples, seed, passes per stage).
"""

import datetime
import json
import os

from keras_damped.robustness.registry import attack_spec
from keras_damped.robustness.report import eps_key
from keras_damped.robustness.report import eps_value

ATTACK = "autoattack"
# RobustBench's spelling of each threat model.
THREAT_MODELS = {"linf": "Linf", "l2": "L2"}


def check_leaderboard_run(config, model_count):
    """Refuses, before any work, an evaluation whose numbers a leaderboard
    would not take: one model, AutoAttack's standard version, one radius."""
    if model_count != 1:
        raise ValueError(
            f"A RobustBench entry describes one model. Received: {model_count} models."
        )
    if ATTACK not in config.pixel_attacks():
        raise ValueError(
            "A RobustBench entry needs AutoAttack in the standard threat model: "
            f"attacks must include {ATTACK!r} and protocols 'pixel'. Received: "
            f"attacks={config.attacks}, protocols={config.protocols}"
        )
    spec = attack_spec(ATTACK, config.budget(jit_compile=False))
    if spec["version"] != "standard":
        raise ValueError(
            "A RobustBench entry needs AutoAttack's standard version (apgd_steps="
            "100, target_classes=9, square_queries=5000). Received: "
            + ", ".join(f"{k}={v}" for k, v in spec["budget"].items())
        )
    if len(config.eps_of(ATTACK)) != 1:
        raise ValueError(
            "A RobustBench entry has one radius: run AutoAttack at one eps "
            f"(--attack-eps autoattack=...). Received: "
            f"{[eps_value(eps_key(e), config.norm) for e in config.eps_of(ATTACK)]}"
        )


def _passes_per_prediction(passes, examples):
    """RobustBench's `number_forward_passes`: an integer (1 for a model
    that predicts in one pass), the ratio where the count does not divide."""
    if passes % examples == 0:
        return passes // examples
    return round(passes / examples, 6)


def robustbench_entry(report, architecture=None):
    """The entry of the report's one model (see the module's docstring)."""
    settings = report.data["settings"]
    ((label, m),) = report.data["models"].items()
    norm = settings.get("norm", "linf")
    (key,) = m["attacks"][ATTACK]
    cost = m["cost"][ATTACK][key]
    examples = settings["attack_examples"]
    stages = cost["stages"]
    return {
        "link": None,
        "name": None,
        "authors": None,
        "additional_data": False,
        "number_forward_passes": _passes_per_prediction(cost["clean_passes"], examples),
        "dataset": settings["dataset"],
        "venue": None,
        "architecture": architecture or label,
        "eps": f"{key}/255" if norm == "linf" else eps_value(key, norm),
        "clean_acc": f"{100 * m['attack_clean']:.2f}",
        "reported": None,
        "autoattack_acc": f"{100 * m['attacks'][ATTACK][key]:.2f}",
        "threat_model": THREAT_MODELS[norm],
        "keras_damped": {
            "model": label,
            "numbers": "reproduced",
            "version": settings["attack_specs"][ATTACK]["version"],
            "examples": examples,
            "seed": settings["seed"],
            "attack_forward_passes": sum(s["forward_passes"] for s in stages.values()),
            "stages": stages,
            "flags": m["sanity"]["flags"] + m["sanity"].get("autoattack_flags", []),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    }


def write_entry(entry, path, overwrite=False):
    """Writes `entry` as JSON to `path` (never over a file, unless
    `overwrite`)."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} exists; pass --overwrite to replace it. Received: "
            f"robustbench_json={path!r}"
        )
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(entry, f, indent=2)
