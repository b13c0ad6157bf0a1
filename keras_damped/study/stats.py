"""Statistics over seeds: means, Student-t intervals, seed-matched differences."""

import math

import numpy as np

from keras_damped.robustness.report import attack_keys
from keras_damped.robustness.report import attack_specs
from keras_damped.robustness.report import unpack_mask

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


def t_test_p(summary, confidence=CONFIDENCE):
    """The two-sided p-value of "mean 0" for a `summarize` result, from the
    standard error its interval used (`half_width` / t), so p < 1 -
    `confidence` exactly where the interval excludes zero (the one-example
    floor included). NaN with fewer than two values."""
    from scipy import stats

    n, half = summary["n"], summary["half_width"]
    if n < 2 or math.isnan(half):
        return math.nan
    t_crit = stats.t.ppf(1 - (1 - confidence) / 2, n - 1)
    se = half / t_crit
    if se == 0:
        return 0.0 if summary["mean"] else 1.0
    return float(2 * stats.t.sf(abs(summary["mean"]) / se, n - 1))


def holm(p_values):
    """Holm's step-down adjustment of `p_values` ({name: p}): each family-
    wise error rate controlled p-value, in the same keys. NaNs stay NaN and
    do not count.

    Formula: sort the m p-values ascending, p(1) <= ... <= p(m); the adjusted
    p(i) = max over j <= i of min(1, (m - j + 1) * p(j)).
    """
    valid = sorted((p, k) for k, p in p_values.items() if not math.isnan(p))
    m = len(valid)
    out = {k: math.nan for k in p_values}
    running = 0.0
    for j, (p, key) in enumerate(valid):
        running = max(running, min(1.0, (m - j) * p))
        out[key] = running
    return out


def _t_test_power(nc, df, t_crit):
    """The probability that a two-sided t-test with critical value `t_crit`
    rejects when the t statistic is noncentral t with `df` and `nc`."""
    from scipy import stats

    # The far tail is negligible where SciPy's series gives NaN for it.
    lower = np.nan_to_num(stats.nct.cdf(-t_crit, df, nc))
    return float(stats.nct.sf(t_crit, df, nc) + lower)


def power_at_half_width(n, confidence=CONFIDENCE):
    """How often a paired t-test at `confidence` over `n` seeds detects a
    true difference equal to its interval's half-width (0.56 at 5 seeds,
    0.52 at 10, 0.61 at 3): the half-width is about the difference detected
    half the time. NaN with fewer than two seeds."""
    from scipy import stats

    if n < 2:
        return math.nan
    t_crit = stats.t.ppf(1 - (1 - confidence) / 2, n - 1)
    return _t_test_power(t_crit, n - 1, t_crit)


def detectable(summary, power=0.8, confidence=CONFIDENCE):
    """The true difference a paired t-test at `confidence` detects with
    probability `power`, at this summary's n and standard error (from its
    half-width, so the one-example floor holds). NaN with fewer than two
    values."""
    from scipy import optimize
    from scipy import stats

    n, half = summary["n"], summary["half_width"]
    if n < 2 or math.isnan(half) or half == 0:
        return math.nan
    df = n - 1
    t_crit = stats.t.ppf(1 - (1 - confidence) / 2, df)
    se = half / t_crit

    def shortfall(delta):
        return _t_test_power(delta / se, df, t_crit) - power

    return float(optimize.brentq(shortfall, 1e-12 * half, 4 * half))


