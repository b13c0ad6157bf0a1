"""Statistics over seeds: means, Student-t intervals, seed-matched differences."""

import math

import numpy as np

from keras_damped.robustness.report import attack_keys

CONFIDENCE = 0.95
# Half-widths (accuracy fractions) whose seed counts study.json reports.
RESOLUTION_TARGETS = (0.01, 0.02, 0.05)
# Differences of accuracies are sums of float fractions: 1e-9 is far below
# one example's worth (1e-4 at 10,000 examples) and far above their rounding.
ROUNDING = 1e-9


def points(fraction):
    """A fraction of the examples as points, the key of `seeds_needed`."""
    return f"{100 * fraction:g}"


def summarize(values, confidence=CONFIDENCE, floor=0.0):
    """Mean, sample standard deviation and the Student-t interval of the mean.

    Formula:
    ```python
    mean = sum(x) / n
    sd = sqrt(sum((x - mean) ** 2) / (n - 1))
    half_width = t(1 - (1 - confidence) / 2, n - 1) * sd / sqrt(n)
    ```
    With one value the spread and the interval are undefined (NaN). The
    half-width is at least `floor`: accuracies measured on N examples move
    in steps of 1/N, so seeds that agree exactly (sd 0) do not make an
    interval narrower than one example's worth.

    Returns:
        A dict with `n`, `mean`, `sd`, `half_width`, `low`, `high`.
    """
    from scipy import stats

    x = np.asarray([float(v) for v in values], dtype="float64")
    n = int(x.size)
    if n == 0:
        raise ValueError("summarize needs at least one value. Received: values=[]")
    mean = float(x.mean())
    if n < 2:
        sd = half = math.nan
    else:
        sd = float(x.std(ddof=1))
        half = float(stats.t.ppf(1 - (1 - confidence) / 2, n - 1) * sd / math.sqrt(n))
        half = max(half, floor)
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "half_width": half,
        "low": mean - half,
        "high": mean + half,
    }


def paired_difference(values, baseline, confidence=CONFIDENCE, floor=0.0):
    """`summarize` of the seed-matched differences `values[s] - baseline[s]`.

    The half-width is the study's resolution for that column: the smallest
    difference it can tell from zero (at least `floor`, see `summarize`).

    Args:
        values, baseline: {seed: value}; only seeds present in both count.

    Returns:
        The summary dict plus `seeds` (the matched seeds) and `verdict`:
        `"higher"` or `"lower"` where the interval excludes zero, else
        `"no difference shown"` (also with fewer than two matched seeds).
    """
    seeds = sorted(set(values) & set(baseline))
    if not seeds:
        raise ValueError(
            "paired_difference needs seeds common to both models. Received "
            f"seeds {sorted(values)} and {sorted(baseline)}."
        )
    result = summarize([values[s] - baseline[s] for s in seeds], confidence, floor)
    result["seeds"] = seeds
    result["verdict"] = verdict(result)
    return result