def depth_contrast(deep, shallow, confidence=CONFIDENCE, floor=0.0):
    """How much an effect changes between two studies: the mean of `deep`'s
    per-seed differences minus the mean of `shallow`'s, with Welch's t
    interval. The two studies' models are independent (a seed pairs runs
    within a study, not across depths), so the two samples are not paired.

    Formula:
    ```python
    diff = mean(deep) - mean(shallow)
    se = sqrt(var(deep) / n_deep + var(shallow) / n_shallow)  # ddof=1
    df = se**4 / ((var(deep) / n_deep) ** 2 / (n_deep - 1)
                  + (var(shallow) / n_shallow) ** 2 / (n_shallow - 1))
    half_width = max(t(1 - (1 - confidence) / 2, df) * se, floor)
    ```

    Args:
        deep, shallow: per-seed differences (damped minus baseline) of the
            same column in each study.

    Returns:
        `mean`, `half_width`, `low`, `high`, `df`, `p` and `verdict`.
    """
    from scipy import stats

    a = np.asarray(deep, dtype="float64")
    b = np.asarray(shallow, dtype="float64")
    if a.size < 2 or b.size < 2:
        raise ValueError(
            "depth_contrast needs at least two seeds in each study. Received "
            f"{a.size} and {b.size}."
        )
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    mean = float(a.mean() - b.mean())
    if se == 0:
        df = float(a.size + b.size - 2)
    else:
        df = se**4 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    t_crit = stats.t.ppf(1 - (1 - confidence) / 2, df)
    half = max(float(t_crit * se), floor)
    out = {"mean": mean, "half_width": half, "low": mean - half, "high": mean + half}
    out["df"] = float(df)
    se = half / t_crit
    out["p"] = float(2 * stats.t.sf(abs(mean) / se, df)) if se else float(mean == 0)
    out["verdict"] = verdict(out)
    return out


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
    `<protocol>: eps 0` (on the attacked examples, as its attacks),
    `<protocol>: <attack> <eps>` and `<protocol>: <noise>` (on all examples)
    (`protocol_column`).
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
            attack_specs(settings),
            clean=entry["masks"]["clean"],
        )
        if survive is not None:
            columns[f"worst {e}"] = float(survive.mean())
    protocol_masks = entry.get("masks", {}).get("protocols", {})
    for protocol, scores in entry.get("protocols", {}).items():
        # eps 0 on the images the protocol's attacks ran on (the first
        # `count`), so its attack columns compare with it.
        eps0 = protocol_masks.get(protocol, {}).get("eps0")
        columns[protocol_column(protocol, "eps 0")] = (
            float(unpack_mask(eps0, count).mean()) if eps0 else scores["eps0"]
        )
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


def attacked_columns(settings):
    """The columns measured on the attacked examples only (the first
    `attack_examples`): every attack, `worst`, and the authors' protocols'
    attacks and eps 0."""
    columns = {
        f"{a} {e}" for a in settings["attacks"] for e in attack_keys(settings, a)
    }
    columns |= {f"worst {e}" for e in settings["eps_255"]}
    for p in authors_protocols(settings):
        columns.add(protocol_column(p, "eps 0"))
        columns |= {
            protocol_column(p, f"{a} {e}")
            for a in settings.get("protocol_attacks", [])
            for e in settings.get("protocol_eps_255", [])
        }
    return columns


def example_floor(column, settings):
    """One test example's worth of accuracy in `column`: 1 / the examples
    it was measured on (the attacked ones for `attacked_columns`, all of
    them otherwise)."""
    attacked = column in attacked_columns(settings)
    n = attack_examples(settings) if attacked else settings["examples"]
    return 1.0 / n


def clean_on_attacked(entry, settings):
    """The clean accuracy on the attacked examples (the first
    `attack_examples`), from the per-example clean mask."""
    count = attack_examples(settings)
    if count == settings["examples"] or "clean" not in entry.get("masks", {}):
        return entry["clean"]
    return float(unpack_mask(entry["masks"]["clean"], count).mean())


def relative(run, column, clean_attacked=None, attacked=()):
    """A run's accuracy in `column` over its clean accuracy on the same
    examples: `clean_attacked` for the `attacked` columns, the clean
    accuracy on all examples otherwise (NaN where that is 0)."""
    clean = run["clean"]
    if column in attacked and clean_attacked is not None:
        clean = clean_attacked
    return run[column] / clean if clean else math.nan


def summarize_study(config, reports):
    """The study result from `{(model, seed): RobustnessReport}`.

    Returns a dict with `config`, `columns` (in table order), per model
    `runs` ({seed: columns}), `clean_attacked` ({seed: clean accuracy on
    the attacked examples}), `summary` and `relative` ({column: summary},
    the latter of accuracy / clean accuracy on the same examples), `lambdas`
    (per block, mean and per seed), and `differences` ({model: {column:
    paired summary}}) against the baseline, each with its p-value, its
    Holm-adjusted p-value (`p_holm`, within its family: `families`) and the
    difference it detects with 80% power (`detectable_80`).
    `protocol_columns` names the columns measured under the authors'
    protocols; they have no relative summary (their `eps 0`, not the pixel
    clean accuracy, is their reference).
    """
    models, columns, settings = _collect_runs(config, reports)
    by_protocol = protocol_columns(columns, settings)
    relative_columns = [c for c in columns if c != "clean" and c not in by_protocol]
    attacked = attacked_columns(settings)
    for model, data in models.items():
        runs = data["runs"]
        data["summary"] = {c: summarize([r[c] for r in runs.values()]) for c in columns}
        data["relative"] = {
            c: summarize(list(_relatives(data, c, attacked).values()))
            for c in relative_columns
        }
        data["lambdas"] = _lambdas(config, model, sorted(runs))
    families = _families(columns, settings)
    differences = {
        model: _differences(
            data,
            models[config.baseline],
            columns,
            relative_columns,
            settings,
            families,
        )
        for model, data in models.items()
        if model != config.baseline
    }
    return {
        "config": config.to_dict(),
        "evaluation": settings,
        "confidence": CONFIDENCE,
        "columns": columns,
        "protocol_columns": by_protocol,
        "families": families,
        "models": {
            m: {
                **d,
                "runs": {str(s): r for s, r in d["runs"].items()},
                "clean_attacked": {str(s): v for s, v in d["clean_attacked"].items()},
            }
            for m, d in models.items()
        },
        "differences": differences,
    }


def _collect_runs(config, reports):
    """({model: {"runs", "clean_attacked", "provenance"}}, the columns, the
    evaluation settings) from the run reports."""
    models = {}
    columns = None
    settings = None
    for (model, seed), report in reports.items():
        (entry,) = report.data["models"].values()
        settings = report.data["settings"]
        cols = run_columns(entry, settings)
        columns = columns or list(cols)
        data = models.setdefault(model, {"runs": {}, "clean_attacked": {}})
        data["runs"][seed] = cols
        data["clean_attacked"][seed] = clean_on_attacked(entry, settings)
        data.setdefault("provenance", {})[str(seed)] = _provenance(
            config, model, seed, report.data
        )
    return models, columns, settings


def _relatives(data, column, attacked):
    """{seed: accuracy in `column` over the clean accuracy on its images}."""
    return {
        s: relative(r, column, data["clean_attacked"][s], attacked)
        for s, r in data["runs"].items()
    }


def _differences(data, base, columns, relative_columns, settings, families):
    """A model's paired differences against the baseline `base`, per column
    (with its resolution, p-value, Holm-adjusted p-value and 80%-power
    difference), and of its relative accuracies (`_relative`)."""
    diffs = {
        c: paired_difference(
            {s: r[c] for s, r in data["runs"].items()},
            {s: r[c] for s, r in base["runs"].items()},
            floor=example_floor(c, settings),
        )
        for c in columns
    }
    for diff in diffs.values():
        diff["seeds_needed"] = {
            points(h): seeds_needed(diff["sd"], h) for h in RESOLUTION_TARGETS
        }
        diff["p"] = t_test_p(diff)
        diff["detectable_80"] = detectable(diff)
    for family in families.values():
        for c, p in holm({c: diffs[c]["p"] for c in family}).items():
            diffs[c]["p_holm"] = p
    attacked = attacked_columns(settings)
    diffs["_relative"] = {
        c: paired_difference(
            _relatives(data, c, attacked),
            _relatives(base, c, attacked),
            floor=example_floor(c, settings),
        )
        for c in relative_columns
    }
    return diffs


def _provenance(config, model, seed, report):
    """Where a run was trained and evaluated: the CPU of each training
    session (a resumed run has several, oldest first), how many times it
    was resumed, and the evaluating machine, its wall and CPU seconds and
    the attack batches reused from an interrupted evaluation (None where an
    older report did not record them, or nothing was reused)."""
    import json
    import os

    from keras_damped.study.config import run_dir

    path = os.path.join(run_dir(config.out, model, seed), "config.json")
    sessions = []
    record = None
    if os.path.isfile(path):
        with open(path) as f:
            record = json.load(f)
    while record:
        sessions.append(
            {
                "cpu": record.get("machine", {}).get("cpu"),
                "started": record.get("started"),
                "resumed_at_epoch": record.get("resumed_at_epoch"),
            }
        )
        record = record.get("previous")
    sessions.reverse()
    return {
        "training": sessions,
        "resumed": sum(1 for s in sessions if s["resumed_at_epoch"]),
        "evaluated_on": (report.get("machine") or {}).get("cpu"),
        "evaluation_seconds": report.get("seconds"),
        # Attack batches an interrupted evaluation had finished, reused.
        "evaluation_resumed": report.get("resumed"),
    }


def _families(columns, settings):
    """The families of Holm's adjustment: the main table's columns (all but
    the per-severity ones, parts of the noise means) and each authors'
    protocol's columns."""
    severity = {f"{n} s{k}" for n in settings["noises"] for k in settings["severities"]}
    protocols = authors_protocols(settings)
    prefixes = {p: protocol_column(p, "") for p in protocols}
    families = {
        "pixel": [
            c
            for c in columns
            if c not in severity and not c.startswith(tuple(prefixes.values()))
        ]
    }
    for p, prefix in prefixes.items():
        families[p] = [c for c in columns if c.startswith(prefix)]
    return families


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