def seeds_needed(sd, half_width, confidence=CONFIDENCE, most=10_000):
    """Seeds for a paired interval of at most `half_width`, given the spread.

    The smallest n >= 2 with `t(1 - (1 - confidence) / 2, n - 1) * sd /
    sqrt(n) <= half_width` (Student t, not the normal approximation, which
    undercounts at few seeds); None if more than `most` or `sd` is NaN.
    """
    from scipy import stats

    if math.isnan(sd):
        return None
    q = 1 - (1 - confidence) / 2
    for n in range(2, most + 1):
        if stats.t.ppf(q, n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return None


def verdict(summary):
    """`higher`/`lower` where the interval excludes zero (an end within
    float rounding of zero counts as touching it)."""
    if math.isnan(summary["half_width"]):
        return "no difference shown"
    if summary["low"] > ROUNDING:
        return "higher"
    if summary["high"] < -ROUNDING:
        return "lower"
    return "no difference shown"


def run_columns(entry, settings):
    """The columns of one evaluated run: {name: accuracy in [0, 1]}.

    `clean`; `<noise>` (mean over severities) and `<noise> s<k>`;
    `<noise> c=<level>` for explicit levels; `<attack> <eps>`; and
    `worst <eps>`, the fraction of examples that are correct clean and
    survive every L-infinity attack at that eps (the AND of the per-example
    masks); and under each of the authors' protocols the evaluation ran,
    `<protocol>: eps 0`, `<protocol>: <attack> <eps>` and `<protocol>:
    <noise>` (`protocol_column`).
    """
    from keras_damped.robustness.checks import worst_case

    columns = {"clean": entry["clean"]}
    for noise in settings["noises"]:
        columns[noise] = entry["noises"][noise]["mean"]
    for noise, by_level in entry.get("noise_levels", {}).items():
        for level, acc in by_level.items():
            columns[f"{noise} c={level}"] = acc
    for noise in settings["noises"]:
        for severity in settings["severities"]:
            columns[f"{noise} s{severity}"] = entry["noises"][noise][str(severity)]
    count = attack_examples(settings)
    for attack in settings["attacks"]:
        for e in attack_keys(settings, attack):
            columns[f"{attack} {e}"] = entry["attacks"][attack][e]
    for e in settings["eps_255"]:
        survive = worst_case(
            entry["masks"]["attacks"],
            settings["attacks"],
            e,
            count,
            clean=entry["masks"]["clean"],
        )
        if survive is not None:
            columns[f"worst {e}"] = float(survive.mean())
    for protocol, scores in entry.get("protocols", {}).items():
        columns[protocol_column(protocol, "eps 0")] = scores["eps0"]
        for attack, by_eps in scores["attacks"].items():
            for e, acc in by_eps.items():
                columns[protocol_column(protocol, f"{attack} {e}")] = acc
        for noise, by_severity in scores["noises"].items():
            columns[protocol_column(protocol, noise)] = by_severity["mean"]
    return columns


def protocol_column(protocol, name):
    """The study column of `name` (`eps 0`, `<attack> <eps>` or `<noise>`,
    the mean over severities) under one of the authors' protocols."""
    return f"{protocol}: {name}"


def authors_protocols(settings):
    """The authors' protocols an evaluation ran (`pixel` is the main columns)."""
    return [p for p in settings.get("protocols", ["pixel"]) if p != "pixel"]


def protocol_columns(columns, settings):
    """The columns of `columns` that belong to an authors' protocol."""
    prefixes = tuple(protocol_column(p, "") for p in authors_protocols(settings))
    return [c for c in columns if prefixes and c.startswith(prefixes)]


def attack_examples(settings):
    """How many examples the attacks ran on (reports before `attack_limit`
    attacked all of them)."""
    return settings.get("attack_examples", settings["examples"])


def example_floor(column, settings):
    """One test example's worth of accuracy in `column`: 1 / the examples
    it was measured on (the attacked ones for an attack, `worst` or an
    attack under a protocol; all of them otherwise)."""
    attacked = {
        f"{a} {e}" for a in settings["attacks"] for e in attack_keys(settings, a)
    }
    attacked |= {f"worst {e}" for e in settings["eps_255"]}
    attacked |= {
        protocol_column(p, f"{a} {e}")
        for p in authors_protocols(settings)
        for a in settings.get("protocol_attacks", [])
        for e in settings.get("protocol_eps_255", [])
    }
    n = attack_examples(settings) if column in attacked else settings["examples"]
    return 1.0 / n


def relative(run, column):
    """A run's accuracy in `column` over its clean accuracy (NaN if that is 0)."""
    return run[column] / run["clean"] if run["clean"] else math.nan


def summarize_study(config, reports):
    """The study result from `{(model, seed): RobustnessReport}`.

    Returns a dict with `config`, `columns` (in table order), per model
    `runs` ({seed: columns}), `summary` and `relative` ({column: summary},
    the latter of accuracy / clean accuracy), `lambdas` (per block, mean and
    per seed), and `differences` ({model: {column: paired summary}})
    against the baseline. `protocol_columns` names the columns measured
    under the authors' protocols; they have no relative summary (their
    `eps 0`, not the pixel clean accuracy, is their reference).
    """
    models = {}
    columns = None
    settings = None
    for (model, seed), report in reports.items():
        (entry,) = report.data["models"].values()
        settings = report.data["settings"]
        cols = run_columns(entry, settings)
        columns = columns or list(cols)
        models.setdefault(model, {"runs": {}})["runs"][seed] = cols
    by_protocol = protocol_columns(columns, settings)
    relative_columns = [c for c in columns if c != "clean" and c not in by_protocol]
    for model, data in models.items():
        runs = data["runs"]
        data["summary"] = {c: summarize([r[c] for r in runs.values()]) for c in columns}
        data["relative"] = {
            c: summarize([relative(r, c) for r in runs.values()])
            for c in relative_columns
        }
        data["lambdas"] = _lambdas(config, model, sorted(runs))
    base = models[config.baseline]["runs"]
    differences = {}
    for model, data in models.items():
        if model == config.baseline:
            continue
        differences[model] = {
            c: paired_difference(
                {s: r[c] for s, r in data["runs"].items()},
                {s: r[c] for s, r in base.items()},
                floor=example_floor(c, settings),
            )
            for c in columns
        }
        for diff in differences[model].values():
            diff["seeds_needed"] = {
                points(h): seeds_needed(diff["sd"], h) for h in RESOLUTION_TARGETS
            }
        differences[model]["_relative"] = {
            c: paired_difference(
                {s: relative(r, c) for s, r in data["runs"].items()},
                {s: relative(r, c) for s, r in base.items()},
                floor=example_floor(c, settings),
            )
            for c in relative_columns
        }
    return {
        "config": config.to_dict(),
        "evaluation": settings,
        "confidence": CONFIDENCE,
        "columns": columns,
        "protocol_columns": by_protocol,
        "models": {
            m: {**d, "runs": {str(s): r for s, r in d["runs"].items()}}
            for m, d in models.items()
        },
        "differences": differences,
    }


def _lambdas(config, model, seeds):
    """{block: {"mean": ..., "seeds": {seed: lambda}}} of the trained models."""
    import os

    import keras

    from keras_damped.models import damping_values
    from keras_damped.study.config import run_dir

    per_block = {}
    for seed in seeds:
        path = os.path.join(run_dir(config.out, model, seed), "model.keras")
        trained = keras.saving.load_model(path, compile=False)
        for block, value in damping_values(trained).items():
            value = float(np.mean(np.asarray(value, dtype="float64")))
            per_block.setdefault(block, {})[str(seed)] = value
    return {
        block: {"mean": float(np.mean(list(v.values()))), "seeds": v}
        for block, v in per_block.items()
    }