def damping_kind(model):
    """A preset's name without its depth: `in_resnet56` -> `in_resnet`."""
    import re

    return re.sub(r"\d+$", "", model)


def per_seed_differences(result, model, column):
    """{seed: model's column minus the baseline's} over the matched seeds."""
    models = result["models"]
    base = models[result["config"]["baseline"]]["runs"]
    runs = models[model]["runs"]
    return {
        s: runs[s][column] - base[s][column]
        for s in sorted(set(runs) & set(base), key=int)
    }


def depth_table(shallow, deep):
    """How the effect of damping changes from one study to a deeper one.

    The two study results (`summarize_study`) must compare the same kinds of
    model (`damping_kind`) against the same kind of baseline. For each
    damped kind and each column both studies have: the paired difference
    against the baseline in each study (seeds paired within a study) and
    `depth_contrast` between them (deep minus shallow; the studies' models
    are independent), with its Holm-adjusted p-value (`p_holm`) within the
    deep study's families of columns (`families`). Also each kind's clean
    accuracy and, per damped block, the learned lambda's mean and spread
    over seeds in each study.
    """
    kinds = {}
    for result, side in ((shallow, "shallow"), (deep, "deep")):
        for model in result["config"]["models"]:
            kinds.setdefault(damping_kind(model), {})[side] = model
    base = damping_kind(deep["config"]["baseline"])
    if damping_kind(shallow["config"]["baseline"]) != base:
        raise ValueError(
            "The two studies compare against different baselines: "
            f"{shallow['config']['baseline']!r} and {deep['config']['baseline']!r}."
        )
    pairs = {k: v for k, v in kinds.items() if len(v) == 2}
    columns = [c for c in deep["columns"] if c in set(shallow["columns"])]
    rows = {}
    for kind, names in pairs.items():
        if kind == base:
            continue
        rows[kind] = {}
        for c in columns:
            floor = max(
                example_floor(c, shallow["evaluation"]),
                example_floor(c, deep["evaluation"]),
            )
            a = list(per_seed_differences(deep, names["deep"], c).values())
            b = list(per_seed_differences(shallow, names["shallow"], c).values())
            rows[kind][c] = {
                "shallow": shallow["differences"][names["shallow"]][c],
                "deep": deep["differences"][names["deep"]][c],
                "contrast": depth_contrast(a, b, floor=floor),
            }
    families = _adjust_contrasts(rows, deep["families"], columns)
    studies = {"shallow": shallow, "deep": deep}
    clean = {
        kind: {
            side: studies[side]["models"][m]["summary"]["clean"]
            for side, m in names.items()
        }
        for kind, names in pairs.items()
    }
    lambdas = {
        kind: {
            side: _lambda_spread(studies[side]["models"][m]["lambdas"])
            for side, m in names.items()
        }
        for kind, names in pairs.items()
        if kind != base
    }
    return {
        "shallow": shallow["config"]["out"],
        "deep": deep["config"]["out"],
        "baseline": {
            "shallow": shallow["config"]["baseline"],
            "deep": deep["config"]["baseline"],
        },
        "models": pairs,
        "columns": columns,
        "families": families,
        "rows": rows,
        "clean": clean,
        "lambdas": lambdas,
    }


def _adjust_contrasts(rows, families, columns):
    """Holm's adjustment of each kind's changes with depth within each of
    the deep study's `families` (restricted to the shared `columns`), as
    for its own differences; returns those families."""
    families = {
        name: [c for c in family if c in set(columns)]
        for name, family in families.items()
    }
    for by_column in rows.values():
        for family in families.values():
            contrasts = {c: by_column[c]["contrast"] for c in family}
            for c, p in holm({c: d["p"] for c, d in contrasts.items()}).items():
                contrasts[c]["p_holm"] = p
    return families


def _lambda_spread(lambdas):
    """{block: mean, sd, min, max over seeds} of `summarize_study`'s lambdas."""
    out = {}
    for block, data in lambdas.items():
        values = np.asarray(list(data["seeds"].values()), dtype="float64")
        out[block] = {
            "mean": float(values.mean()),
            "sd": float(values.std(ddof=1)) if values.size > 1 else math.nan,
            "min": float(values.min()),
            "max": float(values.max()),
        }
    return out
